"""Shared step of every pickle-based reader: run the pickle machine, judge its globals, build the tree.

The machine (:mod:`ckpttool.formats.pickle_vm`) leaves a :class:`~ckpttool.formats.builders.TensorRef`
wherever the pickle rebuilt a tensor; :func:`finalize` turns each into a :class:`~ckpttool.model.TensorInfo`
named by its key path (the first path that reaches a shared tensor names it, as ``state_dict()`` does for tied
weights) and checks that it fits inside its storage. A pickle that names a code-running global is refused here
(:class:`~ckpttool.errors.UnsafeCheckpoint`, exit 3), whether or not it is also damaged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ckpttool.errors import CkptError, CorruptCheckpoint, TruncatedCheckpoint, UnsafeCheckpoint
from ckpttool.formats.builders import BadTensor, TensorRef
from ckpttool.formats.pickle_vm import MachineResult, PickleError, run_pickle
from ckpttool.model import (
    DTYPE_SIZES,
    UNSAFE,
    Checkpoint,
    Safety,
    StorageRef,
    TensorInfo,
    TreeError,
    dotted,
    map_tree,
)

MAX_TREE_DEPTH = 200  # real checkpoints nest a dozen levels; deeper trees would break recursive consumers
MAX_PICKLE_BYTES = 1 << 30


def refuse_unsafe(path: str, safety: Safety) -> UnsafeCheckpoint:
    names = [u.name for u in safety.unsafe] or [n for n in safety.notes]
    detail = "; ".join(f"{u.name} ({u.why})" for u in safety.unsafe[:6]) or "; ".join(safety.notes[:3])
    return UnsafeCheckpoint(
        f"{path}: refused, torch.load with weights_only off would run code from it: {detail}; do not load this "
        "file, get the checkpoint from a trusted source",
        globals_=names,
        path=path,
    )


def read_pickle(
    data: bytes, path: str, persistent_load: Callable[[Any], Any], *, start: int = 0, what: str = "the pickle"
) -> MachineResult:
    """Run one pickle from ``data[start:]``; refuse it when unsafe, map damage to Corrupt/Truncated errors."""
    try:
        result = run_pickle(data, start, persistent_load)
    except (CkptError, BadTensor) as exc:
        # damage found after a payload ran (torch.load would have run it before failing) is refused as unsafe
        seen: Safety | None = getattr(exc, "safety", None)
        if seen is not None and seen.verdict == UNSAFE and not isinstance(exc, UnsafeCheckpoint):
            raise refuse_unsafe(path, seen) from None
        if isinstance(exc, CkptError):
            raise
        raise CorruptCheckpoint(f"{path}: {what} is damaged ({exc}); use another copy", path=path) from None
    except PickleError as exc:
        safety: Safety = getattr(exc, "safety", Safety())
        if safety.verdict == UNSAFE:
            raise refuse_unsafe(path, safety) from None
        if exc.truncated:
            raise TruncatedCheckpoint(
                f"{path}: {what} ends early, so the save was cut short (crash or full disk); use the previous "
                "checkpoint",
                path=path,
            ) from None
        if exc.limit:
            raise CorruptCheckpoint(
                f"{path}: refused, {what} goes past ckpttool's limits: {exc}", path=path
            ) from None
        raise CorruptCheckpoint(
            f"{path}: {what} is damaged ({exc}); use another copy of the checkpoint", path=path
        ) from None
    if result.safety.verdict == UNSAFE:
        raise refuse_unsafe(path, result.safety)
    return result


def load_pickle(
    data: bytes,
    path: str,
    persistent_load: Callable[[Any], Any],
    storage_of: Callable[[Any], StorageRef] | None = None,
) -> Checkpoint:
    return build_checkpoint(read_pickle(data, path, persistent_load), path, storage_of)


def build_checkpoint(
    result: MachineResult, path: str, storage_of: Callable[[Any], StorageRef] | None = None
) -> Checkpoint:
    """The Checkpoint of one unpickled tree: tensors named and checked, the safety verdict attached."""
    try:
        root, tensors = finalize(result.root, storage_of or _storage_checker(path))
    except (TreeError, BadTensor, ValueError, TypeError, OverflowError) as exc:
        raise CorruptCheckpoint(f"{path}: inconsistent tensor metadata ({exc})", path=path) from None
    ckpt = Checkpoint(
        path=path, format="", root=root, tensors=tensors, size=0, foreign_globals=result.foreign
    )
    ckpt.safety = result.safety
    # what torch's weights_only unpickler would meet (ckpttool.predict.loader compares them with its lists)
    ckpt.meta["pickle_opcodes"] = sorted(result.opcodes)
    ckpt.meta["pickle_protocol"] = result.proto
    return ckpt


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

    return map_tree(root, leaf, max_depth=MAX_TREE_DEPTH), tensors


def _tensor(ref: TensorRef, path: str, storage_of: Callable[[Any], StorageRef]) -> TensorInfo:
    """Check a tensor's view against its storage: sizes >= 0, strides > 0 (a stride-0 or overlapping view
    expands on write), the last element inside the storage."""
    storage = storage_of(ref.storage)
    dtype = ref.dtype or storage.dtype
    shape, stride = ref.shape, ref.stride
    if (shape and min(shape) < 0) or ref.storage_offset < 0 or storage.numel < 0:
        raise TreeError(f"tensor {path} has a negative size or offset")
    if len(stride) != len(shape):
        raise TreeError(f"tensor {path}: stride and shape lengths differ")
    if stride and min(stride) < 0:
        raise TreeError(f"tensor {path} has a negative stride")
    if math.prod(shape):
        extent = ref.storage_offset + 1
        for d, s in zip(shape, stride, strict=True):
            extent += (d - 1) * s
        # storage.numel counts elements of the storage's own dtype; v3 tensors view untyped (byte) storages.
        capacity = storage.nbytes // max(DTYPE_SIZES.get(dtype, 1), 1)
        if extent > capacity:
            raise TreeError(f"tensor {path} reaches element {extent} of a storage holding {capacity}")
    return TensorInfo(path, dtype, ref.shape, ref.stride, storage, ref.storage_offset, ref.is_parameter)
