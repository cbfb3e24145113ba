"""``check``: the CI gate before a resume — the latest valid checkpoint, its verdict, config compatibility,
the static resume checks and, on request, the shadow run. One report, exit 0 or 1."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import UsageError
from ckpttool.ops.inspect import InspectReport, inspect_checkpoint
from ckpttool.ops.verify import verify_resume
from ckpttool.resume.static import Check
from ckpttool.runs import LatestResult, latest

SCHEMA = "ckpttool.check/1"


@dataclass
class CheckReport:
    targets: list[str]
    files: list[str]
    checks: list[Check]
    latest: list[LatestResult] = field(default_factory=list)
    inspections: list[InspectReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.files) and not any(c.status == "fail" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "targets": self.targets,
            "files": self.files,
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
            "latest": [r.to_json() for r in self.latest],
            "inspections": [_inspection(r) for r in self.inspections],
        }


def _inspection(r: InspectReport) -> dict[str, Any]:
    return {
        "path": r.path,
        "profile": r.profile,
        "verdict": r.verdict,
        "verdict_reason": r.verdict_reason,
        "required_missing": r.required_missing,
        "architectures": [a.to_json() for a in r.architectures],
    }


def check_resume(
    targets: Iterable[str | os.PathLike[str]],
    *,
    config: str | None = None,
    sets: Iterable[str] = (),
    require: str | None = None,
    verify: bool = False,
    steps: int = 4,
    device: str = "cpu",
) -> CheckReport:
    items = [str(t) for t in targets]
    if not items:
        raise UsageError("give a run directory or checkpoint files")
    report = CheckReport(items, [], [])
    for t in items:
        if Path(t).is_dir():
            res = latest(t)
            report.latest.append(res)
            for w in res.warnings:
                report.checks.append(Check("latest", "warn", w))
            for c in res.candidates:
                if not c.ok:
                    report.checks.append(Check("latest", "warn", f"skipped {c.path}: {c.reason}"))
            for u in res.units:
                if not u.ok and all(c.ok for c in u.files):
                    report.checks.append(
                        Check("latest", "warn", f"skipped {', '.join(map(str, u.paths))}: {u.reason}")
                    )
            if res.chosen is None:
                report.checks.append(
                    Check("latest", "fail", f"{t}: no complete, readable checkpoint to resume from")
                )
                continue
            chosen = [str(p) for p in res.chosen.paths]
            report.checks.append(Check("latest", "pass", f"{t}: resume from {', '.join(chosen)} "
                                       f"({res.chosen.head.describe()})"))  # fmt: skip
            report.files += chosen
        else:
            report.files.append(t)
    sets = list(sets)
    for f in report.files:
        r = inspect_checkpoint(f, require=require, config=config, sets=sets)
        report.inspections.append(r)
        if r.verdict in ("weights-only", "none"):
            report.checks.append(
                Check("verdict", "fail", f"{f}: cannot resume training ({r.verdict}): {r.verdict_reason}")
            )
        else:
            report.checks.append(Check("verdict", "pass", f"{f}: {r.verdict} — {r.verdict_reason}"))
        if r.required_missing:
            report.checks.append(
                Check("require", "fail", f"{f}: required piece(s) absent: {', '.join(r.required_missing)}")
            )
        for a in r.architectures:
            if a.check is None:
                continue
            if a.check.ok:
                report.checks.append(
                    Check("config", "pass", f"{f}: {a.network} agrees with {a.config_source}")
                )
            else:
                keys = ", ".join(f"{k} (config {e['config']}, checkpoint {e['checkpoint']})"
                                 for k, e in a.check.key_summary.items())  # fmt: skip
                n = (
                    len({m.tensor for m in a.check.mismatches})
                    + len(a.check.missing)
                    + len(a.check.unexpected)
                )
                report.checks.append(Check("config", "fail", f"{f}: {a.network} ({a.fingerprint.family} "
                                           f"{a.fingerprint.version}) contradicts {a.config_source}: {n} tensor(s); "
                                           f"{keys or 'structure differs'}"))  # fmt: skip
    if report.files:
        vr = verify_resume(report.files, config=config, steps=steps, device=device, shadow=verify)
        report.checks += [c for c in vr.checks if c.name not in ("pieces",) or c.status != "pass"]
    return report
