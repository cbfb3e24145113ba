"""``diff`` across PEFT wrapping: a LoRA-wrapped network compared with a plain one key for key.

PEFT renames what it wraps (``cfm.estimator.X.weight`` becomes ``cfm.base_model.model.estimator.X.base_layer.weight``
for a targeted layer, ``cfm.base_model.model.estimator.Y`` for the rest) and adds ``lora_A``/``lora_B``
adapters (:mod:`ckpttool.specs.peft`). Compared by raw keys, a full fine-tune and a LoRA run of the same model
share nothing. Here each PEFT side is re-keyed to the plain names before the comparison, so the base weights
are compared with the weights they came from, and the adapters are listed as one group of their own.
"""

from __future__ import annotations

from ckpttool.model import TensorInfo
from ckpttool.ops.diff_model import KeyGroup
from ckpttool.specs.peft import PeftView, peft_view

Tensors = dict[str, TensorInfo]


def _view(tensors: Tensors) -> PeftView | None:
    return peft_view({k: tuple(v.shape) for k, v in tensors.items()})


def plain_keyed(tensors: Tensors) -> tuple[Tensors, PeftView | None]:
    """``tensors`` under the plain model's names (adapters keep their file keys), and the PEFT view (None, and
    ``tensors`` unchanged, for a plain state dict)."""
    view = _view(tensors)
    if view is None:
        return tensors, None
    out = {plain: tensors[key] for plain, key in view.file_key.items()}
    out.update({key: tensors[key] for key in view.adapter_keys})
    return out, view


def align(ta: Tensors, tb: Tensors) -> tuple[Tensors, Tensors, PeftView | None, PeftView | None, str | None]:
    """Both sides re-keyed to plain names when either is PEFT-wrapped: (A, B, A's view, B's view, a sentence on
    what was mapped, or None when neither side is PEFT's)."""
    pa, va = plain_keyed(ta)
    pb, vb = plain_keyed(tb)
    if va is None and vb is None:
        return ta, tb, None, None, None
    if va is not None and vb is not None and va.describe() == vb.describe():
        return pa, pb, va, vb, f"both are PEFT-wrapped ({va.describe()}): compared under the plain names"
    parts = []
    for side, view in (("A", va), ("B", vb)):
        if view is None:
            continue
        example = next(
            (
                f"{view.file_key[f'{a.module}.weight']} as {a.module}.weight"
                for a in view.adapters
                if f"{a.module}.weight" in view.file_key
            ),
            None,
        )
        text = f"{side} is PEFT-wrapped ({view.describe()})"
        if example:
            text += f"; its base weights are compared under the plain names ({example})"
        elif view.adapters:
            text += "; it holds the adapters without their base layers"
        parts.append(text)
    return pa, pb, va, vb, "; ".join(parts)


def adapter_groups(keys: list[str], view: PeftView | None) -> tuple[list[KeyGroup], list[str]]:
    """The adapter keys among ``keys`` (one side's keys missing on the other) as one group per wrapped module,
    and the remaining keys."""
    if view is None:
        return [], keys
    adapters = set(view.adapter_keys)
    mine = [k for k in keys if k in adapters]
    rest = [k for k in keys if k not in adapters]
    if not mine:
        return [], rest
    rank = view.rank if view.rank is not None else "/".join(map(str, view.ranks))
    groups = []
    for module in view.wrapped or [""]:
        head = f"{module}.base_model.model" if module else "base_model.model"
        items = [k for k in mine if k.startswith(head + ".")] or mine
        layers = len({k.rsplit(".lora_", 1)[0] for k in items})
        why = (
            f"LoRA adapters (lora_A/lora_B, rank {rank}) on {layers} layers: "
            "only the LoRA-wrapped network has them"
        )
        groups.append(KeyGroup(head, len(items), items[:3], why))
    return groups, rest
