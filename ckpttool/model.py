"""Plain-data description of a checkpoint: what readers produce and every operation consumes.

Nothing here imports torch. A tensor is a :class:`TensorInfo` that knows where its bytes live, so metadata work
costs O(pickle size) and value work can stream one storage at a time. Objects the pickle names but ckpttool will
not import (``utils.HParams``, ``pathlib.WindowsPath`` on Linux, numpy arrays) are :class:`Stub` instances that
keep their qualified name and state, so reports can still show what they held.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Bytes per element for every dtype name torch or safetensors can write.
DTYPE_SIZES: dict[str, int] = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "complex128": 16, "complex64": 8, "complex32": 4,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1,
    "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1, "bool": 1,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1, "float8_e8m0fnu": 1,
    "qint8": 1, "quint8": 1, "qint32": 4, "quint4x2": 1, "quint2x4": 1,
}  # fmt: skip


@dataclass(frozen=True)
class StorageRef:
    """Where one storage's bytes are: a zip member, or a byte range of a plain file."""

    file: str
    key: str
    dtype: str
    numel: int
    location: str = "cpu"
    member: str | None = None  # zip member name, for torch zip files
    offset: int | None = None  # absolute byte offset, for legacy and safetensors files
    byteorder: str = "little"
    dcp: str | None = None  # flattened key, for tensors of a torch.distributed.checkpoint directory

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_SIZES.get(self.dtype, 1)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the file describes it; no values are loaded to build it."""

    path: str
    dtype: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    storage: StorageRef
    storage_offset: int = 0
    is_parameter: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_SIZES.get(self.dtype, 1)

    @property
    def device(self) -> str:
        return self.storage.location

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "nbytes": self.nbytes,
            "device": self.device,
        }


class Stub:
    """An inert stand-in for an object of a class ckpttool refuses to import.

    Instances only record what the pickle asked for: constructor arguments, ``__setstate__`` state and
    items set through SETITEM/APPEND opcodes. Nothing is ever called on the real class.
    """

    qualname = "?"
    module = "?"  # the global the pickle named, kept so a writer can name it again (never imported)
    name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None
        self.items: dict[Any, Any] = {}
        self.list_items: list[Any] = []

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.list_items = args, kwargs, None, {}, []
        return obj

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.list_items.append(value)

    def extend(self, values: Any) -> None:
        self.list_items.extend(values)

    def __repr__(self) -> str:
        return f"<{self.qualname}>"

    def attributes(self) -> dict[str, Any]:
        """The object's fields as a dict, whichever way the pickle delivered them."""
        out: dict[str, Any] = {}
        st = self.state
        if isinstance(st, tuple) and len(st) == 2 and (st[0] is None or isinstance(st[0], dict)):
            st = {**(st[0] or {}), **(st[1] or {})}
        if isinstance(st, dict):
            out.update(st)
        out.update(self.kwargs)
        out.update(self.items)
        return out


def is_stub(obj: Any, *qualnames: str) -> bool:
    return isinstance(obj, Stub) and (not qualnames or obj.qualname in qualnames)


@dataclass
class Checkpoint:
    """Everything a reader learned about one file (or one directory of files)."""

    path: str
    format: str  # torch-zip, gpt-sovits-tagged-zip, torch-legacy, safetensors, torchscript
    root: Any
    tensors: list[TensorInfo]
    size: int
    meta: dict[str, Any] = field(default_factory=dict)
    foreign_globals: list[str] = field(default_factory=list)  # stubbed classes, e.g. utils.HParams
    notes: list[str] = field(default_factory=list)

    def tensor_map(self) -> dict[str, TensorInfo]:
        return {t.path: t for t in self.tensors}

    def iter_tensors(self, prefix: str) -> Iterator[TensorInfo]:
        dotted = prefix + "."
        for t in self.tensors:
            if t.path.startswith(dotted):
                yield t
