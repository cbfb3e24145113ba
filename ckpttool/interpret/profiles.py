"""Known checkpoint layouts (formats.md) and a structural fallback for everything else.

A profile answers "where does each piece of training state live in this file, and which pieces does the
trainer rebuild instead of saving". The result is a :class:`Layout`; everything downstream works from it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckpttool.interpret import structure as st
from ckpttool.model import Checkpoint, Stub

PIECES = (
    "model",
    "optimizer",
    "scheduler",
    "step",
    "epoch",
    "norm_stats",
    "rng",
    "scaler",
    "config",
    "version",
)


@dataclass
class Layout:
    """Where the pieces are. Paths are dotted key paths into ``Checkpoint.root``."""

    profile: str
    description: str
    networks: dict[str, str] = field(default_factory=dict)  # label -> path of its state dict
    optimizers: dict[str, str] = field(default_factory=dict)  # path -> network label it updates
    schedulers: list[str] = field(default_factory=list)
    step: str | None = None
    epoch: str | None = None
    norm_stats: list[str] = field(default_factory=list)
    rng: dict[str, str] = field(default_factory=dict)  # kind -> path
    scaler: str | None = None
    config: str | None = None
    version: str | None = None  # a path, or "tag:<value>" for values not stored under a key
    rebuilt: dict[str, str] = field(default_factory=dict)  # piece -> how the trainer rebuilds it
    not_needed: dict[str, str] = field(default_factory=dict)  # piece -> why this trainer does not use it
    meaning: dict[str, str] = field(default_factory=dict)  # piece -> what the value means here
    trainer: str | None = None  # gpt-sovits, vits, rvc, lightning, ... when known
    group_layout: tuple[tuple[str, ...], ...] | None = (
        None  # prefixes of optimizer groups 1.. (group 0 = rest)
    )
    notes: list[str] = field(default_factory=list)


# --- the VITS family: G_*.pth / D_*.pth written by utils.save_checkpoint ---------------------------------
VITS_KEYS = {"model", "iteration", "optimizer", "learning_rate"}
# GPT-SoVITS puts these G params in optimizer groups 1..3, in this order (formats.md §1.4).
GPT_SOVITS_G_GROUPS = (("enc_p.text_embedding",), ("enc_p.encoder_text",), ("enc_p.mrte",))
REBUILD_RULES: dict[str, dict[str, str]] = {
    "gpt-sovits": {
        "scheduler": "ExponentialLR(gamma=train.lr_decay) rebuilt and stepped epoch+1 times over the saved, "
        "already decayed LR: the resumed epoch runs at lr0*gamma^(2e+1) instead of lr0*gamma^(e+1)",
        "step": "global_step = epoch * len(train_loader); right only if batch size, data and GPU count are unchanged",
    },
    "vits": {
        "scheduler": "ExponentialLR(gamma=train.lr_decay, last_epoch=epoch-2) rebuilt from the optimizer's initial_lr",
        "step": "global_step = (epoch-1) * len(train_loader); the interrupted epoch is re-run from its start",
    },
    "rvc": {
        "scheduler": "ExponentialLR(gamma=train.lr_decay, last_epoch=epoch-2) rebuilt from the optimizer's initial_lr",
        "step": "global_step = (epoch-1) * len(train_loader); RVC re-runs the saved epoch",
    },
}
REBUILD_RULES["vits-family"] = REBUILD_RULES["vits"]


def _vits_trainer(ckpt: Checkpoint, model: Any) -> str:
    p = ckpt.path.replace("\\", "/")
    name = os.path.basename(p)
    keys = [str(k) for k in model] if isinstance(model, dict) else []
    for wrapper in ("module.", "_orig_mod."):  # saved from a DDP / torch.compile wrapper
        if keys and all(k.startswith(wrapper) for k in keys):
            keys = [k[len(wrapper) :] for k in keys]
    if (
        "logs_s2" in p
        or "233333333333" in name
        or any(k.startswith(("enc_p.mrte.", "quantizer.")) for k in keys)
    ):
        return "gpt-sovits"
    if re.search(r"(?<!\d)2333333(?!\d)", name) or any(
        k.startswith(("enc_p.emb_phone.", "emb_g.")) for k in keys
    ):
        return "rvc"
    if any(k.startswith("enc_p.emb.") for k in keys):
        return "vits"
    if any(k.startswith("discriminators.8.") for k in keys):
        return "rvc"  # MultiPeriodDiscriminatorV2: periods 2..37 give 9 discriminators
    if name.startswith("D_"):
        return _sibling_g_trainer(p, name)
    return "vits-family"


def _sibling_g_trainer(path: str, name: str) -> str:
    """A D file's discriminator is the same across VITS-family trainers; its G sibling names the trainer.

    Only the sibling's pickle is parsed (no tensor bytes); any problem with it leaves the answer generic.
    """
    from ckpttool.errors import CkptError
    from ckpttool.formats import open_checkpoint  # local: readers import the model, not the reverse

    sibling = os.path.join(os.path.dirname(path), "G_" + name[2:])
    if not os.path.isfile(sibling):
        return "vits-family"
    try:
        g = open_checkpoint(sibling)
    except CkptError:
        return "vits-family"
    model = g.root.get("model") if isinstance(g.root, dict) else None
    if not isinstance(model, dict):
        return "vits-family"
    return _vits_trainer(g, model)


def _vits(ckpt: Checkpoint, root: dict[str, Any]) -> Layout:
    model = root["model"]
    name = os.path.basename(ckpt.path)
    is_d = name.startswith("D_") or (
        isinstance(model, dict) and any(k.startswith("discriminators.") for k in model)
    )
    label = "D" if is_d else "G"
    trainer = _vits_trainer(ckpt, model)
    layout = Layout(
        profile=f"{trainer}-train",
        description=f"{trainer} training checkpoint ({label}) written by utils.save_checkpoint",
        networks={label: "model"},
        optimizers={"optimizer": label} if st.is_optimizer(root.get("optimizer")) else {},
        epoch="iteration",
        trainer=trainer,
    )
    layout.meaning["epoch"] = "'iteration' is the epoch that just finished (1-based), not a step count"
    layout.rebuilt.update(REBUILD_RULES[trainer])
    layout.meaning["learning_rate"] = (
        "'learning_rate' is the config constant, not the decayed LR; it is ignored on load"
    )
    layout.not_needed["norm_stats"] = "this trainer computes spectrograms on the fly; no stats are kept"
    layout.not_needed["config"] = (
        "the trainer reads the run config from logs/<exp>/config.json, not from here"
    )
    layout.not_needed["version"] = "the architecture version is implied by the tensor shapes"
    if trainer == "gpt-sovits" and label == "G":
        layout.group_layout = GPT_SOVITS_G_GROUPS
    return layout


# --- exports ----------------------------------------------------------------------------------------------
def _info_counters(info: Any) -> tuple[int | None, int | None]:
    m = re.fullmatch(r"(\d+)epoch(?:_(\d+)iteration)?", str(info))
    if m:
        return int(m.group(1)), int(m.group(2)) if m.group(2) else None
    m = re.fullmatch(r"GPT-e(\d+)", str(info))
    return (int(m.group(1)), None) if m else (None, None)


def _export(ckpt: Checkpoint, root: dict[str, Any]) -> Layout:
    weight = root.get("weight")
    config = root.get("config")
    keys = list(weight) if isinstance(weight, dict) else []
    if isinstance(config, list) and {"sr", "f0"} <= set(root):
        kind, desc = "rvc-export", "RVC exported model (fp16 inference weights, config as an 18-value list)"
    elif keys and all(k.startswith("model.") for k in keys):
        kind, desc = (
            "gpt-sovits-gpt-export",
            "GPT-SoVITS GPT (s1) export: fp16 inference weights with the YAML config",
        )
    else:
        kind, desc = (
            "gpt-sovits-export",
            "GPT-SoVITS SoVITS (s2) export: fp16 inference weights with the run config",
        )
        if "lora_rank" in root:
            desc += f" (LoRA adapters only, rank {root['lora_rank']})"
    layout = Layout(
        kind,
        desc,
        networks={"G" if kind != "gpt-sovits-gpt-export" else "GPT": "weight"},
        config="config",
        trainer="gpt-sovits" if kind.startswith("gpt") else "rvc",
    )
    epoch, step = _info_counters(root.get("info"))
    if epoch is not None:
        layout.epoch = "info"
        layout.meaning["epoch"] = f"parsed from info={root.get('info')!r}: epoch {epoch}"
    if step is not None:
        layout.step = "info"
        layout.meaning["step"] = f"parsed from info={root.get('info')!r}: step {step}"
    if "version" in root:
        layout.version = "version"
    elif isinstance(config, Stub) and "version" in _attrs(config.attributes().get("model")):
        layout.version = "config.model.version"
    if ckpt.meta.get("gpt_sovits_tag"):
        layout.version = f"tag:{ckpt.meta['gpt_sovits_tag']}"
    layout.notes.append(
        "exports hold inference weights only: fine-tune from them, but training cannot resume"
    )
    layout.not_needed["norm_stats"] = "inference export"
    return layout


def _attrs(obj: Any) -> dict[str, Any]:
    return obj.attributes() if isinstance(obj, Stub) else obj if isinstance(obj, dict) else {}


# --- Lightning ----------------------------------------------------------------------------------------------
def _lightning(ckpt: Checkpoint, root: dict[str, Any]) -> Layout:
    layout = Layout(
        "lightning",
        "PyTorch Lightning checkpoint (Trainer.save_checkpoint)",
        networks={"model": "state_dict"},
        step="global_step",
        epoch="epoch",
        config="hyper_parameters" if "hyper_parameters" in root else None,
        version="pytorch-lightning_version",
        trainer="lightning",
    )
    for i, opt in enumerate(root.get("optimizer_states") or []):
        if st.is_optimizer(opt):
            layout.optimizers[f"optimizer_states.{i}"] = "model"
    layout.schedulers = [
        f"lr_schedulers.{i}" for i, s in enumerate(root.get("lr_schedulers") or []) if isinstance(s, dict)
    ]
    for key in ("MixedPrecision", "native_amp_scaling_state", "amp_scaling_state"):
        if st.is_scaler(root.get(key)):
            layout.scaler = key
    layout.meaning["epoch"] = "'epoch' is Lightning's 0-based current_epoch"
    layout.meaning["step"] = "'global_step' counts optimizer steps"
    # callbacks hold ModelCheckpoint.best_k_models (path -> score tensor) and loops hold progress counters:
    # tensors, but never a network.
    _structural_extras(
        root, layout, skip={"state_dict", "optimizer_states", "lr_schedulers", "callbacks", "loops"}
    )
    return layout


# --- the article's bundle and everything else -------------------------------------------------------------
def _seed(ckpt: Checkpoint, root: dict[str, Any]) -> Layout:
    layout = Layout(
        "bundle",
        "training bundle with G/D weights, optimizers and counters (the article's layout)",
        trainer=None,
    )
    for label, key in (
        ("G", "model_g"),
        ("D", "model_d"),
        ("G", "net_g"),
        ("D", "net_d"),
        ("G", "generator"),
        ("D", "discriminator"),
    ):
        if st.is_state_dict(root.get(key)) and label not in layout.networks:
            layout.networks[label] = key
    for key, label in (("optimizer_g", "G"), ("optimizer_d", "D"), ("optim_g", "G"), ("optim_d", "D")):
        if st.is_optimizer(root.get(key)):
            layout.optimizers[key] = label
    _structural_extras(root, layout, skip=set(layout.networks.values()) | set(layout.optimizers))
    return layout


def generic(ckpt: Checkpoint) -> Layout:
    root = ckpt.root
    if st.is_state_dict(root):
        layout = Layout("state-dict", "plain state dict (weights only)", networks={"model": ""})
        if ckpt.format == "safetensors":
            layout.description = "safetensors weights"
            meta = ckpt.meta.get("safetensors_metadata") or {}
            for key in ("step", "global_step", "epoch"):
                if key in meta:
                    layout.notes.append(f"safetensors metadata records {key}={meta[key]}")
        return layout
    layout = Layout("generic", "unrecognised layout, classified by structure")
    _structural_extras(root, layout, skip=set())
    return layout


def _structural_extras(root: Any, layout: Layout, skip: set[str]) -> None:
    """Find pieces by shape of the data, anywhere in the tree not already claimed."""
    found_nets: list[tuple[str, str]] = []
    for path, obj in st.walk(root):
        if not path or any(path == s or path.startswith(s + ".") for s in skip if s):
            continue
        leaf = path.rsplit(".", 1)[-1].lower()
        if st.is_optimizer(obj):
            if path not in layout.optimizers:
                layout.optimizers[path] = ""
        elif st.is_scheduler(obj):
            if not any(path.startswith(s + ".") for s in layout.schedulers) and path not in layout.schedulers:
                layout.schedulers.append(path)
        elif st.is_scaler(obj) and layout.scaler is None:
            layout.scaler = path
        elif (kind := st.rng_kind(obj)) is not None:
            layout.rng.setdefault(kind, path)
        elif st.is_state_dict(obj):
            if any(h in leaf for h in st.NORM_HINTS) and len(obj) <= 16:
                layout.norm_stats.append(path)
            elif not any(path.startswith(p + ".") for _, p in found_nets):
                found_nets.append((path, path))
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            if leaf in st.STEP_KEYS and layout.step is None:
                layout.step = path
            elif leaf in st.EPOCH_KEYS and layout.epoch is None:
                layout.epoch = path
        elif leaf in st.NORM_HINTS and _is_tensorish(obj):
            layout.norm_stats.append(path)
        elif leaf in st.CONFIG_KEYS and layout.config is None and st.is_config(obj):
            layout.config = path
        elif leaf in st.VERSION_KEYS and isinstance(obj, (str, int)) and layout.version is None:
            layout.version = path
    for path, _ in found_nets:
        if path in layout.networks.values() or any(
            path.startswith(p + ".") for p in layout.networks.values() if p
        ):
            continue
        label = _net_label(path, layout)
        layout.networks[label] = path
    # Attach unlabelled optimizers to the only network, or by G/D naming.
    for opt_path, label in list(layout.optimizers.items()):
        if label:
            continue
        low = opt_path.lower()
        if len(layout.networks) == 1:
            layout.optimizers[opt_path] = next(iter(layout.networks))
        elif low.endswith(("_g", "_gen", "generator")) and "G" in layout.networks:
            layout.optimizers[opt_path] = "G"
        elif low.endswith(("_d", "_disc", "discriminator")) and "D" in layout.networks:
            layout.optimizers[opt_path] = "D"


def _is_tensorish(obj: Any) -> bool:
    from ckpttool.model import TensorInfo

    return isinstance(obj, TensorInfo) or (
        isinstance(obj, (list, tuple)) and len(obj) > 0 and all(isinstance(v, (int, float)) for v in obj)
    )


def _net_label(path: str, layout: Layout) -> str:
    leaf = path.rsplit(".", 1)[-1].lower()
    for label, hints in (
        ("G", ("model_g", "net_g", "generator", "gen", "g")),
        ("D", ("model_d", "net_d", "discriminator", "disc", "d")),
    ):
        if leaf in hints and label not in layout.networks:
            return label
    return path or "model"


# Detection order matters: the most specific layouts first.
PROFILES: list[tuple[str, Callable[[dict[str, Any]], bool], Callable[[Checkpoint, dict[str, Any]], Layout]]] = [
    ("vits-family training file", lambda r: set(r) == VITS_KEYS and st.is_state_dict(r["model"]), _vits),
    ("export", lambda r: {"weight", "config", "info"} <= set(r) and st.is_state_dict(r["weight"]), _export),
    ("lightning", lambda r: "state_dict" in r and ("pytorch-lightning_version" in r or "optimizer_states" in r),
     _lightning),
    ("bundle", lambda r: any(st.is_state_dict(r.get(k)) for k in ("model_g", "net_g", "generator")), _seed),
]  # fmt: skip


def _accelerate(ckpt: Checkpoint, root: dict[str, Any]) -> Layout:
    """accelerate ``save_state``: model[_N].safetensors, optimizer[_N].bin, scheduler[_N].bin, scaler.pt and one
    random_states_<rank>.pkl per process (formats: anchors §4.2)."""
    layout = Layout("accelerate", "accelerate save_state directory", trainer="accelerate")
    for key in sorted(root):
        if key.startswith("model") and st.is_state_dict(root[key]):
            layout.networks[key] = key
    for key in sorted(root):
        if key.startswith("optimizer") and st.is_optimizer(root[key]):
            suffix = key[len("optimizer") :]
            layout.optimizers[key] = f"model{suffix}" if f"model{suffix}" in layout.networks else "model"
        elif key.startswith("scheduler") and isinstance(root[key], dict):
            layout.schedulers.append(key)
    if st.is_scaler(root.get("scaler")):
        layout.scaler = "scaler"
    for rank, states in sorted((root.get("rng") or {}).items()):
        if isinstance(states, dict):
            for kind, name in (("python", "random_state"), ("numpy", "numpy_random_seed"), ("torch", "torch_manual_seed"),
                               ("cuda", "torch_cuda_manual_seed")):  # fmt: skip
                if name in states:
                    layout.rng[kind if rank == "0" else f"{kind}[{rank}]"] = f"rng.{rank}.{name}"
    layout.not_needed["step"] = (
        "accelerate records no training step (random_states' 'step' counts gradient-accumulation micro-steps); "
        "keep yours with register_for_checkpointing"
    )
    layout.not_needed["epoch"] = "accelerate does not record the epoch; the training script keeps it"
    layout.not_needed["version"] = "accelerate does not record a code version"
    return layout


def detect_layout(ckpt: Checkpoint) -> Layout:
    root = ckpt.root
    if ckpt.format == "accelerate-dir" and isinstance(root, dict):
        return _accelerate(ckpt, root)
    if isinstance(root, dict) and not st.is_state_dict(root):
        for _, matches, build in PROFILES:
            if matches(root):
                return build(ckpt, root)
    return generic(ckpt)
