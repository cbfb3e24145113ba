"""Run directories: which checkpoints are there, which is really the newest complete one, what can go.

Why not the file names: GPT-SoVITS's ``latest_checkpoint_path`` sorts by the digits in the name, so a stale
``G_233333333333.pth`` from an earlier run outranks a newer ``G_3000.pth``; VITS can even save backwards after a
resume. Here checkpoints are ordered by what is inside them (epoch/iteration, step, Adam's step counter), then by
modification time; G and D must come from the same save; truncated and corrupt files are skipped, with the reason.
Only pickles and archive directories are read, so scanning hundreds of checkpoints is cheap.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, InputNotFound, UsageError
from ckpttool.formats import open_checkpoint
from ckpttool.formats.registry import file_suffixes
from ckpttool.formats.values import StorageReader
from ckpttool.interpret.profiles import Layout, counter_value, detect_layout
from ckpttool.interpret.structure import is_optimizer
from ckpttool.model import Checkpoint, TensorInfo, get_path
from ckpttool.trainers import all_trainers, get_trainer
from ckpttool.trainers.pick import RULES as PICK_RULES
from ckpttool.trainers.pick import pick

ROLE = re.compile(r"^(G|D)_(.+)$")  # VITS-family file names: the network, then the tag


def latest_names() -> re.Pattern[str]:
    """Tags of files a trainer overwrites in place (its records' naming.latest), plus ``latest``."""
    tags = sorted({t for r in all_trainers() for t in r.naming.latest if t != "last"} | {"latest"})
    return re.compile(r"(?:^|_)(?:" + "|".join(map(re.escape, tags)) + r")$|^last$")


MAX_DEPTH = 4


@dataclass
class Candidate:
    path: Path
    role: str | None  # G, D or None (a bundle / Lightning / other single file)
    tag: str  # the name without role and suffix: "3000", "233333333333", "epoch=3-step=120", ...
    latest_style: bool
    mtime: float
    size: int
    ok: bool = True
    reason: str | None = None  # why it was skipped
    profile: str | None = None
    trainer: str | None = None  # the record of the trainer that wrote it, when known
    epoch: int | None = None
    step: int | None = None
    adam_step: float | None = None
    # What was read, kept for the chosen unit so a caller (check) does not read the file again.
    checkpoint: Checkpoint | None = field(default=None, repr=False)
    layout: Layout | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[float, float, float, float]:
        """Ordering by content first (epoch, step, Adam step), then modification time."""

        def num(v: Any) -> float:
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else -1.0

        return (num(self.epoch), num(self.step), num(self.adam_step), self.mtime)

    def describe(self) -> str:
        parts = [
            f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in (("epoch", self.epoch), ("step", self.step), ("Adam step", self.adam_step))
            if v is not None
        ]
        return ", ".join(parts) or "no counters"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "role": self.role,
            "latest_style": self.latest_style,
            "ok": self.ok,
            "reason": self.reason,
            "profile": self.profile,
            "epoch": self.epoch,
            "step": self.step,
            "adam_step": self.adam_step,
            "size": self.size,
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.mtime)),
        }


@dataclass
class Unit:
    """What a resume loads together: a G/D pair, or one file (a bundle, a Lightning checkpoint)."""

    files: list[Candidate]
    ok: bool = True
    reason: str | None = None

    @property
    def head(self) -> Candidate:
        return next((c for c in self.files if c.role == "G"), self.files[0])

    @property
    def key(self) -> tuple[float, float, float, float]:
        return self.head.key

    @property
    def latest_style(self) -> bool:
        return self.head.latest_style

    @property
    def paths(self) -> list[Path]:
        return [c.path for c in sorted(self.files, key=lambda c: c.role or "")[::-1]]  # G before D

    def to_json(self) -> dict[str, Any]:
        return {
            "paths": [str(p) for p in self.paths],
            "ok": self.ok,
            "reason": self.reason,
            "counters": self.head.describe(),
        }


@dataclass
class TrainerPick:
    """The file a trainer's own pick rule takes in one folder (``path`` None: no name matches, it starts from
    scratch), whether ckpttool can read it (``ok``, ``reason``) and the names tied with it."""

    folder: Path
    trainer: str
    rule: str
    path: Path | None
    ok: bool
    reason: str | None = None
    ties: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "trainer": self.trainer,
            "rule": self.rule,
            "path": str(self.path) if self.path else None,
            "ok": self.ok,
            "reason": self.reason,
            "ties": self.ties,
        }


@dataclass
class LatestResult:
    run_dir: str
    chosen: Unit | None
    units: list[Unit]
    candidates: list[Candidate]
    warnings: list[str] = field(default_factory=list)
    trainer_picks: list[TrainerPick] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # why the trainer's own resume will fail

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "ckpttool.latest/1",
            "run_dir": self.run_dir,
            "chosen": [str(p) for p in self.chosen.paths] if self.chosen else None,
            "chosen_counters": self.chosen.head.describe() if self.chosen else None,
            "skipped": [{"path": str(c.path), "reason": c.reason} for c in self.candidates if not c.ok]
            + [{"paths": [str(p) for p in u.paths], "reason": u.reason} for u in self.units if not u.ok],
            "units": [u.to_json() for u in self.units],
            "warnings": self.warnings,
            "trainer_picks": [p.to_json() for p in self.trainer_picks],
            "failures": self.failures,
        }


def read_candidate(path: Path, allow: frozenset[str] = frozenset()) -> Candidate:
    """What ``path`` is to a resume: its role and tag from the name, its counters from its content. An
    unreadable, unsafe or unverified file (unless its globals are in ``allow``) is kept with the reason and is
    never chosen, kept by rule, or deleted."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    m = ROLE.match(stem)
    role, tag = (m.group(1), m.group(2)) if m else (None, stem)
    st = path.stat()
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) if path.is_dir() else st.st_size
    cand = Candidate(path, role, tag, bool(latest_names().search(tag)), st.st_mtime, size)
    try:
        ckpt = open_checkpoint(path)
    except CkptError as exc:
        cand.ok, cand.reason = False, f"{exc.kind}: {exc.message.split(': ', 1)[-1]}"
        return cand
    blocking = ckpt.safety.blocking(allow)
    if blocking:
        names = ", ".join(u.name for u in blocking[:3])
        cand.ok, cand.reason = False, f"unverified: it names {names} (pass --allow-global to trust it)"
        return cand
    layout = detect_layout(ckpt)
    cand.checkpoint, cand.layout = ckpt, layout
    cand.profile = layout.profile
    cand.trainer = layout.trainer
    cand.epoch = counter_value(ckpt, layout, "epoch") if "epoch" not in layout.counter_parse else None
    cand.step = counter_value(ckpt, layout, "step") if "step" not in layout.counter_parse else None
    with StorageReader() as reader:
        steps = []
        for opt_path in layout.optimizers:
            opt = get_path(ckpt.root, opt_path)
            if not is_optimizer(opt):
                continue
            for entry in list((opt.get("state") or {}).values())[:1]:  # one entry says how far Adam went
                s = entry.get("step") if isinstance(entry, dict) else None
                if isinstance(s, TensorInfo):
                    try:
                        s = reader.scalar(s)
                    except (OSError, ValueError, KeyError, CkptError):
                        s = None
                if isinstance(s, int | float):
                    steps.append(float(s))
        cand.adam_step = max(steps) if steps else None
    if cand.epoch is None and cand.step is None and cand.adam_step is None and not layout.networks:
        cand.ok, cand.reason = False, "no network weights or counters: not a training checkpoint"
    return cand


def scan(run_dir: str | os.PathLike[str], allow: frozenset[str] = frozenset()) -> list[Candidate]:
    root = Path(run_dir)
    if not root.exists():
        raise InputNotFound(f"{root}: no such run directory")
    if root.is_file():
        return [read_candidate(root, allow)]
    from ckpttool.formats import sniff_directory

    if sniff_directory(root):
        return [read_candidate(root, allow)]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < MAX_DEPTH else []
        for d in list(
            dirnames
        ):  # a checkpoint that is a directory (accelerate, sharded, DCP) is one candidate
            if sniff_directory(Path(dirpath) / d):
                found.append(read_candidate(Path(dirpath) / d, allow))
                dirnames.remove(d)
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith(file_suffixes()):
                continue  # hidden files include ckpttool's own in-flight temporaries
            found.append(read_candidate(Path(dirpath) / name, allow))
    return found


def _units(cands: list[Candidate]) -> list[Unit]:
    units: list[Unit] = []
    by_dir: dict[Path, list[Candidate]] = {}
    for c in cands:
        by_dir.setdefault(c.path.parent, []).append(c)
    for folder_cands in by_dir.values():
        has_d = any(c.role == "D" for c in folder_cands)
        gs = {c.tag: c for c in folder_cands if c.role == "G"}
        ds = {c.tag: c for c in folder_cands if c.role == "D"}
        for tag, g in gs.items():
            d = ds.get(tag)
            if d is None:
                unit = Unit([g], g.ok, g.reason)
                if has_d and g.ok:
                    unit.ok, unit.reason = False, f"{g.path.name} has no D file with the same name"
                units.append(unit)
                continue
            unit = Unit([g, d])
            bad = next((c for c in (g, d) if not c.ok), None)
            if bad is not None:
                unit.ok, unit.reason = False, f"{bad.path.name} is unreadable ({bad.reason})"
            elif (g.epoch, g.step) != (d.epoch, d.step) or (
                g.adam_step is not None and d.adam_step is not None and g.adam_step != d.adam_step
            ):
                unit.ok, unit.reason = (
                    False,
                    f"G and D come from different saves (G: {g.describe()}; D: {d.describe()})",
                )
            units.append(unit)
        for tag, d in ds.items():
            if tag not in gs:
                units.append(Unit([d], False, f"{d.path.name} has no G file with the same name"))
        for c in folder_cands:
            if c.role is None:
                units.append(Unit([c], c.ok, c.reason))
    return units


def latest(run_dir: str | os.PathLike[str], allow: frozenset[str] = frozenset()) -> LatestResult:
    """The newest complete, readable checkpoint (pair) in ``run_dir``, with every skipped file explained."""
    cands = scan(run_dir, allow)
    units = _units(cands)
    good = [u for u in units if u.ok]
    good.sort(key=lambda u: u.key, reverse=True)
    result = LatestResult(str(run_dir), good[0] if good else None, units, cands)
    _apply_trainer_picks(result, allow)
    chosen = {id(c) for c in result.chosen.files} if result.chosen else set()
    for c in cands:  # keep what was read only for the chosen files: a folder may hold hundreds
        if id(c) not in chosen:
            c.checkpoint = c.layout = None
    # Compare "latest" files with every readable numbered file of the same role, valid pair or not: the trainer
    # sorts by digits, whatever became of the pair.
    for u in [u for u in units if u.latest_style]:
        newer = [
            c
            for c in cands
            if c.ok
            and not c.latest_style
            and c.role == u.head.role
            and c.path.parent == u.head.path.parent
            and c.key[:3] > u.head.key[:3]
        ]
        if newer:
            top = max(newer, key=lambda c: c.key)
            result.warnings.append(
                f"{u.head.path.name} ({u.head.describe()}) is older than {top.path.name} ({top.describe()}): "
                "trainers that sort by the digits in the name would resume from the stale file; move it away"
            )
    if result.chosen is None and cands:
        result.warnings.append("no complete, readable checkpoint found")
    return result


def _apply_trainer_picks(result: LatestResult, allow: frozenset[str]) -> None:
    """Where the trainer that wrote a folder's files picks its resume file by name (a record's ``naming.pick``
    rule that :mod:`ckpttool.trainers.pick` implements), predict that pick from ``os.listdir`` as the trainer
    sees it: the chosen unit becomes the trainer's pick when ckpttool can read it; an unreadable pick is a
    failure (the trainer will load it and fail), ties and files the rule ignores are warnings."""
    folders: dict[Path, set[str]] = {}
    for c in result.candidates:
        if c.ok and c.trainer:
            folders.setdefault(c.path.parent, set()).add(c.trainer)
    for folder, trainers in sorted(folders.items()):
        for name in sorted(trainers):
            record = get_trainer(name)
            naming = record.naming if record else None
            if naming is None or naming.pick not in PICK_RULES or not naming.pattern:
                continue
            _trainer_pick(result, folder, name, naming.pick or "", naming.pattern, allow)


def _trainer_pick(
    result: LatestResult, folder: Path, trainer: str, rule: str, pattern: str, allow: frozenset[str]
) -> None:
    """The trainer's pick in ``folder`` (see :func:`_apply_trainer_picks`). When its first pick is unreadable,
    the resume fails (a failure); the pick it makes once that file is moved away becomes the chosen unit."""
    record = get_trainer(trainer)
    who = record.title if record else trainer
    listing = os.listdir(folder)
    broken: list[Candidate] = []
    while True:
        chosen = pick(rule, pattern, listing)
        if chosen is None:
            return
        if chosen.name is None:
            if not broken:
                result.trainer_picks.append(
                    TrainerPick(folder, trainer, rule, None, False, "no name matches")
                )
                result.warnings.append(
                    f"{folder}: no file name matches {pattern!r}: {who} finds nothing to resume from here and "
                    "starts training from scratch"
                )
            else:
                result.chosen = (
                    None if result.chosen and result.chosen.head.path.parent == folder else result.chosen
                )
            break
        path = folder / chosen.name
        cand = next((c for c in result.candidates if c.path == path), None)
        if cand is None:  # a name the scan leaves out (epoch=3-step=8.ckpt.bak): the trainer still takes it
            cand = read_candidate(path, allow)
            result.candidates.append(cand)
        if not broken:
            result.trainer_picks.append(
                TrainerPick(folder, trainer, rule, path, cand.ok, cand.reason, chosen.ties)
            )
        if chosen.ties:
            result.warnings.append(
                f"{', '.join([chosen.name, *chosen.ties])} tie on the numbers in their names: {who} takes the "
                f"one os.listdir returns first (here {chosen.name}); keep one of them"
            )
        if cand.ok:
            _choose_pick(result, folder, cand, who, rule, bool(broken))
            break
        broken.append(cand)
        listing = [n for n in listing if n != chosen.name]
    if broken:
        first = broken[0]
        after = (
            f"; with {', '.join(c.path.name for c in broken)} moved away it picks {result.chosen.head.path.name}"
            if result.chosen is not None and result.chosen.head.path.parent == folder
            else "; no readable file is left for it to pick"
        )
        result.failures.append(
            f"{who} resumes from {first.path} (the highest numbers in its name) but it is unreadable "
            f"({first.reason}): the resume fails{after}"
        )


def _choose_pick(
    result: LatestResult, folder: Path, cand: Candidate, who: str, rule: str, fallback: bool
) -> None:
    """Make the trainer's (readable) pick the chosen unit when the chosen one is in its folder."""
    if result.chosen is not None and result.chosen.head.path.parent != folder:
        return
    unit = next((u for u in result.units if cand in u.files), None) or Unit([cand])
    previous = result.chosen
    result.chosen = unit
    if previous is not None and previous.head is not cand and not fallback:
        result.warnings.append(
            f"{previous.head.path.name} ({previous.head.describe()}) looks newest by content and time, but {who} "
            f"picks by name ({rule}): it resumes from {cand.path.name} ({cand.describe()})"
        )


# --- pruning ------------------------------------------------------------------------------------------------
@dataclass
class PrunePlan:
    run_dir: str
    keep: list[Unit]
    delete: list[Unit]
    reasons: dict[str, str]  # path -> why kept

    def _kept(self, u: Unit) -> dict[str, Any]:
        return {"paths": [str(p) for p in u.paths], "why": self.reasons.get(str(u.head.path), "")}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "ckpttool.prune/1",
            "run_dir": self.run_dir,
            "delete": [str(p) for u in self.delete for p in u.paths],
            "keep": [self._kept(u) for u in self.keep],
            "bytes_freed": sum(c.size for u in self.delete for c in u.files),
        }


def plan_prune(
    run_dir: str | os.PathLike[str],
    keep: int = 5,
    every: int | None = None,
    pinned: Iterable[str] = (),
    allow: frozenset[str] = frozenset(),
) -> PrunePlan:
    """Keep the newest ``keep`` valid units, every unit whose step (or epoch) is a multiple of ``every``, the
    latest-style files and the trainer's own pick (the trainer resumes from them) and pinned files; everything
    else may go. The newest valid unit is never deleted. Unreadable files are left alone (they may be in-flight
    saves)."""
    if keep < 1:
        raise UsageError("--keep must be at least 1: the newest valid checkpoint is never deleted")
    res = latest(run_dir, allow)
    pins = {Path(p).resolve() for p in pinned}
    picked = {t.path for t in res.trainer_picks if t.path is not None} | (
        set(res.chosen.paths) if res.chosen else set()
    )
    valid = sorted((u for u in res.units if u.ok), key=lambda u: u.key, reverse=True)
    reasons: dict[str, str] = {}
    keep_units, delete_units = [], []
    for i, u in enumerate(valid):
        counter = u.head.step if u.head.step is not None else u.head.epoch
        why = None
        if i < keep:
            why = "newest valid" if i == 0 else f"among the newest {keep}"
        elif u.latest_style:
            why = "the file the trainer resumes from"
        elif any(c.path in picked for c in u.files):
            why = "the file the trainer resumes from (its own pick rule)"
        elif any(c.path.resolve() in pins for c in u.files):
            why = "pinned"
        elif every and isinstance(counter, int) and counter % every == 0:
            why = f"a multiple of {every}"
        elif not all(deletable(p) for p in u.paths):
            why = "a folder that holds other files (remove it yourself)"
        if why:
            reasons[str(u.head.path)] = why
            keep_units.append(u)
        else:
            delete_units.append(u)
    return PrunePlan(str(run_dir), keep_units, delete_units, reasons)


def apply_prune(plan: PrunePlan) -> list[str]:
    """Delete the planned files (and checkpoint folders holding only checkpoint files); returns what went."""
    import shutil

    removed = []
    for u in plan.delete:
        for p in u.paths:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
            removed.append(str(p))
    return removed


def deletable(path: Path) -> bool:
    """A file, or a checkpoint folder that holds nothing but checkpoint files (never a folder with anything
    else in it: prune deletes checkpoints, not what a user keeps beside them)."""
    if path.is_symlink() or not path.is_dir():
        return True
    from ckpttool.formats.accelerate import ACCEL_MODEL, ACCEL_OTHER
    from ckpttool.outputs import is_dcp_folder

    if is_dcp_folder(path):
        return True
    names = [p.name for p in path.iterdir()]
    return all((path / n).is_file() and (ACCEL_MODEL.match(n) or ACCEL_OTHER.match(n)) for n in names)
