"""The format plug-in protocol: what one checkpoint format module provides, and what the registry asks of it.

A format recognises itself from a :class:`Probe` (the first bytes of a file, or the names in a folder), reads a
file's structure into a :class:`~ckpttool.model.Checkpoint` without torch and without tensor bytes, serves the
bytes of its own kind of :class:`~ckpttool.model.StorageRef` on demand, and may write checkpoints. Adding a
format is one module that defines a :class:`Format` subclass plus one line in ``ckpttool/formats/registry.py``
(docs/formats.md walks through an example).
"""

from __future__ import annotations

import os
import stat
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from ckpttool.errors import CkptError, InputNotFound, UnsupportedFormat
from ckpttool.model import Checkpoint, DeferredValue, RangeStorage, StorageRef, TensorInfo

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

HEAD_BYTES = (
    512  # enough for every magic number, a tar header's "ustar" at 257, and an HTML or LFS first line
)


@dataclass(frozen=True)
class Probe:
    """What sniffing looks at: a file's size and first bytes, or a folder's file names."""

    path: str
    size: int
    head: bytes = b""
    names: frozenset[str] = frozenset()  # for folders: the regular files directly inside
    is_dir: bool = False


@dataclass(frozen=True)
class Sniffed:
    """A format's claim on a path, with what it learned while sniffing (e.g. a GPT-SoVITS header tag)."""

    format: str
    size: int
    tag: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Handles:
    """Open files and archives, cached for one batch of reads and closed together (a ``StorageReader``)."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._cache: dict[tuple[str, str], Any] = {}

    def get(self, kind: str, path: str, opener: Callable[[], Any]) -> Any:
        key = (kind, path)
        handle = self._cache.get(key)
        if handle is None:
            handle = self._stack.enter_context(opener())
            self._cache[key] = handle
        return handle

    def close(self) -> None:
        self._stack.close()
        self._cache.clear()


class Format:
    """Base class of a format plug-in. Subclasses set the class attributes and override what they support."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()  # file-name hints for scanning run folders; never the decision
    directory: ClassVar[bool] = False
    storage: ClassVar[type[StorageRef] | None] = None  # the storage kind whose bytes this format serves
    target: ClassVar[str | None] = None  # the `convert --to` name, when the format can be written
    byte_access: ClassVar[bool] = True  # False: its storages are read as whole tensors only (load_tensor)

    def sniff(self, probe: Probe) -> Sniffed | None:
        """Claim ``probe`` (return a Sniffed) or pass (None). May raise a CkptError for a damaged file of this
        format (a cut-short header): nothing else would read it better."""
        return None

    def diagnose(self, probe: Probe) -> CkptError | None:
        """For a file no format claimed: the error to report if it looks like a damaged file of this format."""
        return None

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        """The structure: pickles, headers and archive directories only. No torch import, no tensor bytes."""
        raise NotImplementedError

    def read_bytes(self, handles: Handles, ref: StorageRef, start: int, length: int) -> bytes:
        """``length`` bytes of storage ``ref`` from byte ``start``."""
        raise NotImplementedError

    def load_tensor(self, handles: Handles, info: TensorInfo) -> torch.Tensor | None:
        """A format that cannot serve raw bytes (DCP assembles chunks) loads whole tensors instead."""
        return None

    def load_value(self, value: DeferredValue) -> Any:
        raise NotImplementedError

    def write(self, ckpt: Checkpoint, target: Path, materialised: Any, options: WriteOptions) -> list[str]:
        """Write ``ckpt`` (its tree with real tensors: ``materialised``) to ``target``; return notes."""
        raise NotImplementedError


@dataclass
class WriteOptions:
    """How a writer is called by convert and migrate: verification runs on the temporary output, before it
    takes its final name (so a wrong file never lands), and ``force`` allows replacing a previous output."""

    verify: Callable[[Path], None]
    force: bool = False
    tag: bytes | None = None  # GPT-SoVITS header tag to put back (torch zip writer)
    reader: Any = None  # the StorageReader the tree's values come from


def probe(path: str) -> Probe:
    """Stat ``path`` and read what sniffing needs. Only regular files and folders are probed: a FIFO, a device
    or a socket is refused here, before anything opens it (opening a FIFO would block)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputNotFound(f"{path}: no such file or directory; check the path", path=path) from None
    except OSError as exc:
        raise InputNotFound(f"{path}: cannot read ({exc.strerror}); check permissions", path=path) from None
    if stat.S_ISDIR(st.st_mode):
        try:
            names = frozenset(e.name for e in os.scandir(path) if e.is_file())
        except OSError as exc:
            raise InputNotFound(f"{path}: cannot list the folder ({exc.strerror})", path=path) from None
        return Probe(path, 0, names=names, is_dir=True)
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else (
                "a device"
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket or special file"
            )
        )
        raise UnsupportedFormat(f"{path}: is {kind}, not a checkpoint file; pass the file itself", path=path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as exc:
        raise InputNotFound(f"{path}: cannot read ({exc.strerror}); check permissions", path=path) from None
    return Probe(path, st.st_size, head)


def open_regular(path: str | Path) -> BinaryIO:
    """Open a member file for reading, refusing anything that is not a regular file (a FIFO would hang)."""
    p = os.fspath(path)
    st = os.stat(p)
    if not stat.S_ISREG(st.st_mode):
        raise UnsupportedFormat(f"{p}: is not a regular file; refusing to read it", path=p)
    return open(p, "rb")


SMALL_READ = 1 << 16


def read_at(fh: BinaryIO, offset: int, length: int) -> bytes:
    """``length`` bytes of ``fh`` from ``offset`` (fewer at the end of the file). A small read (an optimizer's
    ``step`` counter: 4-8 bytes) is one ``os.pread`` where the system has it, instead of a seek and an 8 KB
    buffer fill; large reads go through the buffered file, which reads them directly."""
    if length <= SMALL_READ and hasattr(os, "pread"):
        return os.pread(fh.fileno(), length, offset)
    fh.seek(offset)
    return bytes(fh.read(length))


def read_range(handles: Handles, ref: StorageRef, start: int, length: int) -> bytes:
    """Bytes of a :class:`RangeStorage`: raw bytes at an offset of a plain file (legacy torch, safetensors)."""
    assert isinstance(ref, RangeStorage)
    f = handles.get("file", ref.file, lambda: open_regular(ref.file))
    return read_at(f, ref.offset + start, length)
