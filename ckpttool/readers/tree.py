"""Turn the raw unpickled object graph into the Checkpoint tree: tensors get their key paths.

Shared references are walked once (a pickle can describe a DAG that would explode if expanded), and the first
path that reaches a tensor names it, like ``state_dict()`` does for tied weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ckpttool.model import DTYPE_SIZES, StorageRef, Stub, TensorInfo
from ckpttool.readers.unpickler import NumpyArray, TensorRef


class TreeError(ValueError):
    """The pickle's structure contradicts itself (a tensor outside its storage, a bad storage id)."""


def finalize(root: Any, storage_of: Callable[[Any], StorageRef]) -> tuple[Any, list[TensorInfo]]:
    tensors: list[TensorInfo] = []
    memo: dict[int, Any] = {}

    def walk(obj: Any, path: str) -> Any:
        key = id(obj)
        if key in memo:
            return memo[key]
        out: Any
        if isinstance(obj, TensorRef):
            out = _tensor(obj, path, storage_of)
            tensors.append(out)
        elif isinstance(obj, dict):
            out = type(obj)() if type(obj) is not dict else {}
            memo[key] = out
            for k, v in obj.items():
                out[k] = walk(v, _join(path, k))
            return out
        elif isinstance(obj, list):
            out = []
            memo[key] = out
            out.extend(walk(v, _join(path, i)) for i, v in enumerate(obj))
            return out
        elif isinstance(obj, tuple):
            out = tuple(walk(v, _join(path, i)) for i, v in enumerate(obj))
        elif isinstance(obj, Stub):
            memo[key] = obj
            obj.args = tuple(walk(v, _join(path, i)) for i, v in enumerate(obj.args))
            obj.state = walk(obj.state, path) if obj.state is not None else None
            obj.items = {k: walk(v, _join(path, k)) for k, v in obj.items.items()}
            obj.list_items = [walk(v, _join(path, i)) for i, v in enumerate(obj.list_items)]
            return obj
        else:
            return obj
        memo[key] = out
        return out

    return walk(root, ""), tensors


def _join(path: str, key: Any) -> str:
    k = key if isinstance(key, str) else str(key)
    return f"{path}.{k}" if path else k


def _tensor(ref: TensorRef, path: str, storage_of: Callable[[Any], StorageRef]) -> TensorInfo:
    storage = storage_of(ref.storage)
    dtype = ref.dtype or storage.dtype
    if any(d < 0 for d in ref.shape) or ref.storage_offset < 0:
        raise TreeError(f"tensor {path} has a negative size or offset")
    if len(ref.stride) != len(ref.shape):
        raise TreeError(f"tensor {path}: stride and shape lengths differ")
    numel = math.prod(ref.shape)
    if numel:
        extent = ref.storage_offset + sum((d - 1) * s for d, s in zip(ref.shape, ref.stride, strict=True)) + 1
        # storage.numel counts elements of the storage's own dtype; v3 tensors view untyped (byte) storages.
        capacity = storage.nbytes // max(DTYPE_SIZES.get(dtype, 1), 1)
        if extent > capacity:
            raise TreeError(f"tensor {path} reaches element {extent} of a storage holding {capacity}")
    return TensorInfo(path, dtype, ref.shape, ref.stride, storage, ref.storage_offset, ref.is_parameter)


def is_numpy(obj: Any) -> bool:
    return isinstance(obj, NumpyArray)
