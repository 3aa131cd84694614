"""Terminal output shared by the commands of ``prunetune``: the consoles, one-line
errors and plain tables."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print one line naming what was wrong and exit non-zero."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def plain_table(rows: list[list[str]], header: list[str]) -> str:
    """Right-aligned columns of plain text, as wide as their widest cell: what a log
    file, CI or ``| tee`` shows intact (rich's table squeezes to 80 columns there)."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows])


__all__ = ["console", "err_console", "fail", "plain_table"]
