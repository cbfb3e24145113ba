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
from ckpttool.model import NumpyArray, NumpyDType, Stub, TensorInfo, TorchDevice, TorchDtype

FORMAT = "ckpttool.state/1"
MARK = "__ckpttool__"


def encode(obj: Any, tensor_ref: Callable[[Any], str]) -> Any:
    """``tensor_ref`` names a tensor (a TensorInfo or a torch.Tensor) by its key in the tensor file."""
    seen: dict[int, str] = {}

    def enc(x: Any) -> Any:
        if isinstance(x, TensorInfo) or type(x).__name__ in ("Tensor", "Parameter"):
            return {MARK: "tensor", "key": tensor_ref(x)}
        if x is None or isinstance(x, bool | int | str):
            return x
        if isinstance(x, float):
            return x if math.isfinite(x) else {MARK: "float", "v": repr(x)}
        if isinstance(x, dict):
            kind = "OrderedDict" if isinstance(x, collections.OrderedDict) else "dict"
            return {MARK: kind, "items": [[enc(k), enc(v)] for k, v in x.items()]}
        if isinstance(x, list):
            return [enc(v) for v in x]
        if isinstance(x, tuple):
            return {MARK: "tuple", "items": [enc(v) for v in x]}
        if isinstance(x, set | frozenset):
            return {MARK: "frozenset" if isinstance(x, frozenset) else "set", "items": [enc(v) for v in x]}
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
            return {MARK: "ndarray", "dtype": x.dtype, "shape": list(x.shape),
                    "b64": base64.b64encode(x.data).decode()}  # fmt: skip
        if isinstance(x, NumpyDType):
            return {MARK: "npdtype", "code": x.code}
        if type(x).__module__ == "numpy" and hasattr(x, "tobytes") and hasattr(x, "dtype"):
            import numpy as np

            arr = np.asarray(x)
            return {MARK: "ndarray", "dtype": arr.dtype.str, "shape": list(arr.shape),
                    "b64": base64.b64encode(arr.tobytes()).decode()}  # fmt: skip
        if isinstance(x, Stub):
            if id(x) in seen:
                raise CorruptCheckpoint("a shared or cyclic object cannot be carried in JSON metadata")
            seen[id(x)] = "stub"
            return {MARK: "stub", "module": type(x).module, "name": type(x).name, "args": [enc(a) for a in x.args],
                    "state": enc(x.state), "items": [[enc(k), enc(v)] for k, v in x.items.items()],
                    "list_items": [enc(v) for v in x.list_items]}  # fmt: skip
        if type(x).__name__ == "PosixPath" or type(x).__name__ == "WindowsPath":
            return {MARK: "stub", "module": "pathlib", "name": type(x).__name__, "args": [enc(p) for p in x.parts],
                    "state": None, "items": [], "list_items": []}  # fmt: skip
        raise CorruptCheckpoint(f"cannot carry a {type(x).__module__}.{type(x).__name__} in JSON metadata")

    return enc(obj)


_STUB_CLASSES: dict[str, type[Stub]] = {}


def _stub_class(module: str, name: str) -> type[Stub]:
    full = f"{module}.{name}"
    cls = _STUB_CLASSES.get(full)
    if cls is None:
        cls = type(name.rsplit(".", 1)[-1], (Stub,), {"qualname": full, "module": module, "name": name})
        _STUB_CLASSES[full] = cls
    return cls


def decode(obj: Any, tensor_of: Callable[[str], Any]) -> Any:
    """Back to reader-level objects; ``tensor_of`` maps a tensor key to its TensorInfo (or tensor)."""

    def dec(x: Any) -> Any:
        if isinstance(x, list):
            return [dec(v) for v in x]
        if not isinstance(x, dict):
            return x
        kind = x.get(MARK)
        if kind is None:
            raise CorruptCheckpoint("ckpttool.state: an untyped object in the JSON metadata")
        if kind == "tensor":
            return tensor_of(str(x["key"]))
        if kind in ("dict", "OrderedDict"):
            out: dict[Any, Any] = collections.OrderedDict() if kind == "OrderedDict" else {}
            for k, v in x["items"]:
                out[_hashable(dec(k))] = dec(v)
            return out
        if kind == "tuple":
            return tuple(dec(v) for v in x["items"])
        if kind in ("set", "frozenset"):
            items = (_hashable(dec(v)) for v in x["items"])
            return frozenset(items) if kind == "frozenset" else set(items)
        if kind == "float":
            return float(x["v"])
        if kind == "bytes":
            return base64.b64decode(x["b64"])
        if kind == "complex":
            return complex(*x["v"])
        if kind == "dtype":
            return TorchDtype(str(x["name"]))
        if kind == "device":
            return TorchDevice(str(x["spec"]))
        if kind == "ndarray":
            return NumpyArray(tuple(x["shape"]), str(x["dtype"]), base64.b64decode(x["b64"]))
        if kind == "npdtype":
            return NumpyDType(str(x["code"]))
        if kind == "stub":
            stub = _stub_class(str(x["module"]), str(x["name"]))()
            stub.args = tuple(dec(a) for a in x["args"])
            stub.state = dec(x["state"])
            stub.items = {_hashable(dec(k)): dec(v) for k, v in x["items"]}
            stub.list_items = [dec(v) for v in x["list_items"]]
            return stub
        raise CorruptCheckpoint(f"ckpttool.state: unknown entry type {kind!r}")

    return dec(obj)


def _hashable(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k
