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
from ckpttool.formats.base import Format, Handles, Probe, Sniffed, open_regular, read_range
from ckpttool.formats.builders import StorageType
from ckpttool.formats.pickle_vm import MachineResult
from ckpttool.formats.pickled import MAX_PICKLE_BYTES, build_checkpoint, read_pickle
from ckpttool.model import DTYPE_SIZES, Checkpoint, RangeStorage, Safety, StorageRef
from ckpttool.vocab import Format as FormatName

# The legacy format starts with a protocol-2 pickle of this magic number (torch/serialization.py MAGIC_NUMBER).
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class _Pending:
    """A storage named by the object pickle; its byte offset is known only after the key list."""

    key: str
    dtype: str
    numel: int
    location: str


def _no_storages(pid: Any) -> Any:
    raise CorruptCheckpoint("storage reference outside the object pickle")


class PickleWindow:
    """The first bytes of a file, grown on demand, for pickles read back to back (legacy files keep their
    storages after the pickles, so the whole file is never read)."""

    def __init__(self, path: str, size: int) -> None:
        self.path, self.size = path, size
        self.data = b""
        self._grow(min(size, 16 << 20))

    def _grow(self, n: int) -> None:
        with open_regular(self.path) as f:
            self.data = f.read(min(n, self.size, MAX_PICKLE_BYTES))

    def run(self, start: int, persistent_load: Any, what: str) -> MachineResult:
        while True:
            try:
                return read_pickle(self.data, self.path, persistent_load, start=start, what=what)
            except TruncatedCheckpoint:
                if len(self.data) >= min(self.size, MAX_PICKLE_BYTES):
                    raise
                self._grow(len(self.data) * 4)


def read_legacy(path: str, sniffed: Sniffed) -> Checkpoint:
    """The five pickles of a legacy file (magic number, protocol version, sys info, the object, the sorted
    storage keys) and each storage's element count. torch.load reads the first with the caller's pickle module
    before it checks the magic (torch/serialization.py _legacy_load), so every pickle counts for safety."""
    pending: dict[str, _Pending] = {}

    def persistent_load(pid: Any) -> _Pending:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CorruptCheckpoint(f"{path}: unexpected persistent id", path=path)
        _, stype, key, location, numel = pid[:5]
        dtype = stype.dtype if isinstance(stype, StorageType) else "uint8"
        if type(numel) is not int or numel < 0:
            raise CorruptCheckpoint(f"{path}: a storage with a bad element count", path=path)
        return pending.setdefault(str(key), _Pending(str(key), dtype, numel, str(location)))

    window = PickleWindow(path, sniffed.size)
    safety = Safety()
    parts = []
    pos = 0
    for what in ("the magic-number pickle", "the protocol pickle", "the sys-info pickle", "the object pickle",
                 "the storage-key pickle"):  # fmt: skip
        loader = persistent_load if what == "the object pickle" else _no_storages
        part = window.run(pos, loader, what)
        safety.merge(part.safety)
        parts.append(part)
        pos = part.end
        if what == "the magic-number pickle" and part.root != LEGACY_MAGIC:
            raise CorruptCheckpoint(f"{path}: not a legacy torch file (bad magic number)", path=path)
    protocol, sys_info, result, keys = parts[1].root, parts[2].root, parts[3], parts[4].root
    little = not (isinstance(sys_info, dict) and sys_info.get("little_endian") is False)
    byteorder = "little" if little else "big"
    if not isinstance(keys, list):
        raise CorruptCheckpoint(f"{path}: damaged storage key list", path=path)
    with open_regular(path) as f:
        located = _locate(f, pos, [str(k) for k in keys], pending, sniffed.size, path, byteorder)

    def storage_of(obj: Any) -> StorageRef:
        if not isinstance(obj, _Pending) or obj.key not in located:
            raise CorruptCheckpoint(f"{path}: a tensor points at a storage the file does not hold", path=path)
        return located[obj.key]

    ckpt = build_checkpoint(result, path, storage_of)
    ckpt.safety = safety
    ckpt.format = FormatName.LEGACY
    ckpt.size = sniffed.size
    ckpt.meta.update({"legacy_protocol": protocol, "byteorder": byteorder, "pickle_bytes": parts[3].end})
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
        out[key] = RangeStorage(path, key, ref.dtype, numel, ref.location, byteorder, offset=pos + 8)
        pos += 8 + nbytes
    return out


class Legacy(Format):
    """The pre-1.6 ``torch.save`` format (``_use_new_zipfile_serialization=False``): pickles back to back."""

    name = FormatName.LEGACY
    description = "legacy torch.save format (magic-number pickle, pickles, raw storages)"
    suffixes = (".pth", ".pt", ".ckpt", ".bin")
    storage = RangeStorage

    def sniff(self, probe: Probe) -> Sniffed | None:
        head = probe.head
        return Sniffed(self.name, probe.size) if head[:2] == b"\x80\x02" and head[2:3] == b"\x8a" else None

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        return read_legacy(path, sniffed)

    def read_bytes(self, handles: Handles, ref: StorageRef, start: int, length: int) -> bytes:
        return read_range(handles, ref, start, length)
