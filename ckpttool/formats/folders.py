"""Shared helpers of the folder formats (accelerate, Hugging Face sharded): each member file is read through
the registry like any checkpoint, then re-keyed under the folder's own layout.

A folder becomes one ``Checkpoint`` whose tree looks like a single-file bundle (``model``, ``optimizer``,
``scheduler``, ``scaler``, ``rng``, ``step``), with every tensor still pointing at its own file, so inspect,
diff, latest and check treat it like any other checkpoint.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ckpttool.model import Checkpoint, TensorInfo, map_tree


def rebase(obj: Any, prefix: str, tensors: list[TensorInfo]) -> tuple[Any, list[TensorInfo]]:
    """Re-key a member file's tree under ``prefix`` so tensor paths are unique across the folder."""
    new = {id(t): replace(t, path=f"{prefix}.{t.path}" if t.path else prefix) for t in tensors}
    root = map_tree(obj, lambda x, _: new.get(id(x), x) if isinstance(x, TensorInfo) else x)
    return root, list(new.values())


def read_member(path: Path) -> Checkpoint:
    """One member file, read by whichever format it is (never trusting its name)."""
    from ckpttool.formats import open_checkpoint

    return open_checkpoint(path)


def total_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
