"""Old import paths of 0.1 (``edgeseg.segmenter``, ``edgeseg.sources``, ``edgeseg.gateway`` ...) kept for
one release, with a DeprecationWarning naming the new path.

Why a finder and not a file per old name: the layers became subpackages (docs/architecture.md),
and an old name may be a package with submodules (``edgeseg.sinks.queue``, ``edgeseg.backends.base``);
one table here answers them all and hands back the very same module object, so ``isinstance`` and
monkeypatching act on the real code. Remove in 0.3.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

REMOVED_IN = "0.3"

#: old top-level name under ``edgeseg`` -> its home now
MOVED: dict[str, str] = {
    **{n: f"edgeseg.core.{n}" for n in ("errors", "files", "outdir", "console", "host", "model_meta", "metrics",
                                        "onnx_info", "onnx_precision", "declare", "backoff")},
    **{n: f"edgeseg.runtime.{n}" for n in ("precision", "derived", "preprocess", "postprocess", "tiling",
                                           "cuda_layer", "segmenter", "annotate", "backends")},
    **{n: f"edgeseg.io.{n}" for n in ("sources", "sinks", "evidence")},
    **{n: f"edgeseg.config.{n}" for n in ("settings", "settings_docs", "settings_ops")},
    **{n: f"edgeseg.streaming.{n}" for n in ("alarm", "zones", "guards", "pipeline", "stages")},
    "stream": "edgeseg.streaming.unit",
    **{n: f"edgeseg.apps.{n}" for n in ("detect", "gateway", "serve", "serve_process", "serve_errors", "triton_repo",
                                        "doctor", "fp16", "verify")},
}


def new_path(old: str) -> str | None:
    """``edgeseg.sinks.queue`` -> ``edgeseg.io.sinks.queue``; None for a name that did not move."""
    parts = old.split(".")
    if len(parts) < 2 or parts[0] != "edgeseg" or parts[1] not in MOVED:
        return None
    return ".".join([MOVED[parts[1]], *parts[2:]])


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old name with the module at its new path. First on ``sys.meta_path``: an old
    package's submodule (``edgeseg.sinks.queue``) would otherwise be found through the aliased
    package's ``__path__`` and run a second time under the old name."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 - importlib protocol
        new = new_path(fullname)
        if new is None or importlib.util.find_spec(new) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=True)

    def create_module(self, spec) -> ModuleType:  # noqa: D102
        new = new_path(spec.name)
        warnings.warn(f"{spec.name} moved to {new}; the old path goes in edgeseg {REMOVED_IN}",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:  # noqa: D102 - the module ran under its new name
        return None


def install() -> None:
    """Put the alias finder first on ``sys.meta_path`` (once); it answers only moved names."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
