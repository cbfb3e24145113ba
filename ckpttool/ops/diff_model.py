"""The records a diff is made of (key groups, shape changes, value deltas, scalar changes, explanations) and
the generic, spec-free attribution of shape changes to config changes. Shared by ``diff`` and ``explain``."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ckpttool.ops.value_change import ModuleDelta, ValueDelta, group_modules, module_of, part_of


@dataclass
class KeyGroup:
    """Keys present on one side only, sharing a module prefix."""

    prefix: str
    count: int
    examples: list[str]
    pattern: str | None = None  # a recognised, usually harmless reason

    def to_json(self) -> dict[str, Any]:
        """An entry of ``networks[].only_a`` / ``only_b`` in ``ckpttool.diff/1``."""
        return dict(self.__dict__)


@dataclass
class ShapeChange:
    """A tensor present on both sides with another shape; ``explained_by`` the config keys (or ``version``)
    that account for it, ``explanation`` per changed dim."""

    name: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    explained_by: list[str] = field(default_factory=list)
    explanation: str | None = None

    def to_json(self) -> dict[str, Any]:
        """An entry of ``networks[].shape_changes`` in ``ckpttool.diff/1``."""
        return {
            "name": self.name,
            "shape_a": list(self.shape_a),
            "shape_b": list(self.shape_b),
            "explained_by": self.explained_by,
            "explanation": self.explanation,
        }


@dataclass
class NetworkDiff:
    """One network compared on both sides (paired by label): key counts, keys on one side only, shape and
    dtype changes, and value deltas (None unless values were compared)."""

    name: str
    path_a: str
    path_b: str
    common: int
    rename: str | None
    only_a: list[KeyGroup]
    only_b: list[KeyGroup]
    shape_changes: list[ShapeChange]
    dtype_changes: dict[str, int]  # "float32->float16": count
    values: list[ValueDelta] | None = None
    peft: str | None = None  # how PEFT-wrapped keys were mapped to the plain names (ops/diff_peft.py)

    @property
    def differs(self) -> bool:
        """A rename, keys on one side only, shape or dtype changes, or values that moved."""
        return bool(
            self.rename or self.only_a or self.only_b or self.shape_changes or self.dtype_changes
        ) or any(v.max_abs != 0 or v.nonfinite_a != v.nonfinite_b for v in self.values or [])

    def to_json(self) -> dict[str, Any]:
        """An entry of ``networks`` in ``ckpttool.diff/1``."""
        return {
            "name": self.name,
            "path_a": self.path_a,
            "path_b": self.path_b,
            "common": self.common,
            "rename": self.rename,
            "only_a": [g.to_json() for g in self.only_a],
            "only_b": [g.to_json() for g in self.only_b],
            "shape_changes": [c.to_json() for c in self.shape_changes],
            "dtype_changes": self.dtype_changes,
            "values": None if self.values is None else [v.to_json() for v in self.values],
            "modules": None if self.values is None else [m.to_json() for m in self.modules()],
            "parts": None if self.values is None else [m.to_json() for m in self.modules(parts=True)],
            "peft": self.peft,
        }

    def modules(self, parts: bool = False) -> list[ModuleDelta]:
        """Per-module value aggregates, ranked (ops/value_change.py); per top-level part (``enc_p``, ``dec``)
        with ``parts``; empty without values."""
        return group_modules(self.values or [], part_of if parts else module_of)


@dataclass
class Change:
    """A scalar-level difference: a piece's status, a counter, an optimizer hyper-parameter, a config value."""

    what: str
    a: Any
    b: Any

    def to_json(self) -> dict[str, Any]:
        """An entry of ``pieces``, ``state`` or ``config`` in ``ckpttool.diff/1``."""
        return {"what": self.what, "a": self.a, "b": self.b}


@dataclass
class Explanation:
    """A config key's change (``old`` -> ``new``) and how many of the ``total`` shape changes it explains."""

    key: str
    old: Any
    new: Any
    explains: int
    total: int

    def sentence(self) -> str:
        """``inter_channels 192 -> 256 explains 17 of 17 shape changes``."""
        return f"{self.key} {self.old} -> {self.new} explains {self.explains} of {self.total} shape changes"

    def to_json(self) -> dict[str, Any]:
        """An entry of ``explanations`` in ``ckpttool.diff/1``, with the sentence as ``summary``."""
        return {**self.__dict__, "summary": self.sentence()}


def explain_generic(shapes: list[ShapeChange], changes: dict[str, tuple[Any, Any]]) -> None:
    """Attribute each changed dim to config keys whose old/new values stand in the same ratio as the dims."""
    numeric = {
        k: (Fraction(o), Fraction(n))
        for k, (o, n) in changes.items()
        if _is_int(o) and _is_int(n) and o and n and o != n
    }
    for change in shapes:
        keys: list[str] = []
        reasons: list[str] = []
        if len(change.shape_a) != len(change.shape_b):
            continue
        for dim, (da, db) in enumerate(zip(change.shape_a, change.shape_b, strict=True)):
            if da == db:
                continue
            for key, (old, new) in numeric.items():
                ratio = Fraction(da) / old
                if Fraction(db) / new == ratio:
                    keys.append(key)
                    factor = "" if ratio == 1 else f"{ratio}*"
                    reasons.append(f"dim {dim}: {da} -> {db} = {factor}{key}")
                    break
        if keys:
            change.explained_by = sorted(set(keys))
            change.explanation = "; ".join(reasons)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def summarise(shapes: list[ShapeChange], changes: dict[str, tuple[Any, Any]]) -> list[Explanation]:
    """One explanation per key named in ``explained_by``, most shape changes explained first; ``changes``
    gives each key's (old, new)."""
    counts: dict[str, int] = {}
    for c in shapes:
        for k in c.explained_by:
            counts[k] = counts.get(k, 0) + 1
    return [
        Explanation(k, *changes.get(k, (None, None)), n, len(shapes))
        for k, n in sorted(counts.items(), key=lambda kv: -kv[1])
    ]
