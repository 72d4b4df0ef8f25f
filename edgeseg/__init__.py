"""edgeseg: gas-leak and smoke segmentation for edge devices (ONNX Runtime / TensorRT).

The runtime package never imports torch: camera gateways install numpy, opencv and
onnxruntime only. Conversion from PyTorch lives in ``edgeseg_export`` (``export/`` in a checkout),
which imports this package, never the reverse. See docs/architecture.md.
"""
__version__ = "0.1.0"

__all__ = ["Segmenter", "Result", "Gateway", "__version__"]


def __getattr__(name: str):
    """Lazy exports keep ``import edgeseg`` cheap (no onnxruntime import until needed)."""
    if name in ("Segmenter", "Result"):
        from edgeseg import segmenter

        return getattr(segmenter, name)
    if name == "Gateway":  # the camera-gateway service (edgeseg watch); threads start only on Gateway.start()
        from edgeseg.gateway.service import Gateway

        return Gateway
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
