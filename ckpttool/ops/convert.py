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

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import MigrationError, UnverifiedCheckpoint, UsageError
from ckpttool.formats import is_checkpoint_file, open_checkpoint
from ckpttool.formats.base import WriteOptions
from ckpttool.formats.policy import flatten_unverified, stub_globals
from ckpttool.formats.registry import writers
from ckpttool.formats.values import StorageReader
from ckpttool.model import MISSING, Checkpoint, DeferredValue, NumpyArray, TensorInfo, map_tree, zip_trees
from ckpttool.outputs import check_output, check_output_folder
from ckpttool.progress import Progress
from ckpttool.progress import report as report_progress

SCHEMA = "ckpttool.convert/1"


def targets() -> tuple[str, ...]:
    """The ``--to`` names: every format in the registry that can write."""
    return tuple(writers())


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


def convert_checkpoint(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    to: str,
    force: bool = False,
    verify: bool = True,
    allow_globals: frozenset[str] = frozenset(),
    flatten: bool = False,
    expand_views: bool = False,
    progress: Progress | None = None,
) -> ConvertReport:
    """Write ``src`` as format ``to`` at ``out``, verified tensor by tensor before it takes its final name.

    The output never names a global that is not safe: an unverified one in the source is refused
    (UnverifiedCheckpoint, exit 3) unless ``allow_globals`` names it or ``flatten`` replaces it with plain data
    (each replaced value is listed in the report's notes). A tensor that views its storage with a zero or
    overlapping stride is refused unless ``expand_views`` (writing it element by element can be far larger).
    ``progress`` (:mod:`ckpttool.progress`) is told the values compared while the output is verified.
    """
    fmt = writers().get(to)
    if fmt is None:
        raise UsageError(f"--to must be one of {', '.join(targets())}")
    ckpt = open_checkpoint(src)
    notes: list[str] = []
    ckpt = writable(ckpt, allow_globals, flatten, notes)
    if not expand_views and to != "pth":
        refuse_expanding_views(ckpt)
    target = Path(out)
    if fmt.directory:
        check_output_folder(target, [str(src)], force)
    else:
        check_output(target, [str(src)], force, is_checkpoint_file)
    report = ConvertReport(ckpt.path, str(target), to, len(ckpt.tensors), False, notes=notes)

    def check(written: Path) -> None:
        """Runs on the temporary output, before it gets the final name: a wrong file never lands."""
        if not verify:
            return
        report.differences = compare_checkpoints(ckpt, open_checkpoint(written), progress)
        report.verified = not report.differences
        if report.differences:
            more = f" (and {len(report.differences) - 1} more)" if len(report.differences) > 1 else ""
            raise MigrationError(
                f"{target}: the conversion would change the checkpoint: "
                f"{report.differences[0][:300]}{more}; nothing was written"
            )

    header = ckpt.meta.get("gpt_sovits_header")
    options = WriteOptions(check, force=force, tag=header.encode() if header else None)
    with StorageReader() as reader:
        options.reader = reader
        materialised = (
            reader.materialise(ckpt.root, shared=True)
            if to == "pth"
            else (reader.materialise(ckpt.root) if fmt.directory else None)
        )
        report.notes += fmt.write(ckpt, target, materialised, options)
    return report


def compare_checkpoints(a: Checkpoint, b: Checkpoint, progress: Progress | None = None) -> list[str]:
    """Differences between two checkpoints: tensor values (one pair at a time) and every other value.
    ``progress`` is told the tensors compared (label ``verify``)."""

    root_a = a.root if isinstance(a.root, dict) or b.format != "dcp-dir" else {"root": a.root}
    diffs: list[str] = []
    total, done = len(a.tensors), 0
    with StorageReader() as ra, StorageReader() as rb:
        for path, x, y in zip_trees(root_a, b.root):
            if isinstance(x, TensorInfo) and isinstance(y, TensorInfo):
                x, y = _covered(x, y)
                tx, ty = ra.tensor(x), rb.tensor(y)
                done += 1
                report_progress(progress, "verify", min(done, max(total - 1, 0)), total)
                if not _same_tensor(tx, ty):
                    diffs.append(f"{path}: tensor differs")
            elif x is MISSING or y is MISSING:
                diffs.append(f"{path}: only in {'the output' if x is MISSING else 'the source'}")
            elif isinstance(x, DeferredValue) or isinstance(y, DeferredValue):
                if _norm(ra.materialise(x)) != _norm(rb.materialise(y)):
                    diffs.append(f"{path}: values differ")
            elif _norm(x) != _norm(y):
                diffs.append(f"{path}: {x!r} != {y!r}")
            if len(diffs) >= 20:
                break
    report_progress(progress, "verify", total, total)
    return diffs


def _covered(x: TensorInfo, y: TensorInfo) -> tuple[TensorInfo, TensorInfo]:
    """Two tensors that view their storages the same way (shape, stride, dtype) with overlapping elements (a
    stride-0 float32[2**30] over 4 bytes is 4 GiB expanded): the storage regions they cover, flat, which are
    equal exactly when the views are. Others unchanged."""
    if (
        (x.shape, x.stride, x.dtype) != (y.shape, y.stride, y.dtype)
        or not x.numel
        or x.nbytes <= x.storage.nbytes
    ):
        return x, y
    extent = sum((d - 1) * s for d, s in zip(x.shape, x.stride, strict=True)) + 1
    flat = [dataclasses.replace(t, shape=(extent,), stride=(1,)) for t in (x, y)]
    return flat[0], flat[1]


def _same_tensor(a: Any, b: Any) -> bool:
    import torch

    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if torch.equal(a, b):
        return True
    return bool(
        a.is_floating_point()
        and torch.equal(torch.isnan(a), torch.isnan(b))
        and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
    )


def _norm(v: Any) -> Any:
    """A comparable copy: NaN equal to NaN, numpy arrays and tensors by dtype, shape and bytes."""

    def leaf(x: Any, _: Any) -> Any:
        if isinstance(x, float) and x != x:  # NaN
            return "nan"
        if isinstance(x, NumpyArray):
            import numpy as np

            return (x.shape, np.dtype(x.dtype).str, x.data)
        if type(x).__module__ == "numpy" and hasattr(x, "tobytes"):
            import numpy as np

            arr = np.asarray(x)
            return (tuple(arr.shape), arr.dtype.str, arr.tobytes())
        if type(x).__name__ in ("Tensor", "Parameter"):
            return ("tensor", tuple(x.shape), str(x.dtype), x.detach().cpu().numpy().tobytes())
        return x

    return map_tree(v, leaf)


def writable(ckpt: Checkpoint, allow: frozenset[str], flatten: bool, notes: list[str]) -> Checkpoint:
    """``ckpt`` as a writer may emit it: refused when it holds stubs of globals that are not safe (and not
    allowed), or with those flattened into plain data when ``flatten`` (the changes are added to ``notes``)."""
    bad = [b for b in stub_globals(ckpt.root) if b[1] not in allow]
    if not bad:
        return ckpt
    if not flatten:
        listed = "; ".join(f"{g} at {p or '<root>'} ({why})" for p, g, _, why in bad[:4])
        raise UnverifiedCheckpoint(
            f"{ckpt.path}: refused, the output would name globals that are not known to be harmless: {listed}; "
            "pass --flatten-unverified to write them as plain data, or --allow-global to keep them",
            globals_=sorted({g for _, g, _, _ in bad}),
            path=ckpt.path,
        )
    root, changed = flatten_unverified(ckpt.root, allow)
    notes += [f"flattened {c}" for c in changed]
    return dataclasses.replace(ckpt, root=root)


def refuse_expanding_views(ckpt: Checkpoint) -> None:
    """A tensor whose elements overlap in its storage (stride 0: ``expand``) would be written in full."""
    for t in ckpt.tensors:
        if t.numel > 1 and t.nbytes > t.storage.nbytes:
            raise UsageError(
                f"{ckpt.path}: {t.path} is a {list(t.shape)} view of a {t.storage.nbytes:,}-byte storage (zero or "
                f"overlapping strides); writing it expands it to {t.nbytes:,} bytes: pass --expand-views to do that"
            )
