"""Hugging Face sharded checkpoints: ``*.index.json`` (a ``weight_map`` from tensor name to shard file) beside
the shards (``model-00001-of-00002.safetensors``, ``pytorch_model-00001-of-00002.bin``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ckpttool.errors import CorruptCheckpoint
from ckpttool.formats.base import Format, Probe, Sniffed, open_regular
from ckpttool.formats.folders import read_member, total_size
from ckpttool.model import Checkpoint, Safety, TensorInfo
from ckpttool.vocab import Format as FormatName


def read_hf_sharded(folder: Path) -> Checkpoint:
    index_files = sorted(f for f in folder.iterdir() if f.name.endswith(".index.json") and f.is_file())
    index = index_files[0]
    try:
        with open_regular(index) as fh:
            doc = json.loads(fh.read(64 << 20))
        weight_map: dict[str, str] = dict(doc["weight_map"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CorruptCheckpoint(f"{index}: not a valid shard index ({exc})", path=str(index)) from None
    root: dict[str, Any] = {}
    tensors: list[TensorInfo] = []
    safety = Safety()
    for shard in sorted(set(weight_map.values())):
        shard_path = folder / shard
        if Path(shard).name != shard:
            raise CorruptCheckpoint(f"{index}: shard {shard!r} is outside the folder", path=str(index))
        member = read_member(shard_path)
        safety.merge(member.safety, prefix=f"{shard}: ")
        tmap = member.tensor_map() if isinstance(member.root, dict) else {}
        for name, t in tmap.items():
            if weight_map.get(name) == shard:
                root[name] = t
                tensors.append(t)
    missing = [n for n in weight_map if n not in root]
    if missing:
        raise CorruptCheckpoint(
            f"{folder}: {len(missing)} tensor(s) listed in {index.name} are in no shard (e.g. {missing[0]}); "
            "a shard is missing or from another save",
            path=str(folder),
        )
    ckpt = Checkpoint(str(folder), FormatName.HF_SHARDED, root, tensors, total_size(folder))
    ckpt.safety = safety
    ckpt.meta.update(
        index=index.name, shards=len(set(weight_map.values())), index_metadata=doc.get("metadata")
    )
    return ckpt


class HfSharded(Format):
    name = FormatName.HF_SHARDED
    description = "Hugging Face sharded checkpoint folder (*.index.json + shards)"
    directory = True

    def sniff(self, probe: Probe) -> Sniffed | None:
        if (
            probe.is_dir
            and ".metadata" not in probe.names
            and any(n.endswith(".index.json") for n in probe.names)
        ):
            return Sniffed(self.name, 0)
        return None

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        return read_hf_sharded(Path(path))
