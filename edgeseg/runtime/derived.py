"""The fp32 model derived from an fp16 file at load, cached by the fp16 file's sha256.

Why: the bundled model is stored once, as fp16 weights (half the size); CPUs without fast fp16
arithmetic run its fp32 twin faster, so :class:`~edgeseg.runtime.segmenter.Segmenter` derives that twin on
first use. This is runtime work (every ``Segmenter()`` does it), so it lives in the runtime, not
in the exporter's converter.
"""
from __future__ import annotations

from pathlib import Path

from edgeseg.core.model_meta import metadata_of, set_metadata
from edgeseg.core.onnx_precision import upcast_to_fp32


def cache_dir() -> Path:
    """Where derived fp32 models are cached: ``$EDGESEG_CACHE_DIR/models`` (default ``~/.cache/edgeseg/models``)."""
    import os

    return Path(os.environ.get("EDGESEG_CACHE_DIR") or Path.home() / ".cache" / "edgeseg") / "models"


def derived_fp32(fp16_path: str | Path, cache: str | Path | None = None) -> Path:
    """The fp32 model derived from ``fp16_path``, written once and reused.

    Cached as ``<cache>/<sha256[:16]>/<name without .fp16>.onnx`` (``cache_dir()``, by default
    ``~/.cache/edgeseg/models``; a temporary folder when that is not writable), so a changed fp16 file gets a new
    fp32 twin and an unchanged one costs a hash. Written under a temporary name and renamed, so a
    crash or a concurrent process never leaves a half-written model behind.
    """
    import os
    import tempfile

    from edgeseg.core.files import sha256_file

    src = Path(fp16_path)
    digest = sha256_file(src)
    name = src.name.replace(".fp16.onnx", ".onnx") if src.name.endswith(".fp16.onnx") else src.stem + ".fp32.onnx"
    candidates = [Path(cache)] if cache is not None else [cache_dir(), Path(tempfile.gettempdir()) / "edgeseg-models"]
    last_error: OSError | None = None
    for base in candidates:
        out = base / digest[:16] / name
        try:
            if out.is_file():
                try:  # where its .int8 sibling is (best effort: a read-only cache still serves the model)
                    out.with_suffix(".source").write_text(str(src.resolve()))
                except OSError:
                    pass
                return out
            out.parent.mkdir(parents=True, exist_ok=True)
            import onnx

            proto = upcast_to_fp32(onnx.load(str(src)))
            meta = metadata_of(proto)
            # the label names the function's first home on purpose: it is part of the derived file's bytes,
            # whose sha256 the bundled INT8 model's record (and every cache) refers to
            meta["derived_from"] = f"{src.name} sha256 {digest} (edgeseg.fp16.upcast_to_fp32)"
            set_metadata(proto, meta)
            fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
            os.close(fd)
            try:
                onnx.save(proto, tmp)
                os.replace(tmp, out)
                out.with_suffix(".source").write_text(str(src.resolve()))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return out
        except OSError as exc:  # read-only home, full disk: try the next place
            last_error = exc
    raise OSError(f"cannot write the fp32 model derived from {src} ({last_error})")
