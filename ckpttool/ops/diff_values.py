"""``diff --values``: read each tensor pair once, one pair at a time, and measure how far it moved
(the measures and the module ranking are defined in :mod:`ckpttool.ops.value_change`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ckpttool.formats.values import StorageReader
from ckpttool.model import TensorInfo
from ckpttool.ops.value_change import ValueDelta, relative_change

if TYPE_CHECKING:
    import torch

Progress = Callable[[int, int, str], None]  # (pairs done, pairs in all, the pair being read; "" at the end)


def tensor_delta(name: str, x: torch.Tensor, y: torch.Tensor) -> ValueDelta:
    """Compare one tensor pair of the same shape (any float/int dtype; computed in float64): max |a − b|,
    relative change, cosine similarity of the flattened tensors (1 when both are 0, 0 when only one is),
    the L2 norms ‖a‖ and ‖b − a‖, and each side's NaN/Inf count (those values count as 0 in the rest)."""
    import torch

    x, y = x.double(), y.double()
    bad_a = int((~torch.isfinite(x)).sum())
    bad_b = int((~torch.isfinite(y)).sum())
    xf = x.flatten().nan_to_num(0.0, 0.0, 0.0)
    yf = y.flatten().nan_to_num(0.0, 0.0, 0.0)
    del x, y
    d = yf - xf
    max_abs = float(d.abs().max()) if d.numel() else 0.0
    norm_a, norm_b, norm_d = float(xf.norm()), float(yf.norm()), float(d.norm())
    denom = norm_a * norm_b
    cos = float(xf @ yf) / denom if denom else (1.0 if max_abs == 0 else 0.0)
    return ValueDelta(
        name,
        max_abs,
        relative_change(norm_d, norm_a),
        cos,
        bad_a,
        bad_b,
        numel=int(xf.numel()),
        norm_a=norm_a,
        norm_diff=norm_d,
    )


def compare_values(
    pairs: list[tuple[str, TensorInfo, TensorInfo]], progress: Progress | None = None
) -> list[ValueDelta]:
    """One :class:`ValueDelta` per ``(name, a, b)`` pair, in the given order. Each pair is read, compared and
    released before the next (memory: the largest pair, in float64). ``progress(done, total, name)`` is called
    before each pair and once more with ``(total, total, "")`` at the end.

    Raises CorruptCheckpoint when a storage is shorter than its header says."""
    out: list[ValueDelta] = []
    with StorageReader() as reader:
        for i, (name, a, b) in enumerate(pairs):
            if progress:
                progress(i, len(pairs), name)
            out.append(tensor_delta(name, reader.tensor(a), reader.tensor(b)))
    if progress:
        progress(len(pairs), len(pairs), "")
    return out
