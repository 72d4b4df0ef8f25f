"""Triton backend: the network runs on an NVIDIA Triton Inference Server, pre/post-processing stay here.

    Segmenter("triton://gpu-server:8001/edgeseg")        # gRPC (default port 8001)
    Segmenter("triton+http://gpu-server:8000/edgeseg")   # HTTP/REST (default port 8000)
    Segmenter("gpu-server:8001/edgeseg", backend="triton")

The served model is either a repository written by ``edgeseg export triton`` (ONNX Runtime or
TensorRT platform) or the tensor endpoint of ``edgeseg serve``: input ``image`` (FP32, Nx3xHxW),
output ``probs`` (FP32, NxCxHxW), edgeseg's metadata (classes, mean/std, input size, activation)
as the model config's ``parameters``. Only ``probs`` crosses the network back.

Failures are one line (:class:`~edgeseg.core.errors.InferenceServerError`): server down, model missing
or not ready, shape mismatch, timeout. After a connection failure the client is dropped and the
next ``infer`` opens a new one, so a gateway keeps going once the server is back.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgeseg.runtime.backends.base import Backend, BackendOptions
from edgeseg.core.errors import InferenceServerError, ModelError
from edgeseg.core.model_meta import ModelInfo

log = logging.getLogger("edgeseg")

SCHEMES = ("triton", "triton+grpc", "triton+http")
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
DEFAULT_TIMEOUT_S = 10.0
INPUT, OUTPUT = "image", "probs"


@dataclass(frozen=True)
class TritonURL:
    protocol: str  # grpc | http
    host: str
    port: int
    model: str
    version: str = ""  # "" = the server's policy (latest)
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        scheme = "triton" if self.protocol == "grpc" else "triton+http"
        return f"{scheme}://{self.address}/{self.model}" + (f"/{self.version}" if self.version else "")


def parse_url(spec: str) -> TritonURL:
    """``triton[+grpc|+http]://HOST[:PORT]/NAME[/VERSION][?timeout=S]``; ``HOST:PORT/NAME`` means gRPC."""
    if "://" not in spec:
        spec = "triton://" + spec
    parts = urlsplit(spec)
    if parts.scheme not in SCHEMES:
        raise ModelError(f"{spec}: not a Triton address; use triton://HOST:PORT/NAME (gRPC) or triton+http://HOST:PORT/NAME")
    protocol = "http" if parts.scheme == "triton+http" else "grpc"
    path = [p for p in parts.path.split("/") if p]
    if not parts.hostname or not path or len(path) > 2:
        raise ModelError(f"{spec}: expected triton://HOST:PORT/NAME[/VERSION], e.g. triton://127.0.0.1:8001/edgeseg")
    try:
        port = parts.port or DEFAULT_PORTS[protocol]
        timeout = float(parse_qs(parts.query).get("timeout", [DEFAULT_TIMEOUT_S])[0])
    except ValueError as exc:
        raise ModelError(f"{spec}: {exc}") from exc
    return TritonURL(protocol, parts.hostname, port, path[0], path[1] if len(path) == 2 else "", timeout)


def _status(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    text = status() if callable(status) else ""
    return str(text or "")


def _message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None)
    text = msg() if callable(msg) else str(exc)
    text = str(text or exc or type(exc).__name__).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _is_connection_error(exc: BaseException) -> bool:
    status = _status(exc)
    msg = _message(exc).lower()
    return ("UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status or isinstance(exc, (OSError, ConnectionError))
            or any(s in msg for s in ("connection refused", "failed to connect", "connect failed", "unavailable",
                                      "broken pipe", "reset by peer", "timed out", "deadline exceeded", "socket closed")))


class TritonBackend(Backend):
    """One tritonclient connection (gRPC or HTTP) to one model on one Triton server."""

    name = "triton"
    suffixes = ()

    @classmethod
    def open(cls, model: Path | str, options: BackendOptions) -> "TritonBackend":
        return cls(str(model))

    def __init__(self, url: str | TritonURL, timeout_s: float | None = None) -> None:
        self.url = url if isinstance(url, TritonURL) else parse_url(url)
        if timeout_s is not None:
            self.url = TritonURL(**{**self.url.__dict__, "timeout_s": float(timeout_s)})
        try:
            if self.url.protocol == "grpc":
                import tritonclient.grpc as tc
            else:
                import tritonclient.http as tc
        except ImportError as exc:
            raise ModelError(f"the triton backend needs tritonclient: pip install 'edgeseg[triton]' ({exc})") from exc
        self._tc = tc
        self._client: Any = None
        self._lock = threading.Lock()
        self.providers = (f"triton-{self.url.protocol}@{self.url.address}",)
        self._connect()
        config = self._model_config()
        self._check_io(config)
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        try:
            self.info = ModelInfo.from_metadata(params)
        except ValueError as exc:
            raise ModelError(f"{self.url}: {exc}") from exc
        if "classes" not in params:
            log.warning("%s: the model config has no edgeseg parameters (classes, mean, std); using the defaults "
                        "- export the repository with 'edgeseg export triton'", self.url)
        log.info("triton backend: %s (%s classes, max batch %s)", self.url, len(self.info.classes), self.max_batch)

    # ------------------------------------------------------------------ connection
    def _new_client(self) -> Any:
        if self.url.protocol == "grpc":
            return self._tc.InferenceServerClient(self.url.address)
        t = self.url.timeout_s
        return self._tc.InferenceServerClient(self.url.address, connection_timeout=t, network_timeout=t)

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is dropped either way
                pass

    def _connect(self) -> Any:
        """A live client whose model is ready, or :class:`InferenceServerError` (one line)."""
        if self._client is not None:
            return self._client
        client = self._new_client()
        kw: dict[str, Any] = {"client_timeout": self.url.timeout_s} if self.url.protocol == "grpc" else {}
        try:
            live = client.is_server_live(**kw)
        except Exception as exc:  # noqa: BLE001 - tritonclient raises its own and grpc/socket errors
            client.close()
            raise InferenceServerError(f"Triton server at {self.url.address} ({self.url.protocol}) is not reachable: "
                                       f"{_message(exc)}; start it or check the address") from exc
        try:
            ready = live and client.is_model_ready(self.url.model, self.url.version, **kw)
        except Exception as exc:  # noqa: BLE001
            client.close()
            raise InferenceServerError(f"Triton server at {self.url.address}: cannot query model "
                                       f"{self.url.model!r}: {_message(exc)}") from exc
        if not ready:
            client.close()
            raise InferenceServerError(f"model {self.url.model!r} is missing or not ready on the Triton server at "
                                       f"{self.url.address}; check its name and the server log")
        self._client = client
        return client

    def _model_config(self) -> dict[str, Any]:
        try:
            if self.url.protocol == "grpc":
                cfg = self._client.get_model_config(self.url.model, self.url.version, as_json=True,
                                                    client_timeout=self.url.timeout_s)
                return cfg.get("config", cfg)
            return self._client.get_model_config(self.url.model, self.url.version)
        except Exception as exc:  # noqa: BLE001
            self._drop_client()
            raise InferenceServerError(f"{self.url}: cannot read the model config: {_message(exc)}") from exc

    def _check_io(self, config: dict[str, Any]) -> None:
        inputs = {t["name"]: t for t in config.get("input", [])}
        outputs = {t["name"]: t for t in config.get("output", [])}
        if INPUT not in inputs or OUTPUT not in outputs:
            self._drop_client()
            raise ModelError(f"{self.url}: expected input {INPUT!r} and output {OUTPUT!r}, the server has inputs "
                             f"{sorted(inputs)} and outputs {sorted(outputs)}; serve an edgeseg model")
        mb = int(config.get("max_batch_size", 0) or 0)
        self.batched = mb > 0
        dims = [int(d) for d in inputs[INPUT].get("dims", [])]
        if not self.batched:  # the batch dimension is part of dims
            self.max_batch = dims[0] if dims and dims[0] > 0 else None
            dims = dims[1:]
        else:
            self.max_batch = mb
        self.input_dims = tuple(dims)
        # an fp16-IO TensorRT plan takes TYPE_FP16 (export triton writes the engine's recorded dtype)
        self.input_type = str(inputs[INPUT].get("data_type", "TYPE_FP32")).removeprefix("TYPE_")
        if self.input_type not in ("FP32", "FP16"):
            self._drop_client()
            raise ModelError(f"{self.url}: input {INPUT!r} is {self.input_type}; edgeseg sends FP32 or FP16 images")
        if len(dims) == 3 and dims[1] > 0 and dims[2] > 0:
            self.input_hw = (dims[1], dims[2])

    # ------------------------------------------------------------------ inference
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 -> NCHW float32 probabilities from the server (split into its max batch)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or (self.input_dims and len(self.input_dims) == 3 and any(
                d > 0 and d != s for d, s in zip(self.input_dims, batch.shape[1:]))):
            raise InferenceServerError(f"{self.url}: shape mismatch: the served model takes "
                                       f"{['-1' if d < 0 else d for d in self.input_dims]} per image, got "
                                       f"{list(batch.shape[1:])}")
        step = self.max_batch or len(batch)
        outs = [self._infer_chunk(batch[s:s + step]) for s in range(0, len(batch), step)]
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def _infer_chunk(self, chunk: np.ndarray) -> np.ndarray:
        tc = self._tc
        n = len(chunk)
        if not self.batched and self.max_batch and n < self.max_batch:  # fixed-batch model: pad
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.max_batch - n, axis=0)])
        kind = getattr(self, "input_type", "FP32")
        inp = tc.InferInput(INPUT, list(chunk.shape), kind)
        inp.set_data_from_numpy(np.ascontiguousarray(chunk, np.float16 if kind == "FP16" else np.float32))
        out = [tc.InferRequestedOutput(OUTPUT)]
        with self._lock:  # (re)connecting is serialised; the gRPC client itself is thread-safe
            client = self._connect()
        try:
            if self.url.protocol == "grpc":
                res = client.infer(self.url.model, [inp], self.url.version, outputs=out,
                                   client_timeout=self.url.timeout_s)
            else:
                res = client.infer(self.url.model, [inp], self.url.version, outputs=out)
        except Exception as exc:  # noqa: BLE001 - classified below into one line
            raise self._error(exc) from exc
        probs = res.as_numpy(OUTPUT)
        if probs is None:
            raise InferenceServerError(f"{self.url}: the response has no {OUTPUT!r} output")
        return probs[:n].astype(np.float32, copy=False)

    def _error(self, exc: BaseException) -> InferenceServerError:
        status, msg = _status(exc), _message(exc)
        low = msg.lower()
        if "DEADLINE_EXCEEDED" in status or "timed out" in low or "deadline" in low or "timeout" in low:
            self._drop_client()
            return InferenceServerError(f"{self.url}: no answer within {self.url.timeout_s:g} s (timeout); the "
                                        f"server is overloaded or stuck (raise ?timeout=S in the URL)")
        if _is_connection_error(exc):
            self._drop_client()  # the next call reconnects
            return InferenceServerError(f"Triton server at {self.url.address} went away ({msg}); "
                                        "the next call reconnects")
        if "unexpected shape" in low or "shape" in low and "expected" in low:
            return InferenceServerError(f"{self.url}: shape mismatch: {msg}")
        if "unknown model" in low or "not found" in low or "not ready" in low or "unavailable model" in low:
            self._drop_client()
            return InferenceServerError(f"model {self.url.model!r} is missing or not ready on {self.url.address}: {msg}")
        return InferenceServerError(f"{self.url}: inference failed: {msg}")

    def close(self) -> None:
        self._drop_client()
