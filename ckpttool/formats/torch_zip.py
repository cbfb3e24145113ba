"""Read ``torch.save`` zip archives (and GPT-SoVITS's header-tagged variant) without torch.

Only the archive's central directory and ``data.pkl`` are read. Each storage record ``<top>/data/<key>`` is
stored uncompressed, so its size in the central directory tells whether it can hold the tensors that point
into it: the cheap integrity check that catches half-written files without reading tensor bytes.
"""

from __future__ import annotations

import io
import os
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from ckpttool.errors import CkptError, CorruptCheckpoint, TruncatedCheckpoint, UnsupportedFormat
from ckpttool.formats.base import Format, Handles, Probe, Sniffed, WriteOptions
from ckpttool.formats.builders import StorageType
from ckpttool.formats.pickled import load_pickle
from ckpttool.keys import GPT_SOVITS_TAGS
from ckpttool.model import Checkpoint, StorageRef, Stub, ZipStorage
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


def _top_folder(names: list[str], path: str) -> str:
    tops = sorted({n.split("/", 1)[0] for n in names if n.count("/") >= 1 and n.endswith("/data.pkl")})
    tops = [t for t in tops if f"{t}/data.pkl" in names]
    if not tops:
        raise UnsupportedFormat(
            f"{path}: a zip file, but not a torch checkpoint (no */data.pkl inside)", path=path
        )
    return tops[0]


def read_torch_zip(path: str, sniffed: Sniffed) -> Checkpoint:
    tagged = sniffed.format == FormatName.TAGGED_ZIP
    with open_archive(path, tagged) as zf:
        names = zf.namelist()
        top = _top_folder(names, path)
        is_script = f"{top}/constants.pkl" in names or any(n.startswith(f"{top}/code/") for n in names)
        byteorder = "little"
        if f"{top}/byteorder" in names:
            byteorder = zf.read(f"{top}/byteorder").decode("ascii", "replace").strip() or "little"
        members = {i.filename: i for i in zf.infolist()}

        def persistent_load(pid: Any) -> StorageRef:
            if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
                raise CorruptCheckpoint(f"{path}: unexpected persistent id in data.pkl", path=path)
            _, stype, key, location, numel = pid[:5]
            dtype = stype.dtype if isinstance(stype, StorageType) else "uint8"
            return ZipStorage(
                path, str(key), dtype, int(numel), str(location), byteorder, member=f"{top}/data/{key}"
            )

        data = zf.read(f"{top}/data.pkl")
        ckpt = load_pickle(data, path, persistent_load)
        _check_records(ckpt, members, sniffed.size, path)
        version = (
            zf.read(f"{top}/version").decode("ascii", "replace").strip()
            if f"{top}/version" in names
            else None
        )
        sid_name = f"{top}/.data/serialization_id"
        serialization_id = zf.read(sid_name).decode("ascii", "replace") if sid_name in names else None
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
    return ckpt


def _check_records(ckpt: Checkpoint, members: dict[str, zipfile.ZipInfo], size: int, path: str) -> None:
    seen: dict[str, int] = {}
    for t in ckpt.tensors:
        st = t.storage
        if not isinstance(st, ZipStorage) or st.member in seen:
            continue
        info = members.get(st.member)
        if info is None:
            raise CorruptCheckpoint(f"{path}: storage record {st.member} for {t.path} is missing", path=path)
        if info.compress_type != zipfile.ZIP_STORED:
            ckpt.notes.append(f"storage {st.member} is compressed; torch itself cannot mmap it")
        elif info.file_size < st.nbytes:
            raise TruncatedCheckpoint(
                f"{path}: storage record {st.member} holds {info.file_size} bytes but {t.path} needs "
                f"{st.nbytes}; the file is damaged",
                path=path,
            )
        if info.header_offset + info.compress_size > size:
            raise TruncatedCheckpoint(
                f"{path}: storage record {st.member} runs past the end of the file", path=path
            )
        seen[st.member] = info.file_size


# --- writing --------------------------------------------------------------------------------------------------
class _Global:
    """A class-like marker that pickles as GLOBAL module.name, without the module being importable here."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle insists that a reduce function be callable
        raise TypeError(f"{self.module}.{self.name} is only a name here; ckpttool never calls it")


# The pure-Python pickler: its save() can be extended to write a GLOBAL for a name nothing here imports.
_PurePickler: Any = pickle._Pickler


class _ReemitPickler(_PurePickler):
    """The pure-Python pickler, taught to write stand-ins back as what they stood for.

    A checkpoint read by ckpttool holds ``Stub`` objects for classes it refused to import (``utils.HParams``,
    ``pathlib.WindowsPath``); they are written back as the same opcodes the trainer wrote (a GLOBAL naming the
    original class, then its arguments and state), so the trainer loads the output as it loaded the input.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Stub):
            state = obj.state
            listitems = iter(obj.list_items) if obj.list_items else None
            dictitems = iter(obj.items.items()) if obj.items else None
            return (_Global(type(obj).module, type(obj).name), tuple(obj.args), state, listitems, dictitems)
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


PICKLE_MODULE = types.SimpleNamespace(Pickler=_ReemitPickler, __name__="ckpttool_reemit_pickle")


def torch_save_to(fh: BinaryIO, obj: Any, tag: bytes | None = None) -> None:
    """torch.save with stand-ins re-emitted; ``tag`` replaces the first two bytes (GPT-SoVITS my_save2)."""
    import torch

    start = fh.tell()
    torch.save(obj, fh, pickle_module=PICKLE_MODULE, pickle_protocol=2)
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
