"""Human rendering of a migration plan and its result."""

from __future__ import annotations

from ckpttool.ops.migrate import MigrateReport
from ckpttool.ops.migrate_plan import TensorPlan
from ckpttool.render import term
from ckpttool.render.inspect_table import human_bytes


def _shape(s: tuple[int, ...] | None) -> str:
    return "-" if s is None else "[" + ", ".join(map(str, s)) + "]"


def _region(p: TensorPlan) -> str:
    if p.action != "partial" or not p.segments:
        return ""
    dims = []
    for d, segs in enumerate(p.segments):
        if p.src_shape and p.dst_shape and p.src_shape[d] == p.dst_shape[d]:
            continue
        dims.append(f"dim {d}: " + ", ".join(f"{a}:{b}->{c}:{e}" for a, b, c, e in segs))
    return "; ".join(dims)


def render_migrate(r: MigrateReport, limit: int = 60) -> str:
    """The migration plan as text: per network its changes, action counts and a table of the tensors that are
    not plainly copied (at most ``limit`` rows); then warnings, notes, optimizer results and what was written.
    """
    plan = r.plan
    lines = [
        f"migrate {term.relpath(str(plan.src))}" + (f" -> {term.relpath(str(plan.out))}" if plan.out else ""),
        "",
    ]
    for net in plan.networks:
        fam = f"{net.family} {net.version_from or ''}".strip() if net.family else "no architecture spec"
        if net.version_to and net.version_to != net.version_from:
            fam += f" -> {net.version_to}"
        lines.append(f"network {net.label} ({fam})")
        for key, (a, b) in net.changes.items():
            lines.append(f"  change   {key}: {a} -> {b}")
        counts = ", ".join(f"{net.count(a)} {a}" for a in ("copy", "partial", "init", "drop") if net.count(a))
        lines.append(f"  plan     {counts}; {net.kept:.1%} of the source values kept")
        rows = [
            [
                p.name,
                p.action,
                _shape(p.src_shape),
                _shape(p.dst_shape),
                f"{p.kept:.0%}",
                _region(p),
                p.init if p.action in ("partial", "init") else "",
            ]
            for p in net.tensors
            if p.action != "copy"
        ]
        if rows:
            shown = rows[:limit]
            headers = ["tensor", "action", "from", "to", "kept", "region", "new entries"]
            lines.append(term.fit_table(shown, headers, wrap_column=5))
            if len(rows) > limit:
                lines.append(f"  ... {len(rows) - limit} more (see --json)")
        lines.append("")
    tail = [f"  warning  {w}" for w in plan.warnings]
    tail += [f"  note     {n}" for n in plan.notes]
    tail += [f"  optimizer  {o}" for o in r.optimizer_results]
    lines += term.rewrap_all(tail)
    if r.written:
        lines.append(
            f"\nwrote {term.relpath(str(r.written))} ({human_bytes(r.size)}); re-read and every shape verified"
        )
    else:
        lines.append("\ndry run: nothing written")
    lines.append(term.summary((("warn", "") for _ in plan.warnings), named=False))
    return "\n".join(lines) + "\n"
