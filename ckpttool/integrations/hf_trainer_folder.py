"""A Hugging Face ``Trainer`` checkpoint folder (``<output_dir>/checkpoint-N``), member by member.

What ``Trainer._save_checkpoint`` writes (transformers 5.24.0, src/transformers/trainer.py:3363-3425, names at
:245-250): the model (``save_model``, :3377: ``model.safetensors``, or ``pytorch_model.bin``, or a sharded
``*.index.json``; ``adapter_model.*`` for PEFT) and ``config.json``; unless ``save_only_model``,
``optimizer.pt`` and ``scheduler.pt`` (:3400), ``scaler.pt`` with fp16 (:3401), ``rng_state[_<rank>].pth``
(:3403); and ``trainer_state.json`` (:3417). On resume, ``_load_optimizer_and_scheduler`` loads the optimizer
and scheduler only when *both* files exist (:3931) and ``_load_rng_state`` only logs when ``rng_state.pth`` is
missing (:3865-3870), so a folder that lost ``optimizer.pt`` resumes silently with a fresh optimizer; a missing
``trainer_state.json`` (written last: a cut save) makes ``train`` raise FileNotFoundError (:1565). The file names
are :mod:`ckpttool.formats.hf_trainer`'s, which reads the same folder as one checkpoint for ``inspect``/``check``.

Every member is read with ckpttool's readers (structure only: no torch, no tensor bytes), so a truncated or
unsafe file is found before ``torch.load`` sees it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError
from ckpttool.formats.hf_trainer import CHECKPOINT_DIR, TRAINER_STATE, WEIGHTS
from ckpttool.formats.hf_trainer import INDEXES as WEIGHT_INDEXES
from ckpttool.resume.static import Check

OPTIMIZERS = ("optimizer.pt", "optimizer.bin")  # trainer.py:247, :249
SCHEDULER = "scheduler.pt"


@dataclass
class TrainerFolderReport:
    """Each member's check (``weights``, ``optimizer``, ``scheduler``, ``rng``, ``trainer-state``, ``stale``)
    and the ``global_step`` trainer_state.json records (None when unreadable)."""

    path: str
    global_step: int | None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed."""
        return not any(c.status == "fail" for c in self.checks)

    @property
    def problems(self) -> list[str]:
        """The failed checks' messages."""
        return [c.message for c in self.checks if c.status == "fail"]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "global_step": self.global_step,
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
        }


def _read(path: Path) -> tuple[Any, str | None]:
    """(root of the parsed file, None), or (None, why it does not read)."""
    from ckpttool.formats import open_checkpoint

    try:
        return open_checkpoint(path).root, None
    except CkptError as exc:
        return None, f"{exc.kind}: {exc.message.removeprefix(f'{path}: ')}"


def _weights(folder: Path) -> Check:
    names = [n for n in WEIGHTS if (folder / n).is_file()]
    if any((folder / n).is_file() for n in WEIGHT_INDEXES):
        names = ["."]  # the sharded folder, read as one (hf-sharded-dir)
    if not names:
        return Check("weights", "fail", f"{folder}: no model weights ({', '.join(WEIGHTS[:2])} or an index)")
    for name in names:
        _, why = _read(folder / name)
        if why:
            return Check("weights", "fail", f"{folder / name if name != '.' else folder}: {why}")
    return Check("weights", "pass", f"{folder}: model weights read ({', '.join(names)})")


def _optimizer(folder: Path) -> Check:
    name = next((n for n in OPTIMIZERS if (folder / n).is_file()), None)
    if name is None:
        return Check(
            "optimizer", "fail",
            f"{folder}: no optimizer.pt: transformers would resume with a fresh optimizer and scheduler, "
            "without a word (trainer.py:3931)",
        )  # fmt: skip
    root, why = _read(folder / name)
    if why:
        return Check("optimizer", "fail", f"{folder / name}: {why}")
    if not (isinstance(root, dict) and "state" in root and "param_groups" in root):
        return Check(
            "optimizer", "fail", f"{folder / name}: not an optimizer state dict (state, param_groups)"
        )
    return Check("optimizer", "pass", f"{folder / name}: {len(root['state'])} parameter state(s)")


def _scheduler(folder: Path) -> Check:
    if not (folder / SCHEDULER).is_file():
        return Check(
            "scheduler", "fail",
            f"{folder}: no scheduler.pt: transformers would skip the optimizer and scheduler states both "
            "(trainer.py:3931)",
        )  # fmt: skip
    _, why = _read(folder / SCHEDULER)
    if why:
        return Check("scheduler", "fail", f"{folder / SCHEDULER}: {why}")
    return Check("scheduler", "pass", f"{folder / SCHEDULER}: read")


def _rng(folder: Path) -> Check:
    files = sorted(p for p in folder.glob("rng_state*.pth") if p.is_file())
    if not files:
        return Check("rng", "warn", f"{folder}: no rng_state.pth: the resumed run draws other random numbers")
    for p in files:
        _, why = _read(p)
        if why:
            return Check("rng", "fail", f"{p}: {why}")
    return Check("rng", "pass", f"{folder}: {len(files)} RNG state file(s) read")


def _trainer_state(folder: Path) -> tuple[Check, int | None]:
    path = folder / TRAINER_STATE
    if not path.is_file():
        return Check(
            "trainer-state",
            "fail",
            f"{folder}: no {TRAINER_STATE}, which the Trainer writes last: the save was cut short and "
            "transformers raises FileNotFoundError resuming from it (trainer.py:1565)",
        ), None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        step = state["global_step"]
        if not isinstance(step, int):
            raise TypeError("global_step is not an integer")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Check("trainer-state", "fail", f"{path}: unreadable ({type(exc).__name__}: {exc})"), None
    m = CHECKPOINT_DIR.match(folder.name)
    if m and int(m.group(1)) != step:
        return Check(
            "trainer-state", "warn", f"{path}: global_step {step}, but the folder is named {folder.name}"
        ), step
    return Check("trainer-state", "pass", f"{path}: global_step {step}"), step


def verify_trainer_folder(
    path: str | os.PathLike[str], *, training_state: bool = True
) -> TrainerFolderReport:
    """Check a ``checkpoint-N`` folder: model weights, ``trainer_state.json`` and, with ``training_state``
    (False for ``save_only_model``), ``optimizer.pt``, ``scheduler.pt`` and ``rng_state*.pth``. A folder that is
    not there is one failed check."""
    folder = Path(path)
    if not folder.is_dir():
        return TrainerFolderReport(str(folder), None, [Check("folder", "fail", f"{folder}: no such folder")])
    state_check, step = _trainer_state(folder)
    checks = [_weights(folder)]
    if training_state:
        checks += [_optimizer(folder), _scheduler(folder), _rng(folder)]
    checks.append(state_check)
    return TrainerFolderReport(str(folder), step, checks)


def checkpoint_folders(output_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """The ``checkpoint-N`` folders of ``output_dir`` as (N, path), highest N first (the order
    ``get_last_checkpoint`` picks by: transformers/trainer_utils.py:270-279)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_DIR.match(p.name))
    ]
    return sorted(found, key=lambda item: item[0], reverse=True)


def newer_complete_folder(report: TrainerFolderReport) -> Path | None:
    """The newest ``checkpoint-M`` beside ``report.path`` that is complete and ahead of it (M greater than the
    folder's global_step): resuming from ``report.path`` would throw that training away."""
    folder = Path(report.path)
    mine = report.global_step
    if mine is None:
        return None
    for number, other in checkpoint_folders(folder.parent):
        if number <= mine or other.resolve() == folder.resolve():
            continue
        if verify_trainer_folder(other).ok:
            return other
    return None
