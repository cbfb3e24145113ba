"""Aligned columns for the human reports: a header row, a rule of dashes under it, cells separated by two
spaces (the layout of tabulate's ``simple`` format; without headers, its ``plain`` one).

Why not tabulate, which ckpttool used before: ``import tabulate`` (0.10) imports :mod:`importlib.metadata` to
look up its own ``__version__`` (tabulate/__init__.py, lines 3-11), which costs about 0.1 s in an environment
holding torch and its dependencies -- most of ``inspect``'s start-up budget (docs/architecture.md); it also
re-parses cells that look like numbers ("1.000" is printed "1"). The layout here is small and already has what
the terminal needs: widths measured in display columns (CJK characters count two, through
:func:`ckpttool.render.width.display_width`) and cells wrapped between words (:func:`ckpttool.render.width.wrap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ckpttool.render.width import display_width, wrap

GAP = "  "


def cell_text(value: Any) -> str:
    """How one cell is shown: ``None`` empty, a float in ``g`` format, anything else as ``str``."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None and v != ""]
    return bool(present) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)


def _pad(text: str, width: int, align: str) -> str:
    fill = " " * max(0, width - display_width(text))
    return fill + text if align == "right" else text + fill


def grid(
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str] | None = None,
    *,
    colalign: Sequence[str] | None = None,
    maxcolwidths: Sequence[int | None] | None = None,
) -> str:
    """``rows`` as aligned columns, one line per row (more where a cell holds newlines or wraps).

    ``colalign`` gives ``"left"`` or ``"right"`` per column (default: right for columns of numbers, left
    otherwise); ``maxcolwidths`` the most display columns a column may take (``None``: no limit), its cells (and
    header) wrapped between words to fit. Trailing spaces are stripped from every line. Widths are terminal
    columns, never code points.
    """
    ncol = max([len(headers or ())] + [len(r) for r in rows], default=0)
    if ncol == 0:
        return ""
    raw = [list(r) + [None] * (ncol - len(r)) for r in rows]
    align = list(colalign or ()) + [""] * ncol
    for i in range(ncol):
        if align[i] not in ("left", "right"):
            align[i] = "right" if _numeric([r[i] for r in raw]) else "left"
    limits = list(maxcolwidths or ()) + [None] * ncol

    def lines_of(text: str, i: int) -> list[str]:
        limit = limits[i]
        out: list[str] = []
        for part in text.split("\n"):
            out += wrap(part, limit) if limit and display_width(part) > limit else [part]
        return out

    head = [lines_of(str(h), i) for i, h in enumerate(headers)] if headers is not None else None
    body = [[lines_of(cell_text(c), i) for i, c in enumerate(r)] for r in raw]
    widths = [
        max([display_width(line) for row in ([head] if head else []) + body for line in row[i]] or [0])
        for i in range(ncol)
    ]

    def render(row: list[list[str]]) -> list[str]:
        height = max(len(cell) for cell in row)
        return [
            GAP.join(
                _pad(cell[k] if k < len(cell) else "", widths[i], align[i]) for i, cell in enumerate(row)
            ).rstrip()
            for k in range(height)
        ]

    out: list[str] = []
    if head is not None:
        out += render(head)
        out.append(GAP.join("-" * w for w in widths))
    for row in body:
        out += render(row)
    return "\n".join(out)
