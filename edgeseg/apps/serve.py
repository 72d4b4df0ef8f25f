"""``edgeseg serve``: an edgeseg model behind a real NVIDIA Triton Inference Server (PyTriton).

PyTriton (``pip install 'edgeseg[serve]'``) starts the ``tritonserver`` binary it ships and binds
Python callables to it through Triton's Python backend, so clients get Triton's HTTP/REST and gRPC
APIs, its dynamic batcher, several model instances and its Prometheus metrics. Two models:

* ``NAME`` - the tensor endpoint: ``image`` FP32 [-1, 3, H, W] in, ``probs`` FP32 [-1, C, H, W] out;
  what the SDK's Triton backend (``Segmenter("triton://HOST:PORT/NAME")``) calls. edgeseg's
  metadata is in the model config's ``parameters``, as in a repository from ``edgeseg export triton``.
  H and W must be multiples of the model's ``size_multiple`` (32): others get HTTP 400 / gRPC
  INVALID_ARGUMENT and one line naming the size and the fix, not the network's failure.
* ``NAME_image`` - the image endpoint for clients that are not Python: ``image`` BYTES [-1, 1]
  (an encoded JPEG / PNG, or its base64 text) in; ``mask`` BYTES (PNG of the class-id mask at the
  image's size) and ``result`` BYTES (JSON: leak, regions, classes, frame size) out. It runs one
  request per execution (no dynamic batcher), so an image that does not decode fails only its own
  request, with HTTP 400 / gRPC INVALID_ARGUMENT and one line (:mod:`edgeseg.apps.serve_errors`).

Requests malformed at the protocol level (unknown or missing input, wrong datatype or shape) are
refused by Triton core before they reach a model: 400, one line. A body that is not JSON gets one
line with 500: Triton core reports JSON parse errors as internal (docs/triton.md has the table).

The network runs where the model file runs here (ONNX Runtime, or TensorRT for an ``.engine``);
a GPU server with NVIDIA's container runs the exported repository instead (docs/triton.md,
"Scale-out with Triton").
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from edgeseg.core.errors import BackendUnavailable, ModelError
from edgeseg.core.model_meta import SIZE_MULTIPLE
from edgeseg.apps.serve_errors import BadRequest, install_bad_request_answers

log = logging.getLogger("edgeseg")


@dataclass(frozen=True)
class ServeOptions:
    name: str = "edgeseg"
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    instances: int = 1
    preferred: tuple[int, ...] = ()
    queue_delay_us: int = 2000
    threads: int | None = None  # ONNX Runtime threads per instance (None: cores / instances)
    backend: str = "auto"


def _imdecode(raw: bytes) -> np.ndarray | None:
    try:  # OpenCV asserts on an empty buffer and may reject a corrupt one with cv2.error
        return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None
    except cv2.error:
        return None


def decode_image(data: Any) -> np.ndarray:
    """An encoded JPEG / PNG (raw bytes or base64 text) -> BGR frame; ValueError when it is neither."""
    raw = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    if not raw:
        raise ValueError("empty image (0 bytes), not a JPEG / PNG image")
    frame = _imdecode(raw)
    if frame is None:
        try:
            frame = _imdecode(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError):
            frame = None
    if frame is None:
        raise ValueError("not a JPEG / PNG image (raw bytes or base64)")
    return frame


def check_tensor_size(height: int, width: int, multiple: int, image_model: str) -> None:
    """Refuse (:class:`BadRequest`: HTTP 400, one line) an image tensor the network cannot take:
    the encoder halves height and width 5 times, so both must be positive multiples of ``multiple``
    (in ONNX Runtime a U-Net's skip connections otherwise fail to concatenate, as a 500)."""
    if height >= multiple and width >= multiple and not height % multiple and not width % multiple:
        return
    up = [max(multiple, -(-v // multiple) * multiple) for v in (height, width)]
    raise BadRequest(f"input 'image' is {height}x{width} (height x width); this model needs both to be multiples "
                     f"of {multiple} (fix: resize or pad the tensor to e.g. {up[0]}x{up[1]}, or send the encoded "
                     f"image to {image_model}, which resizes it)")


def _tensor_fn(seg: Any, image_model: str) -> Callable:
    from pytriton.decorators import batch

    try:
        multiple = int(seg.info.metadata.get("size_multiple", SIZE_MULTIPLE))
    except (TypeError, ValueError):
        multiple = SIZE_MULTIPLE

    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        # Triton's dynamic batcher batches only requests of one shape: a refusal here is theirs all
        check_tensor_size(int(image.shape[-2]), int(image.shape[-1]), multiple, image_model)
        return {"probs": seg.backend.infer(np.ascontiguousarray(image, dtype=np.float32))}

    return infer


def _image_fn(seg: Any) -> Callable:
    from pytriton.decorators import batch

    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        # One request per call (the image model has no dynamic batcher), so refusing the request
        # refuses no one else's: BadRequest becomes HTTP 400 with its one line (edgeseg.apps.serve_errors).
        frames = []
        for i, x in enumerate(image):
            try:
                frames.append(decode_image(x[0] if x.ndim else x))
            except ValueError as exc:
                where = f"image {i + 1} of {len(image)}: " if len(image) > 1 else ""
                raise BadRequest(f"{where}{exc} (fix: send the encoded bytes of one JPEG or PNG image "
                                 "per request)") from None
        masks, info = [], []
        for r in seg.segment_batch(frames):
            masks.append([cv2.imencode(".png", r.mask)[1].tobytes()])
            info.append([json.dumps({**r.to_dict(), "classes": list(r.classes)}).encode()])
        return {"mask": np.array(masks, dtype=object), "result": np.array(info, dtype=object)}

    return infer


def _segmenters(model: str | Path, opts: ServeOptions) -> list[Any]:
    from edgeseg.runtime.segmenter import Segmenter

    threads = opts.threads or max(1, (os.cpu_count() or 1) // opts.instances)
    return [Segmenter(model, backend=opts.backend, threads=threads) for _ in range(opts.instances)]


def _add_parameters(triton: Any, name: str, params: dict[str, str]) -> None:
    """Put edgeseg's metadata into the generated model config's ``parameters``.

    PyTriton's ``ModelConfig`` has no field for it; its generated ``TritonModelConfig`` does
    (``backend_parameters``, written as ``parameters``) and is cached on the model before the
    server loads it, so it is filled here, between ``bind`` and ``run``.
    """
    for model in triton._model_manager.models:  # noqa: SLF001 - no public hook for config parameters
        if model.model_name == name:
            model._get_triton_model_config().backend_parameters.update(params)  # noqa: SLF001
            return
    raise RuntimeError(f"model {name} was not bound")


def _match_stub_libpython() -> None:
    """Make Triton's Python-backend stub load *this* interpreter's libpython.

    The stub links ``libpython3.X.so``; on a host whose Python is not the system one (pyenv, conda)
    the dynamic loader would pick the system's library, whose C core does not match this
    interpreter's standard library (stub crashes in ``multiprocessing``). PyTriton appends its own
    paths to ``LD_LIBRARY_PATH``, so this interpreter's LIBDIR goes first.
    """
    import sysconfig

    libdir, lib = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if libdir and lib and (Path(libdir) / lib).is_file():
        current = os.environ.get("LD_LIBRARY_PATH", "")
        if libdir not in current.split(":"):
            os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


def build_triton(model: str | Path, opts: ServeOptions) -> tuple[Any, dict[str, Any]]:
    """A configured (not yet started) ``pytriton.triton.Triton`` and a summary of what it serves."""
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise BackendUnavailable(f"edgeseg serve needs PyTriton: pip install 'edgeseg[serve]' ({exc})") from exc
    if opts.max_batch < 1 or opts.instances < 1:
        raise ModelError(f"--max-batch and --instances must be >= 1 (got {opts.max_batch}, {opts.instances})")
    if any(p < 1 or p > opts.max_batch for p in opts.preferred):
        raise ModelError(f"--preferred-batch values must be between 1 and --max-batch {opts.max_batch}")
    segs = _segmenters(model, opts)
    info = segs[0].info
    _match_stub_libpython()
    c = len(info.classes)
    batcher = DynamicBatcher(max_queue_delay_microseconds=opts.queue_delay_us,
                             preferred_batch_size=list(opts.preferred) or None)
    config = ModelConfig(max_batch_size=opts.max_batch, batcher=batcher)
    cfg = TritonConfig(http_address=opts.host, http_port=opts.http_port, grpc_address=opts.host,
                       grpc_port=opts.grpc_port, metrics_address=opts.host, metrics_port=opts.metrics_port,
                       allow_metrics=True, allow_gpu_metrics=False, log_verbose=0)
    triton = Triton(config=cfg)
    image_name = f"{opts.name}_image"
    triton.bind(model_name=opts.name, infer_func=[_tensor_fn(s, image_name) for s in segs],
                inputs=[Tensor(name="image", dtype=np.float32, shape=(3, -1, -1))],
                outputs=[Tensor(name="probs", dtype=np.float32, shape=(c, -1, -1))], config=config, strict=True)
    _add_parameters(triton, opts.name, dict(info.metadata) or {
        "classes": json.dumps(list(info.classes)), "mean": json.dumps(list(info.mean)), "std": json.dumps(list(info.std)),
        "input_size": json.dumps(list(info.input_size)), "activation": info.activation})
    triton.bind(model_name=image_name, infer_func=[_image_fn(s) for s in segs],
                inputs=[Tensor(name="image", dtype=bytes, shape=(1,))],
                outputs=[Tensor(name="mask", dtype=bytes, shape=(1,)), Tensor(name="result", dtype=bytes, shape=(1,))],
                # batcher=None: no dynamic_batching in the config, so Triton's default scheduler runs
                # each request alone (one bad image cannot fail requests batched with it), while
                # max_batch_size keeps the batch dimension -1 in the API that clients already use
                config=ModelConfig(max_batch_size=opts.max_batch, batcher=None))
    for name in (opts.name, image_name):  # BadRequest -> HTTP 400, one line
        install_bad_request_answers(triton, name)
    summary = {
        "model": str(model), "backend": segs[0].backend_name, "classes": list(info.classes),
        "tensor_model": opts.name, "image_model": image_name, "instances": opts.instances, "max_batch": opts.max_batch,
        "grpc": f"{opts.host}:{opts.grpc_port}", "http": f"{opts.host}:{opts.http_port}",
        "metrics": f"http://{opts.host}:{opts.metrics_port}/metrics",
        "sdk_url": f"triton://{opts.host}:{opts.grpc_port}/{opts.name}",
    }
    return triton, summary


def serve(model: str | Path, opts: ServeOptions, on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve until SIGINT / SIGTERM (PyTriton then stops ``tritonserver`` and its proxies)."""
    triton, summary = build_triton(model, opts)

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt  # Triton.serve() ends its loop and stops the server on it

    signal.signal(signal.SIGTERM, _stop)
    try:
        triton.run()
        if on_ready:
            on_ready(summary)
        triton.serve()
    except KeyboardInterrupt:
        pass
    finally:
        triton.stop()


def parse_preferred(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise ModelError(f"--preferred-batch {text!r}: expected comma-separated integers, e.g. 4,8") from exc


def metrics(url: str, timeout: float = 5.0) -> dict[str, dict[str, float]]:
    """Triton's Prometheus counters by metric name, then by model name (``nv_inference_*`` only)."""
    import re
    from urllib.request import urlopen

    with urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback / configured metrics URL
        text = r.read().decode()
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = re.match(r'^(nv_inference_\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out.setdefault(m.group(1), {})[labels.get("model", "")] = float(m.group(3))
    return out


def batching_stats(url: str, model: str) -> dict[str, float]:
    """Requests vs executions of ``model`` from Triton's metrics: mean batch = inferences / executions."""
    m = metrics(url)
    req = m.get("nv_inference_request_success", {}).get(model, 0.0)
    inf = m.get("nv_inference_count", {}).get(model, 0.0)
    execs = m.get("nv_inference_exec_count", {}).get(model, 0.0)
    return {"requests": req, "inferences": inf, "executions": execs,
            "mean_batch": round(inf / execs, 3) if execs else 0.0}


def wait_ready(url: str, models: Sequence[str], timeout_s: float = 60.0) -> None:
    """Block until the Triton server at ``host:port`` (HTTP) has ``models`` ready, or TimeoutError."""
    import time
    from urllib.error import URLError
    from urllib.request import urlopen

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if all(urlopen(f"http://{url}/v2/models/{m}/ready", timeout=2).status == 200 for m in models):  # noqa: S310
                return
        except (URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Triton at {url} did not get {', '.join(models)} ready within {timeout_s:g} s")
        time.sleep(0.2)
