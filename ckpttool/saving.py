"""Saving from a training script without ever leaving a half-written checkpoint under the final name.

A crash, a full disk or a SIGKILL during ``torch.save(obj, path)`` leaves a truncated ``path`` — and GPT-SoVITS
then silently restarts from the pretrained weights. Here the bytes go to a hidden temporary file in the same
directory, are flushed and fsynced, parsed back (zip directory and pickle, no tensor bytes), and only then
renamed over ``path`` (an atomic replace on POSIX and Windows); the directory is fsynced so the rename survives a
power cut. If anything fails, ``path`` still holds the previous checkpoint.

    from ckpttool import save_checkpoint, latest_checkpoint, prune_checkpoints

    save_checkpoint({"model": net_g.state_dict(), ...}, f"logs/exp/G_{step}.pth")
    found = latest_checkpoint("logs/exp")          # newest complete, aligned G/D pair
    prune_checkpoints("logs/exp", keep=5, every=10000, dry_run=False)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ckpttool.formats import open_checkpoint
from ckpttool.outputs import atomic_write
from ckpttool.runs import LatestResult, PrunePlan, apply_prune, latest, plan_prune


def save_checkpoint(
    obj: Any, path: str | os.PathLike[str], *, verify: bool = True, **torch_save_kwargs: Any
) -> Path:
    """``torch.save(obj, path)``, atomically; returns the path. ``verify`` re-reads the file's structure first."""
    import torch

    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a directory")

    def write(fh: Any) -> None:
        torch.save(obj, fh, **torch_save_kwargs)

    def check(tmp: Path) -> None:
        if verify:
            open_checkpoint(tmp)

    atomic_write(target, write, check)
    return target


def latest_checkpoint(run_dir: str | os.PathLike[str], allow: frozenset[str] = frozenset()) -> LatestResult:
    """The newest complete, readable checkpoint (G/D pair) of a run; ``.chosen.paths`` are the files."""
    return latest(run_dir, allow)


def prune_checkpoints(
    run_dir: str | os.PathLike[str],
    keep: int = 5,
    every: int | None = None,
    pinned: tuple[str, ...] = (),
    dry_run: bool = True,
    allow: frozenset[str] = frozenset(),
) -> PrunePlan:
    """Delete all but the newest ``keep`` valid checkpoints (plus multiples of ``every`` and pinned files).
    Dry run by default: returns the plan; pass ``dry_run=False`` to delete."""
    plan = plan_prune(run_dir, keep, every, pinned, allow)
    if not dry_run:
        apply_prune(plan)
    return plan
