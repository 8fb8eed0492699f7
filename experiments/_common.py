"""Helpers shared by the experiment scripts: plain-text tables, array printing, side-by-side comparisons.

The scripts import this as ``from _common import ...`` (``python experiments/NAME.py`` puts experiments/ on
sys.path); it imports nothing but numpy, and the library never imports from experiments/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def cell(value: Any, floatfmt: str = ".4g") -> str:
    if isinstance(value, (float, np.floating)):
        return format(float(value), floatfmt)
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4g", left: int = 1) -> str:
    """A fixed-width table: the first ``left`` columns left-aligned, the others right-aligned."""
    cells = [[cell(v, floatfmt) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]

    def line(values):
        return "  ".join(v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in cells)])


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt=".4g", left=1) -> None:
    print(f"\n{title}\n{format_table(header, rows, floatfmt, left)}")


def block(a: Any, fmt: str = ".4g") -> list[str]:
    """Text lines of a vector (8 entries a line), a matrix, or a (C, H, W) stack of maps side by side, split by |."""
    a = np.asarray(a, np.float64)
    if a.ndim == 3:
        maps = [block(m, fmt) for m in a]
        return [" | ".join(lines) for lines in zip(*maps)]
    if a.ndim <= 1:  # a vector: up to 8 entries a line
        text = [format(float(v) + 0.0, fmt) for v in np.atleast_1d(a)]
        width = max(len(t) for t in text)
        lines = [" ".join(t.rjust(width) for t in text[i : i + 8]) for i in range(0, len(text), 8)]
        return [("[" if i == 0 else " ") + line + ("]" if i == len(lines) - 1 else "") for i, line in enumerate(lines)]
    text = [[format(float(v) + 0.0, fmt) for v in row] for row in a]
    width = max(len(t) for row in text for t in row)
    return ["[" + " ".join(t.rjust(width) for t in row) + "]" for row in text]


def show(a: Any, fmt: str = ".4g", indent: str = "") -> str:
    return "\n".join(indent + line for line in block(a, fmt))


def compare(
    label: str, mine: Any, library: Any, *, mine_name: str = "by hand", lib_name: str = "library", fmt: str = ".4g"
) -> float:
    """Print two arrays (or numbers) and their max abs difference, side by side when narrow; return the difference."""
    mine, library = np.asarray(mine, np.float64), np.asarray(library, np.float64)
    diff = float(np.max(np.abs(mine - library))) if mine.size else 0.0
    if mine.size == 1:
        print(f"  {label}: {mine_name} {mine.item():.10g}   {lib_name} {library.item():.10g}   max |diff| {diff:.1e}")
        return diff
    print(f"  {label}   max |diff| {diff:.1e}")
    left, right = block(mine, fmt), block(library, fmt)
    width = max(len(mine_name), *(len(line) for line in left))
    if width + 4 + max(len(line) for line in right) <= 110:
        print(f"    {mine_name.ljust(width)}    {lib_name}")
        for a, b in zip(left, right):
            print(f"    {a.ljust(width)}    {b}")
    else:
        for name, lines in ((mine_name, left), (lib_name, right)):
            print(f"    {name}:\n" + "\n".join("      " + line for line in lines))
    return diff
