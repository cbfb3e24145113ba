"""Values of a DCP checkpoint, read by ``torch.distributed.checkpoint`` itself — made safe.

DCP's own ``FileSystemReader.read_metadata`` uses ``pickle.load`` and its ``DefaultLoadPlanner.load_bytes`` uses
``torch.load`` with weights_only turned off. Here the ``Metadata`` is rebuilt from ckpttool's restricted parse of
``.metadata`` and handed to the reader, and non-tensor entries are decoded with ckpttool's own reader; tensor
chunks are still loaded by DCP (``torch.load(weights_only=True)``), so sharding and chunk assembly are torch's.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch.distributed import checkpoint as dcp
from torch.distributed.checkpoint import metadata as md_mod
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader, _StorageInfo

from ckpttool.readers.directory import dcp_metadata


@lru_cache(maxsize=8)
def _metadata(folder: str, mtime: float) -> md_mod.Metadata:
    parsed = dcp_metadata(Path(folder))
    entries: dict[str, Any] = {}
    for fqn, t in parsed["tensors"].items():
        entries[fqn] = md_mod.TensorStorageMetadata(
            properties=md_mod.TensorProperties(dtype=getattr(torch, t["dtype"])),
            size=torch.Size(t["shape"]),
            chunks=[
                md_mod.ChunkStorageMetadata(offsets=torch.Size(o), sizes=torch.Size(s))
                for o, s in t["chunks"]
            ],
        )
    for fqn in parsed["bytes"]:
        entries[fqn] = md_mod.BytesStorageMetadata()
    storage: dict[md_mod.MetadataIndex, _StorageInfo] = {}
    for fqn, items in parsed["storage"].items():
        for s in items:
            offset = torch.Size(s["offset"]) if s["offset"] is not None else None
            storage[md_mod.MetadataIndex(fqn, offset)] = _StorageInfo(
                str(s["file"]), int(s["start"]), int(s["length"]), s["transforms"]
            )
    return md_mod.Metadata(state_dict_metadata=entries, planner_data=parsed["mappings"], storage_data=storage)


class _SafeReader(FileSystemReader):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._md = _metadata(path, (Path(path) / ".metadata").stat().st_mtime)

    def read_metadata(self, *args: Any, **kwargs: Any) -> md_mod.Metadata:
        md = self._md
        meta = md.storage_meta if md.storage_meta is not None else md_mod.StorageMeta()
        meta.load_id = self.load_id
        md.storage_meta = meta
        return md


def _decode_bytes(value: io.BytesIO) -> Any:
    """A non-tensor DCP entry is a torch.save blob: read it with ckpttool's safe reader."""
    from ckpttool.readers import open_checkpoint
    from ckpttool.values import StorageReader
    from ckpttool.writers import materialise

    with tempfile.NamedTemporaryFile(suffix=".pt") as tmp:
        tmp.write(value.getvalue())
        tmp.flush()
        ckpt = open_checkpoint(tmp.name)
        with StorageReader() as reader:
            return materialise(ckpt.root, reader.tensor)


class _SafePlanner(DefaultLoadPlanner):
    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        decoded = _decode_bytes(value)
        # the planner works on a (sharded-tensor-flattened) copy; the caller reads the original dict
        self.state_dict[read_item.dest_index.fqn] = decoded
        self.original_state_dict[read_item.dest_index.fqn] = decoded


def load_flat(folder: str, keys: list[str] | None = None) -> dict[str, Any]:
    """Flat {fqn: tensor} for ``keys`` (default: every tensor), loaded by DCP on this process. Non-tensor
    entries come from ckpttool's own reading of the directory (``open_checkpoint``)."""
    metadata = _metadata(folder, (Path(folder) / ".metadata").stat().st_mtime)
    state: dict[str, Any] = {}
    for fqn, entry in metadata.state_dict_metadata.items():
        if keys is not None and fqn not in keys:
            continue
        if isinstance(entry, md_mod.TensorStorageMetadata):
            state[fqn] = torch.empty(entry.size, dtype=entry.properties.dtype)
    _load(folder, state)
    return state


def _load(folder: str, state: dict[str, Any]) -> None:
    from ckpttool.errors import CorruptCheckpoint

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # "torch.distributed is disabled ...": one process, as meant
        try:
            dcp.load(state, storage_reader=_SafeReader(folder), planner=_SafePlanner(flatten_state_dict=False),
                     no_dist=True)  # fmt: skip
        except BaseException as exc:  # DCP's CheckpointException derives from BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            lines = str(exc).strip().splitlines()
            first = (lines[-1] if lines else type(exc).__name__)[:200]
            raise CorruptCheckpoint(f"{folder}: torch.distributed.checkpoint cannot read it ({first})",
                                    path=folder) from None  # fmt: skip


def load_value(folder: str, fqn: str) -> Any:
    """A non-tensor entry ckpttool's own parse left to DCP (it holds tensors, or is large or transformed)."""
    state: dict[str, Any] = {fqn: None}
    _load(folder, state)
    return state[fqn]


def load_tensor(folder: str, fqn: str, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
    value = load_flat(folder, [fqn])[fqn]
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{folder}: {fqn} is not a tensor")
    return value
