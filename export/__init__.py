"""Checkpoint -> ONNX (needs torch) and ONNX -> TensorRT engine (no torch) conversion."""
