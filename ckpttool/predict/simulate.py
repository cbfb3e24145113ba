"""Say what the trainer will do with a run folder: which files it loads (by its own pick rule), what happens
(resumes, resumes from a stale state, falls back to the pretrained model, starts from scratch, crashes,
half-resumes, has nothing left to train), and what the newest complete state is.

The simulation follows the trainer record's :class:`ckpttool.trainers.behaviour.Loads`, step by step: pick each
role's file, predict the loader on it (:mod:`ckpttool.predict.loader`), apply the record's failure behaviour,
compare what loads with the newest complete state ckpttool found by content (:func:`ckpttool.runs.latest`),
and check the stop condition against the run config. Nothing here imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ckpttool import runs
from ckpttool.configs import embedded_config
from ckpttool.errors import CkptError
from ckpttool.formats import open_checkpoint
from ckpttool.i18n import cat, join, say, say_n
from ckpttool.model import Checkpoint, get_path
from ckpttool.predict.environment import Environment, effective_weights_only
from ckpttool.predict.loader import LoadResult, predict_load
from ckpttool.predict.pick import Picked, pick
from ckpttool.runs import Candidate, LatestResult, Unit
from ckpttool.trainers import Trainer, all_trainers, get_trainer
from ckpttool.trainers.behaviour import Loads

if TYPE_CHECKING:
    from ckpttool.resume.static import LrDrift

Outcome = Literal[
    "resumes",
    "resumes-with-drift",
    "stale",
    "pretrained",
    "scratch",
    "crash",
    "half-resume",
    "finished",
    "unknown",
]
GOOD: tuple[Outcome, ...] = ("resumes", "resumes-with-drift")
# no digits, no "epoch=", no "last", no "checkpoint": no pick rule matches it or looks inside it
QUARANTINE = runs.QUARANTINE


@dataclass
class LoadStep:
    """One load the trainer performs: the role, the file its rule picks (or the error finding one), and what
    its loader does with it."""

    role: str
    path: str | None
    error: str | None = None
    note: str | None = None
    counters: str | None = None

    def to_json(self) -> dict[str, Any]:
        """An entry of ``predictions[].loads`` in ``ckpttool.check/2``."""
        return dict(self.__dict__)


@dataclass
class Prediction:
    """What the trainer will do with one folder of checkpoints (see the module docstring)."""

    folder: str
    trainer: str
    title: str
    assumed: str
    environment: Environment
    weights_only: bool
    weights_only_why: str
    loads: list[LoadStep] = field(default_factory=list)
    outcome: Outcome = "unknown"
    summary: str = ""
    newest: list[str] = field(default_factory=list)
    newest_counters: str | None = None
    lost: str | None = None
    fix: str | None = None
    quarantine: list[str] = field(default_factory=list)  # what `ckpttool fix` moves aside
    rewrite: list[str] = field(default_factory=list)  # what `ckpttool fix` rewrites (harmless globals)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the trainer will resume from the newest complete state."""
        return self.outcome in GOOD

    def to_json(self) -> dict[str, Any]:
        """An entry of ``predictions`` in ``ckpttool.check/2`` and ``ckpttool.latest/2``."""
        return {
            "folder": self.folder,
            "trainer": self.trainer,
            "assumed": self.assumed,
            "environment": self.environment.to_json(),
            "weights_only": self.weights_only,
            "weights_only_why": self.weights_only_why,
            "loads": [s.to_json() for s in self.loads],
            "outcome": self.outcome,
            "ok": self.ok,
            "summary": self.summary,
            "newest": self.newest,
            "newest_counters": self.newest_counters,
            "lost": self.lost,
            "fix": self.fix,
            "quarantine": self.quarantine,
            "rewrite": self.rewrite,
            "notes": self.notes,
        }


# --- which trainer ------------------------------------------------------------------------------------------
def trainer_for(cands: list[Candidate], folder: Path) -> tuple[Trainer | None, str]:
    """The record whose files the folder's readable checkpoints are, else whose folder rule matches."""
    named = {c.trainer for c in cands if c.ok and c.trainer}
    for record in all_trainers():
        if record.loads and record.name in named:
            return record, "detected from the files"
    for record in all_trainers():
        rule = record.detect.path if record.detect else None
        if record.loads and rule and re.search(rule, folder.resolve().as_posix()):
            return record, f"detected from the folder name ({rule})"
    return None, ""


# --- reading what the trainer picks --------------------------------------------------------------------------
def _read(path: Path) -> Checkpoint | CkptError:
    try:
        return open_checkpoint(path)
    except CkptError as exc:
        return exc


def _counters(cand: Candidate | None) -> str | None:
    return cand.describe() if cand is not None else None


def _progress(c: Candidate | None) -> tuple[float, float, float]:
    if c is None:
        return (-1.0, -1.0, -1.0)
    return c.key[:3]


def _lost(picked: Candidate, newest: Candidate) -> str:
    parts: list[str] = []
    a, b = picked.epoch, newest.epoch
    if isinstance(a, int) and isinstance(b, int) and b > a:
        parts.append(say_n("{n} epoch (epoch {new} -> {old})", "{n} epochs (epoch {new} -> {old})", b - a,
                           new=b, old=a))  # fmt: skip
    a, b = picked.step, newest.step
    if isinstance(a, int) and isinstance(b, int) and b > a:
        parts.append(say_n("{n} step (step {new} -> {old})", "{n} steps (step {new} -> {old})", b - a,
                           new=b, old=a))  # fmt: skip
    if not parts and picked.adam_step is not None and newest.adam_step is not None:
        parts.append(say("{d:g} optimizer steps", d=newest.adam_step - picked.adam_step))
    return join(", ", parts) if parts else say("the newer state")


# --- the stop condition -------------------------------------------------------------------------------------
def _config_value(config: dict[str, Any] | None, dotted: str | None) -> Any:
    if not config or not dotted:
        return None
    try:
        return get_path(config, dotted)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _too_old_torch(loads: Loads, env: Environment, ckpt: Checkpoint | CkptError) -> bool:
    """The trainer refuses ``torch.load`` on the training environment's torch (``loader.min_torch``) and this
    checkpoint has members it reads with ``torch.load`` (not only safetensors and JSON)."""
    from ckpttool.predict.environment import version_tuple

    minimum = loads.loader.min_torch
    if minimum is None or env.torch is None or isinstance(ckpt, CkptError):
        return False
    if version_tuple(env.torch) >= version_tuple(minimum):
        return False
    members = [str(m) for m in ckpt.meta.get("members", [ckpt.path])]
    return any(not m.endswith((".safetensors", ".json")) for m in members)


def _lr_drift(
    record: Trainer, ckpt: Checkpoint | None, config: dict[str, Any] | None, torch_version: str | None
) -> LrDrift | None:
    """The LR drift of a trainer that rebuilds its scheduler on resume (``resume.scheduler_rule``), for the
    file it loads (the same numbers as the ``lr-after-resume`` check; gamma from the run config's
    ``resume.gamma_config``, else the record's default), or None when it resumes on the uninterrupted LR."""
    if ckpt is None or record.resume.scheduler_rule is None:
        return None
    from ckpttool.interpret.profiles import detect_layout
    from ckpttool.resume.schedulers import DEFAULT_GAMMA
    from ckpttool.resume.static import lr_drifts

    value = _config_value(config, record.resume.gamma_config)
    gamma = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    gamma = gamma if gamma is not None else (record.resume.gamma_default or DEFAULT_GAMMA)
    drifts = [d for d in lr_drifts(ckpt.root, detect_layout(ckpt), gamma, torch_version) if d.drifts]
    return drifts[0] if drifts else None


def _finished(record: Trainer, loads: Loads, head: Candidate, ckpt: Checkpoint | None,
              config: dict[str, Any] | None) -> str | None:  # fmt: skip
    """A sentence when resuming from ``head`` trains nothing, else None."""
    stop = loads.stop
    if stop is None:
        return None
    epochs = _config_value(config, stop.epochs_config)
    if not isinstance(epochs, int):
        epochs = stop.epochs_default
    if not isinstance(epochs, int):
        return None
    if stop.loop == "lightning":
        processed = None
        if ckpt is not None:
            try:
                processed = get_path(ckpt.root, "loops.fit_loop.epoch_progress.current.processed")
            except (KeyError, IndexError, TypeError, ValueError):
                processed = None
        if not isinstance(processed, int):
            processed = head.epoch + 1 if isinstance(head.epoch, int) else None
        if isinstance(processed, int) and processed >= epochs:
            return say(
                "the saved loop has processed {processed} epoch(s) and max_epochs is {epochs} ({key}): Lightning "
                "logs '`Trainer.fit` stopped: `max_epochs={epochs}` reached.' and trains nothing",
                processed=processed, epochs=epochs, key=stop.epochs_config,
            )  # fmt: skip
        return None
    if not isinstance(head.epoch, int):
        return None
    start = head.epoch + (1 if record.resume.next_epoch == "next" else 0)
    last = epochs if stop.loop == "inclusive" else epochs - 1
    if start > last:
        return say(
            "the run would continue at epoch {start} and the config's {key} is {epochs}: the epoch loop is empty "
            "and nothing trains",
            start=start, key=stop.epochs_config, epochs=epochs,
        )  # fmt: skip
    return None


# --- the simulation -----------------------------------------------------------------------------------------
def _pretrained(
    loads: Loads, config: dict[str, Any] | None, folder: Path, root: Path | None
) -> tuple[str, str]:
    """(outcome, sentence) of the fallback: pretrained weights when the config names an existing file."""
    if loads.on_error == "scratch" or not (loads.pretrained or loads.pretrained_note):
        return "scratch", say("counters reset to epoch 1 and training starts from the model's random init")
    if not loads.pretrained:
        return "pretrained", say("counters reset to epoch 1 and {note}", note=loads.pretrained_note)
    found: list[str] = []
    named: list[str] = []
    missing: list[str] = []
    for role, key in loads.pretrained.items():
        value = _config_value(config, key)
        if not value:
            missing.append(say("{key} is empty", key=key))
            continue
        named.append(f"{key} = {value}")
        bases = [root] if root else []
        bases += [p for p in folder.resolve().parents if (p / "logs").is_dir()][:1]
        if any((b / str(value)).is_file() for b in bases) or Path(str(value)).is_file():
            found.append(role or "model")
    if found:
        return "pretrained", say(
            "counters reset to epoch 1 and the pretrained weights are loaded ({named})",
            named="; ".join(named),
        )
    if named:
        return "pretrained", say(
            "counters reset to epoch 1 and the pretrained weights are loaded if {named} exist(s) (relative to "
            "the trainer's folder), else training starts from scratch",
            named="; ".join(named),
        )
    if config is None:
        return "pretrained", say(
            "counters reset to epoch 1 and the pretrained weights named in the run config are loaded (from "
            "scratch when that path is empty or missing; the run config was not found)"
        )
    return "scratch", say(
        "counters reset to epoch 1 and, as {missing}, training starts from scratch",
        missing=join(", ", missing),
    )


def predict(
    folder: Path,
    cands: list[Candidate],
    result: LatestResult,
    env: Environment,
    *,
    trainer: str | None = None,
    config: dict[str, Any] | None = None,
    trainer_root: Path | None = None,
) -> Prediction | None:
    """What the trainer does with ``folder`` (whose candidates ``cands`` and newest complete state
    ``result`` ckpttool found). None when no trainer record with load rules applies."""
    if trainer:
        record, assumed = get_trainer(trainer), "--trainer"
    else:
        record, assumed = trainer_for(cands, folder)
    if record is None or record.loads is None:
        return None
    loads = record.loads
    wo, wo_why = effective_weights_only(loads.loader.weights_only, env)
    pred = Prediction(str(folder), record.name, record.title, assumed, env, wo, wo_why)
    newest_unit = _newest_in(result, folder)
    if newest_unit is not None:
        pred.newest = [str(p) for p in newest_unit.paths]
        pred.newest_counters = newest_unit.head.describe()
    by_path = {c.path.resolve(): c for c in cands}
    loaded: list[LoadStep] = []
    failure: str | None = None
    not_found = False
    picked_cands: list[Candidate] = []
    picked_ckpts: dict[str, Checkpoint] = {}
    for role in loads.order:
        if loads.pick.rule == "given":  # the user names the file: assume the newest complete state
            given = next((c.path for c in (newest_unit.files if newest_unit else []) if (c.role or "") == role
                          or role == ""), None)  # fmt: skip
            note = (
                "the trainer loads the path you give it; this assumes you give it the newest complete state"
            )
            found = Picked(given, None if given else "no complete state to give it", note)
        else:
            found = pick(loads.pick, folder, role)
        step = LoadStep(role, str(found.path) if found.path else None, note=found.note)
        pred.loads.append(step)
        if found.path is None:
            step.error = found.error
            failure, not_found = found.error, True
            break
        cand = by_path.get(found.path.resolve())
        step.counters = _counters(cand)
        ckpt = _read(found.path)
        res: LoadResult = (
            LoadResult(False, loads.loader.min_torch_error)  # raised before torch.load runs
            if _too_old_torch(loads, env, ckpt)
            else predict_load(ckpt, wo, env.torch, loads.loader.safe_globals)
        )
        if not res.ok:
            step.error = res.error
            failure = res.error
            if res.harmless:
                pred.rewrite.append(str(found.path))
            break
        assert isinstance(ckpt, Checkpoint)
        picked_ckpts[role] = ckpt
        if cand is not None:
            picked_cands.append(cand)
        loaded.append(step)
    _conclude(pred, record, loads, failure, not_found, loaded, picked_cands, picked_ckpts, newest_unit,
              config, folder, trainer_root, cands)  # fmt: skip
    return pred


def _newest_in(result: LatestResult, folder: Path) -> Unit | None:
    good = [u for u in result.units if u.ok and u.head.path.parent.resolve() == folder.resolve()]
    good.sort(key=lambda u: u.key, reverse=True)
    return good[0] if good else None


def _conclude(
    pred: Prediction,
    record: Trainer,
    loads: Loads,
    failure: str | None,
    not_found: bool,
    loaded: list[LoadStep],
    picked: list[Candidate],
    ckpts: dict[str, Checkpoint],
    newest: Unit | None,
    config: dict[str, Any] | None,
    folder: Path,
    root: Path | None,
    cands: list[Candidate],
) -> None:
    name = record.title.split(" (")[0]
    if failure is not None:
        behaviour = (loads.not_found or loads.on_error) if not_found else loads.on_error
        loaded_roles = ", ".join(s.role or "model" for s in loaded)
        loaded_files = ", ".join(Path(s.path or "").name for s in loaded)
        parts: list[str] = []
        if behaviour == "crash":
            pred.outcome = "crash"
            parts.append(say("{name} will crash: {failure}", name=name, failure=failure))
        elif behaviour == "scratch":
            pred.outcome = "scratch"
            parts.append(say("{name} will fail to load ({failure}), catch it and reset its counters to epoch 1",
                             name=name, failure=failure))  # fmt: skip
            if loaded and not not_found:
                pred.outcome = "half-resume"
                parts.append(say(", while {roles} keep(s) the weights and optimizer moments already loaded from "
                                 "{files} (a half-resume)", roles=loaded_roles, files=loaded_files))  # fmt: skip
            else:
                parts.append(say(" and train from the model's initial weights"))
        else:
            outcome, how = _pretrained(loads, config, folder, root)
            pred.outcome = outcome  # type: ignore[assignment]
            parts.append(say("{name} will fail to load ({failure}), catch it silently: {how}", name=name,
                             failure=failure, how=how))  # fmt: skip
            if loaded and not loads.pretrained_resets_optimizer:
                pred.outcome = "half-resume"
                parts.append(say("; {roles} already loaded its weights and optimizer moments from {files}: the "
                                 "pretrained weights (where loaded) then run with those moments (a half-resume)",
                                 roles=loaded_roles, files=loaded_files))  # fmt: skip
        if newest is not None:
            parts.append(say(". The newest complete state is {files} ({counters})",
                             files=", ".join(Path(p).name for p in pred.newest),
                             counters=pred.newest_counters))  # fmt: skip
        pred.summary = cat(*parts)
        _plan_fix(pred, loads, folder, newest, cands)
        return
    head = next((c for c in picked if c.role in (None, "G")), picked[0] if picked else None)
    names = ", ".join(Path(s.path or "").name for s in pred.loads)
    if head is None:
        pred.outcome = "unknown"
        pred.summary = say("{name} will load {names}; ckpttool could not read its counters", name=name,
                           names=names)  # fmt: skip
        return
    if len({(c.epoch, c.step) for c in picked}) > 1:
        pred.notes.append(say("the files it loads come from different saves: {files}",
                              files="; ".join(f"{c.path.name}: {c.describe()}" for c in picked)))  # fmt: skip
    newest_head = newest.head if newest else None
    if newest_head is not None and _progress(newest_head) > _progress(head):
        pred.outcome = "stale"
        pred.lost = _lost(head, newest_head)
        pred.summary = say(
            "{name} will resume from {names} ({counters}), not from the newest complete state {newest} "
            "({newest_counters}): {lost} lost",
            name=name, names=names, counters=head.describe(), newest=", ".join(Path(p).name for p in pred.newest),
            newest_counters=pred.newest_counters, lost=pred.lost,
        )  # fmt: skip
        _plan_fix(pred, loads, folder, newest, cands)
        return
    ckpt = ckpts.get(head.role or "", ckpts.get("G"))
    if config is None and ckpt is not None:  # Lightning keeps the run config in hyper_parameters
        found = embedded_config(ckpt)
        config = found[1] if found else None
    done = _finished(record, loads, head, ckpt, config)
    if done:
        pred.outcome = "finished"
        pred.summary = say("{name} will load {names} ({counters}), but {done}", name=name, names=names,
                           counters=head.describe(), done=done)  # fmt: skip
        pred.fix = say("raise the epoch count in the run config to train further")
        return
    pred.outcome = "resumes"
    pred.summary = say("{name} will resume from {names} ({counters})", name=name, names=names,
                       counters=head.describe())  # fmt: skip
    drift = _lr_drift(record, ckpt, config, pred.environment.torch)
    if drift is not None:
        pred.outcome = "resumes-with-drift"
        parts = [pred.summary, say(
            "; its rebuilt LR schedule then runs {rel} off the uninterrupted run's from epoch {epoch} ({rule})",
            rel=f"{drift.rel:+.3%}", epoch=drift.epoch, rule=drift.description,
        )]  # fmt: skip
        if drift.again:
            parts.append(say("; the saved epoch {epoch} is trained again", epoch=drift.epoch))
        pred.summary = cat(*parts)
    if loads.after_resume:
        pred.notes.append(loads.after_resume)


def _plan_fix(
    pred: Prediction, loads: Loads, folder: Path, newest: Unit | None, cands: list[Candidate]
) -> None:
    """What `ckpttool fix` does: move aside every file the pick rule ranks above the newest complete state
    (stale or broken), and rewrite files refused for harmless globals."""
    from ckpttool.predict.fixplan import plan_quarantine

    if newest is None:
        pred.notes.append(say("there is no complete state to resume from in this folder"))
        pred.notes += _survivors(pred, loads, folder)
        if pred.rewrite:
            pred.fix = f"ckpttool fix {folder}"
        return
    pred.quarantine = [str(p) for p in plan_quarantine(loads, folder, newest, cands)]
    if pred.quarantine or pred.rewrite:
        pred.fix = f"ckpttool fix {folder}"


def _survivors(pred: Prediction, loads: Loads, folder: Path) -> list[str]:
    """What is left when no complete state is: intact files the trainer loaded, and its inference exports."""
    out: list[str] = []
    intact = [s for s in pred.loads if s.path and not s.error]
    if intact:
        out.append(say("intact: {files} (a trainer run with only this role restored is not a resume)",
                       files="; ".join(f"{Path(s.path or '').name} ({s.counters})" for s in intact)))  # fmt: skip
    parts = folder.resolve().parts
    start = loads.pick.path_from
    if loads.exports and start and start in parts:
        i = len(parts) - 1 - parts[::-1].index(start)
        root, exp = Path(*parts[:i]), parts[i + 1] if i + 1 < len(parts) else folder.name
        found = sorted({p for g in loads.exports for p in root.glob(g.format(exp=exp)) if p.is_file()})
        if found:
            out.append(say(
                "inference exports survive (fine-tune from one; training state cannot resume from it): {files}",
                files=", ".join(str(p) for p in found[-3:]),
            ))  # fmt: skip
    return out
