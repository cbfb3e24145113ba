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

QUARANTINE = "ckpttool-quarantine"  # ckpttool fix moves files here; scans never look inside
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
    trainer: str | None = None  # the trainer record whose file kind this is
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
class LatestResult:
    run_dir: str
    chosen: Unit | None
    units: list[Unit]
    candidates: list[Candidate]
    warnings: list[str] = field(default_factory=list)

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
        # the advice to use the previous checkpoint is the prediction's to give: in "save latest only" mode
        # there is none
        reason = exc.message.split(": ", 1)[-1].replace("; use the previous checkpoint", "")
        cand.ok, cand.reason = False, f"{exc.kind}: {reason}"
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


def _named_like_a_checkpoint(name: str) -> bool:
    """A file without a checkpoint suffix that a trainer record's naming pattern matches (tacotron2 writes
    ``checkpoint_5000`` with no extension)."""
    return any(r.naming.pattern and re.fullmatch(r.naming.pattern, name) for r in all_trainers())


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
        # hidden folders and ckpttool fix's quarantine (what it moved there is not to be resumed from)
        dirnames[:] = (
            sorted(d for d in dirnames if not d.startswith(".") and d != QUARANTINE)
            if depth < MAX_DEPTH
            else []
        )
        for d in list(
            dirnames
        ):  # a checkpoint that is a directory (accelerate, sharded, DCP) is one candidate
            if sniff_directory(Path(dirpath) / d):
                found.append(read_candidate(Path(dirpath) / d, allow))
                dirnames.remove(d)
        for name in sorted(filenames):
            if name.startswith(".") or not (name.endswith(file_suffixes()) or _named_like_a_checkpoint(name)):
                continue  # hidden files include ckpttool's own in-flight temporaries
            found.append(read_candidate(Path(dirpath) / name, allow))
    return found


def _loads_d(g: Candidate) -> bool:
    """Whether the trainer that wrote ``g`` loads a D beside it on resume (its record's ``loads.order``:
    GPT-SoVITS s2 loads D then G, s2_train.py:207-219, and falls back to the pretrained model when D is
    missing), so a G alone is not a state it can resume from."""
    record = get_trainer(g.trainer)
    return record is not None and record.loads is not None and "D" in record.loads.order


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
                if (has_d or _loads_d(g)) and g.ok:
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


# --- pruning ------------------------------------------------------------------------------------------------
@dataclass
class PrunePlan:
    run_dir: str
    keep: list[Unit]
    delete: list[Unit]
    reasons: dict[str, str]  # path -> why kept
    unit: str = "step"  # what --every counts: "name" (the number in the file names), "step" or "epoch"
    unit_note: str = ""  # the unit in words, for the dry run
    every: int | None = None

    def _kept(self, u: Unit) -> dict[str, Any]:
        return {"paths": [str(p) for p in u.paths], "why": self.reasons.get(str(u.head.path), "")}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "ckpttool.prune/1",
            "run_dir": self.run_dir,
            "unit": self.unit,
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
    latest-style files (the trainer resumes from them) and pinned files; everything else may go. The newest
    valid unit is never deleted. Unreadable files are left alone (they may be in-flight saves)."""
    if keep < 1:
        raise UsageError("--keep must be at least 1: the newest valid checkpoint is never deleted")
    res = latest(run_dir, allow)
    pins = {Path(p).resolve() for p in pinned}
    valid = sorted((u for u in res.units if u.ok), key=lambda u: u.key, reverse=True)
    unit, unit_note = counting_unit(valid)
    reasons: dict[str, str] = {}
    keep_units, delete_units = [], []
    for i, u in enumerate(valid):
        counter = unit_value(u, unit)
        why = None
        if i < keep:
            why = "newest valid" if i == 0 else f"among the newest {keep}"
        elif u.latest_style:
            why = "the file the trainer resumes from"
        elif any(c.path.resolve() in pins for c in u.files):
            why = "pinned"
        elif every and isinstance(counter, int) and counter % every == 0:
            why = f"{'number in the name' if unit == 'name' else unit} {counter}, a multiple of {every}"
        elif not all(deletable(p) for p in u.paths):
            why = "a folder that holds other files (remove it yourself)"
        if why:
            reasons[str(u.head.path)] = why
            keep_units.append(u)
        else:
            delete_units.append(u)
    return PrunePlan(str(run_dir), keep_units, delete_units, reasons, unit, unit_note, every)


def name_number(c: Candidate) -> int | None:
    """The number a file name carries (``G_4000.pth`` -> 4000); None for a latest-style or non-numeric name."""
    return int(c.tag) if c.tag.isdigit() and not c.latest_style else None


def unit_value(u: Unit, unit: str) -> int | None:
    """The counter of ``u`` in ``unit`` (:func:`counting_unit`)."""
    if unit == "name":
        value = name_number(u.head)
    else:  # a file without a step falls back on its epoch
        value = u.head.step if unit == "step" and u.head.step is not None else u.head.epoch
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def counting_unit(units: list[Unit]) -> tuple[str, str]:
    """What ``--every`` counts, decided from the names against the counters stored in the files: the number in
    the file names when it is neither the stored step nor the stored epoch (GPT-SoVITS s2 names ``G_4000.pth``
    by global step but stores the epoch, s2_train.py:523), else the stored step, else the stored epoch. Returns
    (unit, the unit in words)."""
    named = [(n, u.head) for u in units if (n := name_number(u.head)) is not None]
    if named and not all(n == c.step for n, c in named) and not all(n == c.epoch for n, c in named):
        n, c = named[0]
        stored = c.describe() if c.epoch is not None or c.step is not None else "no counter"
        return "name", (
            f"the number in the file names ({c.path.name} -> {n}; the file stores {stored}), as the trainer "
            "names its saves"
        )
    if any(u.head.step is not None for u in units):
        return "step", "the step stored in each file" + (" (the file names use it too)" if named else "")
    return "epoch", "the epoch stored in each file" + (" (the file names use it too)" if named else "")


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
    from ckpttool.formats.hf_trainer import TRAINER_FILES, TRAINER_STATE
    from ckpttool.outputs import is_dcp_folder

    if is_dcp_folder(path):
        return True
    names = [p.name for p in path.iterdir()]
    if (path / TRAINER_STATE).is_file():  # transformers' own rotation deletes such a folder whole
        return all((path / n).is_file() and TRAINER_FILES.match(n) for n in names)
    return all((path / n).is_file() and (ACCEL_MODEL.match(n) or ACCEL_OTHER.match(n)) for n in names)
