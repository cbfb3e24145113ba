"""A Hugging Face ``save_pretrained`` folder without a shard index: ``config.json`` beside ``model.safetensors``
and/or ``pytorch_model.bin`` (transformers ``PreTrainedModel.save_pretrained``; ``from_pretrained`` prefers
the safetensors file when both exist). Each weight file is read and judged on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ckpttool.errors import CorruptCheckpoint
from ckpttool.formats.base import Format, Probe, Sniffed, open_regular
from ckpttool.formats.folders import read_member, rebase, total_size
from ckpttool.model import Checkpoint, Safety, TensorInfo
from ckpttool.vocab import Format as FormatName

WEIGHTS = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
READABLE = ("model.safetensors", "pytorch_model.bin")


class HfPretrained(Format):
    name = FormatName.HF_PRETRAINED
    description = "Hugging Face save_pretrained folder (config.json + model.safetensors / pytorch_model.bin)"
    directory = True

    def sniff(self, probe: Probe) -> Sniffed | None:
        names = probe.names
        if (
            probe.is_dir
            and any(n in names for n in READABLE)
            and not any(n.endswith(".index.json") for n in names)
        ):
            return Sniffed(self.name, 0)
        return None

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        folder = Path(path)
        root: dict[str, Any] = {}
        tensors: list[TensorInfo] = []
        safety = Safety()
        notes = []
        present = [n for n in READABLE if (folder / n).is_file()]
        for name in present:
            member = read_member(folder / name)
            safety.merge(member.safety, prefix=f"{name}: ")
            key = name.split(".")[0]
            member_root, member_tensors = rebase(member.root, key, member.tensors)
            root[key] = member_root
            tensors += member_tensors
        if len(present) == 2:
            notes.append(
                "both model.safetensors and pytorch_model.bin: from_pretrained loads model.safetensors"
            )
        config = folder / "config.json"
        if config.is_file():
            try:
                with open_regular(config) as fh:
                    root["config"] = json.loads(fh.read(16 << 20))
            except (ValueError, UnicodeDecodeError) as exc:
                raise CorruptCheckpoint(f"{config}: not valid JSON ({exc})", path=str(config)) from None
        ckpt = Checkpoint(str(folder), self.name, root, tensors, total_size(folder), notes=notes)
        ckpt.safety = safety
        ckpt.meta["members"] = present
        return ckpt
