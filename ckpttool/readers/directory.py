"""Checkpoints that are directories: accelerate ``save_state``, Hugging Face sharded, and DCP.

Each becomes one ``Checkpoint`` whose tree looks like a single-file bundle (``model``, ``optimizer``,
``scheduler``, ``scaler``, ``rng``, ``step``), with every tensor still pointing at its own file, so inspect,
diff, latest and check treat them like any other checkpoint. The same guarantees hold: member files go through
the same safe readers; DCP's ``.metadata`` (a pickle that ``torch.distributed.checkpoint`` itself reads with
plain ``pickle.load``) goes through the restricted unpickler; no tensor bytes are read.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, CorruptCheckpoint, UnsupportedFormat
from ckpttool.model import Checkpoint, StorageRef, Stub, TensorInfo
from ckpttool.readers.sniff import ACCEL_MODEL, ACCELERATE, DCP, HF_SHARDED, sniff_directory


def read_directory(path: str) -> Checkpoint:
    kind = sniff_directory(path)
    if kind == DCP:
        return _read_dcp(Path(path))
    if kind == HF_SHARDED:
        return _read_hf_sharded(Path(path))
    if kind == ACCELERATE:
        return _read_accelerate(Path(path))
    raise UnsupportedFormat(
        f"{path}: is a directory but not a checkpoint ckpttool knows (accelerate save_state, Hugging Face "
        "sharded *.index.json, DCP .metadata); for a run directory use `ckpttool latest`",
        path=path,
    )


def _rebase(obj: Any, prefix: str, tensors: list[TensorInfo]) -> tuple[Any, list[TensorInfo]]:
    """Re-key a member file's tree under ``prefix`` so tensor paths are unique across the directory."""
    new = {id(t): replace(t, path=f"{prefix}.{t.path}" if t.path else prefix) for t in tensors}

    def walk(x: Any) -> Any:
        if isinstance(x, TensorInfo):
            return new.get(id(x), x)
        if isinstance(x, dict):
            out = type(x)() if type(x) is not dict else {}
            for k, v in x.items():
                out[k] = walk(v)
            return out
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, tuple):
            return tuple(walk(v) for v in x)
        if isinstance(x, Stub):
            x.args = tuple(walk(v) for v in x.args)
            x.state = walk(x.state)
            x.items = {k: walk(v) for k, v in x.items.items()}
            x.list_items = [walk(v) for v in x.list_items]
        return x

    return walk(obj), list(new.values())


def _member(path: Path) -> Checkpoint:
    from ckpttool.readers import open_checkpoint

    return open_checkpoint(path)


def _total_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


# --- accelerate ---------------------------------------------------------------------------------------------
def _read_accelerate(folder: Path) -> Checkpoint:
    root: dict[str, Any] = {}
    tensors: list[TensorInfo] = []
    foreign: list[str] = []
    notes: list[str] = []
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
        member = _member(folder / name)
        foreign += [g for g in member.foreign_globals if g not in foreign]
        member_root, member_tensors = _rebase(member.root, key, member.tensors)
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
    ckpt = Checkpoint(str(folder), ACCELERATE, root, tensors, _total_size(folder), foreign_globals=foreign,
                      notes=notes)  # fmt: skip
    ckpt.meta["members"] = files
    ckpt.meta["models"] = models
    return ckpt


# --- Hugging Face sharded -------------------------------------------------------------------------------------
def _read_hf_sharded(folder: Path) -> Checkpoint:
    index_files = sorted(f for f in folder.iterdir() if f.name.endswith(".index.json"))
    index = index_files[0]
    try:
        doc = json.loads(index.read_text())
        weight_map: dict[str, str] = dict(doc["weight_map"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptCheckpoint(f"{index}: not a valid shard index ({exc})", path=str(index)) from None
    root: dict[str, Any] = {}
    tensors: list[TensorInfo] = []
    for shard in sorted(set(weight_map.values())):
        shard_path = folder / shard
        if Path(shard).name != shard:
            raise CorruptCheckpoint(f"{index}: shard {shard!r} is outside the folder", path=str(index))
        member = _member(shard_path)
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
    ckpt = Checkpoint(str(folder), HF_SHARDED, root, tensors, _total_size(folder))
    ckpt.meta.update(
        index=index.name, shards=len(set(weight_map.values())), index_metadata=doc.get("metadata")
    )
    return ckpt


# --- DCP ------------------------------------------------------------------------------------------------------
def _attrs(obj: Any) -> dict[str, Any]:
    return obj.attributes() if isinstance(obj, Stub) else obj if isinstance(obj, dict) else {}


def _size(obj: Any) -> tuple[int, ...]:
    """torch.Size pickles as a reduce of the tuple; the stub keeps it in its args."""
    if isinstance(obj, Stub) and obj.args:
        obj = obj.args[0]
    if isinstance(obj, list | tuple) and all(isinstance(d, int) for d in obj):
        return tuple(obj)
    raise CorruptCheckpoint("DCP .metadata: a tensor size is not a tuple of integers")


def dcp_metadata(folder: Path) -> dict[str, Any]:
    """The parts of DCP's ``Metadata`` ckpttool needs, from the restricted unpickler (never pickle.load)."""
    from ckpttool.readers.pickled import read_pickle

    meta_path = folder / ".metadata"
    with open(meta_path, "rb") as fh:
        result = read_pickle(fh, str(meta_path), lambda pid: pid)
    md = _attrs(result.root)
    entries = md.get("state_dict_metadata")
    if not isinstance(entries, dict):
        raise CorruptCheckpoint(
            f"{meta_path}: no state_dict_metadata; not a DCP checkpoint", path=str(meta_path)
        )
    storage: dict[str, list[dict[str, Any]]] = {}
    for index, info in (md.get("storage_data") or {}).items():
        ia, sa = _attrs(index), _attrs(info)
        storage.setdefault(str(ia.get("fqn")), []).append(
            {"offset": _size(ia.get("offset")) if ia.get("offset") is not None else None,
             "file": sa.get("relative_path"), "start": sa.get("offset"), "length": sa.get("length"),
             "transforms": sa.get("transform_descriptors")}
        )  # fmt: skip
    planner = md.get("planner_data") if isinstance(md.get("planner_data"), dict) else {}
    out: dict[str, Any] = {"tensors": {}, "bytes": [], "storage": storage, "mappings": planner,
                           "globals": result.foreign_globals}  # fmt: skip
    for fqn, entry in entries.items():
        ea = _attrs(entry)
        if "chunks" in ea:
            raw_props = ea.get("properties")
            props = _attrs(raw_props)
            dtype = props.get("dtype")
            if dtype is None and isinstance(raw_props, Stub) and isinstance(raw_props.state, tuple):
                dtype = raw_props.state[0]  # TensorProperties pickles (dtype, layout, ...) via __getstate__
            name = getattr(dtype, "name", None) or str(dtype)
            chunks = [(_size(_attrs(c).get("offsets")), _size(_attrs(c).get("sizes"))) for c in ea["chunks"]]
            out["tensors"][str(fqn)] = {"dtype": name, "shape": _size(ea.get("size")), "chunks": chunks}
        else:
            out["bytes"].append(str(fqn))
    return out


def _read_dcp(folder: Path) -> Checkpoint:
    try:
        md = dcp_metadata(folder)
    except CkptError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, EOFError) as exc:
        raise CorruptCheckpoint(f"{folder}/.metadata: unreadable ({type(exc).__name__}: {exc})") from None
    flat: dict[str, Any] = {}
    tensors: list[TensorInfo] = []
    for fqn, t in md["tensors"].items():
        shape = t["shape"]
        numel = 1
        for d in shape:
            numel *= d
        stride = tuple(_prod(shape[i + 1 :]) for i in range(len(shape)))
        ref = StorageRef(str(folder), fqn, t["dtype"], numel, "cpu", dcp=fqn)
        info = TensorInfo(fqn, t["dtype"], shape, stride, ref)
        flat[fqn] = info
        tensors.append(info)
        for s in md["storage"].get(fqn, []):
            _check_item(folder, fqn, s)
    for fqn in md["bytes"]:
        for s in md["storage"].get(fqn, []):
            _check_item(folder, fqn, s)
        flat[fqn] = _dcp_value(folder, fqn, md["storage"].get(fqn, []))
    root = _decode_marks(_unflatten(flat, md["mappings"]), {t.path: t for t in tensors})
    if isinstance(root, dict) and isinstance(root.get(INT_KEYS), list):
        _restore_int_keys(root, root.pop(INT_KEYS))
    ckpt = Checkpoint(str(folder), DCP, root, tensors, _total_size(folder), foreign_globals=md["globals"])
    ckpt.meta["dcp_files"] = sorted(f.name for f in folder.iterdir() if f.name.endswith(".distcp"))
    ckpt.notes.append(
        ".metadata read with ckpttool's restricted unpickler (torch's own reader uses pickle.load)"
    )
    return ckpt


MAX_VALUE_BLOB = 1 << 20


def _check_item(folder: Path, fqn: str, item: dict[str, Any]) -> None:
    """Every byte range .metadata names must be inside a .distcp file of this folder."""
    name = str(item.get("file"))
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise CorruptCheckpoint(
            f"{folder}: .metadata points {fqn} at {name!r}, outside the folder", path=str(folder)
        )
    data = folder / name
    if not data.is_file():
        raise CorruptCheckpoint(f"{folder}: {name} (data of {fqn}) is missing", path=str(folder))
    start, length = item.get("start"), item.get("length")
    if isinstance(start, int) and isinstance(length, int) and start + length > data.stat().st_size:
        from ckpttool.errors import TruncatedCheckpoint

        raise TruncatedCheckpoint(
            f"{folder}: {name} ends before the data of {fqn} (needs {start + length} bytes, has "
            f"{data.stat().st_size}); the save was cut short, use another checkpoint",
            path=str(folder),
        )


class DcpValue:
    """A DCP value ckpttool does not parse itself (it holds tensors, is over 1 MB, or is transformed): read
    through torch.distributed.checkpoint when the value is needed (convert, diff --values)."""

    def __init__(self, folder: str, fqn: str) -> None:
        self.folder, self.fqn = folder, fqn

    def __repr__(self) -> str:
        return f"<DCP value {self.fqn} (read on demand)>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DcpValue) and (self.folder, self.fqn) == (other.folder, other.fqn)

    def __hash__(self) -> int:
        return hash((self.folder, self.fqn))


def _dcp_value(folder: Path, fqn: str, items: list[dict[str, Any]]) -> Any:
    """A non-tensor entry (a step counter, an lr, a param-id list) is a small torch.save blob inside a .distcp
    file: read its bytes and parse them with ckpttool's own (torch-free, restricted) reader."""
    import tempfile

    from ckpttool.readers import open_checkpoint

    if len(items) != 1 or items[0].get("transforms"):
        return DcpValue(str(folder), fqn)
    item = items[0]
    start, length = int(item["start"]), int(item["length"])
    if length > MAX_VALUE_BLOB:
        return DcpValue(str(folder), fqn)
    with open(folder / str(item["file"]), "rb") as fh:
        fh.seek(start)
        blob = fh.read(length)
    if len(blob) != length:
        raise CorruptCheckpoint(f"{folder}: {item['file']} is shorter than .metadata says (value {fqn})")
    with tempfile.NamedTemporaryFile(suffix=".pt") as tmp:
        tmp.write(blob)
        tmp.flush()
        try:
            value = open_checkpoint(tmp.name)
        except CkptError as exc:
            exc.message = exc.message.replace(tmp.name, f"{folder} (value {fqn})")
            raise
    if value.tensors:
        return DcpValue(str(folder), fqn)  # tensors inside a value: read through DCP when needed
    return value.root


def _decode_marks(obj: Any, tensors: dict[str, TensorInfo]) -> Any:
    """`ckpttool convert --to dcp` stores non-plain values (stubs, numpy arrays) as typed JSON strings."""
    from ckpttool.state_json import MARK, decode

    if isinstance(obj, str) and obj.startswith(MARK + "json:"):
        return decode(json.loads(obj[len(MARK) + 5 :]), lambda key: tensors[key])
    if isinstance(obj, dict):
        return type(obj)((_decode_key(k), _decode_marks(v, tensors)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_decode_marks(v, tensors) for v in obj]
    return obj


INT_KEYS = "__ckpttool_int_keys__"


def _restore_int_keys(root: Any, paths: list[Any]) -> None:
    """`ckpttool convert --to dcp` lists the dicts whose keys were ints (DCP writes every key as a string)."""
    for path in paths:
        node = root
        for part in path if isinstance(path, list) else []:
            node = (
                node[int(part)]
                if isinstance(node, list)
                else node.get(part)
                if isinstance(node, dict)
                else None
            )
        if isinstance(node, dict):
            for k in [k for k in node if isinstance(k, str) and k.lstrip("-").isdigit()]:
                node[int(k)] = node.pop(k)


def _decode_key(k: Any) -> Any:
    from ckpttool.state_json import MARK, decode

    if isinstance(k, str) and k.startswith(MARK + "int:"):
        return int(k[len(MARK) + 4 :])
    if isinstance(k, str) and k.startswith(MARK + "json:"):
        return decode(json.loads(k[len(MARK) + 5 :]), lambda key: None)
    return k


def _prod(dims: tuple[int, ...]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _unflatten(flat: dict[str, Any], mappings: dict[Any, Any]) -> Any:
    """DCP flattens nested state dicts; its planner records each flat key's path, which rebuilds the tree."""
    if not mappings:
        return flat
    root: dict[Any, Any] = {}
    for fqn, value in flat.items():
        path = mappings.get(fqn)
        if not isinstance(path, list | tuple) or not path:
            root[fqn] = value
            continue
        node: Any = root
        for part, nxt in itertools.pairwise(path):
            if isinstance(node, list):
                while len(node) <= int(part):
                    node.append(None)
                if node[int(part)] is None:
                    node[int(part)] = [] if isinstance(nxt, int) else {}
                node = node[int(part)]
            else:
                node = node.setdefault(part, [] if isinstance(nxt, int) else {})
        last = path[-1]
        if isinstance(node, list):
            while len(node) <= int(last):
                node.append(None)
            node[int(last)] = value
        else:
            node[last] = value
    return root
