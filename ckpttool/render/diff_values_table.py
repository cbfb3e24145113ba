"""The ``diff --values`` table: modules (or tensors) ranked by relative change, the top N, and what was left out.

The definitions of relative change and module are in :mod:`ckpttool.ops.diff_values`.
"""

from __future__ import annotations

import math
from typing import Literal

from ckpttool.ops.diff_model import NetworkDiff
from ckpttool.ops.value_change import ModuleDelta, moved_tensors
from ckpttool.render.grid import grid

By = Literal["module", "tensor"]
DEFAULT_TOP = 20
_PARTS = 12  # top-level parts named on the "by part" line
_ALIGN = ("left", "right", "right", "right", "right", "left", "left")  # names left, numbers right


def fmt_rel(rel: float) -> str:
    """A relative change for people: 3 significant digits, ``from 0`` when A was all zeros."""
    return "from 0" if math.isinf(rel) else f"{rel:.3g}"


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _noun(count: int, noun: str) -> str:
    return noun if count == 1 else noun + "s"


def _nonfinite(a: int, b: int) -> str:
    return f"{a}->{b}" if a or b else ""


def _suffix(name: str, module: str) -> str:
    return name[len(module) + 1 :] if module and name.startswith(module + ".") else name


def _module_rows(mods: list[ModuleDelta], nan_column: bool) -> list[list[str]]:
    rows = []
    for m in mods:
        row = [
            m.module or "(top level)",
            str(m.tensors),
            _count(m.numel),
            fmt_rel(m.rel_change),
            f"{m.max_abs:.3g}",
            f"{_suffix(m.top_tensor, m.module)} {fmt_rel(m.top_tensor_rel)}" if m.tensors > 1 else "",
        ]
        rows.append([*row, _nonfinite(m.nonfinite_a, m.nonfinite_b)] if nan_column else row)
    return rows


def render_values(net: NetworkDiff, top: int = DEFAULT_TOP, by: By = "module") -> list[str]:
    """Lines for one network's value comparison: a summary line, the top-level parts ranked (when more than
    one moved), the ``top`` modules (``by="module"``) or
    tensors that moved most, ranked by relative change ‖B−A‖/‖A‖, and one line saying how many more moved
    (and how far at most) and how many did not move. ``top`` 0 shows every row."""
    values = net.values or []
    moved = moved_tensors(values)
    lines = [f"  values   {len(moved)} of {len(values)} compared tensors differ"]
    if not moved:
        return lines
    all_parts = net.modules(parts=True)
    parts = [m for m in all_parts if m.moved]
    if len(parts) > 1:
        shown_parts = [f"{m.module or '(top level)'} {fmt_rel(m.rel_change)}" for m in parts[:_PARTS]]
        if len(parts) > _PARTS:
            shown_parts.append(f"… {len(parts) - _PARTS} more")
        still = [m.module or "(top level)" for m in all_parts if not m.moved]
        if still:
            shown_parts.append(
                "unchanged: " + ", ".join(still[:_PARTS]) + (" …" if len(still) > _PARTS else "")
            )
        lines.append("  by part  " + " · ".join(shown_parts))
    limit = top or None
    if by == "module":
        all_mods = net.modules()
        mods = [m for m in all_mods if m.moved]
        shown_mods = mods[:limit]
        nan_column = any(m.nonfinite_a or m.nonfinite_b for m in shown_mods)
        headers = ["module", "tensors", "params", "rel change", "max |a-b|", "moved most"]
        lines.append(f"  {len(mods)} of {len(all_mods)} modules moved; ranked by relative change ‖B−A‖/‖A‖")
        lines.append(
            grid(
                _module_rows(shown_mods, nan_column),
                headers + ["nan/inf"] * nan_column,
                colalign=_ALIGN[: len(headers) + nan_column],
            )
        )
        left = [m.rel_change for m in mods[len(shown_mods) :]]
        unmoved = len(all_mods) - len(mods)
    else:
        shown = moved[:limit]
        nan_column = any(v.nonfinite_a or v.nonfinite_b for v in shown)
        rows = [
            [v.name, _count(v.numel), fmt_rel(v.rel_l2), f"{v.max_abs:.3g}", f"{v.cosine:.6f}"]
            + [_nonfinite(v.nonfinite_a, v.nonfinite_b)] * nan_column
            for v in shown
        ]
        headers = ["tensor", "params", "rel change", "max |a-b|", "cosine"] + ["nan/inf"] * nan_column
        lines.append("  ranked by relative change ‖B−A‖/‖A‖")
        lines.append(grid(rows, headers, colalign=_ALIGN[: len(headers)]))
        left = [v.rel_l2 for v in moved[len(shown) :]]
        unmoved = len(values) - len(moved)
    tail = (
        [f"{len(left)} more {_noun(len(left), by)} moved, each {fmt_rel(max(left))} or less"] if left else []
    )
    if unmoved:
        tail.append(f"{unmoved} {_noun(unmoved, by)} unchanged")
    if tail:
        lines.append("  … " + "; ".join(tail) + (" (--top 0 shows all)" if left else ""))
    return lines
