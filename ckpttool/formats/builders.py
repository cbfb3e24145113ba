"""What the globals a checkpoint pickle names become while ckpttool reads it: inert stand-ins, never the real
objects.

torch's rebuild functions become :class:`TensorRef` records (shape, stride, storage, no bytes); containers and
scalars are built by argument-checked copies of their constructors; numpy arrays, torch dtypes, devices and
storage types become the leaf types of :mod:`ckpttool.model`. Every other global becomes a
:class:`~ckpttool.model.Stub` class. A builder that does not like its arguments raises :class:`Refused` and the
pickle machine records the call as a stub instead: an odd call is data to report, not damage.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ckpttool.model import NumpyArray, NumpyDType, Stub, TorchDevice, TorchDtype


class Refused(Exception):
    """The builder does not build from these arguments; the call is kept as a stub."""


class BadTensor(ValueError):
    """A tensor rebuild call whose metadata cannot describe a tensor: the file is damaged."""


@dataclass
class StorageType:
    """What ``torch.FloatStorage`` & co. stand for in a pickle: just a dtype."""

    dtype: str


@dataclass
class TensorRef:
    """A tensor while the pickle is being read, before its key path is known."""

    storage: Any  # whatever the caller's persistent_load returned
    storage_offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str | None = None  # set by _rebuild_tensor_v3; otherwise from the storage
    is_parameter: bool = False


STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "QInt8Storage": "qint8", "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8",
}  # fmt: skip
TORCH_DTYPES = {
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long", "int32", "int",
    "int16", "short", "int8", "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128",
    "complex32", "cfloat", "cdouble", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
    "float8_e8m0fnu", "qint8", "quint8", "qint32",
}  # fmt: skip
DTYPE_ALIASES = {
    "float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
    "short": "int16", "cfloat": "complex64", "cdouble": "complex128",
}  # fmt: skip
MAX_DIMS = 64
MAX_TUPLE_DEPTH = 100  # hashing a tuple recurses in C: a million levels crash the process


def hashable_depth_ok(x: Any, limit: int = MAX_TUPLE_DEPTH) -> bool:
    """Whether tuples/frozensets inside ``x`` nest at most ``limit`` deep (checked without recursion, before
    anything hashes or compares ``x``)."""
    stack = [(x, 1)]
    seen: set[int] = set()
    while stack:
        obj, depth = stack.pop()
        if depth > limit:
            return False
        if (type(obj) is tuple or type(obj) is frozenset) and id(obj) not in seen:
            seen.add(id(obj))
            stack.extend((v, depth + 1) for v in obj)
    return True


def _int_tuple(x: Any, what: str) -> tuple[int, ...]:
    if (type(x) is tuple or isinstance(x, tuple | list)) and len(x) <= MAX_DIMS:
        for i in x:
            if type(i) is not int:
                break
        else:
            return x if type(x) is tuple else tuple(x)
    raise BadTensor(f"a tensor's {what} is not a short tuple of integers")


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any) -> TensorRef:
    if type(storage_offset) is not int:
        raise BadTensor("a tensor's storage offset is not an integer")
    return TensorRef(storage, storage_offset, _int_tuple(size, "size"), _int_tuple(stride, "stride"))


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    hooks: Any,
    dtype: Any,
    *_: Any,
) -> TensorRef:
    ref = _rebuild_tensor(storage, storage_offset, size, stride)
    ref.dtype = dtype.name if isinstance(dtype, TorchDtype) else None
    return ref


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    if isinstance(data, TensorRef):
        data.is_parameter = True
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # Tensor subclasses: build the plain tensor through our own builder, ignore the subclass.
    if isinstance(func, Builder) and isinstance(args, tuple):
        return func(*args)
    raise Refused


def _collection(kind: Callable[[Any], Any]) -> Callable[..., Any]:
    def build(items: Any = ()) -> Any:
        if isinstance(items, dict) and kind is OrderedDict:
            return OrderedDict(items)
        if not isinstance(items, list | tuple | set | frozenset):
            raise Refused
        if kind in (set, frozenset) and not all(hashable_depth_ok(i) for i in items):
            raise Refused
        try:
            return kind(items)
        except TypeError:  # unhashable items for a set
            raise Refused from None

    return build


def _counter(items: Any = ()) -> Any:
    if isinstance(items, dict):
        return Counter({k: v for k, v in items.items() if type(v) is int})
    if isinstance(items, list | tuple):
        if not all(hashable_depth_ok(i) for i in items):
            raise Refused
        try:
            return Counter(items)
        except TypeError:
            raise Refused from None
    raise Refused


def _bytes(kind: Callable[..., Any]) -> Callable[..., Any]:
    def build(data: Any = b"", encoding: Any = "latin1") -> Any:
        if isinstance(data, str):
            return kind(data.encode(_encoding(encoding)))
        if isinstance(data, bytes | bytearray) or (
            isinstance(data, list)
            and len(data) <= 1 << 24
            and all(type(b) is int and 0 <= b < 256 for b in data)
        ):
            return kind(data)
        raise Refused

    return build


def _encoding(encoding: Any) -> str:
    if encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise Refused
    return str(encoding)


def _codecs_encode(obj: Any, encoding: Any = "utf-8", *_: Any) -> bytes:
    if not isinstance(obj, str):
        raise Refused
    try:
        return obj.encode(_encoding(encoding))
    except UnicodeEncodeError:
        raise Refused from None


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(type(v) in (int, float) for v in (real, imag)):
        raise Refused
    return complex(real, imag)


def _scalar(conv: type) -> Callable[..., Any]:
    def build(value: Any = 0, *rest: Any) -> Any:
        if type(value) not in (int, float, str, bool) or rest:
            raise Refused
        try:
            return conv(value)
        except (ValueError, OverflowError):
            raise Refused from None

    return build


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> NumpyArray:
    return NumpyArray()


def _np_dtype(code: Any, *_: Any) -> NumpyDType:
    if not isinstance(code, str):
        raise Refused
    return NumpyDType(code)


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    return NumpyArray(
        shape=(),
        dtype=dtype.code if isinstance(dtype, NumpyDType) else "?",
        data=bytes(data)
        if isinstance(data, bytes | bytearray) and len(data) <= NumpyArray.MAX_KEPT
        else None,
    )


def _torch_size(dims: Any = ()) -> tuple[int, ...]:
    if isinstance(dims, tuple | list) and len(dims) <= MAX_DIMS and all(type(i) is int for i in dims):
        return tuple(dims)
    raise Refused


def _torch_device(kind: Any, index: Any = None) -> TorchDevice:
    if not isinstance(kind, str) or not (index is None or type(index) is int):
        raise Refused
    return TorchDevice(f"{kind}:{index}" if index is not None else kind)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # copyreg._reconstructor(cls, object, None) is how protocol 0/1 pickles plain objects.
    if isinstance(cls, type) and issubclass(cls, Stub):
        return cls()
    raise Refused


class Builder:
    """A safe builder standing for one global; a pickle cannot set attributes on it (BUILD needs a
    ``__dict__``, which it refuses)."""

    __slots__ = ("fn", "name")
    fn: Callable[..., Any]
    name: str

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "name", name)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __setattr__(self, key: str, value: Any) -> None:
        raise Refused

    def __repr__(self) -> str:
        return self.name


BUILDERS: dict[str, Callable[..., Any]] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.Size": _torch_size,
    "torch.device": _torch_device,
    "collections.OrderedDict": _collection(OrderedDict),
    "collections.Counter": _counter,  # MultiStepLR keeps its milestones in one
    "collections.defaultdict": lambda *_: {},  # items arrive through SETITEMS; the factory is irrelevant
    "builtins.set": _collection(set),
    "builtins.frozenset": _collection(frozenset),
    "builtins.list": _collection(list),
    "builtins.tuple": _collection(tuple),
    "builtins.bytearray": _bytes(bytearray),
    "builtins.bytes": _bytes(bytes),
    "builtins.complex": _complex,
    "builtins.int": _scalar(int),
    "builtins.float": _scalar(float),
    "builtins.str": _scalar(str),
    "builtins.bool": _scalar(bool),
    "_codecs.encode": _codecs_encode,
    "copyreg._reconstructor": _reconstructor,
    "numpy.core.multiarray._reconstruct": _np_reconstruct,
    "numpy._core.multiarray._reconstruct": _np_reconstruct,
    "numpy.dtype": _np_dtype,
    "numpy.core.multiarray.scalar": _np_scalar,
    "numpy._core.multiarray.scalar": _np_scalar,
}
# TorchScript archives wrap lists and type tags in these; they are identity functions for our purposes.
for _name in ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist"):
    BUILDERS[f"torch.jit._pickle.{_name}"] = _collection(list)
BUILDERS["torch.jit._pickle.restore_type_tag"] = lambda value, *_: value
INERT_CLASSES = {"numpy.ndarray", "builtins.object"}  # referenced, never called: no report as a foreign class


def stand_in(module: str, name: str) -> Any:
    """What global ``module.name`` is while reading: a builder, a storage type, a dtype, or None (a stub)."""
    full = f"{module}.{name}"
    fn = BUILDERS.get(full)
    if fn is not None:
        return Builder(full, fn)
    if module == "torch" and name in STORAGE_DTYPES:
        return StorageType(STORAGE_DTYPES[name])
    if full in ("torch.storage.UntypedStorage", "torch.storage.TypedStorage"):
        return StorageType("uint8")
    if module == "torch" and name in TORCH_DTYPES:
        return TorchDtype(DTYPE_ALIASES.get(name, name))
    return None
