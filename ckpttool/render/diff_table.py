"""Human rendering of a DiffReport: grouped by network and module, explanations first."""

from __future__ import annotations

from ckpttool.ops.diff import DiffReport, NetworkDiff
from ckpttool.render import term
from ckpttool.render.diff_values_table import DEFAULT_TOP, By, render_values


def _shape(s: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, s)) + "]"


def render_diff(r: DiffReport, *, top: int = DEFAULT_TOP, by: By = "module") -> str:
    """The diff as text: explanations first, then per network the renames, one-sided keys, dtype and shape
    changes and moved values (the ``top`` modules or tensors, ``by``, that moved most: render/diff_values_table.py),
    then training-state and config tables, then notes."""
    lines = [
        f"A: {term.relpath(r.path_a)}  ({r.profile_a})",
        f"B: {term.relpath(r.path_b)}  ({r.profile_b})",
        "",
    ]
    if not r.differs:
        lines.append("no differences")
        return "\n".join(lines) + "\n"
    for e in r.explanations:
        lines += term.rewrap(f"  explained  {e.sentence()}")
    if r.unexplained:
        lines += term.rewrap(
            f"  unexplained  {len(r.unexplained)} shape change(s): {', '.join(r.unexplained[:5])}"
            + (" ..." if len(r.unexplained) > 5 else "")
        )
    if r.explanations or r.unexplained:
        lines.append("")
    for net in r.networks:
        lines += _network(net, top, by)
    if r.pieces or r.state:
        rows = [[c.what, c.a, c.b] for c in [*r.pieces, *r.state]]
        lines += [term.fit_table(rows, ["training state", "A", "B"]), ""]
    if r.config:
        rows = [[c.what, c.a, c.b] for c in r.config]
        lines += [term.fit_table(rows, ["config", "A", "B"]), ""]
    for note in r.notes:
        lines += term.rewrap(f"  note  {note}")
    lines.append(diff_summary(r))
    return "\n".join(lines).rstrip("\n") + "\n"


def diff_summary(r: DiffReport) -> str:
    """The closing line: how many shape changes (how many unexplained), one-sided key groups and tensors whose
    values moved."""
    shapes = sum(len(n.shape_changes) for n in r.networks)
    sides = sum(len(n.only_a) + len(n.only_b) for n in r.networks)
    moved = sum(
        1
        for n in r.networks
        for v in n.values or []
        if v.max_abs != 0 or bool(v.nonfinite_a or v.nonfinite_b)
    )
    why = f"{len(r.unexplained)} not explained" if r.unexplained else "all explained"
    parts = [f"{shapes} shape change(s) ({why})"] if shapes else []
    parts += [f"{sides} one-sided key group(s)"] if sides else []
    parts += [f"{moved} tensor(s) with changed values"] if moved else []
    return "differs: " + (", ".join(parts) or "training state or config")


def _network(net: NetworkDiff, top: int, by: By) -> list[str]:
    lines = [f"network {net.name}: {net.common} common tensors"]
    if net.rename:
        lines.append(f"  rename   {net.rename}")
    if net.peft:
        lines.append(f"  peft     {net.peft}")
    for side, groups in (("only A", net.only_a), ("only B", net.only_b)):
        for g in groups:
            why = f"  ({g.pattern})" if g.pattern else ""
            lines.append(f"  {side}   {g.prefix}.* ×{g.count}{why}")
    for change, n in net.dtype_changes.items():
        lines.append(f"  dtype    {change} on {n} tensors")
    if net.shape_changes:
        rows = [
            [c.name, _shape(c.shape_a), _shape(c.shape_b), c.explanation or "unexplained"]
            for c in net.shape_changes
        ]
        lines.append(term.fit_table(rows, ["shape change", "A", "B", "why"]))
    if net.values is not None:
        lines += render_values(net, top, by)
    lines.append("")
    return lines
