"""``torch.distributed.checkpoint`` folders: ``.metadata`` plus ``__<rank>_<n>.distcp`` data files.

Both halves live here. Reading (this module) is torch-free: ``.metadata`` is a pickle that DCP itself reads
with plain ``pickle.load`` (torch/distributed/checkpoint/filesystem.py ``read_metadata``); here it goes through
ckpttool's restricted unpickler, and each small non-tensor value (a step counter, an lr) is parsed with
ckpttool's own reader. Tensor values and writing go through DCP itself, in :mod:`.torch_io`.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, CorruptCheckpoint, TruncatedCheckpoint
from ckpttool.formats.base import Format, Handles, Probe, Sniffed, WriteOptions, open_regular
from ckpttool.formats.folders import total_size
from ckpttool.formats.pickled import MAX_PICKLE_BYTES, read_pickle
from ckpttool.model import Checkpoint, DcpStorage, DeferredValue, Safety, Stub, TensorInfo, map_tree
from ckpttool.state_json import MARK, decode
from ckpttool.vocab import Format as FormatName


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
    meta_path = folder / ".metadata"
    with open_regular(meta_path) as fh:
        data = fh.read(MAX_PICKLE_BYTES)
    result = read_pickle(data, str(meta_path), lambda pid: pid, what=".metadata")
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
            {
                "offset": _size(ia.get("offset")) if ia.get("offset") is not None else None,
                "file": sa.get("relative_path"),
                "start": sa.get("offset"),
                "length": sa.get("length"),
                "transforms": sa.get("transform_descriptors"),
            }
        )
    planner = md.get("planner_data") if isinstance(md.get("planner_data"), dict) else {}
    out: dict[str, Any] = {
        "tensors": {},
        "bytes": [],
        "storage": storage,
        "mappings": planner,
        "globals": result.foreign,
        "safety": result.safety,
    }
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
    safety = Safety()
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
        ref = DcpStorage(str(folder), fqn, t["dtype"], numel, "cpu", fqn=fqn)
        info = TensorInfo(fqn, t["dtype"], shape, stride, ref)
        flat[fqn] = info
        tensors.append(info)
        for s in md["storage"].get(fqn, []):
            _check_item(folder, fqn, s)
    for fqn in md["bytes"]:
        for s in md["storage"].get(fqn, []):
            _check_item(folder, fqn, s)
        flat[fqn] = _dcp_value(folder, fqn, md["storage"].get(fqn, []), safety)
    root = _decode_marks(_unflatten(flat, md["mappings"]), {t.path: t for t in tensors})
    if isinstance(root, dict) and isinstance(root.get(INT_KEYS), list):
        _restore_int_keys(root, root.pop(INT_KEYS))
    ckpt = Checkpoint(
        str(folder), FormatName.DCP, root, tensors, total_size(folder), foreign_globals=md["globals"]
    )
    md["safety"].merge(safety)
    ckpt.safety = md["safety"]
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
        raise TruncatedCheckpoint(
            f"{folder}: {name} ends before the data of {fqn} (needs {start + length} bytes, has "
            f"{data.stat().st_size}); the save was cut short, use another checkpoint",
            path=str(folder),
        )


def _dcp_value(folder: Path, fqn: str, items: list[dict[str, Any]], safety: Safety) -> Any:
    """A non-tensor entry (a step counter, an lr, a param-id list) is a torch.save blob inside a .distcp file,
    which ``dcp.load`` unpickles with weights_only off (default_planner.py ``load_bytes``): every one is read
    here with ckpttool's own reader, for its safety verdict, whatever its size. Small ones without tensors are
    kept as values; the rest are read through DCP when needed."""
    import tempfile

    from ckpttool.formats import open_checkpoint

    if not items:
        return DeferredValue(str(folder), fqn)
    if len(items) != 1 or items[0].get("transforms"):
        safety.mark(f"dcp-value:{fqn}", "unverified", "stored in pieces or transformed; not scanned")
        return DeferredValue(str(folder), fqn)
    item = items[0]
    start, length = int(item["start"]), int(item["length"])
    if length > MAX_PICKLE_BYTES:
        safety.mark(f"dcp-value:{fqn}", "unverified", f"{length:,} bytes, too large to scan")
        return DeferredValue(str(folder), fqn)
    with open_regular(folder / str(item["file"])) as fh:
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
    safety.merge(value.safety, prefix=f"value {fqn}: ")
    if value.tensors or length > MAX_VALUE_BLOB:
        return DeferredValue(str(folder), fqn)  # tensors inside a value, or a large one: read through DCP
    return value.root


def _decode_marks(obj: Any, tensors: dict[str, TensorInfo]) -> Any:
    """`ckpttool convert --to dcp` stores non-plain values (stubs, numpy arrays) and non-string keys as typed JSON
    strings; turn them back."""

    def leaf(x: Any, _: Any) -> Any:
        if isinstance(x, str) and x.startswith(MARK + "json:"):
            return decode(json.loads(x[len(MARK) + 5 :]), lambda key: tensors[key])
        return x

    return map_tree(obj, leaf, key=_decode_key)


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


class Dcp(Format):
    name = FormatName.DCP
    description = "torch.distributed.checkpoint folder (.metadata + *.distcp)"
    directory = True
    storage = DcpStorage
    target = "dcp"
    byte_access = False

    def sniff(self, probe: Probe) -> Sniffed | None:
        return Sniffed(self.name, 0) if probe.is_dir and ".metadata" in probe.names else None

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        return _read_dcp(Path(path))

    def load_tensor(self, handles: Handles, info: TensorInfo) -> Any:
        from ckpttool.formats.dcp.torch_io import load_tensor

        assert isinstance(info.storage, DcpStorage)
        return load_tensor(info.storage.file, info.storage.fqn, info.shape, info.dtype)

    def load_value(self, value: DeferredValue) -> Any:
        from ckpttool.formats.dcp.torch_io import load_value

        return load_value(value.folder, value.fqn)

    def write(self, ckpt: Checkpoint, target: Path, materialised: Any, options: WriteOptions) -> list[str]:
        from ckpttool.formats.dcp.torch_io import write_dcp

        write_dcp(ckpt, target, materialised, options)
        return []
