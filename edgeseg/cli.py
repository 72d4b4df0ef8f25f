"""``edgeseg.cli``: the console-script entry point and ``python -m edgeseg.cli``; the commands are
:mod:`edgeseg.commands` (kept here so existing scripts and imports of ``app`` / ``main`` still work)."""
from __future__ import annotations

from edgeseg.commands import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
