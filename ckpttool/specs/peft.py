"""PEFT-wrapped state dicts seen under the plain model's names, with the LoRA adapters apart.

``peft.get_peft_model(module, LoraConfig(...))`` changes the names a state dict holds (PEFT 0.17.1, the newest
that GPT-SoVITS's ``peft<0.18.0`` pin allows):

- the wrapped module's keys gain ``base_model.model.`` (``PeftModel.base_model`` is a ``LoraModel`` whose
  ``model`` is the original module): ``cfm.estimator.X`` becomes ``cfm.base_model.model.estimator.X``;
- each targeted layer becomes a LoRA layer that keeps the original as ``base_layer``
  (``peft/tuners/lora/layer.py`` 90, 95-96): ``...attn.to_q.weight`` becomes ``...attn.to_q.base_layer.weight``;
- next to it, the adapters ``lora_A.<adapter>.weight`` ``[r, in]`` and ``lora_B.<adapter>.weight`` ``[out, r]``
  (217-218; the adapter is named ``default`` unless the trainer names it). ``lora_B`` starts at zero
  (``init_lora_weights=True``), so an untrained adapter changes nothing.

Architecture specs describe the plain model, so matching and checking read a PEFT file through
:func:`peft_view`: every base tensor under its plain name, the adapters listed apart with their rank, each
checked against the shape of the layer it adapts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

Shape = tuple[int, ...]

WRAP = "base_model.model."
BASE = "base_layer."
# <module>.lora_A.<adapter>.weight / lora_B (Linear and Conv LoRA: layer.py 217-218), checked; the embedding
# (ParameterDict: no .weight) and DoRA magnitude forms are recognised as adapter tensors but not checked.
ADAPTER = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)\.(?P<adapter>[^.]+)\.weight$")
OTHER_ADAPTER = re.compile(
    r"^(?P<module>.+)\.(?P<kind>lora_embedding_A|lora_embedding_B|lora_magnitude_vector)\.(?P<adapter>[^.]+)"
    r"(?:\.weight)?$"
)


def is_peft(keys: Mapping[str, object] | list[str]) -> bool:
    """Whether any key carries PEFT's wrapping (``base_model.model.``) or a LoRA adapter."""
    return any(
        k.startswith(WRAP) or f".{WRAP}" in k or ADAPTER.match(k) or OTHER_ADAPTER.match(k) for k in keys
    )


def plain_name(key: str) -> str:
    """``cfm.base_model.model.estimator.X.base_layer.weight`` -> ``cfm.estimator.X.weight`` (any key)."""
    key = key.removeprefix(WRAP).replace("." + WRAP, ".")
    return key.replace("." + BASE, ".")


@dataclass(frozen=True)
class LoraAdapter:
    """One LoRA adapter pair on one layer: the layer's plain name, the adapter's name, and the shapes (None
    when that half is absent) and file keys of ``lora_A`` and ``lora_B``."""

    module: str
    adapter: str
    a: Shape | None
    b: Shape | None
    a_key: str | None
    b_key: str | None

    @property
    def rank(self) -> int | None:
        """``lora_A``'s dim 0, else ``lora_B``'s dim 1 (None when neither is there)."""
        if self.a:
            return self.a[0]
        return self.b[1] if self.b and len(self.b) > 1 else None


@dataclass
class PeftView:
    """A PEFT state dict under plain names. ``plain``: every non-adapter tensor's shape by plain name;
    ``file_key``: plain name -> key in the file; ``adapters``: the LoRA pairs; ``wrapped``: the module paths
    PEFT wrapped (``cfm``); ``other``: adapter tensors of other kinds (DoRA magnitudes, embedding LoRA), by
    file key."""

    plain: dict[str, Shape]
    file_key: dict[str, str]
    adapters: list[LoraAdapter]
    wrapped: list[str]
    other: dict[str, Shape] = field(default_factory=dict)

    @property
    def ranks(self) -> list[int]:
        """The distinct adapter ranks, smallest first."""
        return sorted({r for a in self.adapters if (r := a.rank) is not None})

    @property
    def rank(self) -> int | None:
        """The rank every adapter shares, or None (no adapters, or mixed ranks)."""
        ranks = self.ranks
        return ranks[0] if len(ranks) == 1 else None

    @property
    def adapter_keys(self) -> list[str]:
        """Every adapter tensor's key in the file."""
        keys = [k for a in self.adapters for k in (a.a_key, a.b_key) if k]
        return keys + list(self.other)

    def base_shapes(self) -> dict[str, Shape]:
        """For each adapted Linear whose base layer is absent (a LoRA-only export), the ``[out, in]`` shape its
        adapters imply, under ``<module>.weight``: what detection and solving may use in its place."""
        out: dict[str, Shape] = {}
        for a in self.adapters:
            name = f"{a.module}.weight"
            if name not in self.plain and a.a and a.b and len(a.a) == 2 and len(a.b) == 2:
                out[name] = (a.b[0], a.a[1])
        return out

    def problems(self, expected: Mapping[str, Shape] | None = None) -> list[str]:
        """Adapters that cannot load: a half missing, ranks that disagree within a pair or across pairs, and
        ``lora_A``/``lora_B`` whose in/out widths differ from the base layer's (the file's, else ``expected``'s
        ``<module>.weight``)."""
        out = []
        for a in self.adapters:
            if a.a is None or a.b is None:
                out.append(f"{a.module}: lora_{'A' if a.a is None else 'B'}.{a.adapter} is missing")
                continue
            if len(a.a) < 2 or len(a.b) < 2 or a.a[0] != a.b[1]:
                out.append(f"{a.module}: lora_A {list(a.a)} and lora_B {list(a.b)} do not share a rank")
                continue
            base = self.plain.get(f"{a.module}.weight") or (expected or {}).get(f"{a.module}.weight")
            if base is not None and len(base) >= 2 and (a.a[1], a.b[0]) != (base[1], base[0]):
                out.append(
                    f"{a.module}: lora_A {list(a.a)} / lora_B {list(a.b)} do not fit the layer's weight "
                    f"{list(base)} (lora_A must be [r, {base[1]}], lora_B [{base[0]}, r])"
                )
        if len(self.ranks) > 1:
            out.append(f"adapters of different ranks {self.ranks} in one file")
        return out

    def describe(self) -> str:
        """``LoRA on cfm: 88 adapted layers, rank 32``."""
        rank = self.rank if self.rank is not None else "/".join(map(str, self.ranks)) or "?"
        return f"LoRA on {', '.join(self.wrapped) or 'the model'}: {len(self.adapters)} adapted layers, rank {rank}"


def peft_view(shapes: Mapping[str, Shape]) -> PeftView | None:
    """The PEFT view of a state dict's shapes (by key), or None when nothing in it is PEFT's."""
    if not is_peft(list(shapes)):
        return None
    plain: dict[str, Shape] = {}
    file_key: dict[str, str] = {}
    pairs: dict[tuple[str, str], dict[str, tuple[str, Shape]]] = {}
    other: dict[str, Shape] = {}
    wrapped: list[str] = []
    for key, shape in shapes.items():
        if WRAP in key:
            head = key.split(WRAP, 1)[0].rstrip(".")
            if head not in wrapped:
                wrapped.append(head)
        m = ADAPTER.match(key)
        if m is not None:
            halves = pairs.setdefault((plain_name(m.group("module")), m.group("adapter")), {})
            halves[m.group("kind")] = (key, shape)
        elif OTHER_ADAPTER.match(key):
            other[key] = shape
        else:
            name = plain_name(key)
            plain[name] = shape
            file_key[name] = key
    adapters = []
    for (module, adapter), halves in pairs.items():
        a, b = halves.get("lora_A"), halves.get("lora_B")
        adapters.append(
            LoraAdapter(
                module,
                adapter,
                a[1] if a else None,
                b[1] if b else None,
                a[0] if a else None,
                b[0] if b else None,
            )
        )
    return PeftView(plain, file_key, adapters, wrapped, other)
