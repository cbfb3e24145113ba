"""Read raw bytes of individual storages: scalars without torch, whole tensors with torch.

Metadata commands never come here except for a handful of 0-dim tensors (the Adam ``step`` counters), which
cost one small read each. Value-level operations stream one tensor at a time through :func:`load_tensor`.
"""

from __future__ import annotations

import struct
import zipfile
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from ckpttool.errors import CorruptCheckpoint
from ckpttool.model import DTYPE_SIZES, StorageRef, TensorInfo

if TYPE_CHECKING:
    import torch

_STRUCT = {
    "float32": "f",
    "float64": "d",
    "float16": "e",
    "int64": "q",
    "int32": "i",
    "int16": "h",
    "int8": "b",
    "uint8": "B",
    "bool": "?",
    "uint16": "H",
    "uint32": "I",
    "uint64": "Q",
}


class StorageReader:
    """Opens each source file once and reads byte ranges of storages from it."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._zips: dict[str, zipfile.ZipFile] = {}
        self._files: dict[str, Any] = {}

    def __enter__(self) -> StorageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def read(self, storage: StorageRef, start: int, length: int) -> bytes:
        if storage.member is not None:
            zf = self._zips.get(storage.file)
            if zf is None:
                from ckpttool.readers.torch_zip import open_archive

                with open(storage.file, "rb") as head:
                    tagged = head.read(2) != b"PK"
                zf = self._stack.enter_context(open_archive(storage.file, tagged))
                self._zips[storage.file] = zf
            with zf.open(storage.member) as member:
                member.seek(start)
                data = member.read(length)
        else:
            f: Any = self._files.get(storage.file)
            if f is None:
                f = self._stack.enter_context(open(storage.file, "rb"))  # noqa: SIM115
                self._files[storage.file] = f
            f.seek((storage.offset or 0) + start)
            data = f.read(length)
        if len(data) != length:
            raise CorruptCheckpoint(
                f"{storage.file}: storage {storage.key} is shorter than its header says", path=storage.file
            )
        return data

    def scalar(self, t: TensorInfo) -> float | int | bool | None:
        """Value of a one-element tensor, decoded with struct (no torch)."""
        code = _STRUCT.get(t.dtype)
        if code is None or t.numel != 1 or t.storage.dcp is not None:
            return None
        size = DTYPE_SIZES[t.dtype]
        raw = self.read(t.storage, t.storage_offset * size, size)
        order = "<" if t.storage.byteorder == "little" else ">"
        value: float | int | bool = struct.unpack(order + code, raw)[0]
        return value

    def tensor(self, t: TensorInfo, device: str = "cpu") -> torch.Tensor:
        """Materialise one tensor (imports torch). Only its own storage region is read."""
        import torch

        if t.storage.dcp is not None:
            from ckpttool.readers.dcp_io import load_tensor

            return load_tensor(t.storage.file, t.storage.dcp, t.shape, t.dtype).to(device)
        size = DTYPE_SIZES.get(t.dtype, 1)
        if t.numel == 0:
            return torch.empty(t.shape, dtype=getattr(torch, t.dtype), device=device)
        extent = t.storage_offset + sum((d - 1) * s for d, s in zip(t.shape, t.stride, strict=True)) + 1
        raw = bytearray(self.read(t.storage, t.storage_offset * size, (extent - t.storage_offset) * size))
        flat = torch.frombuffer(raw, dtype=getattr(torch, t.dtype))
        if t.storage.byteorder != "little" and size > 1:
            flat = flat.view(torch.uint8).view(-1, size).flip(1).reshape(-1).view(getattr(torch, t.dtype))
        out = flat.as_strided(t.shape, t.stride).contiguous()
        return out.to(device) if device != "cpu" else out
