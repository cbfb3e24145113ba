"""Open any supported checkpoint as a :class:`~ckpttool.model.Checkpoint`: sniff by content, then read.

Readers parse pickles, archive directories and headers only. They never import torch and never read tensor
bytes, which is why ``inspect`` on a 10 GB file costs what its pickle costs. The formats themselves are plug-ins
listed in :mod:`ckpttool.formats.registry`.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib

from ckpttool.errors import CkptError, CorruptCheckpoint, TruncatedCheckpoint, UnsupportedFormat
from ckpttool.formats.base import Probe, Sniffed, probe
from ckpttool.model import Checkpoint

__all__ = ["is_checkpoint_file", "open_checkpoint", "sniff", "sniff_directory"]

# Errors a damaged file can raise inside a parser; none of them may escape as a traceback.
PARSE_ERRORS = (
    OSError, ValueError, LookupError, TypeError, EOFError, OverflowError, MemoryError, RecursionError,
    AttributeError, NotImplementedError, zipfile.BadZipFile, zlib.error, struct.error,
)  # fmt: skip


def sniff(path: str | os.PathLike[str]) -> Sniffed:
    """Which format ``path`` is, by content. Raises a CkptError for anything that cannot be a checkpoint."""
    from ckpttool.formats.registry import FORMATS

    p = probe(os.fspath(path))
    if not p.is_dir and p.size == 0:
        raise TruncatedCheckpoint(
            f"{p.path}: file is empty (0 bytes); the save never wrote anything", path=p.path
        )
    for fmt in FORMATS:
        if fmt.directory == p.is_dir and (found := fmt.sniff(p)) is not None:
            return found
    if p.is_dir:
        raise UnsupportedFormat(
            f"{p.path}: is a directory but not a checkpoint ckpttool knows (accelerate save_state, Hugging Face "
            "sharded *.index.json, DCP .metadata); for a run directory use `ckpttool latest`",
            path=p.path,
        )
    for fmt in FORMATS:
        if (error := fmt.diagnose(p)) is not None:
            raise error
    raise _unknown(p)


def _unknown(p: Probe) -> CkptError:
    if len(p.head) >= 262 and p.head[257:262] == b"ustar":
        return UnsupportedFormat(
            f"{p.path}: this is the pre-0.4 torch tar format, which ckpttool does not read; "
            "re-save it with a current torch.save",
            path=p.path,
        )
    return UnsupportedFormat(
        f"{p.path}: not a checkpoint format ckpttool knows (torch zip, legacy torch, GPT-SoVITS tagged zip, "
        "safetensors, TorchScript); if it is a checkpoint, report its first bytes: " + p.head[:8].hex(),
        path=p.path,
    )


def is_checkpoint_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a checkpoint file of a format ckpttool knows, damaged or not (what ``--force`` may
    replace); False for anything else (a config, a text file, a folder)."""
    try:
        found = sniff(path)
    except (TruncatedCheckpoint, CorruptCheckpoint):
        return True
    except CkptError:
        return False
    from ckpttool.formats.registry import get_format

    return not get_format(found.format).directory


def sniff_directory(path: str | os.PathLike[str]) -> str | None:
    """Which kind of checkpoint folder ``path`` is (a format name), or None when it is not one."""
    from ckpttool.formats.registry import FORMATS

    try:
        p = probe(os.fspath(path))
    except CkptError:
        return None
    if not p.is_dir:
        return None
    return next(
        (str(found.format) for f in FORMATS if f.directory and (found := f.sniff(p)) is not None), None
    )


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint's structure. Raises a CkptError subclass (never a bare exception) on bad input."""
    from ckpttool.formats.registry import get_format

    p = os.fspath(path)
    sniffed = sniff(p)
    try:
        return get_format(sniffed.format).read(p, sniffed)
    except CkptError:
        raise
    except PARSE_ERRORS as exc:
        raise CorruptCheckpoint(
            f"{p}: unreadable ({type(exc).__name__}: {exc}); use another copy", path=p
        ) from exc
