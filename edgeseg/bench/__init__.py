"""Benchmarks: accuracy (IoU/F1 on labelled folders) and latency per backend/precision."""
