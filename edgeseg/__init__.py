"""edgeseg: gas-leak and smoke segmentation for edge devices (ONNX Runtime / TensorRT).

The runtime package never imports torch: camera gateways install numpy, opencv and
onnxruntime only. Conversion from PyTorch lives in ``edgeseg_export`` (``export/`` in a checkout),
which imports this package, never the reverse. The layers are subpackages, bottom to top:
``core``, ``runtime``, ``io``, ``config``, ``streaming``, ``apps``, ``bench``, ``commands``
(``edgeseg docs architecture``). 0.1's flat import paths still work for one release
(:mod:`edgeseg.moved`).
"""
__version__ = "0.2.0"

__all__ = ["Segmenter", "Result", "Gateway", "__version__"]

from edgeseg import moved as _moved

_moved.install()


def __getattr__(name: str):
    """Lazy exports keep ``import edgeseg`` cheap (no onnxruntime import until needed)."""
    if name in ("Segmenter", "Result"):
        from edgeseg.runtime import segmenter

        return getattr(segmenter, name)
    if name == "Gateway":  # the camera-gateway service (edgeseg watch); threads start only on Gateway.start()
        from edgeseg.apps.gateway.service import Gateway

        return Gateway
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
