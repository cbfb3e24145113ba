"""``migrate``: carry weights and optimizer state across an architecture change, as planned in migrate_plan.

Function-preserving where the architecture allows: new input channels get zeros and new output channels a small
init, so old outputs are unchanged and new channels are ignored by their (zero) consumers; weight-norm pairs are
rebuilt so every kept weight keeps its effective value; Adam moments follow their parameters (zeros for new
entries). Source tensors are read one at a time; the output is written atomically, re-read and checked.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ckpttool.configs import ConfigOptions
from ckpttool.errors import MigrationError, UsageError
from ckpttool.formats import is_checkpoint_file, open_checkpoint
from ckpttool.formats.torch_zip import torch_save_to
from ckpttool.formats.values import StorageReader
from ckpttool.interpret.optimizer import analyse
from ckpttool.interpret.profiles import detect_layout
from ckpttool.interpret.structure import is_optimizer
from ckpttool.keys import GPT_SOVITS_TAG_OF
from ckpttool.model import Checkpoint, Stub, TensorInfo, get_path, iter_nodes, map_tree, set_path
from ckpttool.ops.convert import writable
from ckpttool.ops.migrate_plan import (
    MigratePlan,
    NetworkPlan,
    TensorPlan,
    axes_of,
    load_target,
    plan_network,
)
from ckpttool.outputs import atomic_write, check_output
from ckpttool.progress import Progress
from ckpttool.progress import report as report_progress

if TYPE_CHECKING:
    import torch

OPTIMIZER_MODES = ("migrate", "reset", "drop")
INIT_MODES = ("normal", "zeros", "template")
FORMATS = ("pth", "safetensors")
NEW_OUTPUT_STD = 0.01
WN_PAIRS = (("weight_g", "weight_v"), ("original0", "original1"))


@dataclass
class MigrateReport:
    """The plan and, once applied, the output: its path and size in bytes, whether the re-read output
    verified, and what happened to each optimizer."""

    plan: MigratePlan
    written: str | None = None
    size: int = 0
    verified: bool = False
    optimizer_results: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``ckpttool.migrate/1`` JSON document."""
        doc = self.plan.to_json()
        doc.update(
            written=self.written,
            size=self.size,
            verified=self.verified,
            optimizer_results=self.optimizer_results,
        )
        return doc


@dataclass(frozen=True)
class MigrateOptions:
    """What to migrate to (``config``: a config file already read and/or ``--set`` overrides; or ``template``,
    a checkpoint of the new architecture) and how: ``optimizer`` migrate|reset|drop, ``init`` normal|zeros|
    template for new entries, ``to`` pth|safetensors (default: the input's format), ``seed`` for new entries."""

    config: ConfigOptions = field(default_factory=ConfigOptions)
    template: str | None = None
    dry_run: bool = False
    force: bool = False
    optimizer: str = "migrate"
    init: str = "normal"
    to: str | None = None
    seed: int = 0
    allow_globals: frozenset[str] = frozenset()
    flatten: bool = False


def migrate_checkpoint(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str] | None,
    *,
    config: str | None = None,
    sets: Iterable[str] = (),
    template: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    optimizer: str = "migrate",
    init: str = "normal",
    to: str | None = None,
    seed: int = 0,
) -> MigrateReport:
    """The convenience form of :func:`migrate_path` (a config path and ``KEY=VALUE`` strings)."""
    options = MigrateOptions(
        ConfigOptions.from_cli(config, sets), template, dry_run, force, optimizer, init, to, seed
    )
    return migrate_path(src, out, options)


def migrate_path(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str] | None,
    options: MigrateOptions,
    *,
    progress: Progress | None = None,
) -> MigrateReport:
    """Plan a migration of ``src`` to a new config or template; unless ``dry_run``, apply it and write ``out``.
    ``progress`` (:mod:`ckpttool.progress`) is told the tensors built, network by network."""
    template, dry_run, force, optimizer = options.template, options.dry_run, options.force, options.optimizer
    init, to, seed = options.init, options.to, options.seed
    if optimizer not in OPTIMIZER_MODES:
        raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZER_MODES)}")
    if init not in INIT_MODES:
        raise UsageError(f"--init must be one of {', '.join(INIT_MODES)}")
    if to is not None and to not in FORMATS:
        raise UsageError(f"--to must be one of {', '.join(FORMATS)}")
    if init == "template" and template is None:
        raise UsageError("--init template needs --template T.pth to take the new values from")
    if not dry_run:
        if out is None:
            raise UsageError("give the output file with -o OUT (or use --dry-run to only see the plan)")
        check_output(out, [str(src), *([template] if template else [])], force, is_checkpoint_file)
    flattened: list[str] = []
    ckpt = writable(open_checkpoint(src), options.allow_globals, options.flatten, flattened)
    layout = detect_layout(ckpt)
    to = to or ("safetensors" if ckpt.format == "safetensors" else "pth")  # keep the input's format
    tmpl = open_checkpoint(template) if template else None
    target = load_target(options.config, tmpl, detect_layout(tmpl) if tmpl else None)
    if not layout.networks:
        raise MigrationError(f"{ckpt.path}: no network weights found to migrate")
    plan = MigratePlan(ckpt.path, str(out) if out else None, [], optimizer, init, to)
    plan.notes += [f"{line} (--flatten-unverified)" for line in flattened]
    plan.notes += list(options.config.notes)
    for label, path in layout.networks.items():
        net, warnings = plan_network(ckpt, layout, label, path, target)
        plan.networks.append(net)
        plan.warnings += warnings
    if not plan.changes_anything:
        plan.notes.append("every tensor keeps its shape: the output would equal the input")
    if to == "safetensors":
        plan.notes.append(
            "safetensors holds the network weights only: optimizer, counters and config are left out"
        )
    record = layout.record
    if record is not None and record.resume.config_files and layout.config is None:
        changed = sorted({k for n in plan.networks for k in n.changes})
        if changed:
            plan.notes.append(
                "this trainer reads the run config from logs/<exp>/config.json: set "
                + ", ".join(changed)
                + " there before resuming"
            )
    report = MigrateReport(plan)
    if dry_run:
        return report
    assert out is not None
    _apply(ckpt, layout, plan, report, Path(out), tmpl, seed, progress)
    return report


# --- applying -------------------------------------------------------------------------------------------------
def _old_masks(plan: TensorPlan) -> list[torch.Tensor]:
    import torch

    assert plan.dst_shape is not None
    masks = []
    for d, size in enumerate(plan.dst_shape):
        m = torch.zeros(size, dtype=torch.bool)
        if plan.action == "copy":
            m[:] = True
        elif plan.action == "partial" and plan.segments is not None:
            for _, _, d0, d1 in plan.segments[d]:
                m[d0:d1] = True
        masks.append(m)
    return masks


def _broadcast(mask: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = -1
    return mask.view(shape)


def _new_values(
    plan: TensorPlan, dtype: Any, gen: torch.Generator, init: str, tmpl: torch.Tensor | None
) -> Any:
    """Values for the entries the source does not provide (the copy overwrites the rest)."""
    import torch

    assert plan.dst_shape is not None
    shape = plan.dst_shape
    if init == "template" and tmpl is not None and tuple(tmpl.shape) == shape:
        return tmpl.to(dtype).clone()
    t = plan.target
    if t is not None and t.fill is not None:
        return torch.full(shape, t.fill, dtype=dtype)
    axes = axes_of(plan)
    if (
        (t is not None and (t.zero_init or (t.preserve and plan.action == "init")))
        or plan.buffer
        or not shape
    ):
        return torch.zeros(shape, dtype=dtype)
    if plan.action == "init" and axes is not None and init != "zeros":
        # A wholly new weight: zeros would leave it (and the zero layers around it) without gradients.
        return torch.empty(shape, dtype=torch.float32).normal_(0.0, NEW_OUTPUT_STD, generator=gen).to(dtype)
    if axes is None or init == "zeros":
        return torch.zeros(shape, dtype=dtype)
    masks = _old_masks(plan)
    ndim = len(shape)
    in_new = torch.zeros(shape, dtype=torch.bool)
    out_new = torch.zeros(shape, dtype=torch.bool)
    for d, role in enumerate(axes[:ndim]):
        new_here = _broadcast(~masks[d], d, ndim).expand(shape)
        if role == "out":
            out_new |= new_here
        else:  # an input or kernel position that did not exist: zero keeps old outputs unchanged
            in_new |= new_here
    values = torch.empty(shape, dtype=torch.float32).normal_(0.0, NEW_OUTPUT_STD, generator=gen)
    values[~out_new | in_new] = 0.0
    return values.to(dtype)


def _copy_into(dst: torch.Tensor, src: torch.Tensor, segments: list[list[tuple[int, int, int, int]]]) -> None:
    for combo in itertools.product(*segments):
        s = tuple(slice(a, b) for a, b, _, _ in combo)
        d = tuple(slice(c, e) for _, _, c, e in combo)
        dst[d] = src[s].to(dst.dtype)


def build_tensor(
    plan: TensorPlan, source: torch.Tensor | None, gen: torch.Generator, init: str, tmpl: torch.Tensor | None
) -> torch.Tensor:
    """The target tensor of ``plan``: the source itself for a copy; otherwise new values (as ``init`` and the
    spec say; from ``tmpl`` with ``init == "template"`` when its shape fits) with the planned overlap of
    ``source`` copied in. Keeps the source's dtype, else the plan's."""
    import torch

    if plan.action == "copy":
        assert source is not None
        return source
    dtype = source.dtype if source is not None else getattr(torch, plan.dtype or "float32")
    out = _new_values(plan, dtype, gen, init, tmpl)
    if plan.action == "partial" and source is not None and plan.segments is not None:
        _copy_into(out, source, plan.segments)
    return out


def _row_map(plan: TensorPlan) -> dict[int, int]:
    """dst row -> src row along dim 0 for a copy or partial plan."""
    if plan.action == "copy" and plan.dst_shape is not None:
        return {r: r for r in range(plan.dst_shape[0])}
    if plan.action == "partial" and plan.segments is not None:
        return {d0 + i: s0 + i for s0, s1, d0, _ in plan.segments[0] for i in range(s1 - s0)}
    return {}


def _fix_weight_norm(
    net: NetworkPlan, built: dict[str, torch.Tensor], load: Any, gen: torch.Generator, template_g: Any = None
) -> list[str]:
    """Rebuild each weight-norm magnitude so kept weights keep their effective values (g * v / |v|)."""
    import torch

    plans = {p.name: p for p in net.tensors}
    fixed = []
    for name, plan in plans.items():
        leaf = name.rsplit(".", 1)[-1]
        pair = next((v for g, v in WN_PAIRS if leaf == g), None)
        if pair is None or plan.action == "drop" or plan.dst_shape is None:
            continue
        v_name = name[: -len(leaf)] + pair
        v_plan = plans.get(v_name)
        if v_plan is None or v_name not in built or (plan.action == "copy" and v_plan.action == "copy"):
            continue
        v_new = built[v_name]
        rows = v_new.shape[0] if v_new.dim() else 0
        if rows == 0 or v_new.numel() == 0 or math.prod(plan.dst_shape) != rows:
            continue  # weight_norm(dim=None) or an empty tensor: nothing per-row to rescale
        norms_new = v_new.double().reshape(rows, -1).norm(dim=1)
        g_old = load(name) if plan.src_shape is not None else None
        v_old = load(v_name) if v_plan.src_shape is not None else None
        norms_old = (
            v_old.double().reshape(v_old.shape[0], -1).norm(dim=1)
            if v_old is not None and v_old.numel() and g_old is not None and g_old.numel() == v_old.shape[0]
            else None
        )
        g_tmpl = template_g(name) if template_g is not None else None
        g = torch.zeros(rows, dtype=torch.float64)
        row_map = _row_map(v_plan)
        for r in range(rows):
            src_row = row_map.get(r)
            if (
                src_row is not None
                and g_old is not None
                and norms_old is not None
                and src_row < g_old.numel()
            ):
                old_norm = float(norms_old[src_row])
                g[r] = float(g_old.reshape(-1)[src_row]) * (
                    float(norms_new[r]) / old_norm if old_norm else 1.0
                )
            elif g_tmpl is not None and g_tmpl.numel() == rows:
                g[r] = float(g_tmpl.reshape(-1)[r])
            elif float(norms_new[r]) == 0.0:
                # an all-zero direction has no norm (NaN weights): give it a direction, and a zero magnitude
                v_new[r] = (
                    torch.empty(v_new[r].shape).normal_(0.0, NEW_OUTPUT_STD, generator=gen).to(v_new.dtype)
                )
                g[r] = 0.0
            else:
                g[r] = float(norms_new[r])
        built[name] = g.reshape(plan.dst_shape).to(built[name].dtype if name in built else v_new.dtype)
        fixed.append(name)
    return fixed


def _migrate_network(
    net: NetworkPlan,
    ckpt: Checkpoint,
    reader: StorageReader,
    gen: torch.Generator,
    init: str,
    tmpl_tensors: dict[str, TensorInfo],
    tmpl_reader: StorageReader | None,
    progress: Progress | None = None,
) -> OrderedDict[str, torch.Tensor]:
    sd = get_path(ckpt.root, net.path) if net.path else ckpt.root
    infos = {str(k)[len(net.prefix) :]: v for k, v in sd.items() if isinstance(v, TensorInfo)}

    def load(name: str) -> torch.Tensor:
        return reader.tensor(infos[name])

    built: dict[str, torch.Tensor] = {}
    for i, p in enumerate(net.tensors):
        report_progress(progress, f"migrate {net.label}", i, len(net.tensors))
        if p.action == "drop":
            continue
        source = load(p.name) if p.src_shape is not None and p.action in ("copy", "partial") else None
        tmpl = None
        if init == "template" and p.name in tmpl_tensors and tmpl_reader is not None:
            tmpl = tmpl_reader.tensor(tmpl_tensors[p.name])
        built[p.name] = build_tensor(p, source, gen, init, tmpl)
        del source

    def template_g(name: str) -> torch.Tensor | None:
        if init == "template" and name in tmpl_tensors and tmpl_reader is not None:
            return tmpl_reader.tensor(tmpl_tensors[name])
        return None

    _fix_weight_norm(net, built, load, gen, template_g)
    report_progress(progress, f"migrate {net.label}", len(net.tensors), len(net.tensors))
    return OrderedDict((net.prefix + name, t) for name, t in built.items())


def _migrate_optimizer(
    opt: dict[str, Any],
    path: str,
    net: NetworkPlan,
    ckpt: Checkpoint,
    layout: Any,
    reader: StorageReader,
    mode: str,
    new_owned: set[str],
) -> tuple[Any, str]:
    """The optimizer dict for the new network: moments cut and padded like their parameters.

    Membership follows the source optimizer: a tensor it did not hold (a frozen layer, a buffer, another
    optimizer's half of a GAN) stays out; a brand-new parameter joins the optimizer (``new_owned``) and the
    group (the trainer's prefix rule, else its nearest sibling's) it belongs to.
    """
    params = get_path(ckpt.root, net.path) if net.path else ckpt.root
    report = analyse(path, net.label, opt, dict(params), layout.group_layout)
    groups = opt.get("param_groups") or []
    if mode == "drop":
        return None, f"{path}: dropped (the trainer starts a fresh optimizer)"
    plans = {p.name: p for p in net.tensors}
    mapping = {sid: name[len(net.prefix) :] for sid, name in report.mapping.items()}
    new_groups, new_id = _new_param_groups(net, groups, mapping, plans, layout, reader, new_owned)
    if mode == "reset" or not report.aligned:
        why = (
            "reset" if mode == "reset" else f"reset, because its state could not be mapped ({report.problem})"
        )
        return {"state": {}, "param_groups": new_groups}, f"{path}: {why}; hyper-parameters kept"
    state = _carried_state(opt, mapping, new_id, plans, reader)
    return (
        {"state": state, "param_groups": new_groups},
        f"{path}: moments of {len(state)} parameter(s) carried over (new entries zero), "
        f"{len(new_id) - len(state)} new parameter(s) start fresh; {len(new_groups)} group(s) kept",
    )


def _new_param_groups(
    net: NetworkPlan,
    groups: list[dict[str, Any]],
    mapping: dict[Any, str],
    plans: dict[str, TensorPlan],
    layout: Any,
    reader: StorageReader,
    new_owned: set[str],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The new ``param_groups`` (hyper-parameters kept, indices renumbered in target order) and each member
    parameter's new index."""
    group_of: dict[str, int] = {}
    for gi, g in enumerate(groups):
        for sid in g.get("params", []):
            if sid in mapping:
                group_of[mapping[sid]] = gi
    layout_groups = layout.group_layout or ()
    order = [p.name for p in net.tensors if p.action != "drop" and p.dst_shape is not None]

    def member(name: str) -> bool:
        if name in group_of:
            return True
        if mapping:
            return name in new_owned
        return not _is_buffer_like(name, plans) and not _looks_like_buffer(name)

    def group_for(name: str) -> int:
        if name in group_of:
            return group_of[name]
        for k, prefixes in enumerate(layout_groups):
            if name.startswith(prefixes) and k + 1 < len(groups):
                return k + 1
        nearest = max(group_of, key=lambda h: _shared_prefix(name, h), default=None)
        return group_of[nearest] if nearest is not None else 0

    new_groups: list[dict[str, Any]] = []
    new_id: dict[str, int] = {}
    counter = 0
    for gi, g in enumerate(groups):
        members = [n for n in order if member(n) and group_for(n) == gi]
        ids = list(range(counter, counter + len(members)))
        counter += len(members)
        new_id.update(zip(members, ids, strict=True))
        hyper = reader.materialise({k: v for k, v in g.items() if k != "params"})
        if "param_names" in hyper:  # torch >= 2.6 records the names; keep them true
            hyper["param_names"] = [net.prefix + n for n in members]
        new_groups.append({**hyper, "params": ids})
    return new_groups, new_id


def _carried_state(
    opt: dict[str, Any],
    mapping: dict[Any, str],
    new_id: dict[str, int],
    plans: dict[str, TensorPlan],
    reader: StorageReader,
) -> dict[int, Any]:
    """The state entries of the parameters that existed before, under their new indices; each moment with its
    parameter's shape is cut and padded like the parameter (zeros for new entries)."""
    import torch

    src_id = {name: sid for sid, name in mapping.items()}
    state: dict[int, Any] = {}
    for name, nid in new_id.items():
        sid = src_id.get(name)
        entry = (opt.get("state") or {}).get(sid) if sid is not None else None
        plan = plans.get(name)
        if entry is None or plan is None or plan.src_shape is None:
            continue  # a new parameter: torch initialises its state at the first step
        new_entry: dict[str, Any] = {}
        for key, val in entry.items():
            if (
                isinstance(val, TensorInfo)
                and tuple(val.shape) == plan.src_shape
                and plan.dst_shape is not None
            ):
                src = reader.tensor(val)
                if plan.action == "copy":
                    new_entry[key] = src
                else:
                    moved = torch.zeros(plan.dst_shape, dtype=src.dtype)
                    if plan.action == "partial" and plan.segments is not None:
                        _copy_into(moved, src, plan.segments)
                    new_entry[key] = moved
            else:
                new_entry[key] = reader.materialise(val)
        state[nid] = new_entry
    return state


def _is_buffer_like(name: str, plans: dict[str, TensorPlan]) -> bool:
    p = plans.get(name)
    return bool(p and p.buffer)


def _set_config_value(node: Any, parts: list[str], value: Any) -> bool:
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, Stub):
            st = node.state
            target = st if isinstance(st, dict) else st[0] if isinstance(st, tuple) and st else None
            if not isinstance(target, dict) or part not in target:
                return False
            if last:
                target[part] = value
                return True
            node = target[part]
        elif isinstance(node, dict):
            if part not in node:
                return False
            if last:
                node[part] = value
                return True
            node = node[part]
        else:
            return False
    return False


def _apply(
    ckpt: Checkpoint,
    layout: Any,
    plan: MigratePlan,
    report: MigrateReport,
    out: Path,
    tmpl: Checkpoint | None,
    seed: int,
    progress: Progress | None = None,
) -> None:
    """Build the migrated checkpoint and write it to ``out`` atomically, verified before it takes its name."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    skip_ids = _replaced_tensor_ids(ckpt, layout, plan)
    labels = {n.label for n in plan.networks}
    for p, label in layout.optimizers.items():
        if label not in labels and plan.to != "safetensors":
            plan.warnings.append(f"{p}: not tied to a migrated network; copied unchanged")
    with StorageReader() as reader, StorageReader() as tmpl_reader:
        # Tensors about to be replaced are not read; a placeholder remembers each, in case the same tensor is
        # also referenced from somewhere that is kept (it is read then, at the end).
        root = reader.materialise(
            ckpt.root, tensor_of=lambda t: _Pending(t) if id(t) in skip_ids else reader.tensor(t)
        )
        networks: dict[str, OrderedDict[str, torch.Tensor]] = {}
        for net in plan.networks:
            networks[net.label] = _migrate_network(
                net, ckpt, reader, gen, plan.init, _template_tensors(tmpl, net), tmpl_reader, progress
            )
        if plan.to != "safetensors":  # safetensors holds the weights only: no optimizer is written
            root = _replace_optimizers(root, ckpt, layout, plan, report, reader)
        for net in plan.networks:
            root = set_path(root, net.path, networks[net.label])
        root = _resolve_pending(root, reader)
        _update_embedded_config(root, layout, plan)
    tag = _tag(ckpt, layout, plan)

    def write(fh: BinaryIO) -> None:
        # Straight into the temporary file: the output is held in memory once (as tensors), not twice.
        if plan.to == "safetensors":
            fh.write(_safetensors_bytes(plan, networks))
        else:
            torch_save_to(fh, root, tag=tag)

    def verify(path: Path) -> None:
        _verify(path, plan, set(ckpt.foreign_globals))

    atomic_write(out, write, verify)
    report.written, report.size, report.verified = str(out), out.stat().st_size, True


def _replaced_tensor_ids(ckpt: Checkpoint, layout: Any, plan: MigratePlan) -> set[int]:
    """Ids of the source tensors inside the networks and optimizers the migration replaces (never read)."""
    labels = {n.label for n in plan.networks}
    replaced_paths = {n.path for n in plan.networks}
    replaced_paths |= {p for p, label in layout.optimizers.items() if label in labels}
    skip_ids: set[int] = set()
    for p in replaced_paths:
        obj = get_path(ckpt.root, p) if p else ckpt.root
        if isinstance(obj, dict):
            for t in _tensors_in(obj):
                skip_ids.add(id(t))
    return skip_ids


def _template_tensors(tmpl: Checkpoint | None, net: NetworkPlan) -> dict[str, TensorInfo]:
    """The template's tensors for ``net``, keyed without the template's wrapper prefix (``{}`` without one)."""
    if tmpl is None or net.template_path is None:
        return {}
    tsd = get_path(tmpl.root, net.template_path) if net.template_path else tmpl.root
    if not isinstance(tsd, dict):
        return {}
    pre = net.template_prefix
    return {str(k)[len(pre) :]: v for k, v in tsd.items() if isinstance(v, TensorInfo)}


def _replace_optimizers(
    root: Any,
    ckpt: Checkpoint,
    layout: Any,
    plan: MigratePlan,
    report: MigrateReport,
    reader: StorageReader,
) -> Any:
    """``root`` with every optimizer of a migrated network replaced (or dropped) as ``plan.optimizer`` says;
    each optimizer's outcome is added to ``report.optimizer_results``."""
    by_label = {n.label: n for n in plan.networks}
    owners = _new_param_owners(ckpt, layout, by_label)
    for opt_path, label in layout.optimizers.items():
        opt = get_path(ckpt.root, opt_path)
        if not is_optimizer(opt) or label not in by_label:
            continue
        new_opt, message = _migrate_optimizer(
            opt,
            opt_path,
            by_label[label],
            ckpt,
            layout,
            reader,
            plan.optimizer,
            owners.get(opt_path, set()),
        )
        root = set_path(root, opt_path, new_opt)
        report.optimizer_results.append(message)
    return root


class _Pending:
    """A source tensor not read yet (its container is being replaced)."""

    def __init__(self, info: TensorInfo) -> None:
        self.info = info


def _resolve_pending(obj: Any, reader: StorageReader) -> Any:
    """Read the tensors that are still referenced after the replacements (shared with kept containers)."""
    return map_tree(obj, lambda x, _: reader.tensor(x.info) if isinstance(x, _Pending) else x)


def _new_param_owners(ckpt: Checkpoint, layout: Any, nets: dict[str, NetworkPlan]) -> dict[str, set[str]]:
    """Which optimizer takes each brand-new parameter: the one holding its nearest sibling (by name)."""
    held: dict[str, set[str]] = {}
    for opt_path, label in layout.optimizers.items():
        opt = get_path(ckpt.root, opt_path)
        net = nets.get(label)
        if net is None or not is_optimizer(opt):
            continue
        params = get_path(ckpt.root, net.path) if net.path else ckpt.root
        report = analyse(opt_path, label, opt, dict(params), layout.group_layout)
        held[opt_path] = {n[len(net.prefix) :] for n in report.mapping.values()}
    owners: dict[str, set[str]] = {p: set() for p in held}
    for label, net in nets.items():
        paths = [p for p, lab in layout.optimizers.items() if lab == label and p in held]
        for p in net.tensors:
            if p.action != "init" or p.src_shape is not None or p.buffer or _looks_like_buffer(p.name):
                continue
            best = max(
                paths,
                key=lambda op: max((_shared_prefix(p.name, h) for h in held[op]), default=0),
                default=None,
            )
            if best is not None:
                owners[best].add(p.name)
    return owners


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split("."), b.split("."), strict=False):
        if x != y:
            break
        n += 1
    return n


def _looks_like_buffer(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")


def _tensors_in(obj: Any) -> Iterable[TensorInfo]:
    return (x for _, x in iter_nodes(obj) if isinstance(x, TensorInfo))


def _update_embedded_config(root: Any, layout: Any, plan: MigratePlan) -> None:
    if not layout.config or not isinstance(root, dict):
        return
    from ckpttool.specs.model import get_spec

    config = root.get(layout.config.split(".")[0])
    for net in plan.networks:
        if not net.family or not net.changes:
            continue
        spec = get_spec(net.family)
        for key, (_, new) in net.changes.items():
            path = spec.config_keys.get(key)
            if path and not _set_config_value(config, path.split("."), new):
                plan.warnings.append(
                    f"could not update {path} in the embedded config; set it to {new!r} yourself"
                )
            elif path:
                plan.notes.append(f"embedded config: {path} set to {new!r}")


def _tag(ckpt: Checkpoint, layout: Any, plan: MigratePlan) -> bytes | None:
    """The GPT-SoVITS header tag the output needs: my_save2's tag for the target version (v2Pro, v2ProPlus,
    v3, v4), else the source's own tag when the version is unchanged."""
    if layout.profile != "gpt-sovits-export":
        return None
    version = next((n.version_to for n in plan.networks if n.version_to), None)
    if version in GPT_SOVITS_TAG_OF:
        return GPT_SOVITS_TAG_OF[version]
    header = ckpt.meta.get("gpt_sovits_header")
    if header and version in (None, ckpt.meta.get("gpt_sovits_tag")):
        return str(header).encode()
    return None


def _safetensors_bytes(plan: MigratePlan, networks: dict[str, OrderedDict[str, Any]]) -> bytes:
    from safetensors.torch import save

    flat: dict[str, Any] = {}
    single = len(networks) == 1
    for label, sd in networks.items():
        for name, t in sd.items():
            flat[name if single else f"{label}.{name}"] = t.contiguous()
    meta = {"ckpttool.migrated_from": os.path.basename(plan.src)}
    for net in plan.networks:
        for key, (_, new) in net.changes.items():
            meta[f"{net.label}.{key}"] = str(new)
    return bytes(save(flat, metadata=meta))


def _verify(path: Path, plan: MigratePlan, source_globals: set[str]) -> None:
    """Re-read what was written and check every network tensor against the target shapes, and that it names
    no class the source did not (nothing of ckpttool's own may leak into a trainer's file)."""
    written = open_checkpoint(path)
    leaked = set(written.foreign_globals) - source_globals
    if leaked:
        raise MigrationError(f"verification failed: the output would name {', '.join(sorted(leaked))}")
    single = len(plan.networks) == 1
    for net in plan.networks:
        if plan.to == "safetensors":
            prefix = "" if single else f"{net.label}."
            tensors = {t.path[len(prefix) :]: t for t in written.tensors if t.path.startswith(prefix)}
        else:
            sd = get_path(written.root, net.path) if net.path else written.root
            if not isinstance(sd, dict):
                raise MigrationError(
                    f"verification failed: {net.label} ({net.path}) is missing from the output"
                )
            tensors = {str(k)[len(net.prefix) :]: v for k, v in sd.items() if isinstance(v, TensorInfo)}
        expected = {p.name: p.dst_shape for p in net.tensors if p.action != "drop"}
        if set(tensors) != set(expected):
            raise MigrationError(f"verification failed: {net.label} holds other tensors than planned")
        bad = [n for n, shape in expected.items() if tuple(tensors[n].shape) != shape]
        if bad:
            raise MigrationError(
                f"verification failed: {len(bad)} tensor(s) of {net.label} have the wrong shape"
            )
