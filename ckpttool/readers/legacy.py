"""Read the legacy (pre-1.6, non-zip) ``torch.save`` format without torch.

Layout: five pickles back to back (magic number, protocol version, sys info, the object, the sorted storage
keys), then each storage as an 8-byte element count followed by its raw bytes. Only the pickles and the
8-byte counts are read; storage bytes are skipped with ``seek``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from ckpttool.errors import CorruptCheckpoint, TruncatedCheckpoint
from ckpttool.model import DTYPE_SIZES, Checkpoint, StorageRef
from ckpttool.readers import sniff as fmt
from ckpttool.readers.pickled import build_checkpoint, read_pickle
from ckpttool.readers.unpickler import StorageType


@dataclass(frozen=True)
class _Pending:
    """A storage named by the object pickle; its byte offset is known only after the key list."""

    key: str
    dtype: str
    numel: int
    location: str


def _no_storages(pid: Any) -> Any:
    raise CorruptCheckpoint("storage reference outside the object pickle")


def read_legacy(path: str, sniffed: fmt.Sniffed) -> Checkpoint:
    pending: dict[str, _Pending] = {}

    def persistent_load(pid: Any) -> _Pending:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CorruptCheckpoint(f"{path}: unexpected persistent id", path=path)
        _, stype, key, location, numel = pid[:5]
        dtype = stype.dtype if isinstance(stype, StorageType) else "uint8"
        return pending.setdefault(str(key), _Pending(str(key), dtype, int(numel), str(location)))

    with open(path, "rb") as f:
        if read_pickle(f, path, _no_storages).root != fmt.LEGACY_MAGIC:
            raise CorruptCheckpoint(f"{path}: not a legacy torch file (bad magic number)", path=path)
        protocol = read_pickle(f, path, _no_storages).root
        sys_info = read_pickle(f, path, _no_storages).root
        little = not (isinstance(sys_info, dict) and sys_info.get("little_endian") is False)
        byteorder = "little" if little else "big"
        result = read_pickle(f, path, persistent_load)
        pickle_end = f.tell()
        keys = read_pickle(f, path, _no_storages).root
        if not isinstance(keys, list):
            raise CorruptCheckpoint(f"{path}: damaged storage key list", path=path)
        located = _locate(f, f.tell(), [str(k) for k in keys], pending, sniffed.size, path, byteorder)

    def storage_of(obj: Any) -> StorageRef:
        if not isinstance(obj, _Pending) or obj.key not in located:
            raise CorruptCheckpoint(f"{path}: a tensor points at a storage the file does not hold", path=path)
        return located[obj.key]

    ckpt = build_checkpoint(result, path, storage_of)
    ckpt.format = fmt.LEGACY
    ckpt.size = sniffed.size
    ckpt.meta.update({"legacy_protocol": protocol, "byteorder": byteorder, "pickle_bytes": pickle_end})
    ckpt.notes.append("legacy (pre-1.6) torch format: torch.load cannot mmap it; re-save to get a zip file")
    return ckpt


def _locate(
    f: BinaryIO, pos: int, keys: list[str], pending: dict[str, _Pending], size: int, path: str, byteorder: str
) -> dict[str, StorageRef]:
    out: dict[str, StorageRef] = {}
    for key in keys:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            raise TruncatedCheckpoint(f"{path}: storage {key} is missing; the file was cut short", path=path)
        (numel,) = struct.unpack("<q", head)
        ref = pending.get(key)
        if ref is None or numel < 0:
            raise CorruptCheckpoint(f"{path}: storage {key} is not described by the pickle", path=path)
        nbytes = numel * DTYPE_SIZES.get(ref.dtype, 1)
        if pos + 8 + nbytes > size:
            raise TruncatedCheckpoint(
                f"{path}: storage {key} runs past the end of the file; it was cut short", path=path
            )
        out[key] = StorageRef(path, key, ref.dtype, numel, ref.location, offset=pos + 8, byteorder=byteorder)
        pos += 8 + nbytes
    return out
