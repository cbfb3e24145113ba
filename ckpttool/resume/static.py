"""Static resume checks: what can be proven from the files alone, before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.interpret.profiles import Layout, counter_value
from ckpttool.interpret.source import Source
from ckpttool.interpret.structure import is_optimizer
from ckpttool.model import get_path
from ckpttool.resume import warmup_cosine as wc
from ckpttool.resume.live import driven_optimizer
from ckpttool.resume.schedulers import closed_form_lr, infer_class, installed_torch_version, rule_of
from ckpttool.vocab import CheckStatus


@dataclass
class Check:
    """One verify-resume check: its name, ``pass``/``fail``/``warn``/``skip``, a message and data for JSON;
    ``file`` the checkpoint it is about when there is one (for grouping G and D findings in the terminal; not
    part of the JSON)."""

    name: str
    status: CheckStatus
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    file: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """An entry of ``checks`` in ``ckpttool.verify-resume/1`` and ``ckpttool.check/1``."""
        return {"name": self.name, "status": self.status, "message": self.message, "data": self.data}


def piece_checks(src: Source) -> list[Check]:
    """Fail for each required piece that is absent and, in a training file, each network without optimizer
    state; pass when nothing is missing."""
    out = []
    missing = [p for p in src.interp.pieces if p.required and p.status == "absent"]
    for p in missing:
        out.append(Check("pieces", "fail", f"{src.name}: no {p.name}: {p.consequence or 'needed to resume'}"))
    if src.layout.optimizers:  # a training file: every network needs its own optimizer state
        driven = set(src.layout.optimizers.values())
        for label, path in src.layout.networks.items():
            if label not in driven:
                missing.append(src.interp.pieces[0])
                out.append(
                    Check(
                        "pieces",
                        "fail",
                        f"{src.name}: no optimizer state for {label} ({path}): its "
                        "Adam moments restart from zero; expect a loss spike",
                    )
                )
    if not missing:
        needed = [p.name for p in src.interp.pieces if p.required]
        out.append(
            Check(
                "pieces", "pass", f"{src.name}: every piece needed to resume is there ({', '.join(needed)})"
            )
        )
    return out


def optimizer_checks(src: Source) -> list[Check]:
    """The optimizer findings as checks: misaligned or misshapen state and a G/D stage mismatch fail, partial
    or unchecked state and Adam-step warnings warn; pass when some optimizer is aligned and nothing failed."""
    out = []
    for f in src.interp.findings:
        if f.code in ("optimizer-misaligned", "optimizer-shape"):
            out.append(Check("optimizer", "fail", f.message))
        elif f.code in ("optimizer-partial", "optimizer-unchecked", "adam-step") and f.severity == "warning":
            out.append(Check("optimizer", "warn", f.message))
        elif f.code == "g-d-stage":
            out.append(Check("g-d-stage", "fail", f"{src.name}: {f.message}"))
        elif f.code == "amp-skipped-steps":
            out.append(Check("optimizer", "pass", f.message))
    aligned = [o for o in src.interp.optimizers if o.aligned]
    if aligned and not any(c.status == "fail" for c in out):
        out.append(
            Check(
                "optimizer",
                "pass",
                "; ".join(
                    f"{o.path}: ScaledAdam state for {o.n_state} batches covering {o.covered} of {o.n_params} "
                    "parameters fits (B, *parameter shape)"
                    if o.batches is not None
                    else f"{o.path}: {o.n_state} state entries fit their parameters"
                    for o in aligned
                ),
            )
        )
    return out


def stage_check(sources: list[Source]) -> list[Check]:
    """A G file and a D file given together must come from the same save."""
    if len(sources) < 2:
        return []
    stages = []
    for s in sources:
        epoch = counter_value(s.ckpt, s.layout, "epoch")
        step = counter_value(s.ckpt, s.layout, "step")
        adam = max((o.step_range[1] for o in s.interp.optimizers if o.step_range), default=None)
        stages.append((s, epoch, step, adam))
    keys = {(e, st, a) for _, e, st, a in stages}

    def describe(e: Any, st: Any, a: Any) -> str:
        parts = [
            f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in (("epoch", e), ("step", st), ("Adam step", a))
            if v is not None
        ]
        return ", ".join(parts) or "no counters"

    text = "; ".join(f"{s.name}: {describe(e, st, a)}" for s, e, st, a in stages)
    if len(keys) > 1:
        return [
            Check(
                "g-d-stage",
                "fail",
                f"the files come from different stages ({text}); resume both from one save",
            )
        ]
    return [Check("g-d-stage", "pass", f"the files come from the same stage ({text})")]


def scheduler_checks(src: Source, expected_class: str | None) -> list[Check]:
    """One check per saved scheduler state: its class against ``expected_class`` (fail when it differs), then
    the LR its state implies (closed form, per param group) against the LR its optimizer holds (fail beyond
    1e-6 relative). A class with no closed form, or no optimizer to compare with, warns.
    """
    out = []
    opt_paths = [p for p in src.layout.optimizers if is_optimizer(get_path(src.ckpt.root, p))]
    for path in src.layout.schedulers:
        state = get_path(src.ckpt.root, path)
        if not isinstance(state, dict):
            continue
        kind = infer_class(state)
        if expected_class and kind != expected_class:
            out.append(
                Check(
                    "scheduler",
                    "fail",
                    f"{path}: the trainer builds {expected_class}, but the saved state "
                    f"is a {kind or 'scheduler of unknown class'} (keys {sorted(state)}); torch would load "
                    "it without complaint",
                )
            )
            continue
        target = driven_optimizer(path, opt_paths, src.layout)
        if kind == "WarmupCosineLRSchedule":
            out.append(_warmup_cosine_check(src, path, state, target))
            continue
        if kind is None or target is None:
            out.append(
                Check("scheduler", "warn", f"{path}: scheduler class not recognised; its LR is not checked")
            )
            continue
        out.append(_lr_check(src, path, state, kind, target))
    return out


def _warmup_cosine_check(src: Source, path: str, state: dict[str, Any], target: str | None) -> Check:
    """GPT-SoVITS's WarmupCosineLRSchedule: its state, the LR pin of its step(), and whether the optimizer's
    LRs are what that pin leaves (:mod:`ckpttool.resume.warmup_cosine`)."""
    groups = get_path(src.ckpt.root, target).get("param_groups") or [] if target else []
    lrs = [g.get("lr") for g in groups if isinstance(g, dict)]
    problems = wc.lr_problems(state, lrs)
    data = {"class": "WarmupCosineLRSchedule", "pinned_lr": wc.PINNED_LR, "source": wc.SOURCE}
    text = f"{path}: WarmupCosineLRSchedule ({wc.describe(state)}): {wc.pin_sentence()}"
    if problems:
        return Check(
            "scheduler",
            "warn",
            f"{text}; but {'; '.join(problems)}: this state and optimizer do not come from the upstream code "
            "as published (modified, or from another run)",
            data,
        )
    where = f"; {target}'s LR {', '.join(map(str, lrs))} is what it leaves" if lrs else ""
    return Check("scheduler", "pass", text + where, data)


def _lr_check(src: Source, path: str, state: dict[str, Any], kind: str, target: str) -> Check:
    """The scheduler state at ``path`` (a ``kind``) against the LR of each group of the optimizer at ``target``."""
    groups = get_path(src.ckpt.root, target).get("param_groups") or []
    base_lrs = state.get("base_lrs") or [g.get("initial_lr") for g in groups]
    bad = []
    for i, g in enumerate(groups):
        base = base_lrs[i] if i < len(base_lrs) else None
        lr = g.get("lr")
        implied = closed_form_lr(kind, state, float(base)) if isinstance(base, int | float) else None
        if implied is None or not isinstance(lr, int | float):
            continue
        if abs(implied - lr) > 1e-9 + 1e-6 * abs(lr):
            bad.append(
                f"group {i}: the {kind} state (last_epoch {state.get('last_epoch')}) implies lr "
                f"{implied:.6g}, the optimizer holds {lr:.6g}"
            )
    checked = [
        i
        for i, g in enumerate(groups)
        if i < len(base_lrs)
        and isinstance(base_lrs[i], int | float)
        and closed_form_lr(kind, state, float(base_lrs[i])) is not None
    ]
    if bad:
        return Check(
            "scheduler",
            "fail",
            f"{path} does not belong to {target}: "
            + "; ".join(bad)
            + ". A scheduler state of another class or run loads silently and changes the LR",
        )
    if not checked:
        # No formula for its LR (LambdaLR's lambda is code, never saved), but every scheduler records the LRs it
        # last set (torch/optim/lr_scheduler.py LRScheduler.step: _last_lr = the groups' lr): a state and an
        # optimizer saved together agree on them.
        last = state.get("_last_lr")
        lrs = [g.get("lr") for g in groups]
        if (
            isinstance(last, list)
            and len(last) == len(lrs)
            and lrs
            and all(
                isinstance(a, int | float) and isinstance(b, int | float)
                for a, b in zip(last, lrs, strict=True)
            )
        ):
            if all(abs(a - b) <= 1e-9 + 1e-6 * abs(b) for a, b in zip(last, lrs, strict=True)):
                return Check(
                    "scheduler",
                    "pass",
                    f"{path}: the {kind} last set lr {', '.join(f'{v:.6g}' for v in last)}, what {target} holds "
                    "(saved together); its schedule is code, not in the file, so the LRs to come are not checked",
                )
            return Check(
                "scheduler",
                "warn",
                f"{path}: the {kind} last set lr {', '.join(f'{v:.6g}' for v in last)} but {target} holds "
                f"{', '.join(f'{v:.6g}' for v in lrs)}: saved at different times, or from another run",
            )
        return Check(
            "scheduler",
            "warn",
            f"{path}: a {kind} has no closed form here; its LR against {target}'s is not checked",
        )
    return Check("scheduler", "pass", f"{path}: {kind} state consistent with {target}'s LR")


@dataclass(frozen=True)
class LrDrift:
    """The LR a trainer that rebuilds its scheduler resumes with (``resumed``) against the uninterrupted run's
    (``wanted``) for the first resumed ``epoch``; ``rel`` = (resumed - wanted) / wanted; ``again``: the saved
    epoch is trained again from its start."""

    path: str
    description: str
    epoch: int
    resumed: float
    wanted: float
    rel: float
    again: bool

    @property
    def drifts(self) -> bool:
        """Whether resuming differs from the uninterrupted run."""
        return abs(self.rel) >= 1e-12 or self.again


def lr_drifts(root: Any, layout: Layout, gamma: float, torch_version: str | None) -> list[LrDrift]:
    """For each optimizer of a file whose trainer rebuilds its scheduler instead of saving it (the record's
    ``resume.scheduler_rule``): the LR drift of the resumed run (:mod:`ckpttool.resume.schedulers`)."""
    rule = rule_of(layout)
    if rule is None or layout.schedulers:
        return []
    epoch = get_path(root, layout.epoch) if layout.epoch else None
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return []
    out = []
    for path in layout.optimizers:
        opt = get_path(root, path)
        if not is_optimizer(opt) or not opt.get("param_groups"):
            continue
        g = opt["param_groups"][0]
        lr, lr0 = g.get("lr"), g.get("initial_lr", g.get("lr"))
        if not isinstance(lr, int | float) or not isinstance(lr0, int | float):
            continue
        resumed = rule.resumed_lr(float(lr), float(lr0), gamma, epoch, torch_version)
        wanted = rule.uninterrupted_lr(float(lr0), gamma, epoch)
        rel = (resumed - wanted) / wanted if wanted else 0.0
        first = rule.resumed_epoch(epoch)
        out.append(LrDrift(path, rule.description, first, resumed, wanted, rel, first == epoch))
    return out


def lr_rule_checks(
    src: Source, gamma: float, gamma_source: str, strict: bool, torch_version: str | None = None
) -> list[Check]:
    """Trainers that rebuild their scheduler: the LR they resume with against the uninterrupted run's, under
    ``torch_version`` (the training environment's; default the installed one)."""
    version = torch_version or installed_torch_version() or "unknown"
    out = []
    for d in lr_drifts(src.ckpt.root, src.layout, gamma, version):
        data = {
            "epoch": d.epoch,
            "resumed_lr": d.resumed,
            "uninterrupted_lr": d.wanted,
            "relative_error": d.rel,
            "gamma": gamma,
            "gamma_from": gamma_source,
            "torch": version,
        }
        message = (
            f"{d.path}: {d.description}: the first resumed epoch ({d.epoch}) runs at lr {d.resumed:.6g} instead "
            f"of {d.wanted:.6g} (relative error {d.rel:+.3%}; gamma {gamma} from {gamma_source}; torch {version})"
        )
        if d.again:
            message += f"; the saved epoch {d.epoch} is trained again from its start"
        status: CheckStatus = "fail" if strict and d.drifts else ("warn" if d.drifts else "pass")
        out.append(Check("lr-after-resume", status, message, data))
    return out


def scaler_check(src: Source, fp16: bool | None) -> list[Check]:
    """Pass when a GradScaler state is saved; warn when training used fp16 without one (the scale restarts at
    65536, torch's default ``init_scale``)."""
    if src.layout.scaler is not None:
        return [Check("scaler", "pass", f"{src.name}: AMP GradScaler state saved")]
    if fp16:
        return [
            Check(
                "scaler",
                "warn",
                f"{src.name}: training used fp16 but the GradScaler state is not saved: it "
                "restarts at scale 65536 and skips the first steps whose gradients overflow while it "
                "re-calibrates (a few steps, no lasting effect)",
            )
        ]
    return []
