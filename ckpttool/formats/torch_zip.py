"""Read ``torch.save`` zip archives (and GPT-SoVITS's header-tagged variant) without torch.

Only the archive's central directory and ``data.pkl`` are read. Each storage record ``<top>/data/<key>`` is
stored uncompressed, so its size in the central directory tells whether it can hold the tensors that point
into it: the cheap integrity check that catches half-written files without reading tensor bytes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import os
import struct
import types
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from ckpttool.errors import (
    CkptError,
    CorruptCheckpoint,
    TruncatedCheckpoint,
    UnsafeCheckpoint,
    UnsupportedFormat,
)
from ckpttool.formats.base import Format, Handles, Probe, Sniffed, WriteOptions, open_regular, read_at
from ckpttool.formats.builders import StorageType
from ckpttool.formats.pickled import MAX_PICKLE_BYTES, load_pickle, read_pickle
from ckpttool.formats.policy import classify
from ckpttool.keys import GPT_SOVITS_TAGS
from ckpttool.model import UNSAFE, Checkpoint, StorageRef, Stub, ZipStorage
from ckpttool.vocab import Format as FormatName

ZIP_MAGIC = b"PK\x03\x04"


class PatchedHeaderFile(io.RawIOBase):
    """A read-only view of a file whose first two bytes read as ``PK`` (undoing GPT-SoVITS's tag)."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._pos = self._f.seek(offset, whence)
        return self._pos

    def fileno(self) -> int:
        """The real file's descriptor: reading it directly sees the tag in bytes 0-1 (see ``Archive``)."""
        return self._f.fileno()

    def readinto(self, buffer: Any) -> int:
        self._f.seek(self._pos)
        data = self._f.read(len(buffer))
        if self._pos < 2 and data:
            patch = b"PK"[self._pos : 2]
            data = patch[: len(data)] + data[len(patch) :]
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def open_archive(path: str, tagged: bool) -> zipfile.ZipFile:
    """Open the zip, mapping zipfile's complaints to truncated/corrupt errors with a next step."""
    raw: BinaryIO = PatchedHeaderFile(path) if tagged else open(path, "rb")  # type: ignore[assignment]  # noqa: SIM115
    try:
        return zipfile.ZipFile(raw)
    except zipfile.BadZipFile as exc:
        raw.close()
        raise TruncatedCheckpoint(
            f"{path}: the zip directory at the end of the file is missing, so the save was cut short "
            "(crash or full disk); use the previous checkpoint",
            path=path,
        ) from exc
    except Exception as exc:
        raw.close()
        raise CorruptCheckpoint(
            f"{path}: damaged zip structure ({exc}); use another copy", path=path
        ) from exc


MAX_MEMBERS = 1_000_000
DEFLATE_MAX_RATIO = 1032  # deflate cannot expand data more than this (RFC 1951: 258 bytes per 2-bit code)
MAX_VERSION = 10  # caffe2/serialize/versions.h kMaxSupportedFileFormatVersion (torch 2.13)


class Archive:
    """A torch zip as ``PyTorchFileReader`` (caffe2/serialize/inline_container.cc, miniz) sees it.

    The archive folder is the first central-directory entry's name up to its first ``/``; records are found
    **case-insensitively** (miniz's sorted binary search compares lower-cased names), so ``archive/DATA.PKL``
    is ``data.pkl`` to torch; CRC-32 is never checked by torch. When two entries answer one name, torch's pick
    depends on their positions in its sorted index, so ckpttool reads every copy and reports the ambiguity.
    """

    def __init__(self, zf: zipfile.ZipFile, path: str, size: int) -> None:
        self.zf, self.path, self.size = zf, path, size
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise CorruptCheckpoint(f"{path}: refused, the zip lists {len(infos):,} members", path=path)
        if not infos:
            raise UnsupportedFormat(f"{path}: an empty zip file, not a torch checkpoint", path=path)
        first = infos[0].filename
        if "/" not in first:
            raise UnsupportedFormat(
                f"{path}: a zip file, but not a torch checkpoint (its first entry {first!r} is not in a folder; "
                "torch.load refuses it)",
                path=path,
            )
        self.top = first.split("/", 1)[0]
        self.index: dict[str, list[zipfile.ZipInfo]] = {}
        prefix = self.top + "/"
        self.outside = []
        for info in infos:
            self.index.setdefault(info.filename.lower(), []).append(info)
            if not info.filename.startswith(prefix):
                self.outside.append(info.filename)
        self.records = {i.filename[len(prefix) :] for i in infos if i.filename.startswith(prefix)}
        self._starts: dict[int, int] = {}  # local header offset -> data offset
        # os.pread reads a local header in one system call, without moving zipfile's position or filling an
        # 8 KB buffer per header (3,000 headers in a 1 GB training checkpoint); Windows has no pread.
        self._fd: int | None = None
        if hasattr(os, "pread") and zf.fp is not None:
            with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
                self._fd = zf.fp.fileno()

    def find(self, record: str) -> list[zipfile.ZipInfo]:
        """Every entry torch may read for ``<folder>/<record>`` (case-insensitive)."""
        return self.index.get(f"{self.top}/{record}".lower(), [])

    def read(self, info: zipfile.ZipInfo, limit: int) -> bytes:
        """One member's bytes, refusing more than ``limit`` and members torch cannot read."""
        self.check_entry(info)
        if info.file_size > limit:
            raise CorruptCheckpoint(
                f"{self.path}: refused, {info.filename} would inflate to {info.file_size:,} bytes",
                path=self.path,
            )
        with self.zf.open(info) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise CorruptCheckpoint(
                f"{self.path}: refused, {info.filename} inflates past {limit:,} bytes", path=self.path
            )
        return data

    def check_entry(self, info: zipfile.ZipInfo) -> None:
        """What torch's reader would refuse, and what would make ckpttool read other bytes than torch."""
        path = self.path
        if info.flag_bits & 0x1:
            raise CorruptCheckpoint(f"{path}: {info.filename} is encrypted; torch.load refuses it", path=path)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CorruptCheckpoint(
                f"{path}: {info.filename} uses compression method {info.compress_type}; torch.load refuses it",
                path=path,
            )
        if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > DEFLATE_MAX_RATIO * max(
            info.compress_size, 1
        ):
            raise CorruptCheckpoint(
                f"{path}: {info.filename} claims to inflate {info.compress_size:,} bytes to {info.file_size:,}, "
                "more than deflate can produce; the directory is corrupt",
                path=path,
            )
        if info.header_offset + 30 > self.size:
            raise TruncatedCheckpoint(f"{path}: {info.filename} starts past the end of the file", path=path)

    def data_start(self, info: zipfile.ZipInfo) -> int:
        """Absolute offset of ``info``'s data, through its local header's lengths (as torch finds it). The
        local header must carry the signature and the same name as the central directory: torch finds the data
        through the local header, a naive reader through the directory. Read once per entry."""
        start = self._starts.get(info.header_offset)
        if start is not None:
            return start
        expected = info.filename.encode("utf-8")
        head = self._read_at(info.header_offset, 30 + len(expected))
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            raise CorruptCheckpoint(
                f"{self.path}: the local header of {info.filename} is damaged; torch.load refuses it",
                path=self.path,
            )
        n, m = struct.unpack_from("<HH", head, 26)
        name = head[30:] if n == len(head) - 30 else self._read_at(info.header_offset + 30, n)
        if name != expected and name != info.filename.encode("cp437", "replace"):
            raise CorruptCheckpoint(
                f"{self.path}: {info.filename} has another name in its local header ({name[:60]!r}); the zip "
                "directory and the data disagree",
                path=self.path,
            )
        start = self._starts[info.header_offset] = info.header_offset + 30 + n + m
        return start

    def _read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes of the file from ``offset`` (as the zip reader sees them: bytes 0-1 of a
        GPT-SoVITS tagged file read ``PK``)."""
        if self._fd is not None and offset >= 2:
            return os.pread(self._fd, n, offset)
        fp = self.zf.fp
        assert fp is not None
        fp.seek(offset)
        return fp.read(n)

    def local_headers(self, infos: list[zipfile.ZipInfo]) -> None:
        """Every entry's local header is sound (:meth:`data_start`), its data lies inside the file, and no two
        entries' data overlap."""
        spans: list[tuple[int, int, str]] = []
        for info in infos:
            start = self.data_start(info)
            end = start + info.compress_size
            if end > self.size:
                raise TruncatedCheckpoint(
                    f"{self.path}: {info.filename} runs past the end of the file; it was cut short",
                    path=self.path,
                )
            spans.append((start, end, info.filename))
        spans.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                raise CorruptCheckpoint(
                    f"{self.path}: the data of {first} and {second} overlap", path=self.path
                )


def read_torch_zip(path: str, sniffed: Sniffed) -> Checkpoint:
    tagged = sniffed.format == FormatName.TAGGED_ZIP
    with open_archive(path, tagged) as zf:
        arc = Archive(zf, path, sniffed.size)
        top = arc.top
        if arc.outside:
            raise CorruptCheckpoint(
                f"{path}: {len(arc.outside)} entr(ies) outside the archive folder {top!r} (e.g. {arc.outside[0]!r}); "
                "torch.load refuses such a zip",
                path=path,
            )
        pickles = arc.find("data.pkl")
        if not pickles:
            raise UnsupportedFormat(
                f"{path}: a zip file, but not a torch checkpoint (no {top}/data.pkl inside)", path=path
            )
        version = _version(arc)
        is_script = (
            "constants.pkl" in arc.records
        )  # torch/serialization.py _is_torchscript_zip (case-sensitive)
        byteorder = "little"
        if arc.find("byteorder"):
            byteorder = arc.read(arc.find("byteorder")[0], 64).decode("ascii", "replace").strip() or "little"
            if byteorder not in ("little", "big"):
                raise CorruptCheckpoint(
                    f"{path}: unknown byte order {byteorder!r}; torch.load refuses it", path=path
                )

        def persistent_load(pid: Any) -> StorageRef:
            if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
                raise CorruptCheckpoint(f"{path}: unexpected persistent id in data.pkl", path=path)
            _, stype, key, location, numel = pid[:5]
            dtype = stype.dtype if isinstance(stype, StorageType) else "uint8"
            if type(numel) is not int or numel < 0:
                raise CorruptCheckpoint(f"{path}: a storage with a bad element count", path=path)
            found = arc.find(f"data/{key}")
            member = found[0].filename if found else f"{top}/data/{key}"
            offset = None
            if found and found[0].compress_type == zipfile.ZIP_STORED:
                # where torch reads it; damage is reported by _check_records, after the whole pickle is judged
                with contextlib.suppress(CorruptCheckpoint):
                    offset = arc.data_start(found[0])
            return ZipStorage(
                path, str(key), dtype, numel, str(location), byteorder, member=member, data_offset=offset
            )

        data = arc.read(pickles[0], MAX_PICKLE_BYTES)
        ckpt = load_pickle(data, path, persistent_load)
        if len(pickles) > 1:
            _duplicates(arc, pickles, ckpt, persistent_load)
        _check_records(ckpt, arc)
        sid = arc.find(".data/serialization_id")
        serialization_id = arc.read(sid[0], 256).decode("ascii", "replace") if sid else None
    ckpt.format = FormatName.TORCHSCRIPT if is_script else sniffed.format
    ckpt.size = sniffed.size
    ckpt.meta.update(
        {
            "archive_folder": top,
            "byteorder": byteorder,
            "archive_version": version,
            "serialization_id": serialization_id,
            "pickle_bytes": len(data),
        }
    )
    if tagged:
        ckpt.meta["gpt_sovits_tag"] = sniffed.tag
        ckpt.meta["gpt_sovits_header"] = sniffed.detail.get("header")
        ckpt.notes.append(
            f"first two bytes are the GPT-SoVITS version tag for {sniffed.tag}; torch.load refuses this file "
            "as is ('Unsupported operand'), ckpttool reads it as the zip it is"
        )
    if is_script:
        ckpt.notes.append("TorchScript archive: holds a compiled module, not a training checkpoint")
        ckpt.safety.mark(
            "torch.jit.load", "unverified",
            "torch.load hands a TorchScript archive to torch.jit.load, which compiles and runs the code inside",
        )  # fmt: skip
    return ckpt


def _version(arc: Archive) -> str:
    """torch's reader reads ``.data/version`` (else ``version``) first and needs an integer in [1, 10]."""
    found = arc.find(".data/version") or arc.find("version")
    if not found:
        raise CorruptCheckpoint(
            f"{arc.path}: no {arc.top}/version record; torch.load refuses the file (a damaged directory?)",
            path=arc.path,
        )
    text = arc.read(found[0], 64).decode("ascii", "replace").strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_VERSION:
        raise CorruptCheckpoint(
            f"{arc.path}: archive version {text[:20]!r}; torch.load reads versions 1-{MAX_VERSION} only",
            path=arc.path,
        )
    return text


def _duplicates(arc: Archive, pickles: list[zipfile.ZipInfo], ckpt: Checkpoint, persistent_load: Any) -> None:
    """Two entries answer ``data.pkl``: torch reads one of them, by position. Every copy is judged."""
    first = arc.read(pickles[0], MAX_PICKLE_BYTES)
    differ = False
    for info in pickles[1:]:
        other = arc.read(info, MAX_PICKLE_BYTES)
        if other != first:
            differ = True
            ckpt.safety.merge(read_pickle(other, arc.path, persistent_load, what=info.filename).safety)
    names = ", ".join(repr(i.filename) for i in pickles)
    if differ:
        ckpt.safety.mark(
            f"zip-ambiguity:{arc.top}/data.pkl", "unsafe",
            f"the zip holds different entries {names} for data.pkl; torch.load reads one of them by its position "
            "in a case-insensitive sorted index, so what it loads is not what any one reader sees",
        )  # fmt: skip
    else:
        ckpt.notes.append(f"the zip holds identical entries {names} for data.pkl")


def _check_records(ckpt: Checkpoint, arc: Archive) -> None:
    """Every storage record exists (as torch finds it), is large enough, and torch can read it."""
    path = arc.path
    checked: dict[str, zipfile.ZipInfo] = {}
    for t in ckpt.tensors:
        st = t.storage
        if not isinstance(st, ZipStorage) or st.member in checked:
            continue
        found = arc.find(f"data/{st.key}")
        if not found:
            raise CorruptCheckpoint(f"{path}: storage record {st.member} for {t.path} is missing", path=path)
        info = found[0]
        arc.check_entry(info)
        if len({(i.CRC, i.file_size) for i in found}) > 1:
            ckpt.safety.mark(
                f"zip-ambiguity:{info.filename}", "unsafe",
                f"different entries answer {info.filename}; torch.load reads one of them by position",
            )  # fmt: skip
        if info.compress_type != zipfile.ZIP_STORED:
            ckpt.notes.append(
                f"storage {st.member} is compressed; torch.load(mmap=True) reads garbage from it"
            )
        if info.file_size < st.nbytes:
            raise TruncatedCheckpoint(
                f"{path}: storage record {st.member} holds {info.file_size} bytes but {t.path} needs "
                f"{st.nbytes}; the file is damaged",
                path=path,
            )
        checked[st.member] = info
    arc.local_headers([*arc.find("data.pkl")[:1], *checked.values()])


# --- writing --------------------------------------------------------------------------------------------------
class _Global:
    """A class-like marker that pickles as GLOBAL module.name, without the module being importable here."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle insists that a reduce function be callable
        raise TypeError(f"{self.module}.{self.name} is only a name here; ckpttool never calls it")


@functools.cache
def _pickle_module() -> types.SimpleNamespace:
    """The ``pickle_module`` handed to torch.save: the pure-Python pickler, taught to write stand-ins back as
    what they stood for. Built on first use, so reading a checkpoint does not import :mod:`pickle`.

    A checkpoint read by ckpttool holds ``Stub`` objects for classes it refused to import (``utils.HParams``,
    ``pathlib.WindowsPath``); they are written back as the same opcodes the trainer wrote (a GLOBAL naming the
    original class, then its arguments and state), so the trainer loads the output as it loaded the input.
    """
    import pickle

    # The pure-Python pickler: its save() can be extended to write a GLOBAL for a name nothing here imports.
    pure_pickler: Any = pickle._Pickler

    class _ReemitPickler(pure_pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, Stub):
                verdict, why = classify(type(obj).module, type(obj).name)
                if verdict == UNSAFE:  # never, whatever the caller allowed
                    raise UnsafeCheckpoint(
                        f"refusing to write {type(obj).qualname} ({why}) into a checkpoint",
                        globals_=[type(obj).qualname],
                    )
                state = obj.state
                listitems = iter(obj.list_items) if obj.list_items else None
                dictitems = iter(obj.items.items()) if obj.items else None
                return (
                    _Global(type(obj).module, type(obj).name),
                    tuple(obj.args),
                    state,
                    listitems,
                    dictitems,
                )
            return NotImplemented

        def save(self, obj: Any, save_persistent_id: bool = True) -> None:
            if isinstance(obj, _Global):
                if self.proto >= 4:
                    self.save(obj.module)
                    self.save(obj.name)
                    self.write(pickle.STACK_GLOBAL)
                else:
                    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
                return
            super().save(obj, save_persistent_id)

    return types.SimpleNamespace(Pickler=_ReemitPickler, __name__="ckpttool_reemit_pickle")


def torch_save_to(fh: BinaryIO, obj: Any, tag: bytes | None = None) -> None:
    """torch.save with stand-ins re-emitted; ``tag`` replaces the first two bytes (GPT-SoVITS my_save2)."""
    import torch

    start = fh.tell()
    torch.save(obj, fh, pickle_module=_pickle_module(), pickle_protocol=2)
    if tag:
        end = fh.tell()
        fh.seek(start)
        fh.write(tag[:2])
        fh.seek(end)


def torch_save_bytes(obj: Any, tag: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    torch_save_to(buf, obj, tag)
    return buf.getvalue()


# --- the plug-ins ---------------------------------------------------------------------------------------------
class TorchZip(Format):
    """``torch.save``'s zip archive (torch >= 1.6), including TorchScript archives, which read the same way."""

    name = FormatName.TORCH_ZIP
    description = "torch.save zip archive (*/data.pkl + data/<key> records)"
    suffixes = (".pth", ".pt", ".ckpt", ".bin")
    storage = ZipStorage
    target: ClassVar[str | None] = "pth"

    def sniff(self, probe: Probe) -> Sniffed | None:
        return Sniffed(self.name, probe.size) if probe.head.startswith(ZIP_MAGIC) else None

    def diagnose(self, probe: Probe) -> CkptError | None:
        if probe.head[:2] == b"PK":
            return CorruptCheckpoint(
                f"{probe.path}: damaged zip header; the file is not a complete torch checkpoint",
                path=probe.path,
            )
        return None

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        return read_torch_zip(path, sniffed)

    def read_bytes(self, handles: Handles, ref: StorageRef, start: int, length: int) -> bytes:
        assert isinstance(ref, ZipStorage)
        if ref.data_offset is not None:  # stored record: its bytes lie in the file as they are
            fh = handles.get("file", ref.file, lambda: open_regular(ref.file))
            return read_at(fh, ref.data_offset + start, length)

        def opener() -> zipfile.ZipFile:
            with open(ref.file, "rb") as head:
                tagged = head.read(2) != b"PK"
            return open_archive(ref.file, tagged)

        zf = handles.get("zip", ref.file, opener)
        with zf.open(ref.member) as member:
            member.seek(start)
            return bytes(member.read(length))

    def write(self, ckpt: Checkpoint, target: Path, materialised: Any, options: WriteOptions) -> list[str]:
        from ckpttool.outputs import atomic_write

        atomic_write(target, lambda fh: torch_save_to(fh, materialised, tag=options.tag), options.verify)
        return []


class TaggedZip(TorchZip):
    """GPT-SoVITS ``my_save2``: a torch zip whose first two bytes are a version tag instead of ``PK``
    (GPT_SoVITS/process_ckpt.py). torch.load refuses it; ckpttool reads it as the zip it is."""

    name = FormatName.TAGGED_ZIP
    description = "GPT-SoVITS export whose first two bytes are a version tag (my_save2)"
    target = None

    def sniff(self, probe: Probe) -> Sniffed | None:
        head = probe.head
        if head[:2] in GPT_SOVITS_TAGS and head[2:4] == b"\x03\x04":
            return Sniffed(self.name, probe.size, GPT_SOVITS_TAGS[head[:2]], {"header": head[:2].decode()})
        return None


class TorchScript(TorchZip):
    """``torch.jit.save`` archives: a torch zip with ``code/`` and ``constants.pkl``. Never sniffed on its own:
    the torch zip reader tells it apart once it sees the members, and names the format so."""

    name = FormatName.TORCHSCRIPT
    description = "TorchScript archive (torch.jit.save): a compiled module, not a training checkpoint"
    target = None

    def sniff(self, probe: Probe) -> Sniffed | None:
        return None
