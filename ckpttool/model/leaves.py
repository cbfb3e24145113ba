"""Every leaf type a checkpoint tree can hold. Nothing here imports torch or numpy.

A tensor is a :class:`TensorInfo` that knows where its bytes live (a :class:`StorageRef`, one subclass per kind
of place, each read only by the format that wrote it), so metadata work costs O(pickle size) and value work can
stream one storage at a time. Objects the pickle names but ckpttool will not import (``utils.HParams``,
``pathlib.WindowsPath`` on Linux) are :class:`Stub` instances that keep their qualified name and state; numpy
arrays, torch dtypes and devices have small stand-ins of their own; a value that only its format can produce
(a DCP entry holding tensors) is a :class:`DeferredValue`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
    """Where one storage's bytes are. A tagged union: each subclass names the format module that reads it.

    ``numel`` counts elements of ``dtype``; ``location`` is the device tag torch recorded (``cuda:0``), kept for
    reports only (ckpttool always reads to the CPU first).
    """

    file: str
    key: str
    dtype: str
    numel: int
    location: str = "cpu"
    byteorder: str = "little"
    kind: ClassVar[str] = "?"

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_SIZES.get(self.dtype, 1)


@dataclass(frozen=True, kw_only=True)
class ZipStorage(StorageRef):
    """A storage record ``<folder>/data/<key>`` of a torch zip archive (or a GPT-SoVITS header-tagged one)."""

    member: str
    # Absolute file offset of the record's bytes when it is stored uncompressed (from its local header, as
    # torch finds it); None for a compressed record, which is read through the zip reader.
    data_offset: int | None = None
    kind: ClassVar[str] = "zip"


@dataclass(frozen=True, kw_only=True)
class RangeStorage(StorageRef):
    """A byte range of a plain file: legacy torch files and safetensors. ``offset`` is absolute, in bytes."""

    offset: int
    kind: ClassVar[str] = "range"


@dataclass(frozen=True, kw_only=True)
class DcpStorage(StorageRef):
    """A tensor of a ``torch.distributed.checkpoint`` folder, by its flattened key; DCP assembles the chunks."""

    fqn: str
    kind: ClassVar[str] = "dcp"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the file describes it; no values are loaded to build it.

    ``shape`` and ``stride`` are in elements, ``storage_offset`` in elements of ``dtype`` from the start of the
    storage. ``path`` is the dotted key path of the first place the tree reaches it (tied weights share one).
    """

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

    Instances only record what the pickle asked for: constructor arguments, ``__setstate__`` state and items
    set through SETITEM/APPEND opcodes. Nothing is ever called on the real class. Each stubbed global gets its
    own subclass (see :func:`stub_class`), so ``type(obj).qualname`` names what the file asked for.
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


_STUB_CLASSES: dict[str, type[Stub]] = {}


def stub_class(module: str, name: str) -> type[Stub]:
    """The (cached) Stub subclass standing for global ``module.name``."""
    full = f"{module}.{name}"
    cls = _STUB_CLASSES.get(full)
    if cls is None:
        cls = type(name.rsplit(".", 1)[-1], (Stub,), {"qualname": full, "module": module, "name": name})
        _STUB_CLASSES[full] = cls
    return cls


def is_stub(obj: Any, *qualnames: str) -> bool:
    return isinstance(obj, Stub) and (not qualnames or obj.qualname in qualnames)


@dataclass
class NumpyDType:
    """``numpy.dtype(code)`` as pickled: the type code (``'<u4'``, ``'f8'``) and its BUILD state."""

    code: str
    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


@dataclass
class NumpyArray:
    """A numpy array's header; its raw bytes are kept only when small (numpy's RNG state is 2.5 KB)."""

    shape: tuple[int, ...] = ()
    dtype: str = "?"
    data: bytes | None = field(default=None, repr=False)
    MAX_KEPT: ClassVar[int] = 1 << 20

    def __setstate__(self, state: Any) -> None:
        # ndarray.__reduce__ state: (version, shape, dtype, is_fortran, rawdata)
        if isinstance(state, tuple) and len(state) == 5:
            _, shape, dtype, _, raw = state
            self.shape = tuple(shape) if isinstance(shape, tuple) else ()
            if isinstance(dtype, NumpyDType):
                self.dtype = dtype.code
            if isinstance(raw, bytes | bytearray) and len(raw) <= self.MAX_KEPT:
                self.data = bytes(raw)


@dataclass(frozen=True)
class TorchDevice:
    """``torch.device(spec)``, e.g. ``cuda:0``."""

    spec: str

    def __str__(self) -> str:
        return self.spec


@dataclass(frozen=True)
class TorchDtype:
    """``torch.float32`` & co., by canonical name."""

    name: str


class DeferredValue:
    """A value only its format can produce (a DCP entry holding tensors, over 1 MB, or transformed): read
    through that format when the value is needed (convert, ``diff --values``), never while inspecting."""

    format: ClassVar[str] = "dcp-dir"

    def __init__(self, folder: str, fqn: str) -> None:
        self.folder, self.fqn = folder, fqn

    def __repr__(self) -> str:
        return f"<DCP value {self.fqn} (read on demand)>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeferredValue) and (self.folder, self.fqn) == (other.folder, other.fqn)

    def __hash__(self) -> int:
        return hash((self.folder, self.fqn))


@dataclass(frozen=True)
class HugeInt:
    """An integer too large to keep as one (a pickle can hold integers of any size; Python refuses to print
    one over 4,300 digits): its size in bits and sign only."""

    bits: int
    negative: bool = False

    def __repr__(self) -> str:
        return f"<{'negative ' if self.negative else ''}integer of about {self.bits:,} bits>"
