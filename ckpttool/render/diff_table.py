"""Human rendering of a DiffReport: grouped by network and module, explanations first."""

from __future__ import annotations

from tabulate import tabulate

from ckpttool.ops.diff import DiffReport, NetworkDiff
from ckpttool.render.diff_values_table import DEFAULT_TOP, By, render_values


def _shape(s: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, s)) + "]"


def render_diff(r: DiffReport, *, top: int = DEFAULT_TOP, by: By = "module") -> str:
    """The diff as text: explanations first, then per network the renames, one-sided keys, dtype and shape
    changes and moved values (the ``top`` modules or tensors, ``by``, that moved most: render/diff_values_table.py),
    then training-state and config tables, then notes."""
    lines = [f"A: {r.path_a}  ({r.profile_a})", f"B: {r.path_b}  ({r.profile_b})", ""]
    if not r.differs:
        lines.append("no differences")
        return "\n".join(lines) + "\n"
    for e in r.explanations:
        lines.append(f"  explained  {e.sentence()}")
    if r.unexplained:
        lines.append(
            f"  unexplained  {len(r.unexplained)} shape change(s): {', '.join(r.unexplained[:5])}"
            + (" ..." if len(r.unexplained) > 5 else "")
        )
    if r.explanations or r.unexplained:
        lines.append("")
    for net in r.networks:
        lines += _network(net, top, by)
    if r.pieces or r.state:
        rows = [[c.what, c.a, c.b] for c in [*r.pieces, *r.state]]
        lines += [tabulate(rows, headers=["training state", "A", "B"]), ""]
    if r.config:
        rows = [[c.what, c.a, c.b] for c in r.config]
        lines += [tabulate(rows, headers=["config", "A", "B"]), ""]
    for note in r.notes:
        lines.append(f"  note  {note}")
    return "\n".join(lines).rstrip("\n") + "\n"


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
        lines.append(tabulate(rows, headers=["shape change", "A", "B", "why"]))
    if net.values is not None:
        lines += render_values(net, top, by)
    lines.append("")
    return lines
