"""The torch half of the DCP format: values read, and folders written, by ``torch.distributed.checkpoint``.

Reading is made safe.

DCP's own ``FileSystemReader.read_metadata`` uses ``pickle.load`` and its ``DefaultLoadPlanner.load_bytes`` uses
``torch.load`` with weights_only turned off. Here the ``Metadata`` is rebuilt from ckpttool's restricted parse of
``.metadata`` and handed to the reader, and non-tensor entries are decoded with ckpttool's own reader; tensor
chunks are still loaded by DCP (``torch.load(weights_only=True)``), so sharding and chunk assembly are torch's.
"""

from __future__ import annotations

import io
import json
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

from ckpttool.errors import CorruptCheckpoint, UsageError
from ckpttool.formats.base import WriteOptions
from ckpttool.formats.dcp import INT_KEYS, dcp_metadata
from ckpttool.model import SKIP, Checkpoint, Stub, iter_nodes, map_tree
from ckpttool.state_json import MARK, encode


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
    from ckpttool.formats import open_checkpoint
    from ckpttool.formats.values import StorageReader

    with tempfile.NamedTemporaryFile(suffix=".pt") as tmp:
        tmp.write(value.getvalue())
        tmp.flush()
        ckpt = open_checkpoint(tmp.name)
        with StorageReader() as reader:
            return reader.materialise(ckpt.root)


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
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # "torch.distributed is disabled ...": one process, as meant
        try:
            dcp.load(
                state,
                storage_reader=_SafeReader(folder),
                planner=_SafePlanner(flatten_state_dict=False),
                no_dist=True,
            )
        except BaseException as exc:  # DCP's CheckpointException derives from BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            lines = str(exc).strip().splitlines()
            first = (lines[-1] if lines else type(exc).__name__)[:200]
            raise CorruptCheckpoint(
                f"{folder}: torch.distributed.checkpoint cannot read it ({first})", path=folder
            ) from None


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


# --- writing --------------------------------------------------------------------------------------------------
def _json_mark(value: Any) -> str:
    return MARK + "json:" + json.dumps(encode(value, lambda t: "?"))


def _marked(root: Any) -> Any:
    """What DCP cannot keep as is — values it would pickle with ckpttool's own classes, non-string keys, empty
    containers (they have no leaves, so DCP drops them) — becomes typed JSON strings."""

    def enter(x: Any, _: Any) -> Any:
        if isinstance(x, dict | list) and not x:
            return _json_mark(x)
        if isinstance(x, Stub) or type(x).__module__ == "numpy":
            return _json_mark(x)
        if isinstance(x, tuple) and any(isinstance(v, Stub) for v in x):
            return _json_mark(x)
        return SKIP

    def key(k: Any) -> Any:
        if isinstance(k, str | int) and not isinstance(k, bool):
            return k  # DCP writes int keys as strings; _int_key_paths records where to turn them back
        return _json_mark(k)

    return map_tree(root, enter=enter, key=key)


def _int_key_paths(root: Any) -> list[list[Any]]:
    """Paths of the dicts with int keys (optimizer state), so a DCP round trip can restore them. Dict keys are
    written as strings (as DCP stores them), list indices as ints."""
    out: list[list[Any]] = []
    for path, node in iter_nodes(root, descend=lambda x, _: isinstance(x, dict | list)):
        if isinstance(node, dict) and any(isinstance(k, int) and not isinstance(k, bool) for k in node):
            converted: list[Any] = []
            parent = root
            for p in path:
                converted.append(str(p) if isinstance(parent, dict) and isinstance(p, int) else p)
                parent = parent[p]
            out.append(converted)
    return out


def write_dcp(ckpt: Checkpoint, target: Path, materialised: Any, options: WriteOptions) -> None:
    """Save with ``dcp.save`` (single process) into an exclusive staging folder beside ``target``, verify it,
    then move it into place."""
    import shutil

    from ckpttool.outputs import replace_folder

    root = materialised if isinstance(materialised, dict) else {"root": materialised}
    state = _marked(root)
    int_paths = _int_key_paths(root)
    if int_paths:
        state[INT_KEYS] = int_paths
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent}: the output folder does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                dcp.save(state, checkpoint_id=str(staging), no_dist=True)
            except BaseException as exc:  # DCP's CheckpointException derives from BaseException
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                raise UsageError(
                    f"{target}: torch.distributed.checkpoint cannot save this state ({first[:200]})"
                ) from None
        options.verify(staging)
        replace_folder(staging, target, force=options.force)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
