"""How far each tensor, module and part moved from A to B (``diff --values``), and their ranking.

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
- A **part** is the key's first component (``enc_p``, ``dec``, ``flow``), aggregated the same way.

Rankings put modules (tensors) whose NaN/Inf count changed first, then the largest relative change (infinite
first), then the name. The values are read and measured in :mod:`ckpttool.ops.diff_values`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


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


def part_of(name: str) -> str:
    """The top-level part a tensor key belongs to: its first component (``enc_p``, ``dec``, ``flow``)."""
    return name.split(".", 1)[0]


@dataclass
class ValueDelta:
    """How far one tensor moved from A to B: max |a - b|, ‖a - b‖/‖a‖, cosine similarity of the flattened
    tensors (NaN when undefined) and each side's NaN/Inf count; ``numel``, ‖a‖ and ‖b - a‖ let modules be
    aggregated (ops/diff_values.py)."""

    name: str
    max_abs: float
    rel_l2: float
    cosine: float
    nonfinite_a: int
    nonfinite_b: int
    numel: int = 0
    norm_a: float = 0.0
    norm_diff: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """An entry of ``networks[].values`` in ``ckpttool.diff/1``; non-finite floats become null."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in self.__dict__.items()
        }


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
