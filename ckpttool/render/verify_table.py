"""Human rendering of a VerifyReport: the header, the checks (streamed batch by batch while the runs go on, or
all at once), the verdict and the summary line."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ckpttool.ops.verify import VerifyReport
from ckpttool.render import term
from ckpttool.resume.static import Check

MARK = term.STATUS_MARK


def common_folder(paths: Sequence[str]) -> str | None:
    """The folder all ``paths`` are in, when they share one and there are several (the run folder the check
    lines are shown relative to), else None."""
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    return next(iter(folders)) if len(paths) > 1 and len(folders) == 1 else None


def verify_header(paths: Sequence[str], device: str, strict: bool) -> list[str]:
    """The first lines: the files (short paths; their names only, with the folder once, when they share one)
    and the device."""
    folder = common_folder(paths)
    if folder is not None:
        shown = " ".join(os.path.basename(p) for p in paths) + f" in {term.relpath(folder)}"
    else:
        shown = " ".join(term.relpath(p) for p in paths)
    return [*term.hang("verify-resume ", f"{shown}  (device {device}{', strict' if strict else ''})"), ""]


def render_checks(checks: Sequence[Check], shorten: term.PathShortener | None = None) -> list[str]:
    """Check lines: paths shortened, the same finding for G and D grouped, messages wrapped; with ``-q`` only
    warnings and failures."""
    items = [(c.status, c.name, c.message, c.file) for c in checks]
    return term.check_lines(term.group_findings(items, shorten))


def check_summary(checks: Sequence[Check], extra: Sequence[tuple[str, str]] = ()) -> str:
    """The summary line over ``checks`` as shown (a finding grouped for G and D counts once), after ``extra``
    ``(status, name)`` pairs."""
    grouped = term.group_findings([(c.status, c.name, c.message, c.file) for c in checks])
    return term.summary([*extra, *((status, name) for status, name, _ in grouped)])


def verify_footer(r: VerifyReport) -> list[str]:
    """The verdict: verified by the model run or the shadow run (with the warning count), ``static checks
    passed; not verified by a run`` when nothing ran (or a run was skipped), or how many checks failed; then the
    summary line."""
    grouped = term.group_findings([(c.status, c.name, c.message, c.file) for c in r.checks])
    fails = sum(1 for status, _, _ in grouped if status == "fail")
    warns = sum(1 for status, _, _ in grouped if status == "warn")
    warned = f" ({warns} warning(s))" if warns else ""
    if r.ok and r.level != "static":
        verdict = term.emphasis(f"resume verified by the {r.level.replace('-', ' ')}{warned}", "pass")
    elif r.ok:
        verdict = f"static checks passed; not verified by a run{warned}"
    else:
        verdict = term.emphasis(f"resume NOT verified: {fails} check(s) failed", "fail")
    return ["", verdict, check_summary(r.checks)]


def render_verify(r: VerifyReport) -> str:
    """The whole report at once: header, checks, verdict, summary."""
    shorten = term.PathShortener(common_folder(r.paths))
    lines = verify_header(r.paths, r.device, r.strict) + render_checks(r.checks, shorten) + verify_footer(r)
    return "\n".join(lines) + "\n"
