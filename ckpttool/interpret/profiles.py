"""Where each piece of training state lives in a file: from the trainer records, or by structure.

A profile answers "where does each piece of training state live in this file, and which pieces does the
trainer rebuild instead of saving". The trainer records (:mod:`ckpttool.trainers`) describe the files each
trainer writes; a file that matches none of them is classified by the structure of its data. The result is a
:class:`Layout`; everything downstream works from it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from ckpttool.interpret import structure as st
from ckpttool.interpret.version_guess import guess_note
from ckpttool.interpret.versions import infer_version
from ckpttool.keys import NORM_BUFFER, strip_wrapper
from ckpttool.model import Checkpoint, TensorInfo, get_path
from ckpttool.trainers import FileKind, Match, Trainable, Trainer, all_trainers, get_trainer
from ckpttool.vocab import PIECES

__all__ = ["PIECES", "Layout", "detect_layout", "generic"]


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
    version: str | None = (
        None  # a path, "tag:<value>" (a header tag) or "inferred:<value>" (folder, config, shapes)
    )
    version_evidence: list[str] = field(default_factory=list)  # what an inferred version rests on
    rebuilt: dict[str, str] = field(default_factory=dict)  # piece -> how the trainer rebuilds it
    not_needed: dict[str, str] = field(default_factory=dict)  # piece -> why this trainer does not use it
    meaning: dict[str, str] = field(default_factory=dict)  # piece -> what the value means here
    trainer: str | None = None  # the trainer record that wrote the file, when known
    group_layout: tuple[tuple[str, ...], ...] | None = (
        None  # prefixes of optimizer groups 1.. (group 0 = rest)
    )
    counter_parse: dict[str, str] = field(default_factory=dict)  # piece -> regex over the value at its path
    counter_offsets: dict[str, int] = field(default_factory=dict)  # piece -> value + this = finished count
    notes: list[str] = field(default_factory=list)
    # optimizer path -> the parameters it covers, when the trainer builds it over a subset (requires_grad,
    # a GAN's discriminator and generator optimizers over one state dict)
    trainable: dict[str, Trainable] = field(default_factory=dict)

    @property
    def record(self) -> Trainer | None:
        """The record of the trainer that wrote the file, or None."""
        return get_trainer(self.trainer)


# --- matching a file to a record --------------------------------------------------------------------------
def _matches(m: Match, ckpt: Checkpoint) -> bool:
    root = ckpt.root
    if m.formats and ckpt.format not in m.formats:
        return False
    if not isinstance(root, dict):
        return not (m.keys or m.keys_all or m.keys_any or m.state_dicts or m.any_state_dict) and bool(
            m.formats
        )
    keys = set(root)
    if m.keys is not None and keys != set(m.keys):
        return False
    if not set(m.keys_all) <= keys or (m.keys_any and not keys & set(m.keys_any)) or keys & set(m.keys_none):
        return False
    if any(not st.is_state_dict(root.get(k)) for k in m.state_dicts):
        return False
    if m.any_state_dict and not any(st.is_state_dict(root.get(k)) for k in m.any_state_dict):
        return False
    if m.config_list is not None and not (
        isinstance(root.get("config"), list) and len(root["config"]) == m.config_list
    ):
        return False
    first = next((root[k] for k in m.state_dicts), None)
    names = [str(k) for k in first] if isinstance(first, dict) else []
    if m.weight_prefix is not None and not (names and all(n.startswith(m.weight_prefix) for n in names)):
        return False
    return not (
        m.not_weight_prefix is not None and names and all(n.startswith(m.not_weight_prefix) for n in names)
    )


def _model_keys(ckpt: Checkpoint, kind: FileKind) -> list[str]:
    root = ckpt.root
    for path in kind.networks.values():
        obj = root.get(path.split("|")[0]) if isinstance(root, dict) else None
        if isinstance(obj, dict):
            return strip_wrapper(obj)[1]
    return []


def _detected(record: Trainer, ckpt: Checkpoint, kind: FileKind) -> bool:
    d = record.detect
    if d is None:
        return True
    posix = ckpt.path.replace("\\", "/")
    if d.path and re.search(d.path, posix):
        return True
    if d.name and re.search(d.name, os.path.basename(posix)):
        return True
    keys = _model_keys(ckpt, kind)
    if d.model_keys and any(k.startswith(tuple(d.model_keys)) for k in keys):
        return True
    return any(_index_count(keys, prefix) in counts for prefix, counts in d.model_key_counts.items())


def _index_count(keys: list[str], prefix: str) -> int:
    """How many distinct ``i`` occur in ``<prefix><i>.`` among ``keys``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in keys if (m := pattern.match(k))})


def _candidates(ckpt: Checkpoint) -> list[tuple[Trainer, FileKind]]:
    return [(r, k) for r in all_trainers() for k in r.files if _matches(k.match, ckpt)]


def _attribute(ckpt: Checkpoint, found: list[tuple[Trainer, FileKind]]) -> tuple[Trainer, FileKind]:
    """Several records share a layout (VITS's four keys): the first whose detection rules hold wrote it; a D file
    of none takes its trainer from its G sibling (same suffix); else the record marked as the fallback."""
    if len(found) == 1:
        return found[0]
    specific = [(r, k) for r, k in found if not (r.detect and r.detect.fallback)]
    for r, k in specific:
        if r.detect is None or _detected(r, ckpt, k):
            return r, k
    name = os.path.basename(ckpt.path)
    if name.startswith("D_"):
        sibling = _sibling_record(ckpt.path, name)
        match = next(((r, k) for r, k in found if r.name == sibling), None)
        if match is not None:
            return match
    return next(((r, k) for r, k in found if r.detect and r.detect.fallback), found[-1])


def _sibling_record(path: str, name: str) -> str | None:
    """A D file's discriminator is the same across VITS-family trainers; its G sibling names the trainer.

    Only the sibling's pickle is parsed (no tensor bytes); any problem with it leaves the answer open.
    """
    from ckpttool.errors import CkptError
    from ckpttool.formats import open_checkpoint  # local: formats import the model, not the reverse

    sibling = os.path.join(os.path.dirname(path), "G_" + name[2:])
    if not os.path.isfile(sibling):
        return None
    try:
        g = open_checkpoint(sibling)
    except CkptError:
        return None
    found = _candidates(g)
    return _attribute(g, found)[0].name if found else None


# --- building the layout ------------------------------------------------------------------------------------
def _role(ckpt: Checkpoint, kind: FileKind) -> str:
    name = os.path.basename(ckpt.path)
    for role, pattern in kind.roles.items():
        if re.search(pattern, name):
            return role
    root = ckpt.root if isinstance(ckpt.root, dict) else {}
    for role, prefix in kind.role_from_keys.items():
        for path in kind.networks.values():
            sd = root.get(path)
            if isinstance(sd, dict) and any(str(k).startswith(prefix) for k in sd):
                return role
    return kind.default_role or ""


def _expand(root: Any, pattern: str) -> list[str]:
    """``a.*.b`` -> every existing ``a.<i>.b``; a plain path -> itself when it exists."""
    paths = [""]
    parts = pattern.split(".*")
    for n, part in enumerate(parts):
        grown = []
        for prefix in paths:
            base = f"{prefix}{part}" if prefix else part.lstrip(".")
            if base and not _exists(root, base):
                continue
            grown.append(base)
        paths = grown
        if n < len(parts) - 1:
            paths = [f"{p}.{i}" for p in paths for i in range(_length(root, p))]
    return paths


def _exists(root: Any, path: str) -> bool:
    try:
        get_path(root, path)
    except (KeyError, IndexError, ValueError, TypeError):
        return False
    return True


def _length(root: Any, path: str) -> int:
    seq = get_path(root, path) if _exists(root, path) else None
    return len(seq) if isinstance(seq, list | tuple) else 0


def _from_record(ckpt: Checkpoint, record: Trainer, kind: FileKind) -> Layout:
    root = ckpt.root if isinstance(ckpt.root, dict) else {}
    role = _role(ckpt, kind)
    fill = {"role": role, **{str(k): v for k, v in root.items() if isinstance(v, str | int | float)}}
    description = kind.description.format(**fill) + "".join(
        text.format(**fill) for key, text in kind.description_if.items() if key in root
    )
    layout = Layout(kind.profile, description, trainer=record.name)
    for label, paths in kind.networks.items():
        for path in paths.split("|"):
            if st.is_state_dict(root.get(path)) or (
                path and _expand(root, path) and st.is_state_dict(get_path(root, path))
            ):
                layout.networks.setdefault(label.format(role=role), path)
                break
    for path, label in kind.optimizers.items():
        for p in _expand(root, path):
            if st.is_optimizer(get_path(root, p)):
                layout.optimizers[p] = label.format(role=role)
    for path in kind.schedulers:
        layout.schedulers += [p for p in _expand(root, path) if isinstance(get_path(root, p), dict)]
        listed = root.get(path[: -len(".*")]) if path.endswith(".*") and isinstance(root, dict) else None
        if isinstance(listed, list) and not listed and not layout.schedulers:
            # Lightning saves one entry per configured scheduler and restores them by zip (pytorch-lightning@7f0c343
            # trainer/connectors/checkpoint_connector.py:470-473, :402-403): empty means the run had none
            layout.not_needed.setdefault(
                "scheduler", f"{path[:-2]} is empty: the run configured no LR scheduler"
            )
    _pattern_keys(root, kind, layout)
    for piece, counter in kind.counters.items():
        if _expand(root, counter.key):
            setattr(layout, piece, counter.key)
            if counter.meaning:
                layout.meaning[piece] = counter.meaning
            if counter.parse:
                layout.counter_parse[piece] = counter.parse
            if counter.finished_offset is not None:
                layout.counter_offsets[piece] = counter.finished_offset
    if kind.config and kind.config in root:
        layout.config = kind.config
    layout.version = next((v for v in kind.version if _expand(root, v)), None)
    if kind.version_from_header and ckpt.meta.get("gpt_sovits_tag"):
        layout.version = f"tag:{ckpt.meta['gpt_sovits_tag']}"
    if layout.version is None and kind.version_from:
        found = infer_version(ckpt, kind, next(iter(layout.networks.values()), None), record.spec_family)
        if found is not None:
            layout.version = f"inferred:{found.value}"
            layout.version_evidence = found.evidence
            layout.notes += [f"version: {c}" for c in found.conflicts]
    for key in kind.scaler:
        if st.is_scaler(root.get(key)):
            layout.scaler = key
    if kind.rng_files:
        _rng_files(root, layout)
    layout.rebuilt.update(kind.rebuilt)
    layout.not_needed.update(kind.not_needed)
    layout.meaning.update(kind.meaning)
    layout.notes += list(kind.notes)
    groups = kind.optimizer_groups.get(role) if role else None
    layout.group_layout = groups if groups else None
    for opt_path, label in layout.optimizers.items():
        rule = kind.trainable.get(opt_path) or kind.trainable.get(label)
        if rule is not None:
            layout.trainable[opt_path] = rule
    if kind.version_guess is not None:
        layout.notes += guess_note(ckpt, kind.version_guess, _value_at(root, layout.version))
    _parsed_counters(ckpt, layout)
    if kind.structural:
        skip = {*kind.structural_skip, *layout.networks.values(), *layout.optimizers}
        _structural_extras(root, layout, skip={s for s in skip if s})
    return layout


def _value_at(root: Any, path: str | None) -> Any:
    if path is None or path.startswith("tag:"):
        return path[4:] if path else None
    return get_path(root, path) if _exists(root, path) else None


def _pattern_keys(root: dict[str, Any], kind: FileKind, layout: Layout) -> None:
    """accelerate-style folders: pieces named by a pattern over the top-level keys (model, model_1, ...)."""
    for key in sorted(root):
        if kind.network_keys and re.fullmatch(kind.network_keys, key) and st.is_state_dict(root[key]):
            layout.networks[key] = key
    for key in sorted(root):
        m = re.fullmatch(kind.optimizer_keys, key) if kind.optimizer_keys else None
        if m and st.is_optimizer(root[key]):
            suffix = m.groupdict().get("n") or ""
            layout.optimizers[key] = f"model{suffix}" if f"model{suffix}" in layout.networks else "model"
        elif kind.scheduler_keys and re.fullmatch(kind.scheduler_keys, key) and isinstance(root[key], dict):
            layout.schedulers.append(key)


# Generator -> its key in accelerate's random_states_<rank>.pkl (accelerate checkpointing.py:144-176) and in
# transformers' rng_state[_<rank>].pth (transformers trainer.py _save_rng_state, :3403; read back at :3875-3893).
RNG_KEYS = {
    "python": ("random_state", "python"),
    "numpy": ("numpy_random_seed", "numpy"),
    "torch": ("torch_manual_seed", "cpu"),
    "cuda": ("torch_cuda_manual_seed", "cuda"),
}


def _rng_files(root: dict[str, Any], layout: Layout) -> None:
    """Per-process RNG files read into ``rng.<rank>`` (accelerate, transformers)."""
    for rank, states in sorted((root.get("rng") or {}).items()):
        if isinstance(states, dict):
            for kind, names in RNG_KEYS.items():
                name = next((n for n in names if n in states), None)
                if name is not None:
                    layout.rng[kind if rank == "0" else f"{kind}[{rank}]"] = f"rng.{rank}.{name}"


def _parsed_counters(ckpt: Checkpoint, layout: Layout) -> None:
    """Counters kept inside a string (``info``): present only when the string parses, with its meaning."""
    for piece, pattern in layout.counter_parse.items():
        path = getattr(layout, piece)
        value = get_path(ckpt.root, path) if path else None
        m = re.search(pattern, str(value)) if value is not None else None
        if m is None:
            setattr(layout, piece, None)
            continue
        layout.meaning[piece] = f"parsed from {path}={value!r}: {piece} {m.group(1)}"


def counter_value(ckpt: Checkpoint, layout: Layout, piece: str) -> int | None:
    """The value of counter ``piece`` ("step" or "epoch"): an int stored under its path, or parsed from a string
    (``info``); None when absent or not an integer."""
    path = getattr(layout, piece)
    if not path:
        return None
    try:
        value = get_path(ckpt.root, path)
    except (KeyError, IndexError, ValueError, TypeError):
        return None
    pattern = layout.counter_parse.get(piece)
    if pattern is not None:
        m = re.search(pattern, str(value))
        return int(m.group(1)) if m else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def generic(ckpt: Checkpoint) -> Layout:
    """The layout of a file no trainer record claims: a bare state dict is one network (``model``, at the
    root); anything else is classified by the structure of its data."""
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
    if st.is_optimizer(root):
        layout = Layout(
            "optimizer-state", "a standalone optimizer state_dict (e.g. accelerate's optimizer.bin)"
        )
        layout.optimizers[""] = ""
        return layout
    if st.is_scheduler(root):
        layout = Layout(
            "scheduler-state", "a standalone LR scheduler state_dict (e.g. accelerate's scheduler.bin)"
        )
        layout.schedulers.append("")
        return layout
    if st.is_scaler(root):
        layout = Layout(
            "scaler-state", "a standalone AMP GradScaler state_dict (e.g. accelerate's scaler.pt)"
        )
        layout.scaler = ""
        return layout
    if ckpt.format == "torchscript" and ckpt.tensors:
        # torch.jit.save writes the module's parameters and buffers as its attributes; convert reads the same
        return Layout(
            "torchscript",
            "TorchScript module (torch.jit.save): its parameters and buffers are the network weights",
            networks={"model": ""},
        )
    layout = Layout("generic", "unrecognised layout, classified by structure")
    _structural_extras(root, layout, skip=set())
    return layout


def _norm_buffers(ckpt: Checkpoint, layout: Layout) -> None:
    """Normalisation statistics registered as buffers of a network (``norm_mean``, ``mel_std``...): the
    ``norm_stats`` piece, found by name (:data:`ckpttool.keys.NORM_BUFFER`)."""
    for path in layout.networks.values():
        sd = get_path(ckpt.root, path) if path else ckpt.root
        if not isinstance(sd, dict):
            continue
        for key in sd:
            if isinstance(key, str) and NORM_BUFFER.search(key):
                full = f"{path}.{key}" if path else key
                if full not in layout.norm_stats:
                    layout.norm_stats.append(full)


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


def detect_layout(ckpt: Checkpoint) -> Layout:
    """The layout of ``ckpt``: from the record of the trainer that wrote it, else by structure."""
    found = _candidates(ckpt)
    if found:
        record, kind = _attribute(ckpt, found)
        layout = _from_record(ckpt, record, kind)
    else:
        layout = generic(ckpt)
    _norm_buffers(ckpt, layout)
    if layout.norm_stats:
        layout.not_needed.pop("norm_stats", None)
    return layout
