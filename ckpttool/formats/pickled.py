"""Shared step of every pickle-based reader: unpickle safely, refuse unsafe files, build the tree.

The unpickler leaves a :class:`~ckpttool.formats.unpickler.TensorRef` wherever the pickle rebuilt a tensor;
:func:`finalize` turns each into a :class:`~ckpttool.model.TensorInfo` named by its key path (the first path
that reaches a shared tensor names it, as ``state_dict()`` does for tied weights) and checks that it fits
inside its storage.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any, BinaryIO

from ckpttool.errors import CkptError, CorruptCheckpoint, TruncatedCheckpoint, UnsafeCheckpoint
from ckpttool.formats.unpickler import PickleResult, TensorRef, unpickle
from ckpttool.model import DTYPE_SIZES, Checkpoint, StorageRef, TensorInfo, TreeError, dotted, map_tree

# Errors a damaged pickle can raise inside the restricted unpickler or the tree walk.
DAMAGE = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    UnicodeDecodeError,
    OverflowError,
    MemoryError,
    RecursionError,
    TreeError,
)


def refuse_unsafe(path: str, dangerous: list[str]) -> UnsafeCheckpoint:
    return UnsafeCheckpoint(
        f"{path}: refused, the pickle would call {', '.join(dangerous)} when loaded with torch.load; "
        "do not load this file, get the checkpoint from a trusted source",
        globals_=dangerous,
        path=path,
    )


def read_pickle(data: bytes | BinaryIO, path: str, persistent_load: Callable[[Any], Any]) -> PickleResult:
    """Unpickle one pickle, refusing unsafe ones and mapping damage to a CorruptCheckpoint."""
    try:
        result = unpickle(data, persistent_load)
    except CkptError:
        raise
    except DAMAGE as exc:
        if isinstance(exc, EOFError) or "truncated" in str(exc) or "ran out of input" in str(exc).lower():
            raise TruncatedCheckpoint(
                f"{path}: the pickle ends early, so the save was cut short (crash or full "
                "disk); use the previous checkpoint",
                path=path,
            ) from exc
        raise CorruptCheckpoint(
            f"{path}: the pickle inside is damaged ({type(exc).__name__}); "
            "use another copy of the checkpoint",
            path=path,
        ) from exc
    if result.dangerous_globals:
        raise refuse_unsafe(path, result.dangerous_globals)
    return result


def load_pickle(
    data: bytes | BinaryIO,
    path: str,
    persistent_load: Callable[[Any], Any],
    storage_of: Callable[[Any], StorageRef] | None = None,
) -> Checkpoint:
    return build_checkpoint(read_pickle(data, path, persistent_load), path, storage_of)


def build_checkpoint(
    result: PickleResult, path: str, storage_of: Callable[[Any], StorageRef] | None = None
) -> Checkpoint:
    try:
        root, tensors = finalize(result.root, storage_of or _storage_checker(path))
    except DAMAGE as exc:
        raise CorruptCheckpoint(f"{path}: inconsistent tensor metadata ({exc})", path=path) from exc
    return Checkpoint(
        path=path, format="", root=root, tensors=tensors, size=0, foreign_globals=result.foreign_globals
    )


def _storage_checker(path: str) -> Callable[[Any], StorageRef]:
    def storage_of(obj: Any) -> StorageRef:
        if not isinstance(obj, StorageRef):
            raise TreeError(f"a tensor in {path} does not point at a storage")
        return obj

    return storage_of


def finalize(root: Any, storage_of: Callable[[Any], StorageRef]) -> tuple[Any, list[TensorInfo]]:
    """The tree with every TensorRef replaced by a TensorInfo, and the distinct tensors in tree order."""
    tensors: list[TensorInfo] = []

    def leaf(obj: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(obj, TensorRef):
            info = _tensor(obj, dotted(path), storage_of)
            tensors.append(info)
            return info
        return obj

    return map_tree(root, leaf), tensors


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
