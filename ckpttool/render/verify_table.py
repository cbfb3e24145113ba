"""Human rendering of a VerifyReport."""

from __future__ import annotations

from ckpttool.ops.verify import VerifyReport

MARK = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}


def render_verify(r: VerifyReport) -> str:
    """Each check with its status, then whether a run verified the resume, only the static checks passed (no
    shadow or recipe run happened for every file), or how many checks failed; with the warning count."""
    lines = [f"verify-resume {' '.join(r.paths)}  (device {r.device}{', strict' if r.strict else ''})", ""]
    for c in r.checks:
        lines.append(f"  {MARK.get(c.status, c.status)}  {c.name:<16} {c.message}")
    fails = sum(1 for c in r.checks if c.status == "fail")
    warns = sum(1 for c in r.checks if c.status == "warn")
    lines.append("")
    if r.ok and r.run_verified:
        lines.append("resume verified" + (f" ({warns} warning(s))" if warns else ""))
    elif r.ok:
        lines.append(
            "static checks passed; not verified by a run" + (f" ({warns} warning(s))" if warns else "")
        )
    else:
        lines.append(f"resume NOT verified: {fails} check(s) failed")
    return "\n".join(lines) + "\n"
