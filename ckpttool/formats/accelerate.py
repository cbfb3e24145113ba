"""accelerate ``Accelerator.save_state`` folders: ``model[_N].safetensors|bin``, ``optimizer[_N].bin``,
``scheduler[_N].bin``, ``scaler.pt``, ``random_states_<rank>.pkl``, ``custom_checkpoint_<N>.pkl``
(accelerate/checkpointing.py ``save_accelerator_state``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ckpttool.formats.base import Format, Probe, Sniffed
from ckpttool.formats.folders import read_member, rebase, total_size
from ckpttool.model import Checkpoint, Safety, TensorInfo
from ckpttool.vocab import Format as FormatName

ACCEL_MODEL = re.compile(r"^(?:model|pytorch_model)(?:_(\d+))?\.(?:safetensors|bin)$")
ACCEL_OTHER = re.compile(
    r"^(?:optimizer(?:_\d+)?\.bin|scheduler(?:_\d+)?\.bin|scaler\.pt|random_states_\d+\.pkl)$"
)


def _read_accelerate(folder: Path) -> Checkpoint:
    root: dict[str, Any] = {}
    tensors: list[TensorInfo] = []
    foreign: list[str] = []
    notes: list[str] = []
    safety = Safety()
    files = sorted(f.name for f in folder.iterdir() if f.is_file())
    for name in files:
        m = ACCEL_MODEL.match(name)
        if m:
            key = "model" if m.group(1) is None else f"model_{m.group(1)}"
        elif re.match(r"^optimizer(_\d+)?\.bin$", name) or re.match(r"^scheduler(_\d+)?\.bin$", name):
            key = name[: -len(".bin")]
        elif name == "scaler.pt":
            key = "scaler"
        elif re.match(r"^random_states_\d+\.pkl$", name):
            key = "rng." + name[len("random_states_") : -len(".pkl")]
        elif re.match(r"^custom_checkpoint_\d+\.pkl$", name):
            key = name[: -len(".pkl")]
        else:
            continue
        member = read_member(folder / name)
        foreign += [g for g in member.foreign_globals if g not in foreign]
        safety.merge(member.safety, prefix=f"{name}: ")
        member_root, member_tensors = rebase(member.root, key, member.tensors)
        tensors += member_tensors
        if key.startswith("rng."):
            root.setdefault("rng", {})[key[4:]] = member_root
        else:
            root[key] = member_root
    rng = root.get("rng", {})
    steps = {v.get("step") for v in rng.values() if isinstance(v, dict) and isinstance(v.get("step"), int)}
    if len(steps) == 1:
        root["step"] = steps.pop()
    models = [k for k in root if k.startswith("model")]
    rng_files = len(rng)
    if rng_files > 1:
        notes.append(f"{rng_files} random_states files: resuming on another number of processes ignores some")
    ckpt = Checkpoint(
        str(folder),
        FormatName.ACCELERATE,
        root,
        tensors,
        total_size(folder),
        foreign_globals=foreign,
        notes=notes,
    )
    ckpt.safety = safety
    ckpt.meta["members"] = files
    ckpt.meta["models"] = models
    return ckpt


class Accelerate(Format):
    name = FormatName.ACCELERATE
    description = "accelerate save_state folder"
    directory = True

    def sniff(self, probe: Probe) -> Sniffed | None:
        names = probe.names
        if (
            probe.is_dir
            and any(ACCEL_MODEL.match(n) for n in names)
            and any(ACCEL_OTHER.match(n) for n in names)
        ):
            return Sniffed(self.name, 0)
        return None

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        return _read_accelerate(Path(path))
