"""``check``: the CI gate before a resume — the latest valid checkpoint, its verdict, config compatibility,
the static resume checks and, on request, the shadow run. One report, exit 0 or 1."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ckpttool.configs import ConfigOptions
from ckpttool.errors import UsageError
from ckpttool.formats import sniff_directory
from ckpttool.interpret.source import Source, interpret_checkpoint, load
from ckpttool.ops.inspect import InspectOptions, InspectReport, inspect_source, parse_require
from ckpttool.ops.verify import VerifyOptions, verify_sources
from ckpttool.predict import Prediction, predict_run
from ckpttool.progress import Progress
from ckpttool.resume.static import Check
from ckpttool.runs import LatestResult, latest

SCHEMA = "ckpttool.check/2"

OnUpdate = Callable[["CheckReport"], None]
"""Called with the report each time checks or predictions were added to it (after each run folder's latest
file and trainer prediction, after the inspections, after each batch of verify-resume checks), so a caller can
show the new ones while the rest still runs."""


@dataclass
class CheckReport:
    """The ``check`` outcome: the targets given, the checkpoint files they resolved to, every check, and the
    ``latest`` results and inspections behind them."""

    targets: list[str]
    files: list[str]
    checks: list[Check]
    latest: list[LatestResult] = field(default_factory=list)
    inspections: list[InspectReport] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)
    level: str | None = None  # with --verify: what proved the resume (model-run, shadow-run or static)

    @property
    def ok(self) -> bool:
        """True when at least one file was checked, no check failed and every trainer will resume from the
        newest complete state."""
        return (
            bool(self.files)
            and not any(c.status == "fail" for c in self.checks)
            and all(p.ok for p in self.predictions)
        )

    def to_json(self) -> dict[str, Any]:
        """The ``ckpttool.check/1`` JSON document."""
        return {
            "schema": SCHEMA,
            "targets": self.targets,
            "files": self.files,
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
            "predictions": [p.to_json() for p in self.predictions],
            "latest": [r.to_json() for r in self.latest],
            "inspections": [_inspection(r) for r in self.inspections],
            "level": self.level,
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


@dataclass(frozen=True)
class CheckOptions:
    """What ``check`` requires: pieces that must be present, the run config (file and --set overrides), and
    whether to run the shadow run (``verify``, ``steps``, ``device``) and a model run (``trainer_root``, else the
    GPT-SoVITS checkout the working directory is in)."""

    require: tuple[str, ...] = ()
    config: ConfigOptions = field(default_factory=ConfigOptions)
    verify: bool = False
    steps: int = 4
    device: str = (
        "auto"  # as verify-resume: CUDA when available, else the CPU (ckpttool.ops.verify.resolve_device)
    )
    allow_globals: frozenset[str] = frozenset()
    trainer: str | None = None  # the trainer record to assume (--trainer); detected when None
    trainer_root: str | None = None  # the trainer's checkout, whose environment's torch/Lightning resume
    torch_version: str | None = None  # overrides of the training environment's versions
    lightning_version: str | None = None


def check_resume(
    targets: Iterable[str | os.PathLike[str]],
    *,
    config: str | None = None,
    sets: Iterable[str] = (),
    require: str | None = None,
    verify: bool = False,
    steps: int = 4,
    device: str = "auto",
) -> CheckReport:
    """The convenience form of :func:`check_targets` (a config path and ``KEY=VALUE`` strings)."""
    options = CheckOptions(
        parse_require(require), ConfigOptions.from_cli(config, sets), verify, steps, device
    )
    return check_targets(targets, options)


def check_targets(
    targets: Iterable[str | os.PathLike[str]],
    options: CheckOptions | None = None,
    *,
    on_update: OnUpdate | None = None,
    progress: Progress | None = None,
) -> CheckReport:
    """The CI gate before a resume: for each run folder its latest valid checkpoint (each file is read once),
    the verdict, the config check, the static resume checks and, on request, the shadow run.

    ``on_update`` is called with the report as checks are added (:data:`OnUpdate`); ``progress`` receives the
    shadow runs' steps (:mod:`ckpttool.progress`)."""
    options = options or CheckOptions()

    def update() -> None:
        if on_update is not None:
            on_update(report)

    items = [str(t) for t in targets]
    if not items:
        raise UsageError("give a run directory or checkpoint files")
    report = CheckReport(items, [], [])
    sources: list[Source] = []
    for t in items:
        if not Path(t).is_dir() or sniff_directory(t):
            report.files.append(t)
            sources.append(load(t, gate=options.allow_globals))
        else:
            sources += _latest_sources(t, report, options.allow_globals)
            predicted = _predictions(report.latest[-1], options)
            if predicted:  # the prediction names the stale file and what it costs: drop the generic warning
                report.checks = [
                    c for c in report.checks if not (c.name == "latest" and "is older than" in c.message)
                ]
            report.predictions += predicted
        update()
    inspect_options = InspectOptions(options.require, config=options.config)
    for src in sources:
        f = src.name
        r = inspect_source(src, inspect_options)
        report.inspections.append(r)
        found = []
        if r.verdict in ("weights-only", "none"):
            found.append(
                Check("verdict", "fail", f"{f}: cannot resume training ({r.verdict}): {r.verdict_reason}")
            )
        else:
            found.append(Check("verdict", "pass", f"{f}: {r.verdict} — {r.verdict_reason}"))
        if r.required_missing:
            found.append(
                Check("require", "fail", f"{f}: required piece(s) absent: {', '.join(r.required_missing)}")
            )
        found += _config_checks(f, r)
        report.checks += [replace(c, file=f) for c in found]
    update()
    if sources:
        verify_options = VerifyOptions(
            options.config.file, options.steps, options.device, shadow=options.verify,
            allow_globals=options.allow_globals, trainer_root=options.trainer_root if options.verify else None,
            detect_trainer_root=options.verify,
        )  # fmt: skip

        def add(checks: list[Check]) -> None:
            report.checks += [c for c in checks if c.name not in ("pieces",) or c.status != "pass"]
            update()

        vr = verify_sources(sources, verify_options, on_checks=add, progress=progress)
        report.level = vr.level if options.verify else None
    return report


def _predictions(res: LatestResult, options: CheckOptions) -> list[Prediction]:
    """What the trainer of each folder holding checkpoints will do with it."""
    return predict_run(
        res, trainer=options.trainer, trainer_root=options.trainer_root, torch_version=options.torch_version,
        lightning_version=options.lightning_version,
        config=options.config.file[1] if options.config.file else None,
    )  # fmt: skip


def _latest_sources(folder: str, report: CheckReport, allow: frozenset[str]) -> list[Source]:
    """The latest valid save in run folder ``folder``, as Sources (already read while choosing it); adds the
    ``latest`` result, its checks and the chosen files to ``report``."""
    res = latest(folder, allow)
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
            Check("latest", "fail", f"{folder}: no complete, readable checkpoint to resume from")
        )
        return []
    chosen = [str(p) for p in res.chosen.paths]
    report.checks.append(
        Check(
            "latest",
            "pass",
            f"{folder}: newest complete state {', '.join(chosen)} ({res.chosen.head.describe()})",
        )
    )
    report.files += chosen
    by_path = {str(c.path): c for c in res.chosen.files}
    sources = []
    for f in chosen:
        c = by_path[f]
        sources.append(interpret_checkpoint(c.checkpoint, c.layout) if c.checkpoint else load(f, gate=allow))
    return sources


def _config_checks(f: str, r: InspectReport) -> list[Check]:
    out = []
    for a in r.architectures:
        if a.check is None:
            continue
        if a.check.ok:
            out.append(Check("config", "pass", f"{f}: {a.network} agrees with {a.config_source}"))
            continue
        keys = ", ".join(
            f"{k} (config {e['config']}, checkpoint {e['checkpoint']})"
            for k, e in a.check.key_summary.items()
        )
        n = len({m.tensor for m in a.check.mismatches}) + len(a.check.missing) + len(a.check.unexpected)
        out.append(
            Check(
                "config",
                "fail",
                f"{f}: {a.network} ({a.fingerprint.family} {a.fingerprint.version}) "
                f"contradicts {a.config_source}: {n} tensor(s); {keys or 'structure differs'}",
            )
        )
    return out
