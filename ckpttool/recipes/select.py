"""Which built-in recipe drives a model run for the given files (``--trainer-root`` without ``--recipe``).

One small function on evidence ckpttool can check in the tree alone. It does not rely on profile names other
helpers are still adding (gpt-sovits-s1, SynthesizerTrnV3 specs): when those land, :func:`choose_recipe` can
switch to them.

- GPT-SoVITS s1 (``GPT_SoVITS/s1_train.py``): a Lightning checkpoint (``state_dict``, ``optimizer_states``)
  whose ``hyper_parameters`` hold ``config`` and whose weights are ``model.ar_*`` (Text2SemanticDecoder under
  ``Text2SemanticLightningModule.model``: AR/models/t2s_lightning_module.py:23, t2s_model.py:276-313);
- GPT-SoVITS v3/v4 LoRA (``s2_train_v3_lora.py``): a ``utils.save_checkpoint`` file whose model has ``cfm.``
  and ``bridge.`` keys (SynthesizerTrnV3: module/models.py:1289-1295) and PEFT ``lora_A`` adapters;
- GPT-SoVITS s2 v1..v2ProPlus (``s2_train.py``): the ``gpt-sovits-train`` layout (utils.py:75-90) without
  ``cfm.`` keys (SynthesizerTrn G, MultiPeriodDiscriminator D).
"""

from __future__ import annotations

from dataclasses import dataclass

from ckpttool.interpret.source import Source
from ckpttool.model import get_path


@dataclass(frozen=True)
class Choice:
    """A built-in recipe (``spec`` for ``--recipe``, a ``title`` for reports), or none (``spec`` None) with
    the ``reason``."""

    spec: str | None
    title: str
    reason: str = ""


S1 = Choice(
    "ckpttool.recipes.gpt_sovits_s1:recipe", "GPT-SoVITS s1 (Text2SemanticLightningModule, ScaledAdam)"
)
S2 = Choice("ckpttool.recipes.gpt_sovits:recipe", "GPT-SoVITS s2 (SynthesizerTrn + MultiPeriodDiscriminator)")
LORA = Choice(
    "ckpttool.recipes.gpt_sovits_lora:recipe", "GPT-SoVITS v3/v4 LoRA (SynthesizerTrnV3 + PEFT LoRA)"
)


def _keys(s: Source, path: str) -> list[str]:
    tree = get_path(s.ckpt.root, path) if path else s.ckpt.root
    return [str(k) for k in tree] if isinstance(tree, dict) else []


def _is_s1(s: Source) -> bool:
    root = s.ckpt.root
    if not isinstance(root, dict) or "state_dict" not in root or "optimizer_states" not in root:
        return False
    hyper = root.get("hyper_parameters")
    return (
        isinstance(hyper, dict)
        and "config" in hyper
        and any(k.startswith("model.ar_") for k in _keys(s, "state_dict"))
    )


def choose_recipe(sources: list[Source]) -> Choice:
    """The built-in recipe for ``sources`` (a G/D pair or one file), or a Choice without ``spec`` saying why
    none fits."""
    if sources and all(_is_s1(s) for s in sources):
        return S1
    if sources and all(s.layout.profile == "gpt-sovits-train" for s in sources):
        g_keys = [k for s in sources for k in _keys(s, "model")]
        if any(k.startswith("cfm.") for k in g_keys) and any(k.startswith("bridge.") for k in g_keys):
            if any(".lora_A." in k for k in g_keys):
                return LORA
            return Choice(
                None,
                "GPT-SoVITS v3/v4 full fine-tune",
                "no built-in recipe for full v3/v4 fine-tunes (s2_train_v3.py) yet; pass --recipe",
            )
        return S2
    profiles = ", ".join(sorted({s.layout.profile for s in sources})) or "nothing"
    return Choice(
        None,
        "",
        f"no built-in recipe for these files (layout {profiles}); built-in: GPT-SoVITS s1 Lightning .ckpt, "
        "s2 G/D pair, v3/v4 LoRA G; pass --recipe MODULE:FUNCTION for others",
    )
