"""The user's trainer checkout (``--trainer-root``): finding it, and putting it on ``sys.path`` for a recipe only.

A GPT-SoVITS checkout is a folder holding ``GPT_SoVITS/s2_train.py`` (or ``s1_train.py``,
``s2_train_v3_lora.py``). Upstream runs its trainers from the checkout root as ``python -s GPT_SoVITS/s2_train.py``
(webui.py:542-544, 636), so its modules import each other both as top-level names (``module.models``,
``AR.models...``, ``utils``; sys.path[0] is the script's folder ``GPT_SoVITS/``) and as
``GPT_SoVITS.f5_tts...`` (GPT_SoVITS/f5_tts/model/__init__.py:1, resolved from the checkout root). A model run
therefore needs both folders on ``sys.path``: :func:`on_path` adds them for the duration of the run, and
afterwards removes them and forgets every module imported from the checkout, so nothing leaks into the rest of
the process (or into a second run with another checkout).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ckpttool.errors import UsageError

# The trainer scripts whose presence makes a folder a GPT-SoVITS checkout (RVC-Boss/GPT-SoVITS@48b1a01).
MARKERS = ("GPT_SoVITS/s2_train.py", "GPT_SoVITS/s1_train.py", "GPT_SoVITS/s2_train_v3_lora.py")
PACKAGE_DIR = "GPT_SoVITS"


def is_trainer_root(folder: Path) -> bool:
    """True when ``folder`` holds one of the GPT-SoVITS trainer scripts (:data:`MARKERS`)."""
    return any((folder / m).is_file() for m in MARKERS)


def find_trainer_root(start: Path) -> Path | None:
    """The GPT-SoVITS checkout that ``start`` (typically the working directory) is in: ``start`` or its nearest
    parent holding ``GPT_SoVITS/s2_train.py`` (or the s1 / v3 LoRA trainer); None when there is none."""
    here = start.resolve()
    for folder in (here, *here.parents):
        if is_trainer_root(folder):
            return folder
    return None


def check_trainer_root(path: str | Path) -> Path:
    """``--trainer-root PATH``, resolved. Raises UsageError when it is not a folder or holds none of the
    GPT-SoVITS trainer scripts (a path to ``GPT_SoVITS/`` itself is accepted as its parent)."""
    p = Path(path).expanduser().resolve()
    if not p.is_dir():
        raise UsageError(f"--trainer-root {path}: not a folder")
    if p.name == PACKAGE_DIR and is_trainer_root(p.parent):
        return p.parent
    if not is_trainer_root(p):
        raise UsageError(
            f"--trainer-root {path}: not a GPT-SoVITS checkout (no {' or '.join(MARKERS)} in it); "
            "give the folder that holds GPT_SoVITS/"
        )
    return p


def import_folders(root: Path) -> list[Path]:
    """The folders a model run puts on ``sys.path`` for ``root``: ``root/GPT_SoVITS`` then ``root``."""
    return [root / PACKAGE_DIR, root]


@contextmanager
def on_path(root: Path | None) -> Iterator[None]:
    """Put :func:`import_folders` of ``root`` first on ``sys.path`` for the block; afterwards restore
    ``sys.path`` and drop from ``sys.modules`` every module whose file lies in ``root``. No-op for None."""
    if root is None:
        yield
        return
    folders = [str(f) for f in import_folders(root)]
    saved = list(sys.path)
    before = set(sys.modules)
    sys.path[:0] = folders
    try:
        yield
    finally:
        sys.path[:] = saved
        base = str(root.resolve())
        drop = [
            name for name in list(sys.modules) if name not in before and _lies_in(sys.modules[name], base)
        ]
        for name in drop:
            sys.modules.pop(name, None)


def _lies_in(module: object, base: str) -> bool:
    """Whether a module's file (or a package's folders) lies under ``base``."""
    where = getattr(module, "__file__", None) or ""
    try:
        paths = [str(p) for p in getattr(module, "__path__", None) or []]
    except (KeyError, AttributeError, TypeError):  # a namespace package whose parent is already gone
        paths = []
    return where.startswith(base) or any(p.startswith(base) for p in paths)
