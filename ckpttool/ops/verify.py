"""``verify-resume``: static checks, then a shadow run (and optionally a recipe run) proving the resume."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpttool.configs import embedded_config, load_config_file, run_config_beside
from ckpttool.errors import CkptError, DeviceError, UsageError
from ckpttool.interpret.source import Source, load
from ckpttool.progress import Progress
from ckpttool.resume.recipe import RecipeContext, RecipeResult
from ckpttool.resume.schedulers import DEFAULT_GAMMA, rule_of
from ckpttool.resume.static import (
    Check,
    lr_rule_checks,
    optimizer_checks,
    piece_checks,
    scaler_check,
    scheduler_checks,
    stage_check,
)
from ckpttool.resume.stop_rule import max_epochs_check

if TYPE_CHECKING:
    import torch

SCHEMA = "ckpttool.verify-resume/1"

OnChecks = Callable[[list[Check]], None]
"""Called with each batch of checks as it finishes (the static checks of all files together, then each file's
shadow-run checks, then the model run's), so a caller can show them while the runs go on."""
DEFAULT_STEPS = 4


@dataclass
class VerifyReport:
    """The ``verify-resume`` outcome: the files, the device the runs used (or none), every check, the shadow
    runs' results and the recipe run's."""

    paths: list[str]
    device: str
    checks: list[Check]
    shadow: list[dict[str, Any]] = field(default_factory=list)
    recipe: dict[str, Any] | None = None
    strict: bool = False
    shadow_verified: set[str] = field(default_factory=set)  # files whose shadow run ended identical
    on_checks: OnChecks | None = field(default=None, repr=False, compare=False)

    def add(self, checks: Sequence[Check], file: str | None = None) -> None:
        """Append ``checks`` (finished together; about ``file`` when given) and pass them to
        :attr:`on_checks`, if any."""
        if file is not None:
            checks = [c if c.file else replace(c, file=file) for c in checks]
        self.checks += checks
        if self.on_checks is not None and checks:
            self.on_checks(list(checks))

    @property
    def ok(self) -> bool:
        """No check failed."""
        return not any(c.status == "fail" for c in self.checks)

    @property
    def level(self) -> str:
        """What proved the resume: ``model-run`` (the recipe run ended identical), ``shadow-run`` (every file's
        shadow run did), else ``static`` (nothing ran, or a run was skipped: static checks only)."""
        if self.recipe is not None and self.recipe.get("identical"):
            return "model-run"
        if self.paths and all(p in self.shadow_verified for p in self.paths):
            return "shadow-run"
        return "static"

    def to_json(self) -> dict[str, Any]:
        """The ``ckpttool.verify-resume/1`` JSON document."""
        return {
            "schema": SCHEMA,
            "paths": self.paths,
            "device": self.device,
            "strict": self.strict,
            "verified": self.ok,
            "verified_by_run": self.ok and self.level != "static",
            "level": self.level,
            "checks": [c.to_json() for c in self.checks],
            "shadow_runs": self.shadow,
            "recipe_run": self.recipe,
        }


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else the CPU), ``cpu`` or ``cuda[:N]``. Raises DeviceError for CUDA
    without a CUDA device, UsageError for anything else. Imports torch."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"--device must be auto, cpu or cuda[:N], not {name!r}")


def _run_config(
    paths: list[str], config: tuple[str, dict[str, Any]] | None
) -> tuple[dict[str, Any] | None, str]:
    if config is not None:
        return config[1], config[0]
    for p in paths:
        beside = run_config_beside(p)
        if beside is not None:
            return load_config_file(beside), str(beside)
    return None, ""


@dataclass(frozen=True)
class VerifyOptions:
    """How to verify: ``config`` a run config already read as (where, config) (default: config.json beside the
    files); ``steps`` even, >= 2; ``device`` auto, cpu or cuda[:N]; ``recipe`` MODULE:FUNCTION; ``strict``
    makes known trainer drifts fail; ``shadow`` False runs the static checks only (and no model run unless a
    recipe or trainer root is named); ``trainer_root`` a GPT-SoVITS checkout for the model run (with
    ``detect_trainer_root``, the checkout the working directory is in is used when none is named)."""

    config: tuple[str, dict[str, Any]] | None = None
    steps: int = DEFAULT_STEPS
    device: str = "auto"
    recipe: str | None = None
    strict: bool = False
    shadow: bool = True
    optimizer_class: str | None = None
    scheduler_class: str | None = None
    allow_globals: frozenset[str] = frozenset()
    trainer_root: str | None = None
    detect_trainer_root: bool = True


def verify_resume(
    paths: Iterable[str | os.PathLike[str]],
    *,
    config: str | None = None,
    steps: int = DEFAULT_STEPS,
    device: str = "auto",
    recipe: str | None = None,
    strict: bool = False,
    shadow: bool = True,
    optimizer_class: str | None = None,
    scheduler_class: str | None = None,
    trainer_root: str | None = None,
) -> VerifyReport:
    """Check that training resumed from ``paths`` continues exactly as if it had never stopped."""
    files = [str(p) for p in paths]
    options = VerifyOptions(
        (config, load_config_file(config)) if config else None,
        steps,
        device,
        recipe,
        strict,
        shadow,
        optimizer_class,
        scheduler_class,
        trainer_root=trainer_root,
    )
    return verify_paths(files, options)


def verify_paths(
    paths: Iterable[str | os.PathLike[str]],
    options: VerifyOptions | None = None,
    *,
    on_checks: OnChecks | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """:func:`verify_sources` of the files at ``paths`` (what the CLI's ``verify-resume`` runs)."""
    files = [str(p) for p in paths]
    _check_files(files)
    options = options or VerifyOptions()
    _check_options(options)
    return verify_sources(
        [load(f, gate=options.allow_globals) for f in files], options, on_checks=on_checks, progress=progress
    )


def _check_files(files: list[str]) -> None:
    if not files:
        raise UsageError("give at least one checkpoint (a bundle, or a G file and its D file)")
    if len({os.path.realpath(f) for f in files}) != len(files):
        raise UsageError("the same file is given twice; give a G file and its D file, or one bundle")


def _check_options(options: VerifyOptions) -> None:
    if options.steps < 2 or options.steps % 2:
        raise UsageError("--steps must be an even number, at least 2 (half before the save, half after)")


def verify_sources(
    sources: list[Source],
    options: VerifyOptions | None = None,
    *,
    on_checks: OnChecks | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """The static resume checks on ``sources`` (one bundle, or a G file and its D file), then, unless
    ``options.shadow`` is False, the shadow run, then the model run :func:`plan_model_run` finds (a recipe, or
    the built-in one for the trainer checkout).

    Raises UsageError for no sources, the same file twice, an odd or too small ``steps``, a bad device name,
    a trainer root that is not a checkout or fits no recipe, or an import the model run needs and cannot make;
    DeviceError for a CUDA device that is not there. Failures of the checkpoint itself (and of the model run)
    are checks with status ``fail`` in the report, not exceptions.

    ``on_checks`` receives the checks batch by batch as they finish (see :data:`OnChecks`); ``progress`` the
    shadow runs' training steps (``progress(label, done, total)``, :mod:`ckpttool.progress`).
    """
    options = options or VerifyOptions()
    _check_options(options)
    files = [s.name for s in sources]
    _check_files(files)
    model_run = plan_model_run(sources, options)
    # the static checks alone need no device
    dev = resolve_device(options.device) if options.shadow or model_run is not None else None
    if dev is not None and dev.type == "cuda":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
    run_config, config_from = _run_config(files, options.config)
    train = run_config.get("train", {}) if isinstance(run_config, dict) else {}
    gamma, gamma_from = _lr_decay(train, config_from)
    fp16 = _fp16(train, sources)
    report = VerifyReport(
        files, str(dev) if dev is not None else "none (static checks only)", [], strict=options.strict,
        on_checks=on_checks,
    )  # fmt: skip
    runnable = []
    static: list[Check] = []
    for s in sources:
        basics = piece_checks(s) + optimizer_checks(s)
        if not any(c.status == "fail" for c in basics):
            runnable.append(s)
        of_s = basics + scheduler_checks(s, options.scheduler_class)
        of_s += lr_rule_checks(s, gamma, gamma_from, options.strict)
        of_s += scaler_check(s, fp16)
        of_s += max_epochs_check(s, run_config, config_from)
        static += [c if c.file else replace(c, file=s.name) for c in of_s]
    static += stage_check(sources)
    report.add(static)
    if options.shadow and dev is not None:
        _shadow_runs(report, sources, runnable, dev, gamma, options, progress)
    if model_run is not None and dev is not None:
        if model_run.spec is None:
            report.add([Check("recipe-run", "skip", f"no model run: {model_run.reason}")])
        else:
            context = RecipeContext(dev, run_config, config_from, model_run.root)
            _recipe_run(report, model_run, sources, context, options.steps)
    return report


def _lr_decay(train: Any, config_from: str) -> tuple[float, str]:
    """The scheduler's gamma and where it comes from: the run config's ``train.lr_decay``, else the
    GPT-SoVITS/VITS default."""
    gamma = float(train.get("lr_decay", DEFAULT_GAMMA)) if isinstance(train, dict) else DEFAULT_GAMMA
    gamma_from = (
        f"train.lr_decay in {config_from}"
        if isinstance(train, dict) and "lr_decay" in train
        else ("the GPT-SoVITS/VITS default; pass --config to use the run's")
    )
    return gamma, gamma_from


def _fp16(train: Any, sources: list[Source]) -> bool | None:
    """Whether training used fp16: the run config's ``train.fp16_run``, else the key the trainer record names
    (``resume.fp16_config``, read from the config embedded in the file: s1's ``train.precision``), else the
    record's default."""
    fp16 = train.get("fp16_run") if isinstance(train, dict) else None
    if fp16 is None:
        fp16 = next((v for s in sources if (v := _fp16_of_record(s)) is not None), None)
    if fp16 is None:  # the trainer's own default (GPT-SoVITS s2.json: fp16_run true)
        fp16 = next(
            (
                s.layout.record.resume.fp16_default
                for s in sources
                if s.layout.record is not None and s.layout.record.resume.fp16_default is not None
            ),
            None,
        )
    return fp16


def _fp16_of_record(src: Source) -> bool | None:
    """fp16 by the trainer record's ``fp16_config`` key in the config the file embeds (None when absent)."""
    record = src.layout.record
    found = embedded_config(src.ckpt)
    if record is None or not record.resume.fp16_config or found is None:
        return None
    value: Any = found[1]
    for part in record.resume.fp16_config.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return None
    return str(value) in record.resume.fp16_values if record.resume.fp16_values else bool(value)


def _shadow_runs(
    report: VerifyReport,
    sources: list[Source],
    runnable: list[Source],
    dev: torch.device,
    gamma: float,
    options: VerifyOptions,
    progress: Progress | None = None,
) -> None:
    """Shadow-run each runnable source and add the results and their checks to ``report``; a source that
    cannot be rebuilt is skipped, one whose run raises fails."""
    from ckpttool.resume.live import NotRebuildable
    from ckpttool.resume.shadow import shadow_run

    with tempfile.TemporaryDirectory(prefix="ckpttool-verify-") as tmp:
        for s in sources:
            if s not in runnable or not s.layout.optimizers:
                report.add(
                    [
                        Check(
                            "shadow-run",
                            "skip",
                            f"{s.name}: not run (nothing to resume, or the static checks above already fail)",
                        )
                    ],
                    s.name,
                )
                continue
            try:
                res = shadow_run(
                    s.ckpt,
                    s.layout,
                    dev,
                    options.steps,
                    Path(tmp),
                    gamma=gamma,
                    optimizer_override=options.optimizer_class,
                    progress=progress,
                )
            except NotRebuildable as exc:
                report.add([Check("shadow-run", "skip", f"{s.name}: not run: {exc}")], s.name)
                continue
            except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as exc:
                report.add(
                    [
                        Check(
                            "shadow-run",
                            "fail",
                            f"{s.name}: the shadow run failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                        )
                    ],
                    s.name,
                )
                continue
            report.shadow.append({"path": s.name, **res.to_json()})
            if res.exact.identical:
                report.shadow_verified.add(s.name)
            report.add(_shadow_checks(s, res, options.strict), s.name)


@dataclass(frozen=True)
class ModelRun:
    """The model run to do: the recipe (``spec``; None with the ``reason`` when no recipe fits), its title and
    the trainer checkout to put on ``sys.path`` (``root``)."""

    spec: str | None
    title: str
    root: Path | None
    reason: str = ""


def plan_model_run(sources: list[Source], options: VerifyOptions) -> ModelRun | None:
    """Which model run ``options`` ask for: ``--recipe`` as given; else with a trainer root (``--trainer-root``,
    or the GPT-SoVITS checkout the working directory is in when the shadow run is on) the built-in recipe chosen
    from the files; None for no model run. Raises UsageError for a ``--trainer-root`` that is not a checkout, or
    that no built-in recipe fits the files for."""
    from ckpttool.recipes.select import choose_recipe
    from ckpttool.recipes.trainer_root import check_trainer_root, find_trainer_root

    root: Path | None = None
    if options.trainer_root:
        root = check_trainer_root(options.trainer_root)
    elif options.detect_trainer_root and (options.shadow or options.recipe):
        root = find_trainer_root(Path.cwd())
    if options.recipe:
        return ModelRun(options.recipe, options.recipe, root)
    if root is None:
        return None
    choice = choose_recipe(sources)
    if choice.spec is None and options.trainer_root:
        raise UsageError(f"--trainer-root {options.trainer_root}: {choice.reason}")
    return ModelRun(choice.spec, choice.title, root, choice.reason)


def _recipe_run(
    report: VerifyReport, run: ModelRun, sources: list[Source], context: RecipeContext, steps: int
) -> None:
    """Run the recipe straight and split over ``sources`` (with the trainer checkout on ``sys.path``); add its
    result and checks to ``report``. A missing import is a UsageError (one line: what to install or which flag
    to set); any other failure of the recipe's code is a failed check."""
    from ckpttool.recipes.requirements import missing_dependency
    from ckpttool.recipes.trainer_root import on_path
    from ckpttool.resume.recipe import run_recipe

    assert run.spec is not None
    try:
        with on_path(run.root), tempfile.TemporaryDirectory(prefix="ckpttool-recipe-") as tmp:
            rr = run_recipe(run.spec, sources, context, steps, Path(tmp))
    except ImportError as exc:
        raise missing_dependency(exc, run.spec, run.root) from None
    except CkptError:
        raise
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
        # "Error(s) in loading state_dict for X:" says nothing until its next line
        first = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
        report.add(
            [Check("recipe-run", "fail", f"{run.title}: the model run failed: {type(exc).__name__}: {first}")]
        )
        return
    report.recipe = {"title": run.title, "trainer_root": str(run.root) if run.root else None, **rr.to_json()}
    report.add(recipe_checks(run.title, rr, report.strict))


def recipe_checks(title: str, rr: RecipeResult, strict: bool) -> list[Check]:
    """The ``recipe-run`` check (straight vs split, resumed exactly) and, for a trainer whose own resume is
    known to drift, the ``recipe-resume`` check (resumed the trainer's way: a warning, a failure with
    ``strict``); the recipe's notes as warnings first."""
    half = rr.steps // 2
    where = f"{title}: {rr.steps} steps straight vs {half} + save/reload + {rr.steps - half} on {rr.device}"
    out = [Check("recipe-run", "warn", note) for note in rr.notes if "keeps its initial value" in note]
    told = [note for note in rr.notes if "keeps its initial value" not in note]
    about = f" [{'; '.join(told)}]" if told else ""
    if rr.identical:
        kind = "bit-identical" if rr.device == "cpu" else "identical within rtol 1e-6"
        how = "resumed exactly" if rr.trainer_identical is not None else "resumed as the trainer does"
        out.append(
            Check(
                "recipe-run",
                "pass",
                f"{where} ({how}): {kind} weights, optimizer state, LR and counters ({rr.seconds:.1f} s){about}",
                {"notes": rr.notes},
            )
        )
    else:
        out.append(
            Check(
                "recipe-run",
                "fail",
                f"{where}: the resumed run differs: " + "; ".join(rr.differences[:6]),
                {"notes": rr.notes},
            )
        )
    if rr.trainer_identical is True:
        out.append(Check("recipe-resume", "pass", f"{title}: resuming the way the trainer does is exact too"))
    elif rr.trainer_identical is False:
        out.append(
            Check(
                "recipe-resume",
                "fail" if strict else "warn",
                f"{title}: resuming the way the trainer does drifts from the uninterrupted run: "
                + "; ".join(rr.trainer_differences[:4]),
            )
        )
    return out


def _shadow_checks(s: Source, res: Any, strict: bool) -> list[Check]:
    out = [Check("shadow-run", "warn", f"{s.name}: {note}") for note in res.notes]
    where = f"{s.name}: {res.steps} steps straight vs {res.steps // 2} + save/reload + {res.steps - res.steps // 2}"
    if res.exact.identical:
        kind = "bit-identical" if res.device == "cpu" else "identical within rtol 1e-6"
        out.append(
            Check(
                "shadow-run",
                "pass",
                f"{where}: {kind} parameters, optimizer state, LR and counters "
                f"({res.parameters:,} parameters, {res.seconds:.1f} s on {res.device})",
            )
        )
    else:
        out.append(
            Check(
                "shadow-run",
                "fail",
                f"{where}: the reload changed the training state: " + "; ".join(res.exact.differences[:6]),
            )
        )
    if res.trainer is not None:
        found = rule_of(s.layout)
        rule = found.description if found is not None else res.trainer_rule
        if res.trainer.identical:
            out.append(
                Check(
                    "trainer-resume",
                    "pass",
                    f"{s.name}: resuming the way the trainer does ({rule}) matches the uninterrupted run",
                )
            )
        else:
            out.append(
                Check(
                    "trainer-resume",
                    "fail" if strict else "warn",
                    f"{s.name}: resuming the way the trainer does ({rule}) drifts from the uninterrupted "
                    "run: " + "; ".join(res.trainer.differences[:4]),
                )
            )
    return out
