"""Tensor values, read lazily from whichever format holds them: scalars without torch, tensors with it.

Metadata commands never come here except for a handful of 0-dim tensors (the Adam ``step`` counters), which
cost one small read each. Value-level operations stream one tensor at a time through :meth:`StorageReader.tensor`
and turn whole trees into real objects with :meth:`StorageReader.materialise`.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ckpttool.errors import CorruptCheckpoint, UsageError
from ckpttool.formats.base import Handles
from ckpttool.model import (
    DTYPE_SIZES,
    DeferredValue,
    NumpyArray,
    NumpyDType,
    StorageRef,
    TensorInfo,
    TorchDevice,
    TorchDtype,
    map_tree,
)

if TYPE_CHECKING:
    import torch

_STRUCT = {
    "float32": "f", "float64": "d", "float16": "e", "int64": "q", "int32": "i", "int16": "h", "int8": "b",
    "uint8": "B", "bool": "?", "uint16": "H", "uint32": "I", "uint64": "Q",
}  # fmt: skip


class StorageReader:
    """Reads storages of any format; files and archives are opened once per reader and closed on exit."""

    def __init__(self) -> None:
        self._handles = Handles()

    def __enter__(self) -> StorageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handles.close()

    def read(self, storage: StorageRef, start: int, length: int) -> bytes:
        """``length`` bytes of ``storage`` from byte ``start``; CorruptCheckpoint when the file has fewer."""
        from ckpttool.formats.registry import for_storage

        data = for_storage(storage).read_bytes(self._handles, storage, start, length)
        if len(data) != length:
            raise CorruptCheckpoint(
                f"{storage.file}: storage {storage.key} is shorter than its header says", path=storage.file
            )
        return data

    def scalar(self, t: TensorInfo) -> float | int | bool | None:
        """Value of a one-element tensor, decoded with struct (no torch); None when that is not possible."""
        from ckpttool.formats.registry import for_storage

        code = _STRUCT.get(t.dtype)
        if code is None or t.numel != 1 or not for_storage(t.storage).byte_access:
            return (
                None  # a format that only loads whole tensors (DCP): not worth importing torch for a counter
            )
        size = DTYPE_SIZES[t.dtype]
        raw = self.read(t.storage, t.storage_offset * size, size)
        order = "<" if t.storage.byteorder == "little" else ">"
        value: float | int | bool = struct.unpack(order + code, raw)[0]
        return value

    def tensor(self, t: TensorInfo, device: str = "cpu") -> torch.Tensor:
        """Materialise one tensor (imports torch). Only its own storage region is read."""
        import torch

        from ckpttool.formats.registry import for_storage

        loaded = for_storage(t.storage).load_tensor(self._handles, t)
        if loaded is not None:
            return loaded.to(device) if device != "cpu" else loaded
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

    def value(self, v: DeferredValue) -> Any:
        from ckpttool.formats.registry import get_format

        return get_format(v.format).load_value(v)

    def materialise(self, obj: Any, *, shared: bool = False, tensor_of: Any = None) -> Any:
        """A copy of a checkpoint tree with real tensors, dtypes, devices and numpy arrays; stubs stay stubs.

        ``shared``: tensors that viewed one storage in the file view one storage again (tied weights, views),
        and parameters come back as ``nn.Parameter`` — for writing a file equivalent to the source.
        ``tensor_of`` replaces how a tensor is produced (default: read it).
        """
        import torch

        from ckpttool.formats.registry import for_storage

        read = tensor_of or self.tensor
        storages: dict[tuple[str, str], Any] = {}

        def tensor(info: TensorInfo) -> Any:
            if not shared or tensor_of is not None or not for_storage(info.storage).byte_access:
                return read(info)
            if DTYPE_SIZES.get(info.dtype) != DTYPE_SIZES.get(info.storage.dtype):
                return read(info)  # a typed view of another dtype's storage: read it on its own
            key = (info.storage.file, info.storage.key)
            base = storages.get(key)
            if base is None:
                flat = TensorInfo(info.path, info.dtype, (info.storage.numel,), (1,), info.storage, 0)
                base = storages[key] = read(flat)
            t = base.as_strided(info.shape, info.stride, info.storage_offset)
            return torch.nn.Parameter(t, requires_grad=t.is_floating_point()) if info.is_parameter else t

        def leaf(x: Any, _: Any) -> Any:
            if isinstance(x, TensorInfo):
                return tensor(x)
            if isinstance(x, DeferredValue):
                return self.value(x)
            if isinstance(x, TorchDtype):
                return getattr(torch, x.name)
            if isinstance(x, TorchDevice):
                return torch.device(x.spec)
            if isinstance(x, NumpyArray | NumpyDType):
                return _numpy(x)
            return x

        return map_tree(obj, leaf)


def _numpy(x: NumpyArray | NumpyDType) -> Any:
    import numpy as np

    if isinstance(x, NumpyDType):
        return np.dtype(x.code)
    if x.data is None:
        raise UsageError(
            "the checkpoint holds a numpy array larger than 1 MB, which ckpttool does not keep in memory; "
            "it cannot be written back"
        )
    return np.frombuffer(x.data, dtype=np.dtype(x.dtype)).reshape(x.shape).copy()
