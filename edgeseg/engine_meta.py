"""TensorRT engine sidecar (``<engine>.json``): what an engine was built from and for.

A TensorRT plan only runs on the TensorRT version and GPU architecture it was built with, so we
record both next to the plan and refuse (with the rebuild command) instead of crashing inside
``deserialize_cuda_engine``. No TensorRT import here: this module is usable on any machine.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

SIDECAR_VERSION = 1


class EngineMismatch(ValueError):
    """The engine was built for another TensorRT version / GPU / model than the one at hand."""


@dataclass
class EngineMeta:
    onnx_sha256: str
    precision: str  # fp16 | int8 | fp32
    batch_profile: tuple[int, int, int]  # min, opt, max
    input_size: tuple[int, int]  # h, w (fixed in the profile)
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    build_time_s: float = 0.0
    built_at: str = ""
    onnx_path: str = ""
    onnx_metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sidecar_version: int = SIDECAR_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch_profile"] = list(self.batch_profile)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EngineMeta":
        known = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in known}
        kw["batch_profile"] = tuple(int(x) for x in kw["batch_profile"])
        kw["input_size"] = tuple(int(x) for x in kw["input_size"])
        return cls(**kw)


def sidecar_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_sidecar(engine_path: str | Path, meta: EngineMeta) -> Path:
    path = sidecar_path(engine_path)
    path.write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(engine_path: str | Path) -> EngineMeta:
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EngineMismatch(
            f"no sidecar {path} next to the engine (cannot tell which TensorRT/GPU it was built for); "
            f"rebuild with: edgeseg build <onnx> -o {engine_path}"
        )
    try:
        return EngineMeta.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineMismatch(
            f"sidecar {path} is unreadable ({exc}); rebuild with: edgeseg build <onnx> -o {engine_path}"
        ) from exc


def check_compatible(
    sidecar: EngineMeta,
    runtime_trt_version: str,
    gpu_name: str,
    compute_capability: str,
    engine_path: str | Path = "<engine>",
    onnx_path: str | Path | None = None,
) -> None:
    """Raise :class:`EngineMismatch` (one line) if the engine cannot run here.

    TensorRT plans are tied to the TensorRT version and, "by default, ... only with the type of
    device where they were built" (tactics are timed on that GPU model): another GPU model is
    refused even with the same compute capability. Hardware-compatible plans are not built here.
    https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/advanced.html
    (Version Compatibility, Hardware Compatibility)
    """
    diffs = []
    if str(sidecar.tensorrt_version) != str(runtime_trt_version):
        diffs.append(f"TensorRT {sidecar.tensorrt_version} at build vs {runtime_trt_version} here")
    if (str(sidecar.compute_capability) != str(compute_capability)
            or sidecar.gpu_name.strip() != str(gpu_name).strip()):
        diffs.append(
            f"GPU {sidecar.gpu_name} (sm {sidecar.compute_capability}) at build vs "
            f"{gpu_name} (sm {compute_capability}) here"
        )
    if onnx_path is not None and Path(onnx_path).is_file() and sidecar.onnx_sha256:
        if sha256_file(onnx_path) != sidecar.onnx_sha256:
            diffs.append(f"{onnx_path} changed since the engine was built (sha256 differs)")
    if diffs:
        onnx_hint = str(onnx_path) if onnx_path else (sidecar.onnx_path or "<onnx>")
        raise EngineMismatch(
            f"engine {engine_path} does not match this machine: {'; '.join(diffs)}; "
            f"rebuild with: edgeseg build {onnx_hint} -o {engine_path}"
        )


def cache_key(
    onnx_sha256: str,
    precision: str,
    batch_profile: tuple[int, int, int] | list[int],
    trt_version: str,
    compute_capability: str,
    input_size: tuple[int, int] | list[int] | None = None,
    gpu_name: str | None = None,
) -> str:
    """Short stable hex key of everything that makes an engine different."""
    parts = [
        onnx_sha256, precision, ",".join(str(int(b)) for b in batch_profile), str(trt_version), str(compute_capability),
    ]
    if input_size is not None:
        parts.append("x".join(str(int(s)) for s in input_size))
    if gpu_name is not None:  # plans are tied to the GPU model, not only its architecture
        parts.append(gpu_name.strip())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def engine_cache_path(
    cache_dir: str | Path,
    onnx_path: str | Path,
    precision: str,
    batch_profile: tuple[int, int, int] | list[int],
    trt_version: str,
    compute_capability: str,
    input_size: tuple[int, int] | list[int] | None = None,
    gpu_name: str | None = None,
) -> Path:
    """``<cache_dir>/<onnx stem>.<precision>.<key>.engine``."""
    key = cache_key(sha256_file(onnx_path), precision, batch_profile, trt_version, compute_capability, input_size,
                    gpu_name)
    return Path(cache_dir) / f"{Path(onnx_path).stem}.{precision}.{key}.engine"
