"""Open any supported checkpoint as a :class:`~ckpttool.model.Checkpoint`; the only format dispatch.

Readers parse pickles, archive directories and headers only. They never import torch and never read tensor
bytes, which is why ``inspect`` on a 10 GB file costs what its pickle costs.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib

from ckpttool.errors import CkptError, CorruptCheckpoint, UnsupportedFormat
from ckpttool.model import Checkpoint
from ckpttool.readers import sniff as fmt
from ckpttool.readers.legacy import read_legacy
from ckpttool.readers.safetensors_file import read_safetensors
from ckpttool.readers.torch_zip import read_torch_zip

__all__ = ["open_checkpoint"]


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint's structure. Raises a CkptError subclass (never a bare exception) on bad input."""
    p = os.fspath(path)
    sniffed = fmt.sniff(p)
    try:
        if sniffed.format in (fmt.TORCH_ZIP, fmt.TAGGED_ZIP):
            return read_torch_zip(p, sniffed)
        if sniffed.format == fmt.LEGACY:
            return read_legacy(p, sniffed)
        if sniffed.format == fmt.SAFETENSORS:
            return read_safetensors(p, sniffed)
        if sniffed.format in (fmt.DIRECTORY, fmt.ACCELERATE, fmt.HF_SHARDED, fmt.DCP):
            from ckpttool.readers.directory import read_directory

            return read_directory(p)
    except CkptError:
        raise
    except (
        OSError,
        ValueError,
        LookupError,
        TypeError,
        EOFError,
        OverflowError,
        MemoryError,
        RecursionError,
        AttributeError,
        NotImplementedError,
        zipfile.BadZipFile,
        zlib.error,
        struct.error,
    ) as exc:
        # Damaged files find new ways to break a parser; none of them may escape as a traceback.
        raise CorruptCheckpoint(
            f"{p}: unreadable ({type(exc).__name__}: {exc}); use another copy", path=p
        ) from exc
    raise UnsupportedFormat(
        f"{p}: is a directory; pass a checkpoint file (run directories: `ckpttool latest`)", path=p
    )
