"""The model runtime: a frame in, labels and regions out. Preprocessing, the inference backends
(ONNX Runtime, OpenVINO, TensorRT, Triton), postprocessing, tiling and drawing, around
:class:`edgeseg.runtime.segmenter.Segmenter`. Imports only :mod:`edgeseg.core`."""
