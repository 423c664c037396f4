"""Performance plumbing shared by training and benchmarks: XLA FLOP/memory analysis and the
measured matmul peak behind MFU (flops.py), and the host malloc settings (host_memory.py)."""
