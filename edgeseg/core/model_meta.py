"""Model metadata, written and read in one place: the ONNX ``metadata_props`` contract and the
TensorRT engine sidecar (``<engine>.json``).

The ONNX metadata tells preprocessing and postprocessing what the network expects (classes,
normalisation, input size, activation); the exporter writes it, every backend reads it. A
TensorRT plan only runs on the TensorRT version and GPU architecture it was built with, so the
sidecar records both next to the plan and the backend refuses (with the rebuild command) instead
of crashing inside ``deserialize_cuda_engine``. No torch, no TensorRT import here.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgeseg.core.files import sha256_file

FORMAT_VERSION = "1"
SIZE_MULTIPLE = 32  # the ResNet encoder downsamples 5 times
DEFAULT_CLASSES = ("background", "gas-smoke", "machine")
DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)
LEAK_CLASS_NAMES = ("gas-smoke", "smoke", "gas")


# ----------------------------------------------------------------------------- ONNX metadata

@dataclass(frozen=True)
class ModelInfo:
    """What preprocessing and postprocessing must know about a model (from its metadata)."""

    classes: tuple[str, ...] = DEFAULT_CLASSES
    input_size: tuple[int, int] = (256, 256)
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    activation: str = "softmax"
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: channels of the ``probs`` output; 1 = binary model (p(leak) only), 0 = one per class
    output_channels: int = 0

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> "ModelInfo":
        """Parse edgeseg's metadata; missing keys fall back to the defaults, malformed ones raise
        ``ValueError`` naming the key (a hand-edited model should not fail three calls later)."""
        def get(key: str, default: Any) -> Any:
            if key not in meta:
                return default
            try:
                return json.loads(meta[key])
            except (json.JSONDecodeError, TypeError) as exc:
                raise ValueError(f"model metadata {key!r} is not valid JSON ({meta[key]!r}); re-export the model") from exc

        d = cls()
        raw = {k: get(k, getattr(d, k)) for k in ("classes", "input_size", "mean", "std")}
        try:
            classes = tuple(str(c) for c in raw["classes"])
            channels = int(get("output_channels", 0))
            if len(classes) == 1:  # a 1-channel model named by its positive class only
                classes, channels = ("background", classes[0]), 1
            info = cls(
                classes=classes,
                output_channels=channels,
                input_size=tuple(int(v) for v in raw["input_size"]),  # type: ignore[arg-type]
                mean=tuple(float(v) for v in raw["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in raw["std"]),  # type: ignore[arg-type]
                activation=str(meta.get("activation", d.activation)),
                metadata=dict(meta),
            )
        except (TypeError, ValueError) as exc:  # e.g. input_size "abc", mean 0.5: not lists of numbers
            raise ValueError(f"model metadata malformed (input_size {raw['input_size']!r}, mean {raw['mean']!r}, "
                             f"std {raw['std']!r}: {exc}); re-export the model") from exc
        # a zero size or std would fail on every frame (each one then skipped as "unreadable"):
        # it is the model that is wrong, so refuse it once, at load
        if (len(info.input_size) != 2 or min(info.input_size) < 1 or len(info.mean) != 3 or len(info.std) != 3
                or 0.0 in info.std or not info.classes):
            raise ValueError(f"model metadata malformed (input_size {info.input_size}, mean {info.mean}, std "
                             f"{info.std}, classes {info.classes}); re-export the model")
        return info

    @property
    def binary(self) -> bool:
        """One output channel p(leak): label 1 where p >= threshold (0.5 unless set), else 0."""
        return self.output_channels == 1

    @property
    def leak_class(self) -> int:
        """Index of the gas-smoke class (what alarms are about)."""
        if self.binary:
            return 1
        for name in LEAK_CLASS_NAMES:
            if name in self.classes:
                return self.classes.index(name)
        return 1

    @property
    def leak_threshold(self) -> float | None:
        """The threshold the model was shipped with (chosen on held-out *training* photos)."""
        value = self.metadata.get("leak_threshold")
        return float(value) if value is not None else None

    @property
    def leak_min_area(self) -> float | None:
        """The smallest leak region the model was shipped with, as a fraction of the frame area."""
        value = self.metadata.get("leak_min_area")
        return float(value) if value is not None else None


def build_metadata(
    classes: Sequence[str],
    activation: str,
    size: tuple[int, int],
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    source_sha256: str = "",
    source_name: str = "",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The ONNX ``metadata_props`` the SDK reads to preprocess and label correctly.

    ``extra``: more keys, e.g. ``output_channels="1"`` for a binary (1-channel sigmoid) model whose
    ``classes`` are (background, leak name).
    """
    return {
        "edgeseg_format": FORMAT_VERSION,
        "classes": json.dumps(list(classes)),
        "activation": activation,
        "input_size": json.dumps(list(size)),
        "mean": json.dumps(list(mean)),
        "std": json.dumps(list(std)),
        "color_order": "RGB",
        "size_multiple": str(SIZE_MULTIPLE),
        "source_checkpoint": source_name,
        "source_sha256": source_sha256,
        **(extra or {}),
    }


def metadata_of(proto: Any) -> dict[str, str]:
    """The ``metadata_props`` of a loaded ``onnx.ModelProto`` as a dict."""
    return {p.key: p.value for p in proto.metadata_props}


def set_metadata(proto: Any, meta: Mapping[str, str]) -> None:
    """Replace the ``metadata_props`` of ``proto`` with ``meta`` (in place)."""
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(k), str(v)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The edgeseg metadata of an ONNX file, without loading its weights."""
    import onnx  # runtime dependency, no torch

    return metadata_of(onnx.load(str(path), load_external_data=False))


def read_model_info(path: str | Path) -> ModelInfo:
    return ModelInfo.from_metadata(read_metadata(path))


# ----------------------------------------------------------------------------- engine sidecar

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
    # dtype of the engine's 'labels' output: "int32" | "uint8" | "none" (not in the engine: argmax on the
    # host); "" = unknown (a sidecar from before this field; the backend reads probs only either way)
    labels_dtype: str = ""
    # the network's inputs / outputs as parsed ({name, mode, dtype (TensorRT DataType name), shape}):
    # what `export triton` writes into config.pbtxt. [] = a sidecar from before this field
    io: list[dict[str, Any]] = field(default_factory=list)
    # the GPU beyond its name: Jetson Orin modules (AGX 32/64 GB, NX, Nano) all report "Orin", sm 8.7;
    # SM count, memory and the device-tree board name tell them apart. 0 / "" = unknown (not compared)
    sm_count: int = 0
    memory_mib: int = 0
    board: str = ""
    # the file TensorRT parsed when it is not the model itself (QDQ INT8 / fp16 sibling): path, sha256
    built_from: dict[str, str] = field(default_factory=dict)
    # which build path ran: strongly typed (precision from the parsed ONNX) or builder flags, and the
    # branch build_engine took ("trt10.16 (strongly typed)", "trt10.3 (builder flags)", ...); "" = older sidecar
    strongly_typed: bool = False
    branch: str = ""

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


def device_board() -> str:
    """The Jetson module and carrier from the device tree (``/proc/device-tree/model``, e.g. "NVIDIA Jetson
    AGX Orin Developer Kit"); "" elsewhere. SM count and memory do not separate an Orin NX 8GB from an
    Orin Nano 8GB (8 SMs each); the module name does."""
    try:
        return Path("/proc/device-tree/model").read_bytes().split(b"\0", 1)[0].decode(errors="replace").strip()
    except OSError:
        return ""


def memory_gib(mib: int) -> int:
    """Memory rounded to whole GiB: what the driver reports moves a little with the carve-outs."""
    return int(round(mib / 1024)) if mib else 0


def sidecar_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_sidecar(engine_path: str | Path, meta: EngineMeta) -> Path:
    """Write ``<engine>.json`` atomically (a temporary file beside it, then ``os.replace``)."""
    import os
    import tempfile

    path = sidecar_path(engine_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
    sm_count: int = 0,
    memory_mib: int = 0,
    board: str = "",
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
    here = {"SMs": (sidecar.sm_count, sm_count), "GiB": (memory_gib(sidecar.memory_mib), memory_gib(memory_mib)),
            "board": (sidecar.board, board)}
    other = [f"{k} {a!s} at build vs {b!s} here" for k, (a, b) in here.items() if a and b and a != b]
    if other:  # same name and sm, another module (e.g. Orin Nano vs AGX Orin)
        diffs.append("GPU " + ", ".join(other))
    if onnx_path is not None and Path(onnx_path).is_file() and sidecar.onnx_sha256:
        if sha256_file(onnx_path) != sidecar.onnx_sha256:
            diffs.append(f"{onnx_path} changed since the engine was built (sha256 differs)")
    # what TensorRT parsed when it was not the model itself (the Q/DQ INT8 file, an fp16 sibling): an INT8
    # engine is stale when its Q/DQ file changed even though the fp32 model did not
    made = Path(sidecar.built_from.get("path", "")) if sidecar.built_from.get("sha256") else None
    if made is not None and made.is_file() and sha256_file(made) != sidecar.built_from["sha256"]:
        diffs.append(f"{made} (what the engine was built from) changed since the build (sha256 differs)")
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
    device: tuple[int, int, str] | None = None,
) -> str:
    """Short stable hex key of everything that makes an engine different; ``device`` = (SM count, memory
    MiB, board) tells Orin modules apart (all named "Orin", sm 8.7)."""
    parts = [
        onnx_sha256, precision, ",".join(str(int(b)) for b in batch_profile), str(trt_version), str(compute_capability),
    ]
    if input_size is not None:
        parts.append("x".join(str(int(s)) for s in input_size))
    if gpu_name is not None:  # plans are tied to the GPU model, not only its architecture
        parts.append(gpu_name.strip())
    if device is not None and any(device):
        parts.append(f"{int(device[0])}sm/{memory_gib(int(device[1]))}GiB/{device[2]}")
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
    device: tuple[int, int, str] | None = None,
) -> Path:
    """``<cache_dir>/<onnx stem>.<precision>.<key>.engine``."""
    key = cache_key(sha256_file(onnx_path), precision, batch_profile, trt_version, compute_capability, input_size,
                    gpu_name, device)
    return Path(cache_dir) / f"{Path(onnx_path).stem}.{precision}.{key}.engine"
