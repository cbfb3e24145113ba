"""Training state as typed JSON, so formats that hold only tensors (safetensors, DCP values) lose nothing.

A checkpoint tree holds more than tensors: optimizer hyper-parameters, int-keyed state dicts, tuples (betas),
counters, configs (``utils.HParams``), numpy RNG state, dtypes. Plain JSON would turn int keys into strings and
tuples into lists, so every container carries its type; a tensor becomes a reference by name; a stub keeps the
class it stood for. Decoding gives back the same reader-level objects ckpttool's readers produce, so a converted
file inspects, diffs and converts back like the original.
"""

from __future__ import annotations

import base64
import collections
import math
from collections.abc import Callable
from typing import Any

from ckpttool.errors import CorruptCheckpoint
from ckpttool.model import (
    NumpyArray,
    NumpyDType,
    Stub,
    TensorInfo,
    TorchDevice,
    TorchDtype,
    TreeError,
    fold_tree,
    stub_class,
)
from ckpttool.model.tree import StubParts

FORMAT = "ckpttool.state/1"
MARK = "__ckpttool__"


def encode(obj: Any, tensor_ref: Callable[[Any], str]) -> Any:
    """The tree as typed JSON. ``tensor_ref`` names a tensor (a TensorInfo or a torch.Tensor) by its key in the
    tensor file. Raises CorruptCheckpoint for what JSON cannot carry (a numpy array over 1 MB, a cycle)."""

    def leaf(x: Any, _: Any = None) -> Any:
        if isinstance(x, TensorInfo) or type(x).__name__ in ("Tensor", "Parameter"):
            return {MARK: "tensor", "key": tensor_ref(x)}
        if x is None or isinstance(x, bool | int | str):
            return x
        if isinstance(x, float):
            return x if math.isfinite(x) else {MARK: "float", "v": repr(x)}
        if isinstance(x, bytes | bytearray):
            return {MARK: "bytes", "b64": base64.b64encode(bytes(x)).decode()}
        if isinstance(x, complex):
            return {MARK: "complex", "v": [x.real, x.imag]}
        if isinstance(x, TorchDtype) or (type(x).__name__ == "dtype" and hasattr(x, "is_floating_point")):
            return {
                MARK: "dtype",
                "name": x.name if isinstance(x, TorchDtype) else str(x).removeprefix("torch."),
            }
        if isinstance(x, TorchDevice) or type(x).__name__ == "device":
            return {MARK: "device", "spec": str(x)}
        if isinstance(x, NumpyArray):
            if x.data is None:
                raise CorruptCheckpoint("a numpy array larger than 1 MB cannot be carried in JSON metadata")
            return {
                MARK: "ndarray",
                "dtype": x.dtype,
                "shape": list(x.shape),
                "b64": base64.b64encode(x.data).decode(),
            }
        if isinstance(x, NumpyDType):
            return {MARK: "npdtype", "code": x.code}
        if type(x).__module__ == "numpy" and hasattr(x, "tobytes") and hasattr(x, "dtype"):
            import numpy as np

            arr = np.asarray(x)
            return {
                MARK: "ndarray",
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "b64": base64.b64encode(arr.tobytes()).decode(),
            }
        if type(x).__name__ in ("PosixPath", "WindowsPath"):
            return {
                MARK: "stub",
                "module": "pathlib",
                "name": type(x).__name__,
                "args": [leaf(p) for p in x.parts],
                "state": None,
                "items": [],
                "list_items": [],
            }
        raise CorruptCheckpoint(f"cannot carry a {type(x).__module__}.{type(x).__name__} in JSON metadata")

    def build(x: Any, parts: Any, _: Any) -> Any:
        if isinstance(x, dict):
            kind = "OrderedDict" if isinstance(x, collections.OrderedDict) else "dict"
            return {MARK: kind, "items": [[_encode_key(k), v] for k, v in parts]}
        if isinstance(x, list):
            return list(parts)
        if isinstance(x, tuple):
            return {MARK: "tuple", "items": list(parts)}
        if isinstance(x, set | frozenset):
            return {MARK: "frozenset" if isinstance(x, frozenset) else "set", "items": list(parts)}
        assert isinstance(x, Stub) and isinstance(parts, StubParts)
        doc = {
            MARK: "stub",
            "module": type(x).module,
            "name": type(x).name,
            "args": parts.args,
            "state": parts.state,
            "items": [[_encode_key(k), v] for k, v in parts.items],
            "list_items": parts.list_items,
        }
        if parts.kwargs:
            doc["kwargs"] = [[k, v] for k, v in parts.kwargs]
        return doc

    def _encode_key(k: Any) -> Any:
        return fold_tree(k, leaf, build)

    try:
        return fold_tree(obj, leaf, build)
    except TreeError:
        raise CorruptCheckpoint("a cyclic object cannot be carried in JSON metadata") from None


def decode(obj: Any, tensor_of: Callable[[str], Any]) -> Any:
    """Back to reader-level objects; ``tensor_of`` maps a tensor key to its TensorInfo (or tensor)."""

    def leaf(x: Any, _: Any) -> Any:
        return x

    def build(x: Any, parts: Any, _: Any) -> Any:
        if isinstance(x, list):
            return list(parts)
        doc = dict(parts)
        kind = doc.get(MARK)
        if kind is None:
            raise CorruptCheckpoint("ckpttool.state: an untyped object in the JSON metadata")
        if kind == "tensor":
            return tensor_of(str(doc["key"]))
        if kind in ("dict", "OrderedDict"):
            out: dict[Any, Any] = collections.OrderedDict() if kind == "OrderedDict" else {}
            for k, v in doc["items"]:
                out[_hashable(k)] = v
            return out
        if kind == "tuple":
            return tuple(doc["items"])
        if kind in ("set", "frozenset"):
            items = (_hashable(v) for v in doc["items"])
            return frozenset(items) if kind == "frozenset" else set(items)
        if kind == "float":
            return float(doc["v"])
        if kind == "bytes":
            return base64.b64decode(doc["b64"])
        if kind == "complex":
            return complex(*doc["v"])
        if kind == "dtype":
            return TorchDtype(str(doc["name"]))
        if kind == "device":
            return TorchDevice(str(doc["spec"]))
        if kind == "ndarray":
            return NumpyArray(tuple(doc["shape"]), str(doc["dtype"]), base64.b64decode(doc["b64"]))
        if kind == "npdtype":
            return NumpyDType(str(doc["code"]))
        if kind == "stub":
            stub = stub_class(str(doc["module"]), str(doc["name"]))()
            stub.args = tuple(doc["args"])
            stub.state = doc["state"]
            stub.items = {_hashable(k): v for k, v in doc["items"]}
            stub.list_items = list(doc["list_items"])
            stub.kwargs = {str(k): v for k, v in doc.get("kwargs") or []}
            return stub
        raise CorruptCheckpoint(f"ckpttool.state: unknown entry type {kind!r}")

    return fold_tree(obj, leaf, build)


def _hashable(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k
