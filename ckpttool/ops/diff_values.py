"""``diff --values``: how far each tensor and each module moved from A to B, ranked.

Definitions (also in docs/index.md and docs/json-schema.md):

- The **relative change** of a tensor is ‖b − a‖₂ / ‖a‖₂ over its flattened values (A is the reference), computed
  in float64 after NaN/Inf are set to 0 (their counts are reported apart). When ‖a‖ = 0 it is 0 if b = a too,
  else infinite ("from zero": the tensor was all zeros in A and is not in B).
- A **module** is the key up to and including its first purely numeric component (one layer of a
  ``ModuleList``/``Sequential``: ``enc_p.encoder.attn_layers.0.conv_q.weight`` → ``enc_p.encoder.attn_layers.0``,
  ``dec.resblocks.3.convs1.0.weight_v`` → ``dec.resblocks.3``); a key without a numeric component belongs to the
  module that owns the parameter (the key without its last component: ``enc_p.proj.weight`` → ``enc_p.proj``);
  a top-level key (``weight``) to the module ``""``.
- The relative change of a **module** is that of its tensors concatenated: √(Σ‖b_i − a_i‖²) / √(Σ‖a_i‖²) over the
  tensors compared (same shape on both sides), so a large tensor weighs more than a small bias.

Rankings put modules (tensors) whose NaN/Inf count changed first, then the largest relative change (infinite
first), then the name. Tensor values are read one pair at a time; memory stays near the largest tensor pair.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ckpttool.formats.values import StorageReader
from ckpttool.model import TensorInfo
from ckpttool.ops.diff_model import ValueDelta

if TYPE_CHECKING:
    import torch

Progress = Callable[[int, int, str], None]  # (pairs done, pairs in all, the pair being read; "" at the end)


def relative_change(norm_diff: float, norm_a: float) -> float:
    """‖b − a‖ / ‖a‖ from the two L2 norms; 0 when both are 0, ``math.inf`` when only ‖a‖ is 0."""
    if norm_a:
        return norm_diff / norm_a
    return 0.0 if norm_diff == 0 else math.inf


def module_of(name: str) -> str:
    """The module a tensor key belongs to (module docstring): up to its first numeric component, else the key
    without the parameter name. ``"a.b.3.c.weight"`` → ``"a.b.3"``, ``"a.proj.bias"`` → ``"a.proj"``."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1])


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


def _moved(v: ValueDelta) -> bool:
    return v.max_abs != 0 or v.nonfinite_a != v.nonfinite_b


def _json_float(v: float) -> float | None:
    return v if math.isfinite(v) else None


@dataclass
class ModuleDelta:
    """One module's tensors, compared together: how many (``tensors``, ``numel`` values), the L2 norms of A
    and of B − A over all of them, the largest |a − b|, NaN/Inf counts, and the tensor that moved most."""

    module: str
    tensors: int
    numel: int
    norm_a: float
    norm_diff: float
    max_abs: float
    nonfinite_a: int
    nonfinite_b: int
    top_tensor: str
    top_tensor_rel: float

    @property
    def rel_change(self) -> float:
        """√(Σ‖b_i − a_i‖²) / √(Σ‖a_i‖²) (``math.inf`` when A is all zeros and B is not)."""
        return relative_change(self.norm_diff, self.norm_a)

    @property
    def moved(self) -> bool:
        """Some value differs, or a NaN/Inf count changed."""
        return self.max_abs != 0 or self.nonfinite_a != self.nonfinite_b

    def to_json(self) -> dict[str, Any]:
        """An entry of ``networks[].modules`` in ``ckpttool.diff/1``; an infinite change is null with
        ``from_zero`` true."""
        rel = self.rel_change
        return {
            "module": self.module,
            "tensors": self.tensors,
            "numel": self.numel,
            "rel_change": _json_float(rel),
            "from_zero": math.isinf(rel),
            "norm_a": self.norm_a,
            "norm_diff": self.norm_diff,
            "max_abs": self.max_abs,
            "nonfinite_a": self.nonfinite_a,
            "nonfinite_b": self.nonfinite_b,
            "top_tensor": self.top_tensor,
            "top_tensor_rel": _json_float(self.top_tensor_rel),
        }


def _rank(nonfinite_changed: bool, rel: float, name: str) -> tuple[bool, float, str]:
    return (not nonfinite_changed, -rel, name)


def rank_tensors(values: Iterable[ValueDelta]) -> list[ValueDelta]:
    """Tensors ranked: NaN/Inf count changed first, then relative change (largest first), then name."""
    return sorted(values, key=lambda v: _rank(v.nonfinite_a != v.nonfinite_b, v.rel_l2, v.name))


def part_of(name: str) -> str:
    """The top-level part a tensor key belongs to: its first component (``enc_p``, ``dec``, ``flow``)."""
    return name.split(".", 1)[0]


def group_modules(values: Iterable[ValueDelta], key: Callable[[str], str] = module_of) -> list[ModuleDelta]:
    """Per-module aggregates of ``values`` (see the module docstring), ranked like :func:`rank_tensors`;
    ``key=part_of`` aggregates per top-level part instead."""
    groups: dict[str, list[ValueDelta]] = {}
    for v in values:
        groups.setdefault(key(v.name), []).append(v)
    out = []
    for module, items in groups.items():
        top = rank_tensors(items)[0]
        out.append(
            ModuleDelta(
                module,
                len(items),
                sum(v.numel for v in items),
                math.sqrt(math.fsum(v.norm_a**2 for v in items)),
                math.sqrt(math.fsum(v.norm_diff**2 for v in items)),
                max(v.max_abs for v in items),
                sum(v.nonfinite_a for v in items),
                sum(v.nonfinite_b for v in items),
                top.name,
                top.rel_l2,
            )
        )
    return sorted(out, key=lambda m: _rank(m.nonfinite_a != m.nonfinite_b, m.rel_change, m.module))


def moved_tensors(values: Iterable[ValueDelta]) -> list[ValueDelta]:
    """The tensors whose values (or NaN/Inf counts) differ, ranked."""
    return rank_tensors(v for v in values if _moved(v))
