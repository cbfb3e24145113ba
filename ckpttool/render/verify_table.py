"""Human rendering of a VerifyReport."""

from __future__ import annotations

from ckpttool.ops.verify import VerifyReport

MARK = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}


def render_verify(r: VerifyReport) -> str:
    """Each check with its status, then the verdict: verified by the model run or the shadow run (with the
    warning count), ``static checks passed; not verified by a run`` when nothing ran (or a run was skipped), or
    how many checks failed."""
    lines = [f"verify-resume {' '.join(r.paths)}  (device {r.device}{', strict' if r.strict else ''})", ""]
    for c in r.checks:
        lines.append(f"  {MARK.get(c.status, c.status)}  {c.name:<16} {c.message}")
    fails = sum(1 for c in r.checks if c.status == "fail")
    warns = sum(1 for c in r.checks if c.status == "warn")
    lines.append("")
    warned = f" ({warns} warning(s))" if warns else ""
    if r.ok and r.level != "static":
        lines.append(f"resume verified by the {r.level.replace('-', ' ')}{warned}")
    elif r.ok:
        lines.append(f"static checks passed; not verified by a run{warned}")
    else:
        lines.append(f"resume NOT verified: {fails} check(s) failed")
    return "\n".join(lines) + "\n"
