"""Read ``torch.save`` zip archives (and GPT-SoVITS's header-tagged variant) without torch.

Only the archive's central directory and ``data.pkl`` are read. Each storage record ``<top>/data/<key>`` is
stored uncompressed, so its size in the central directory tells whether it can hold the tensors that point
into it: the cheap integrity check that catches half-written files without reading tensor bytes.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any, BinaryIO

from ckpttool.errors import CorruptCheckpoint, TruncatedCheckpoint, UnsupportedFormat
from ckpttool.model import Checkpoint, StorageRef
from ckpttool.readers import sniff as fmt
from ckpttool.readers.pickled import load_pickle
from ckpttool.readers.unpickler import StorageType


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


def read_torch_zip(path: str, sniffed: fmt.Sniffed) -> Checkpoint:
    tagged = sniffed.format == fmt.TAGGED_ZIP
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
            return StorageRef(
                path, str(key), dtype, int(numel), str(location), f"{top}/data/{key}", byteorder=byteorder
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
    ckpt.format = fmt.TORCHSCRIPT if is_script else sniffed.format
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
        if st.member is None or st.member in seen:
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
