"""``edgeseg --version`` and ``edgeseg docs``: what is installed, and the manual that came with it.

Why the docs ship inside the package: a wheel has no checkout beside it, so a help text that says
"see docs/gateway.md" pointed at nothing; ``edgeseg docs gateway`` prints the page the install carries.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Optional

import typer

import edgeseg
from edgeseg.commands.common import console
from edgeseg.core.files import sha256_file
from edgeseg.runtime.segmenter import MODELS_DIR


def docs_dir() -> Path:
    """The installed pages (``edgeseg/docs`` in a wheel) or, in a checkout, the repository's ``docs/``."""
    shipped = Path(str(resources.files("edgeseg").joinpath("docs")))
    return shipped if shipped.is_dir() else Path(edgeseg.__file__).resolve().parents[1] / "docs"


def bundled_models() -> list[dict]:
    """One record per bundled model file named by a sidecar: name, file, sha256 prefix, what it is."""
    out = []
    for side in sorted(MODELS_DIR.glob("*.json")):
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        path = MODELS_DIR / str(meta.get("file", ""))
        if not meta.get("file") or not path.is_file():
            continue
        kind = meta.get("camera_kind") or ("int8 twin" if "config" in meta else "")
        out.append({"name": meta.get("name", side.stem), "file": path.name, "sha256": sha256_file(path)[:12],
                    "kind": kind, "trained": (meta.get("training") or {}).get("command", "")})
    return out


def version_text() -> str:
    """``edgeseg X.Y.Z`` and a line per bundled model."""
    lines = [f"edgeseg {edgeseg.__version__}"]
    for m in bundled_models():
        extra = f", {m['kind']}" if m["kind"] else ""
        lines.append(f"  model {m['name']}: {m['file']} (sha256 {m['sha256']}{extra})")
    if len(lines) == 1:
        lines.append(f"  no bundled model in {MODELS_DIR}")
    return "\n".join(lines)


def version_callback(value: bool) -> None:
    if value:
        print(version_text())
        raise typer.Exit()


def docs_cmd(
    page: Optional[str] = typer.Argument(None, help="A page name (gateway, tensorrt, model-card, ...); none: list them"),
    path: bool = typer.Option(False, "--path", help="Print the page's file path instead of its text"),
) -> None:
    """The manual that came with this install: list the pages, print one, or print where it is."""
    folder = docs_dir()
    pages = sorted(p.stem for p in folder.glob("*.md"))
    if page is None:
        console.print(f"pages in {folder} (edgeseg docs NAME prints one):", highlight=False)
        for name in pages:
            console.print(f"  {name}", highlight=False, markup=False)
        return
    name = page.removesuffix(".md")
    target = folder / f"{name}.md"
    if not target.is_file():
        console.print(f"error: no page {page!r} (fix: one of {', '.join(pages)})", markup=False, highlight=False)
        raise typer.Exit(2)
    print(target if path else target.read_text())
