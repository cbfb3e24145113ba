"""A pickle reader that never imports or calls anything named by the file.

``pickle.Unpickler.find_class`` is the only door through which a pickle reaches Python callables, so it is
overridden to hand out either a small set of inert, argument-checked builders (tensors, storages, containers,
numpy RNG arrays) or a fresh :class:`~ckpttool.model.Stub` subclass named after the requested global. Globals
that could run code are recorded and stubbed too; the caller refuses the file afterwards, naming every one
(it does not stop at the first, so the user sees the whole payload).
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import pickletools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ckpttool.model import NumpyArray, NumpyDType, Stub, TorchDevice, TorchDtype, stub_class

# Module prefixes whose globals can run code, touch files or the network, or import more modules. A pickle
# naming any of them is refused. (Compare torch's weights_only blocklist, which covers only sys/os/posix/nt.)
DANGEROUS_MODULES = (
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "sys", "shutil", "socket", "ctypes", "pty",
    "runpy", "importlib", "pkgutil", "zipimport", "pickle", "_pickle", "dill", "joblib", "marshal",
    "code", "codeop", "pdb", "bdb", "pydoc", "timeit", "webbrowser", "multiprocessing", "asyncio", "platform",
    "commands", "popen2", "tempfile", "glob", "signal", "threading", "_thread", "gc", "inspect", "cffi",
    "urllib", "http", "ftplib",
    "smtplib", "telnetlib", "requests", "aiohttp", "yaml", "sqlite3", "shelve", "dbm", "site", "setuptools",
    "distutils", "pip", "torch.hub", "torch.jit", "torch._C", "torch.ops", "torch.classes", "torch.package",
    "torch.utils.cpp_extension", "torch._dynamo", "torch._inductor", "torch.serialization", "numpy.f2py",
    "numpy.distutils", "numpy.testing", "numpy.lib.npyio", "numpy.ctypeslib", "builtins.__import__",
)  # fmt: skip
DANGEROUS_NAMES = {
    ("builtins", n) for n in (
        "eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr", "globals", "locals",
        "vars", "input", "breakpoint", "help", "exit", "quit", "memoryview", "type", "super",
        "classmethod", "staticmethod", "property", "print", "dir", "__build_class__", "apply", "execfile",
        "reload", "file",
    )
} | {("__builtin__", n) for n in ("eval", "exec", "compile", "open", "__import__", "getattr", "execfile", "file")} | {
    ("torch", "load"), ("torch", "save"), ("numpy", "load"), ("numpy", "loadtxt"), ("numpy", "fromfile"),
    ("numpy", "save"), ("torch", "compile"), ("torch", "from_file"), ("io", "open"), ("_io", "open"),
    ("io", "FileIO"), ("_io", "FileIO"), ("codecs", "open"), ("types", "FunctionType"), ("types", "CodeType"),
    ("types", "ModuleType"), ("types", "MethodType"), ("operator", "attrgetter"), ("operator", "methodcaller"),
    ("_operator", "attrgetter"), ("_operator", "methodcaller"), ("functools", "reduce"),
}  # fmt: skip
# Names under a dangerous prefix that legitimate checkpoints contain and that we only ever stub.
HARMLESS = {"torch.serialization._get_layout"}


def is_dangerous(module: str, name: str) -> bool:
    if f"{module}.{name}" in HARMLESS or module.startswith("torch.jit._pickle"):
        return False
    if (module, name) in DANGEROUS_NAMES:
        return True
    full = f"{module}.{name}"
    return any(full == p or module == p or module.startswith(p + ".") for p in DANGEROUS_MODULES)


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


_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "QInt8Storage": "qint8", "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8",
}  # fmt: skip
_TORCH_DTYPES = {
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long", "int32", "int",
    "int16", "short", "int8", "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128",
    "complex32", "cfloat", "cdouble", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
    "float8_e8m0fnu", "qint8", "quint8", "qint32",
}  # fmt: skip
_DTYPE_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
}


def _int_tuple(x: Any) -> tuple[int, ...]:
    if isinstance(x, (tuple, list)) and all(isinstance(i, int) and not isinstance(i, bool) for i in x):
        return tuple(x)
    raise pickle.UnpicklingError(f"expected a tuple of ints, got {type(x).__name__}")


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any, *_: Any) -> TensorRef:
    return TensorRef(storage, int(storage_offset), _int_tuple(size), _int_tuple(stride))


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: int,
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
    if isinstance(func, _Builder) and isinstance(args, tuple):
        return func(*args)
    return Stub()


def _safe_collection(kind: Callable[[Any], Any]) -> Callable[..., Any]:
    def build(items: Any = ()) -> Any:
        if not isinstance(items, (list, tuple, set, frozenset)):
            raise pickle.UnpicklingError(f"refusing to build a {kind.__name__} from {type(items).__name__}")
        return kind(items)

    return build


def _safe_counter(items: Any = ()) -> Any:
    from collections import Counter

    if isinstance(items, dict):
        return Counter({k: v for k, v in items.items() if isinstance(v, int)})
    if isinstance(items, (list, tuple)):
        return Counter(items)
    raise pickle.UnpicklingError(f"refusing to build a Counter from {type(items).__name__}")


def _safe_bytes(kind: Callable[..., Any]) -> Callable[..., Any]:
    def build(data: Any = b"", encoding: str = "latin1") -> Any:
        if isinstance(data, str):
            return kind(data.encode(_checked_encoding(encoding)))
        if isinstance(data, (bytes, bytearray, list)):
            return kind(data)
        raise pickle.UnpicklingError(f"refusing to build {kind.__name__} from {type(data).__name__}")

    return build


def _checked_encoding(encoding: Any) -> str:
    if encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise pickle.UnpicklingError(f"refusing codec {encoding!r}")
    return str(encoding)


def _codecs_encode(obj: Any, encoding: str = "utf-8", *_: Any) -> bytes:
    if not isinstance(obj, str):
        raise pickle.UnpicklingError("_codecs.encode on a non-string")
    return obj.encode(_checked_encoding(encoding))


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(isinstance(v, (int, float)) for v in (real, imag)):
        raise pickle.UnpicklingError("complex() of non-numbers")
    return complex(real, imag)


def _scalar(conv: type) -> Callable[..., Any]:
    def build(value: Any = 0, *rest: Any) -> Any:
        if not isinstance(value, (int, float, str, bool)) or rest:
            raise pickle.UnpicklingError(f"refusing {conv.__name__}() of {type(value).__name__}")
        return conv(value)

    return build


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> NumpyArray:
    return NumpyArray()


def _np_dtype(code: Any, *_: Any) -> NumpyDType:
    return NumpyDType(str(code))


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    return NumpyArray(
        shape=(),
        dtype=dtype.code if isinstance(dtype, NumpyDType) else "?",
        data=bytes(data) if isinstance(data, (bytes, bytearray)) else None,
    )


def _torch_size(dims: Any = ()) -> tuple[int, ...]:
    return _int_tuple(dims)


def _torch_device(kind: Any, index: Any = None) -> TorchDevice:
    return TorchDevice(f"{kind}:{index}" if index is not None else str(kind))


class _Builder:
    """Wraps a safe builder so a pickle cannot set attributes on it (BUILD needs a ``__dict__``)."""

    __slots__ = ("fn", "name")
    fn: Callable[..., Any]
    name: str

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "name", name)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __setattr__(self, key: str, value: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to set attributes on {self.name}")

    def __repr__(self) -> str:
        return self.name


_SAFE: dict[str, Callable[..., Any]] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch._tensor._rebuild_from_type": _rebuild_from_type_v2,
    "torch.Size": _torch_size,
    "torch.device": _torch_device,
    "collections.OrderedDict": _safe_collection(OrderedDict),
    "collections.Counter": _safe_counter,  # MultiStepLR keeps its milestones in one
    "collections.defaultdict": lambda *_: {},  # items arrive through SETITEMS; the factory is irrelevant
    "builtins.set": _safe_collection(set),
    "builtins.frozenset": _safe_collection(frozenset),
    "builtins.list": _safe_collection(list),
    "builtins.tuple": _safe_collection(tuple),
    "builtins.bytearray": _safe_bytes(bytearray),
    "builtins.bytes": _safe_bytes(bytes),
    "builtins.complex": _complex,
    "builtins.int": _scalar(int),
    "builtins.float": _scalar(float),
    "builtins.str": _scalar(str),
    "builtins.bool": _scalar(bool),
    "_codecs.encode": _codecs_encode,
    "numpy.core.multiarray._reconstruct": _np_reconstruct,
    "numpy._core.multiarray._reconstruct": _np_reconstruct,
    "numpy.dtype": _np_dtype,
    "numpy.core.multiarray.scalar": _np_scalar,
    "numpy._core.multiarray.scalar": _np_scalar,
}
# TorchScript archives wrap lists and type tags in these; they are identity functions for our purposes.
for _name in ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist"):
    _SAFE[f"torch.jit._pickle.{_name}"] = _safe_collection(list)
_SAFE["torch.jit._pickle.restore_type_tag"] = lambda value, *_: value
_INERT_CLASSES = {"numpy.ndarray", "builtins.object"}


@dataclass
class PickleResult:
    root: Any
    foreign_globals: list[str] = field(default_factory=list)
    dangerous_globals: list[str] = field(default_factory=list)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` hands out only inert builders and stubs."""

    def __init__(self, file: BinaryIO, persistent_load: Callable[[Any], Any]) -> None:
        super().__init__(file)
        self._persistent = persistent_load
        self.foreign: dict[str, None] = {}
        self.dangerous: dict[str, None] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 0-2 pickles use Python 2 names (__builtin__, commands.Popen for subprocess.Popen); map them
        # the way pickle's own fix_imports does, so that policy below sees the real module.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        if is_dangerous(module, name):
            self.dangerous[full] = None
            return self._stub(module, name)
        if full in _SAFE:
            return _Builder(full, _SAFE[full])
        if module == "torch" and name.endswith("Storage") and name in _STORAGE_DTYPES:
            return StorageType(_STORAGE_DTYPES[name])
        if full == "torch.storage.UntypedStorage" or full == "torch.storage.TypedStorage":
            return StorageType("uint8")
        if module == "torch" and name in _TORCH_DTYPES:
            return TorchDtype(_DTYPE_ALIASES.get(name, name))
        if full == "copyreg._reconstructor":
            return _Builder(full, self._reconstructor)
        if full not in _INERT_CLASSES:
            self.foreign[full] = None
        return self._stub(module, name)

    def _stub(self, module: str, name: str) -> type[Stub]:
        return stub_class(module, name)

    def _reconstructor(self, cls: Any, base: Any, state: Any) -> Any:
        # copyreg._reconstructor(cls, object, None) is how protocol 0/1 pickles plain objects.
        if isinstance(cls, type) and issubclass(cls, Stub):
            return cls()
        raise pickle.UnpicklingError("copyreg._reconstructor on a non-stub class")

    def persistent_load(self, pid: Any) -> Any:
        return self._persistent(pid)


def scan_globals(data: bytes) -> list[str]:
    """Every global a pickle names, found without running it (used when unpickling stopped early)."""
    found: dict[str, None] = {}
    strings: list[str] = []
    memo: dict[int, str] = {}
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL" and isinstance(arg, str):
                found[arg.replace(" ", ".", 1)] = None
            elif (isinstance(arg, str) and "UNICODE" in op.name) or op.name in ("STRING", "BINSTRING"):
                strings.append(str(arg))
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                memo[int(arg)] = strings[-1]  # type: ignore[arg-type]
            elif op.name == "MEMOIZE" and strings:
                memo[len(memo)] = strings[-1]
            elif op.name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:  # type: ignore[arg-type]
                strings.append(memo[int(arg)])  # type: ignore[arg-type]
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found[f"{strings[-2]}.{strings[-1]}"] = None
    except Exception:
        pass
    return list(found)


def unpickle(data: bytes | BinaryIO, persistent_load: Callable[[Any], Any]) -> PickleResult:
    """Read one pickle safely from bytes or from a file positioned at its start.

    A file is left positioned just after the pickle's STOP opcode, so back-to-back pickles can be read.
    Malformed input raises ``pickle.UnpicklingError`` & co., unless it is also unsafe: then the dangerous
    globals are returned (and the caller refuses the file).
    """
    stream: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else data
    start = stream.tell()
    unpickler = RestrictedUnpickler(stream, persistent_load)
    error: BaseException | None = None
    root: Any = None
    try:
        root = unpickler.load()
    except Exception as exc:
        error = exc
    dangerous = list(unpickler.dangerous)
    if error is not None:
        stream.seek(start)
        raw = stream.read(_SCAN_LIMIT)
        dangerous += [g for g in scan_globals(raw) if is_dangerous(*g.rsplit(".", 1)) and g not in dangerous]
        if not dangerous:
            raise error
    return PickleResult(root, list(unpickler.foreign), dangerous)


_SCAN_LIMIT = 64 << 20
