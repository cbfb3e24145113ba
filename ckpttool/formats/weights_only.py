"""What ``torch.load(weights_only=True)`` accepts, per torch version, as data (no torch import).

Sources (the research notes cite file and line for each): torch/_weights_only_unpickler.py
``_get_allowed_globals`` and ``load`` in torch 2.4.0 (119 allowed globals), 2.5.0, 2.6.0 (128), 2.7.1 and
2.13.0 (144; checked against the installed 2.13 at runtime by tests/test_weights_only.py); torch/storage.py
``_dtype_to_storage_type_map`` / ``_new_dtypes``; torch/__init__.py ``_storage_classes``.

Besides the globals, the restricted unpickler accepts only some opcodes (no STACK_GLOBAL, so protocol >= 4
pickles fail), maps Python 2 names (2.4: only after a PROTO 2 opcode), and blocks the modules sys, os, posix
and nt outright from 2.5 on.
"""

from __future__ import annotations

from functools import cache

_ALWAYS = (
    "collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
    "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device",
    "torch._tensor._rebuild_from_type_v2",
)  # fmt: skip
_REBUILD_2_4 = tuple(f"torch._utils.{n}" for n in (
    "_rebuild_parameter", "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_tensor",
    "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage",
    "_rebuild_nested_tensor", "_rebuild_wrapper_subclass",
))  # fmt: skip
_DTYPES_2_4 = tuple(f"torch.{n}" for n in (
    "float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool", "bfloat16",
    "complex128", "complex64", "qint8", "qint32", "quint8", "quint4x2", "quint2x4",
    "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz", "float8_e4m3fnuz", "bits8", "bits16", "bits1x8",
    "bits2x4", "bits4x2", "complex32",
))  # fmt: skip
_TENSOR_TYPES = ("BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short")
_TENSOR_CLASSES = (
    *(f"torch.{t}Tensor" for t in _TENSOR_TYPES),
    *(f"torch.cuda.{t}Tensor" for t in _TENSOR_TYPES),
    *(f"torch.sparse.{t}Tensor" for t in _TENSOR_TYPES if t != "Bool"),
    *(f"torch.cuda.sparse.{t}Tensor" for t in _TENSOR_TYPES if t != "Bool"),
)
_STORAGE_TYPES = (
    "BFloat16", "Bool", "Byte", "Char", "ComplexDouble", "ComplexFloat", "Double", "Float", "Half", "Int",
    "Long", "QInt32", "QInt8", "QUInt2x4", "QUInt4x2", "QUInt8", "Short",
)  # fmt: skip
_CUDA_STORAGE_TYPES = (
    "BFloat16", "Bool", "Byte", "Char", "ComplexDouble", "ComplexFloat", "Double", "Float", "Half", "Int", "Long",
    "Short",
)  # fmt: skip
_STORAGE_CLASSES = (
    *(f"torch.{t}Storage" for t in _STORAGE_TYPES),
    "torch.storage.TypedStorage",
    "torch.storage.UntypedStorage",
    *(f"torch.cuda.{t}Storage" for t in _CUDA_STORAGE_TYPES),
)
_QSCHEMES = tuple(f"torch.{q}" for q in (
    "per_tensor_affine", "per_tensor_symmetric", "per_channel_affine", "per_channel_symmetric",
    "per_channel_affine_float_qparams",
))  # fmt: skip

# (first version, names added) in order
_ADDED: tuple[tuple[tuple[int, int], tuple[str, ...]], ...] = (
    ((2, 4), (*_ALWAYS, *_REBUILD_2_4, *_DTYPES_2_4, *_TENSOR_CLASSES, *_STORAGE_CLASSES, *_QSCHEMES)),
    ((2, 5), ("_codecs.encode", "builtins.bytearray", "torch._utils._rebuild_device_tensor_from_numpy")),
    ((2, 6), ("builtins.set", "builtins.complex", "torch._utils._rebuild_device_tensor_from_cpu_tensor",
              "torch.uint16", "torch.uint32", "torch.uint64")),
    ((2, 7), ("torch.float8_e8m0fnu",)),
    ((2, 13), ("torch.float4_e2m1fn_x2", *(f"torch.uint{i}" for i in range(1, 8)),
               *(f"torch.int{i}" for i in range(1, 8)))),
)  # fmt: skip
BLOCKED_MODULES = (
    "sys",
    "os",
    "posix",
    "nt",
)  # from 2.5 (torch/_weights_only_unpickler.py _blocklisted_modules)
# Opcodes the restricted unpickler implements (identical in 2.4, 2.6 and 2.13); anything else is
# "Unsupported operand N".
OPCODES = frozenset(
    [
        "GLOBAL",
        "NEWOBJ",
        "REDUCE",
        "BUILD",
        "APPEND",
        "APPENDS",
        "SETITEM",
        "SETITEMS",
        "MARK",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "NONE",
        "NEWFALSE",
        "NEWTRUE",
        "EMPTY_TUPLE",
        "EMPTY_LIST",
        "EMPTY_DICT",
        "EMPTY_SET",
        "BININT",
        "BININT1",
        "BININT2",
        "BINFLOAT",
        "BINUNICODE",
        "SHORT_BINSTRING",
        "BINPERSID",
        "BINGET",
        "LONG_BINGET",
        "BINPUT",
        "LONG_BINPUT",
        "LONG1",
        "PROTO",
        "STOP",
    ]
)


def parse_version(text: str) -> tuple[int, int]:
    """``"2.6.0+cu124"`` -> (2, 6); ValueError for text that is not a version."""
    head = text.strip().split("+")[0].split(".")
    return int(head[0]), int("".join(c for c in head[1] if c.isdigit()) or 0) if len(head) > 1 else 0


@cache
def allowed_globals(torch_version: str) -> frozenset[str]:
    """The globals ``torch.load(weights_only=True)`` accepts by default in ``torch_version`` (2.4 or later;
    earlier versions are treated as 2.4)."""
    version = parse_version(torch_version)
    return frozenset(name for since, names in _ADDED if version >= since for name in names)


def default_weights_only(torch_version: str) -> bool:
    """torch.load's default when the caller passes no ``weights_only``: False before 2.6, True from 2.6
    (torch/serialization.py ``_default_to_weights_only``)."""
    return parse_version(torch_version) >= (2, 6)


def maps_python2_names(torch_version: str, saw_proto_2: bool) -> bool:
    """torch 2.4 maps ``__builtin__`` & co. only after a PROTO 2 opcode; 2.5+ always does."""
    return saw_proto_2 or parse_version(torch_version) >= (2, 5)
