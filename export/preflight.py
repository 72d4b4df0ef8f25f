"""Check a checkpoint's tensors before any memory is allocated for them.

A hostile or broken archive can claim tensors far larger than the file (a 4 MB file once made
``torch.load`` take 4.5 GB and then ask for 618 GB). So before loading, the tensor records are
read from the file's own index, without allocating or running anything:

* PyTorch zip archives: ``data.pkl`` is walked by a restricted unpickler that knows only the
  names ``torch.load(weights_only=True)`` allows for a state_dict, and builds inert descriptions
  (storage key, dtype, element count; tensor shape, stride, offset) instead of tensors. Each
  storage must be exactly as large as its record in the archive, each tensor must fit in its
  storage, and the sum must stay under a budget.
* safetensors: the JSON header gives dtype, shape and byte range; ranges must match the shapes
  and lie inside the file.

Then shapes are compared with the architecture (built on PyTorch's ``meta`` device: no memory),
so a checkpoint whose head or encoder has another shape is refused by name before loading.
"""
from __future__ import annotations

import json
import math
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: element sizes of the storage types a state_dict may hold (torch.<Name>Storage)
_STORAGE_ITEMSIZE = {
    "FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
}
_SAFETENSORS_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                         "BOOL": 1}
#: more than this many bytes of tensors is not a ResNet-18 U-Net checkpoint (it is ~57 MB in fp32)
MAX_TOTAL_BYTES = 1 << 30


class PreflightError(ValueError):
    """The checkpoint's tensor records are inconsistent or do not fit the architecture."""


@dataclass(frozen=True)
class TensorRecord:
    key: str  # path in the checkpoint, e.g. "state_dict.encoder.conv1.weight"
    shape: tuple[int, ...]
    nbytes: int  # what loading it would allocate


# ----------------------------------------------------------------------------- torch zip archives

@dataclass
class _Storage:
    key: str
    itemsize: int
    numel: int


@dataclass
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise PreflightError("a tensor in data.pkl does not refer to a storage record")
    return _Tensor(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


class _OrderedDictStub(dict):
    """Stands in for collections.OrderedDict (a plain dict keeps the order too)."""


def _storage_class(name: str) -> Any:
    return ("storage_type", name)


class _ScanUnpickler(pickle.Unpickler):
    """Builds inert stand-ins; any name outside the allowlist is refused (no code runs)."""

    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("collections", "OrderedDict"): _OrderedDictStub,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_ITEMSIZE:
            return _storage_class(name)
        if module == "torch" and name in ("device", "Size", "float32", "float16", "bfloat16", "int64", "int32",
                                          "uint8", "bool", "float64", "int16", "int8"):
            return lambda *a, **k: (module, name, a)
        # anything else: leave the decision to torch.load(weights_only=True), which refuses code
        return lambda *a, **k: ("opaque", module, name)

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage_type, key, location, numel)  -- torch/serialization.py, _save()
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise PreflightError(f"unexpected persistent id in data.pkl: {str(pid)[:80]}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        name = storage_type[1] if isinstance(storage_type, tuple) else "ByteStorage"  # UntypedStorage: bytes
        return _Storage(key, _STORAGE_ITEMSIZE.get(name, 1), numel)


def _walk(obj: Any, prefix: str, out: list[tuple[str, _Tensor]], depth: int = 0) -> None:
    if depth > 8:
        return
    if isinstance(obj, _Tensor):
        out.append((prefix, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _walk(v, f"{prefix}.{k}" if prefix else str(k), out, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _walk(v, f"{prefix}.{i}" if prefix else str(i), out, depth + 1)


def _span(t: _Tensor) -> int:
    """Elements of its storage a tensor reaches (offset + last index + 1)."""
    if any(s == 0 for s in t.shape):
        return 0
    if len(t.stride) != len(t.shape) or any(s < 0 for s in t.stride):
        raise PreflightError("a tensor has a malformed stride")
    return t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride)) + 1


def scan_torch_zip(path: Path) -> list[TensorRecord]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise PreflightError("no data.pkl in the archive")
        root = pkl[: -len("data.pkl")]
        sizes = {n[len(root) + len("data/"):]: archive.getinfo(n).file_size for n in names
                 if n.startswith(root + "data/")}
        try:
            obj = _ScanUnpickler(archive.open(pkl)).load()
        except PreflightError:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed pickle: torch.load will say what it is
            raise PreflightError(f"data.pkl is not a readable state_dict pickle ({type(exc).__name__})") from exc
    found: list[tuple[str, _Tensor]] = []
    _walk(obj, "", found)
    records = []
    for key, t in found:
        s = t.storage
        claimed = s.numel * s.itemsize
        actual = sizes.get(s.key)
        if actual is None:
            raise PreflightError(f"tensor {key!r} refers to storage {s.key!r}, which the archive does not contain")
        if claimed != actual:
            raise PreflightError(f"tensor {key!r}: its storage claims {claimed:,} bytes but the archive holds "
                                 f"{actual:,}; the file is corrupt or forged")
        if _span(t) > s.numel:
            raise PreflightError(f"tensor {key!r} of shape {list(t.shape)} does not fit its storage of {s.numel:,} elements")
        records.append(TensorRecord(key, t.shape, math.prod(t.shape) * s.itemsize))
    return records


# ----------------------------------------------------------------------------- safetensors

def scan_safetensors(path: Path) -> list[TensorRecord]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise PreflightError("file too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 << 20):
            raise PreflightError(f"safetensors header claims {n:,} bytes; the file has {size:,}")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PreflightError(f"safetensors header is not JSON ({exc})") from exc
    data_size = size - 8 - n
    records = []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], tuple(int(s) for s in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise PreflightError(f"safetensors entry {key!r} is malformed") from exc
        nbytes = math.prod(shape) * _SAFETENSORS_ITEMSIZE.get(dtype, 8)
        if not (0 <= start <= end <= data_size) or end - start != nbytes:
            raise PreflightError(f"tensor {key!r} of shape {list(shape)} claims bytes {start}..{end}, "
                                 f"which do not match its shape or lie outside the {data_size:,}-byte data")
        records.append(TensorRecord(key, shape, nbytes))
    return records


# ----------------------------------------------------------------------------- architecture

def scan(path: str | Path) -> list[TensorRecord]:
    """Tensor records of a checkpoint file, checked for consistency; nothing is allocated."""
    path = Path(path)
    if path.suffix == ".safetensors":
        records = scan_safetensors(path)
    elif zipfile.is_zipfile(path):
        records = scan_torch_zip(path)
    else:
        raise PreflightError("not a PyTorch zip archive (torch.save since 1.6) or safetensors file; "
                             "re-save it with torch.save(model.state_dict(), 'model.pt')")
    total = sum(r.nbytes for r in records)
    if total > MAX_TOTAL_BYTES:
        raise PreflightError(f"its tensors would take {total / 2**30:.1f} GiB, far more than a ResNet-18 U-Net "
                             f"(about 57 MB); not loading it")
    return records


def expected_shapes(classes: int) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of the network for ``classes`` outputs (meta device: no memory)."""
    import torch

    from .model import UNetResNet18

    with torch.device("meta"):
        model = UNetResNet18(classes=classes, activation="none")  # the head does not change any shape
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_shapes(records: list[TensorRecord]) -> None:
    """Refuse tensors whose name is the network's but whose shape is not (the head sets the class count)."""
    head = next((r for r in records if r.key.endswith("segmentation_head.0.weight")), None)
    if head is None or len(head.shape) != 4 or not 1 <= head.shape[0] <= 256:
        return  # the loader says what is missing or wrong about the head
    expected = expected_shapes(head.shape[0])
    for r in records:
        for name, shape in expected.items():
            if r.key == name or r.key.endswith("." + name):
                if tuple(r.shape) != shape:
                    raise PreflightError(f"tensor {r.key!r} has shape {list(r.shape)}, the ResNet-18 U-Net with "
                                         f"{head.shape[0]} classes needs {list(shape)}")
                break
