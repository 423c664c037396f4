"""SLAM pre-training objectives: pure functions returning (loss, metrics)."""
