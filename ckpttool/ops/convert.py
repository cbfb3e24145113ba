"""``convert``: between torch files, safetensors and DCP directories, verified tensor by tensor.

- ``pth``: ``torch.save`` of the full tree, with the classes the source pickled written back as themselves.
- ``safetensors``: every tensor under its dotted path; everything else (optimizer hyper-parameters, counters,
  configs, RNG state) as typed JSON in the ``ckpttool.state`` metadata entry, so nothing is lost on a round trip.
  A plain state dict stays a plain safetensors file.
- ``dcp``: written by ``torch.distributed.checkpoint`` itself (single process); values DCP would pickle with
  ckpttool classes (stubs, numpy arrays) are stored as typed JSON strings instead.

The output is written beside its final name and renamed into place, then read back through ckpttool's readers
and compared with the source: every tensor value (``torch.equal``) and every non-tensor value.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import MigrationError, UsageError
from ckpttool.model import Checkpoint, Stub, TensorInfo
from ckpttool.readers import open_checkpoint
from ckpttool.readers.directory import INT_KEYS
from ckpttool.state_json import FORMAT, MARK, encode
from ckpttool.values import StorageReader
from ckpttool.writers import atomic_write, check_output, materialise, torch_save_to

TARGETS = ("pth", "safetensors", "dcp")
SCHEMA = "ckpttool.convert/1"


@dataclass
class ConvertReport:
    src: str
    out: str
    to: str
    tensors: int
    verified: bool
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **self.__dict__}


def _is_flat_state_dict(root: Any) -> bool:
    return isinstance(root, dict) and bool(root) and all(isinstance(v, TensorInfo) for v in root.values())


def _tag(ckpt: Checkpoint) -> bytes | None:
    from ckpttool.readers.sniff import GPT_SOVITS_TAGS

    tag = ckpt.meta.get("gpt_sovits_tag")
    return {v: k for k, v in GPT_SOVITS_TAGS.items()}.get(tag) if tag else None


def _marked_key(k: Any) -> Any:
    if isinstance(k, str | int) and not isinstance(k, bool):
        return k  # DCP writes int keys as strings; _int_key_paths records where to turn them back
    return MARK + "json:" + json.dumps(encode(k, lambda t: "?"))


def _int_key_paths(obj: Any, path: list[Any] | None = None) -> list[list[Any]]:
    """Paths of the dicts with int keys (optimizer state), so a DCP round trip can restore them."""
    path = path or []
    out: list[list[Any]] = []
    if isinstance(obj, dict):
        if any(isinstance(k, int) and not isinstance(k, bool) for k in obj):
            out.append(path)
        for k, v in obj.items():
            out += _int_key_paths(v, [*path, str(k) if isinstance(k, int) else k])
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _int_key_paths(v, [*path, i])
    return out


def _marked(obj: Any) -> Any:
    """For DCP: what it cannot keep as is — values it would pickle with ckpttool's own classes, int keys, empty
    containers (they have no leaves, so DCP drops them) — becomes typed JSON strings."""
    if isinstance(obj, dict | list) and not obj:
        return MARK + "json:" + json.dumps(encode(obj, lambda t: "?"))
    if isinstance(obj, dict):
        return type(obj)((_marked_key(k), _marked(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_marked(v) for v in obj]
    if isinstance(obj, Stub) or type(obj).__module__ == "numpy":
        return MARK + "json:" + json.dumps(encode(obj, lambda t: "?"))
    if isinstance(obj, tuple) and any(isinstance(v, Stub) for v in obj):
        return MARK + "json:" + json.dumps(encode(obj, lambda t: "?"))
    return obj


def convert_checkpoint(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    to: str,
    force: bool = False,
    verify: bool = True,
) -> ConvertReport:
    if to not in TARGETS:
        raise UsageError(f"--to must be one of {', '.join(TARGETS)}")
    ckpt = open_checkpoint(src)
    target = Path(out)
    if to == "dcp":
        if target.exists() and not force:
            from ckpttool.errors import OutputExists

            raise OutputExists(f"{target}: already exists; pass --force to replace it")
        if target.exists() and Path(src).resolve() == target.resolve():
            raise UsageError(f"{target}: the output is the input; choose another -o")
    else:
        check_output(target, [str(src)], force)
    report = ConvertReport(ckpt.path, str(target), to, len(ckpt.tensors), False)

    def check(written: Path) -> None:
        """Runs on the temporary output, before it gets the final name: a wrong file never lands."""
        if not verify:
            return
        report.differences = compare_checkpoints(ckpt, open_checkpoint(written))
        report.verified = not report.differences
        if report.differences:
            more = f" (and {len(report.differences) - 1} more)" if len(report.differences) > 1 else ""
            raise MigrationError(f"{target}: the conversion would change the checkpoint: "
                                 f"{report.differences[0][:300]}{more}; nothing was written")  # fmt: skip

    with StorageReader() as reader:
        if to == "pth":
            root = materialise(ckpt.root, reader.tensor, shared=True)
            atomic_write(target, lambda fh: torch_save_to(fh, root, tag=_tag(ckpt)), check)
        elif to == "safetensors":
            _write_safetensors(ckpt, target, reader, report, check)
        else:
            _write_dcp(ckpt, target, reader, force, check)
    return report


def _write_safetensors(
    ckpt: Checkpoint, target: Path, reader: StorageReader, report: ConvertReport, check: Any
) -> None:
    from safetensors.torch import save

    tensors: dict[str, Any] = {}
    for t in ckpt.tensors:
        if t.path not in tensors:
            tensors[t.path] = reader.tensor(t).contiguous().clone()
    metadata: dict[str, str] = {}
    if not _is_flat_state_dict(ckpt.root):
        metadata["ckpttool.state"] = json.dumps(encode(ckpt.root, lambda t: t.path))
        metadata["ckpttool.format"] = FORMAT
        report.notes.append("non-tensor training state kept as typed JSON in the ckpttool.state metadata")
    metadata["ckpttool.source_format"] = ckpt.format
    data = save(tensors, metadata=metadata)
    atomic_write(target, lambda fh: fh.write(data), check)


def _write_dcp(
    ckpt: Checkpoint, target: Path, reader: StorageReader, force: bool, verify_dir: Any = None
) -> None:
    import warnings

    from torch.distributed import checkpoint as dcp

    root = ckpt.root if isinstance(ckpt.root, dict) else {"root": ckpt.root}
    plain = materialise(root, reader.tensor)
    state = _marked(plain)
    int_paths = _int_key_paths(plain)
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
        if verify_dir is not None:
            verify_dir(staging)
        if target.exists() and force:
            backup = target.with_name(f".{target.name}.old")
            os.replace(target, backup)
            os.replace(staging, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _pairs(a: Any, b: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Walk two trees together, yielding (path, a, b) for every leaf and every mismatch of structure."""
    if isinstance(a, TensorInfo) or isinstance(b, TensorInfo):
        yield path, a, b
    elif isinstance(a, dict) and isinstance(b, dict):
        keys = list(a) + [k for k in b if k not in a]
        for k in keys:
            yield from _pairs(a.get(k, _MISSING), b.get(k, _MISSING), f"{path}.{k}" if path else str(k))
    elif (
        isinstance(a, list | tuple)
        and isinstance(b, list | tuple)
        and type(a) is type(b)
        and len(a) == len(b)
    ):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _pairs(x, y, f"{path}.{i}" if path else str(i))
    elif isinstance(a, Stub) and isinstance(b, Stub):
        if type(a).qualname != type(b).qualname:
            yield path, type(a).qualname, type(b).qualname
        yield from _pairs(list(a.args), list(b.args), path + ".args")
        yield from _pairs(a.state, b.state, path + ".state")
        yield from _pairs(a.items, b.items, path + ".items")
        yield from _pairs(a.list_items, b.list_items, path + ".list_items")
    else:
        yield path, a, b


_MISSING = object()


def compare_checkpoints(a: Checkpoint, b: Checkpoint) -> list[str]:
    """Differences between two checkpoints: tensor values (one pair at a time) and every other value."""

    root_a = a.root if isinstance(a.root, dict) or b.format != "dcp-dir" else {"root": a.root}
    diffs: list[str] = []
    with StorageReader() as ra, StorageReader() as rb:
        for path, x, y in _pairs(root_a, b.root):
            if isinstance(x, TensorInfo) and isinstance(y, TensorInfo):
                tx, ty = ra.tensor(x), rb.tensor(y)
                if not _same_tensor(tx, ty):
                    diffs.append(f"{path}: tensor differs")
            elif x is _MISSING or y is _MISSING:
                diffs.append(f"{path}: only in {'the output' if x is _MISSING else 'the source'}")
            elif _has_dcp_value(x) or _has_dcp_value(y):
                if _norm(materialise(x, ra.tensor)) != _norm(materialise(y, rb.tensor)):
                    diffs.append(f"{path}: values differ")
            elif _norm(x) != _norm(y):
                diffs.append(f"{path}: {x!r} != {y!r}")
            if len(diffs) >= 20:
                break
    return diffs


def _same_tensor(a: Any, b: Any) -> bool:
    import torch

    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if torch.equal(a, b):
        return True
    return bool(a.is_floating_point() and torch.equal(torch.isnan(a), torch.isnan(b)) and
                torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))  # fmt: skip


def _has_dcp_value(v: Any) -> bool:
    from ckpttool.readers.directory import DcpValue

    return isinstance(v, DcpValue)


def _norm(v: Any) -> Any:
    if isinstance(v, float) and v != v:  # NaN
        return "nan"
    from ckpttool.readers.unpickler import NumpyArray

    if isinstance(v, NumpyArray):
        import numpy as np

        return (v.shape, np.dtype(v.dtype).str, v.data)
    if type(v).__module__ == "numpy" and hasattr(v, "tobytes"):
        import numpy as np

        arr = np.asarray(v)
        return (tuple(arr.shape), arr.dtype.str, arr.tobytes())
    if type(v).__name__ in ("Tensor", "Parameter"):
        return ("tensor", tuple(v.shape), str(v.dtype), v.detach().cpu().numpy().tobytes())
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return type(v)(_norm(x) for x in v)
    return v
