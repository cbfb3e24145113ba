"""``CkptToolCallback`` for the Hugging Face ``transformers.Trainer``, and ``checked_resume``.

    from ckpttool.integrations.transformers import CkptToolCallback, checked_resume

    trainer = Trainer(model, args, train_dataset=ds, callbacks=[CkptToolCallback()])
    trainer.train(resume_from_checkpoint=checked_resume("out/checkpoint-500"))   # refused before loading

When a callback runs (transformers 5.24.0, src/transformers/trainer.py): ``Trainer.train`` loads the model from
``resume_from_checkpoint`` (:1564); ``_inner_training_loop`` then calls ``_init_training_state`` (:1612; the
trainer state at :1697) and ``_prepare_for_training`` (:1615; the optimizer and scheduler at :1817), and only
then fires ``on_train_begin`` (:1653). No callback event receives the ``train()`` argument. So:

- :func:`checked_resume` is the gate that runs *before* anything is loaded: pass its result to
  ``trainer.train(resume_from_checkpoint=...)`` (it also resolves ``True`` like ``get_last_checkpoint``, but
  refuses a newest folder that is broken).
- ``on_init_end`` (end of ``Trainer.__init__``, :642) checks ``TrainingArguments.resume_from_checkpoint`` when
  the script sets it there (the example scripts do), also before anything is loaded.
- ``on_train_begin`` checks the folder the run resumed from, after transformers loaded it but before the first
  step: ``args.resume_from_checkpoint``, else ``<output_dir>/checkpoint-<global_step>``. It catches what
  transformers skips without a word (a missing ``optimizer.pt`` or ``scheduler.pt``: :3931), not what makes
  its own loading fail first (a truncated ``model.safetensors`` fails at :1564 with transformers' error).
- ``on_save`` fires right after ``_save_checkpoint`` wrote ``checkpoint-<global_step>`` (:2285-2286): every
  member is read back; a folder that does not raises CorruptCheckpoint (or warns: ``raise_on_bad_save``).
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import Any

from ckpttool.errors import CorruptCheckpoint
from ckpttool.integrations.gate import refuse
from ckpttool.integrations.hf_trainer_folder import (
    TrainerFolderReport,
    checkpoint_folders,
    newer_complete_folder,
    verify_trainer_folder,
)

_TrainerCallback: Any = importlib.import_module("transformers").TrainerCallback


def check_resume_folder(path: str | os.PathLike[str], *, allow_stale: bool = False) -> TrainerFolderReport:
    """The gate on one ``checkpoint-N`` folder: every member reads, the training state is complete and,
    unless ``allow_stale``, no newer complete ``checkpoint-M`` lies beside it. Returns the report; raises
    ResumeRefused listing every problem."""
    report = verify_trainer_folder(path)
    problems = report.problems
    if report.ok and not allow_stale and (newer := newer_complete_folder(report)) is not None:
        problems = [
            f"it is stale: {newer} beside it is newer and complete; resume from that one, or pass "
            "allow_stale=True"
        ]
    if problems:
        raise refuse(os.fspath(path), problems, report)
    return report


def checked_resume(
    checkpoint: str | os.PathLike[str] | bool, *, output_dir: str | os.PathLike[str] | None = None,
    allow_stale: bool = False,
) -> str:  # fmt: skip
    """The folder to pass to ``trainer.train(resume_from_checkpoint=...)``, checked before transformers loads
    it. ``checkpoint``: a ``checkpoint-N`` folder, or ``True`` for the one transformers' ``get_last_checkpoint``
    would pick in ``output_dir`` (the highest N). Raises ResumeRefused when it is broken or stale (see
    :func:`check_resume_folder`), or when ``True`` finds no checkpoint folder."""
    if checkpoint is True:
        if output_dir is None:
            raise refuse("True", ["give output_dir to resolve resume_from_checkpoint=True"])
        folders = checkpoint_folders(output_dir)
        if not folders:
            raise refuse(os.fspath(output_dir), ["no checkpoint-N folder in it"])
        checkpoint = folders[0][1]
    if checkpoint is False:
        raise refuse("False", ["no checkpoint given"])
    check_resume_folder(checkpoint, allow_stale=allow_stale)
    return os.fspath(checkpoint)


class CkptToolCallback(_TrainerCallback):
    """Refuse a resume from a broken or stale ``checkpoint-N`` folder, and read back every folder the Trainer
    saves (``save_steps``). ``allow_stale``: resume even when a newer complete folder lies beside it.
    ``raise_on_bad_save``: a saved folder that does not read back raises CorruptCheckpoint (default), else
    warns. ``reports`` holds the TrainerFolderReport of each folder checked, in order."""

    def __init__(self, *, allow_stale: bool = False, raise_on_bad_save: bool = True) -> None:
        self.allow_stale = allow_stale
        self.raise_on_bad_save = raise_on_bad_save
        self.reports: list[TrainerFolderReport] = []

    def _gate(self, path: str | os.PathLike[str]) -> None:
        self.reports.append(check_resume_folder(path, allow_stale=self.allow_stale))

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Before anything is loaded: a ``resume_from_checkpoint`` set in the TrainingArguments."""
        target = getattr(args, "resume_from_checkpoint", None)
        if isinstance(target, str | os.PathLike) and target and state.is_world_process_zero:
            self._gate(target)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """After transformers loaded a resume, before the first step: the folder it resumed from."""
        if not state.global_step or not state.is_world_process_zero:
            return  # a fresh start
        target = getattr(args, "resume_from_checkpoint", None)
        folder = Path(target) if target else Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if any(Path(r.path) == folder for r in self.reports):
            return  # already checked in on_init_end
        if not folder.is_dir():
            warnings.warn(
                f"ckpttool: resumed at step {state.global_step}, but {folder} is not there to check; pass the "
                "folder through checked_resume() before trainer.train()",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        self._gate(folder)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Right after ``_save_checkpoint``: read back ``<output_dir>/checkpoint-<global_step>``."""
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        report = verify_trainer_folder(folder, training_state=not getattr(args, "save_only_model", False))
        self.reports.append(report)
        if report.ok:
            return
        message = f"{folder}: the checkpoint just saved does not read back: {'; '.join(report.problems)}"
        if self.raise_on_bad_save:
            raise CorruptCheckpoint(message, path=str(folder))
        warnings.warn(message, RuntimeWarning, stacklevel=2)
