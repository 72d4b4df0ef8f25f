"""edgeseg: gas-leak and smoke segmentation for edge devices (ONNX Runtime / TensorRT).

The runtime package never imports torch: camera gateways install numpy, opencv and
onnxruntime only. Conversion from PyTorch lives in the separate ``export`` package.
"""
__version__ = "0.1.0"
CLASSES = ("background", "gas-smoke", "machine")
