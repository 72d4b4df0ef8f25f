"""The CLI's error line and argument helpers, shared by ``edgeseg.cli`` and command plugins
(``edgeseg_export``), so every command fails the same way: one red line, non-zero exit."""
from __future__ import annotations

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)  # errors stay on one line


def fail(message: str, code: int = 2) -> None:
    """One line, red, non-zero exit: what went wrong and how to fix it (also used by plugins)."""
    from rich.markup import escape

    # escape: messages name extras like "[gpu]", which rich would otherwise eat as markup
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)



def parse_size(text: str) -> tuple[int, int]:
    """``256`` or ``256x384`` -> (h, w); a one-line error otherwise."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        fail(f"--size {text!r} is not HxW or N (e.g. 256 or 256x384)")
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])
