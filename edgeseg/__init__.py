"""edgeseg: gas-leak and smoke segmentation for edge devices (ONNX Runtime / TensorRT).

The runtime package never imports torch: camera gateways install numpy, opencv and
onnxruntime only. Conversion from PyTorch lives in the separate ``export`` package.
"""
__version__ = "0.1.0"
CLASSES = ("background", "gas-smoke", "machine")

__all__ = ["Segmenter", "Result", "CLASSES", "__version__"]


def __getattr__(name: str):
    """Lazy exports keep ``import edgeseg`` cheap (no onnxruntime import until needed)."""
    if name in ("Segmenter", "Result"):
        from edgeseg import segmenter

        return getattr(segmenter, name)
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
