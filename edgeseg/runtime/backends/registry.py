"""Which backend runs which model: a name, the model-file suffixes it runs, and where its class lives.

Adding a backend is one module with a :class:`~edgeseg.runtime.backends.base.Backend` subclass plus one
entry in :data:`BACKENDS`. Classes are imported only when chosen, so the TensorRT backend's
imports never run on a machine that does not ask for it.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from edgeseg.runtime.backends.base import Backend, BackendOptions
from edgeseg.core.errors import BackendUnavailable, ModelError

log = logging.getLogger("edgeseg")


@dataclass(frozen=True)
class BackendEntry:
    name: str
    suffixes: tuple[str, ...]
    target: str  # "module:Class"
    #: URL schemes this backend serves (``triton://HOST:PORT/NAME``): a server, not a file
    schemes: tuple[str, ...] = ()

    def load_class(self) -> type[Backend]:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)


#: In ``auto`` preference order: the first whose model file exists and that loads on this machine wins.
BACKENDS: dict[str, BackendEntry] = {
    "tensorrt": BackendEntry("tensorrt", (".engine", ".plan"), "edgeseg.runtime.backends.tensorrt_backend:TensorRTBackend"),
    "onnxruntime": BackendEntry("onnxruntime", (".onnx",), "edgeseg.runtime.backends.onnxruntime_backend:OrtBackend"),
    # after onnxruntime: ``auto`` switches to it only where measured faster (edgeseg.runtime.backends.autoselect)
    "openvino": BackendEntry("openvino", (".onnx",), "edgeseg.runtime.backends.openvino_backend:OpenVINOBackend"),
    "triton": BackendEntry("triton", (), "edgeseg.runtime.backends.triton_backend:TritonBackend",
                           schemes=("triton", "triton+grpc", "triton+http")),
}

#: Backends other installed packages provide (``[project.entry-points."edgeseg.backends"]``), e.g. the
#: PyTorch backend of ``edgeseg_export``: tried after the built-in ones, imported only when chosen.
_PLUGIN_GROUP = "edgeseg.backends"


def _plugins() -> dict[str, BackendEntry]:
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=_PLUGIN_GROUP):
        if ep.name not in BACKENDS:
            found[ep.name] = BackendEntry(ep.name, (), ep.value)
    return found


def all_backends() -> dict[str, BackendEntry]:
    """Built-in backends, then plugins (the ``auto`` order)."""
    return {**BACKENDS, **_plugins()}


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name`` (imports it); :class:`ModelError` when unknown or not importable."""
    entry = all_backends().get(name)
    if entry is None:
        raise ModelError(f"unknown backend {name!r}: use one of {', '.join(backend_names())}")
    try:
        return entry.load_class()
    except ImportError as exc:
        raise ModelError(f"{name} backend is not installed here: {exc}") from exc


#: What a backend that is not usable here raises; anything else is a bug and propagates.
UNAVAILABLE = (BackendUnavailable, ModelError, ImportError, OSError)


def backend_names() -> list[str]:
    return ["auto", *all_backends()]


def model_for(entry: BackendEntry, model: Path) -> Path:
    """The file ``entry`` would run for ``model``: the model itself or its sibling with the backend's suffix."""
    suffixes = entry.suffixes or entry.load_class().suffixes
    if model.suffix in suffixes or not suffixes:
        return model
    return model.with_suffix(suffixes[0])


def remote_entry(model: object) -> BackendEntry | None:
    """The backend whose URL scheme ``model`` uses (``triton://...``), or None for a file path."""
    if not isinstance(model, str) or "://" not in model:
        return None
    scheme = model.split("://", 1)[0].lower()
    return next((e for e in all_backends().values() if scheme in e.schemes), None)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_backend(model: Path | str, backend: str | Backend = "auto", options: BackendOptions | None = None) -> Backend:
    """A ready backend for ``model``.

    ``backend`` is a :class:`Backend` instance (used as is), a registered name (that backend or a
    one-line :class:`ModelError`), or ``auto``: every registered backend whose file for this model
    exists (the model itself or a sibling, e.g. ``model.engine`` next to ``model.onnx``) is tried
    in :data:`BACKENDS` order and the first that loads wins; each refusal is logged with its reason.
    A server URL (``triton://HOST:PORT/NAME``) goes to the backend registered for its scheme.
    Where ONNX Runtime wins on a CPU and OpenVINO is installed, OpenVINO replaces it only if it
    was measured faster for this model, precision and host (:mod:`edgeseg.runtime.backends.autoselect`).
    """
    if isinstance(backend, Backend):
        return backend
    options = options or BackendOptions()
    entry = remote_entry(model) or (all_backends().get(backend) if isinstance(model, str) else None)
    if entry is not None and entry.schemes:
        if backend not in ("auto", entry.name):
            raise ModelError(f"{model} is served by the {entry.name} backend, not {backend}; use --backend auto or {entry.name}")
        try:
            return entry.load_class().open(model, options)  # type: ignore[arg-type]
        except UNAVAILABLE as exc:
            raise ModelError(f"{entry.name} backend unavailable: {_one_line(exc)}") from exc
    if "://" in str(model):
        raise ModelError(f"{model}: no backend serves this URL scheme (registered: "
                         f"{', '.join(s + '://' for e in all_backends().values() for s in e.schemes)})")
    model = Path(model)
    if backend != "auto":
        entry = all_backends().get(backend)
        if entry is None:
            raise ModelError(f"unknown backend {backend!r}: use one of {', '.join(backend_names())}")
        path = model_for(entry, model)
        if not path.exists() and model.exists() and entry.name != "tensorrt":
            raise ModelError(f"backend {entry.name} runs {'/'.join(entry.suffixes)} files and there is no {path.name} "
                             f"next to {model.name}; pass such a model or choose another --backend")
        if path != model and path.exists():
            log.info("backend %s: using %s instead of %s", entry.name, path.name, model.name)
        try:
            return entry.load_class().open(path if path.exists() else model, options)
        except ModelError:
            raise  # the backend ran and refused the model: its own message names the file and the fix
        except UNAVAILABLE as exc:  # the backend itself cannot run here (not installed, no device)
            raise ModelError(f"{entry.name} backend unavailable: {_one_line(exc)}") from exc
    reasons = []
    for entry in all_backends().values():
        if entry.schemes:  # servers are chosen by URL, never for a file
            continue
        try:
            path = model_for(entry, model)
        except ImportError:  # a plugin whose dependencies are not installed
            continue
        if not path.exists():
            continue
        try:
            chosen = entry.load_class().open(path, options)
        except UNAVAILABLE as exc:
            reasons.append(f"{entry.name}: {_one_line(exc)}")
            log.warning("auto backend: %s cannot run %s (%s); trying the next", entry.name, path.name, _one_line(exc))
            continue
        if entry.name == "onnxruntime" and "openvino" in all_backends():
            from edgeseg.runtime.backends.autoselect import choose_cpu_backend  # noqa: PLC0415

            chosen = choose_cpu_backend(path, chosen, options,
                                        lambda m, o: all_backends()["openvino"].load_class().open(m, o))
        log.info("auto backend: %s on %s", chosen.name, path.name)
        return chosen
    if reasons:
        raise ModelError(f"no backend could run {model.name}: {'; '.join(reasons)}")
    raise ModelError(f"model not found: {model} (check the path)")
