"""SLAM's pre-training objectives: pure functions `(outputs..., targets..., weights) -> (loss, metrics)`."""
