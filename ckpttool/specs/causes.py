"""Which variable accounts for a dimension whose expression differs between two expansions of one family.

A width change moves an unknown inside the same expression (``2 * inter_channels``), and that unknown is the
cause. Two other kinds of change alter the expression itself:

- a **stage count**: RVC v1 48k has five upsample stages and v2 48k four, so ``dec.conv_post.weight`` dim 1 is
  ``upsample_initial_channel // 32`` in one and ``// 16`` in the other, and ``dec.noise_convs.0``'s kernel is a
  product over one factor fewer (``upsample_rates[4]`` exists on one side only);
- a **tag**: RVC's ``model_version`` v1/v2 fixes the phone-feature width (256 or 768) as a literal, as
  GPT-SoVITS's ``version`` fixes the text-embedding rows.

Both are found the same way: change one variable at a time from one side's values to the other's, expand the
spec again, and keep the variable whose change alone reproduces the other side's expression. ``diff`` uses it
between two files, ``inspect --config`` between a file and a config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ckpttool.errors import ConfigError
from ckpttool.specs.model import Spec, TensorSpec

_ELEMENT = re.compile(r"(\w+)\[(\d+)\]")
_LENGTH = re.compile(r"len\((\w+)\)")


def atom_value(values: Mapping[str, Any], atom: str) -> Any:
    """The value of an atom: ``name`` -> ``values[name]``; ``name[k]`` -> element k of that list (None when
    out of range); ``len(name)`` -> that list's length (None when it is not a list)."""
    m = _ELEMENT.fullmatch(atom)
    if m:
        lst = values.get(m.group(1))
        idx = int(m.group(2))
        return lst[idx] if isinstance(lst, list) and idx < len(lst) else None
    m = _LENGTH.fullmatch(atom)
    if m:
        lst = values.get(m.group(1))
        return len(lst) if isinstance(lst, list | tuple) else None
    return values.get(atom)


@dataclass(frozen=True)
class Cause:
    """A variable (``upsample_kernel_sizes[0]``, ``model_version``) or a list's length (``len(upsample_rates)``)
    with its value on each side."""

    key: str
    old: Any
    new: Any

    def text(self) -> str:
        """``len(upsample_rates) 5 -> 4``."""
        return f"{self.key} {self.old} -> {self.new}"


def atom_cause(atom: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> Cause:
    """The change of one unknown between values ``a`` and ``b``; a list element that exists on one side only
    (``upsample_rates[4]`` against a four-stage file) is that list's length changing."""
    old, new = atom_value(a, atom), atom_value(b, atom)
    m = _ELEMENT.fullmatch(atom)
    if m and (old is None or new is None):
        key = f"len({m.group(1)})"
        return Cause(key, atom_value(a, key), atom_value(b, key))
    return Cause(atom, old, new)


class OneChange:
    """Re-expansions of ``spec`` from values ``a`` with one variable taken from ``b`` (each computed when first
    asked for), to tell which variable turns a's expression of a dimension into b's."""

    def __init__(self, spec: Spec, a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
        self.spec, self.a, self.b = spec, dict(a), dict(b)
        self.candidates = [k for k in spec.variables if k in a and k in b and a[k] != b[k]]
        self._expanded: dict[str, dict[str, TensorSpec] | None] = {}

    def _expansion(self, key: str) -> dict[str, TensorSpec] | None:
        if key not in self._expanded:
            try:
                self._expanded[key] = {t.name: t for t in self.spec.expand({**self.a, key: self.b[key]})}
            except ConfigError:  # one list changed without its partner (rates without kernels): not alone
                self._expanded[key] = None
        return self._expanded[key]

    def causes(self, tensor: str, dim: int, expr_b: str) -> list[Cause]:
        """The first variable (in the spec's order) whose change alone gives ``tensor`` dim ``dim`` b's
        expression ``expr_b``, as a Cause (a list of another length as ``len(name)``); [] when none does."""
        for key in self.candidates:
            t = (self._expansion(key) or {}).get(tensor)
            if t is not None and dim < len(t.exprs) and t.exprs[dim] == expr_b:
                return [self._cause(key)]
        return []

    def presence_causes(self, missing: set[str], unexpected: set[str]) -> list[tuple[Cause, set[str]]]:
        """Variables whose change alone from a to b creates tensors of ``missing`` (in b's expansion, not in
        a's) or drops tensors of ``unexpected``, each with those tensors: ``if_f0 0 -> 1`` adds the pitch
        modules, ``len(upsample_rates) 5 -> 4`` drops the fifth stage."""
        try:
            before = {t.name for t in self.spec.expand(self.a)}
        except ConfigError:
            return []
        out = []
        for key in self.candidates:
            after = set(self._expansion(key) or before)
            touched = ((after - before) & missing) | ((before - after) & unexpected)
            if touched:
                out.append((self._cause(key), touched))
        return out

    def _cause(self, key: str) -> Cause:
        """``key``'s change from a to b; a list of another length as ``len(key)``."""
        old, new = self.a[key], self.b[key]
        if isinstance(old, list) and isinstance(new, list) and len(old) != len(new):
            return Cause(f"len({key})", len(old), len(new))
        return Cause(key, old, new)
