"""The migration plan: for every target tensor one action, decided from metadata alone (no tensor bytes).

Why a plan first: a migration is reviewed before it runs (``--dry-run``), and the same data drives the apply
step, so what the table shows is exactly what happens. Where an architecture spec knows the network, copies are
chunk-aware (the ``logs`` half of ``enc_p.proj`` lands in the new ``logs`` half) and follow each dimension's
alignment (a Flip puts old flow channels at the end of a half); otherwise the leading overlap of each dim is
copied, and the plan says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ckpttool.configs import ConfigOptions, with_overrides
from ckpttool.errors import UsageError
from ckpttool.interpret.profiles import Layout
from ckpttool.model import Checkpoint, TensorInfo, get_path
from ckpttool.ops.architecture import spec_hint
from ckpttool.specs.match import Fingerprint, absent_prefixes, fingerprint, strip_wrapper
from ckpttool.specs.model import Spec, TensorSpec, get_spec
from ckpttool.vocab import PlanAction

SCHEMA = "ckpttool.migrate/1"
Segments = list[tuple[int, int, int, int]]  # (src_start, src_stop, dst_start, dst_stop) along one dim


@dataclass
class TensorPlan:
    """What happens to one tensor (unprefixed name): ``copy``, ``partial`` (``segments``: per dim, the ranges
    copied), ``init`` (new, or its rank changed) or ``drop``. ``kept`` and ``new`` are shares of the source
    and target values; ``target`` the spec's tensor, when a spec knows the network."""

    name: str
    action: PlanAction
    src_shape: tuple[int, ...] | None
    dst_shape: tuple[int, ...] | None
    dtype: str
    segments: list[Segments] | None = None  # per dim, for partial
    kept: float = 1.0  # share of the source values carried over
    new: float = 0.0  # share of the target values that are newly initialised
    init: str = ""  # how new entries are filled
    how: str = ""  # chunk-aware (spec) / leading overlap (no spec) / ...
    buffer: bool = False
    target: TensorSpec | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """An entry of ``networks[].tensors`` in ``ckpttool.migrate/1``."""
        return {
            "name": self.name,
            "action": self.action,
            "src_shape": list(self.src_shape) if self.src_shape is not None else None,
            "dst_shape": list(self.dst_shape) if self.dst_shape is not None else None,
            "dtype": self.dtype,
            "segments": self.segments,
            "kept": round(self.kept, 6),
            "new": round(self.new, 6),
            "init": self.init,
            "how": self.how,
        }


@dataclass
class NetworkPlan:
    """One network's migration: its label, state-dict path and wrapper prefix, spec family, version before and
    after, the config variables that change (name -> (old, new)) and a plan per tensor."""

    label: str
    path: str
    prefix: str  # wrapper prefix of the source keys, kept in the output
    family: str | None
    version_from: str | None
    version_to: str | None
    changes: dict[str, tuple[Any, Any]]
    tensors: list[TensorPlan]
    values: dict[str, Any] = field(default_factory=dict)  # target variable values (spec networks)
    template_path: str | None = None  # the template's network this one takes its shapes from
    template_prefix: str = ""

    def count(self, action: PlanAction) -> int:
        """How many tensors get ``action``."""
        return sum(1 for t in self.tensors if t.action == action)

    @property
    def kept(self) -> float:
        """Share of the source network's values that survive."""
        total = sum(math.prod(t.src_shape) for t in self.tensors if t.src_shape is not None)
        kept = sum(t.kept * math.prod(t.src_shape) for t in self.tensors if t.src_shape is not None)
        return kept / total if total else 1.0

    def to_json(self) -> dict[str, Any]:
        """An entry of ``networks`` in ``ckpttool.migrate/1``."""
        return {
            "network": self.label,
            "path": self.path,
            "family": self.family,
            "version": {"from": self.version_from, "to": self.version_to},
            "changes": {k: {"from": a, "to": b} for k, (a, b) in self.changes.items()},
            "counts": {a: self.count(a) for a in ("copy", "partial", "init", "drop")},
            "kept": round(self.kept, 6),
            "tensors": [t.to_json() for t in self.tensors],
        }


@dataclass
class MigratePlan:
    """The whole migration: source and output paths, a plan per network, what happens to the optimizer
    (migrate|reset|drop), how new entries are filled (normal|zeros|template), the output format
    (pth|safetensors), and warnings and notes for the user."""

    src: str
    out: str | None
    networks: list[NetworkPlan]
    optimizer: str
    init: str
    to: str
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changes_anything(self) -> bool:
        """False when every tensor is copied as is (the output would equal the input)."""
        return any(t.action != "copy" for n in self.networks for t in n.tensors)

    def to_json(self) -> dict[str, Any]:
        """The ``ckpttool.migrate/1`` JSON document without the results of applying it."""
        return {
            "schema": SCHEMA,
            "src": self.src,
            "out": self.out,
            "optimizer": self.optimizer,
            "init": self.init,
            "to": self.to,
            "networks": [n.to_json() for n in self.networks],
            "warnings": self.warnings,
            "notes": self.notes,
        }


# --- segments -----------------------------------------------------------------------------------------------
def dim_segments(src: int, dst: int, parts: int = 1, side: str = "start") -> Segments:
    """Overlap of one dim, part by part; ``side`` says whether old values sit at the start or end of a part."""
    if parts < 1 or src % parts or dst % parts:
        parts = 1
    s, d = src // parts, dst // parts
    n = min(s, d)
    out = []
    for p in range(parts):
        if side == "end":
            out.append((p * s + s - n, p * s + s, p * d + d - n, p * d + d))
        else:
            out.append((p * s, p * s + n, p * d, p * d + n))
    return [seg for seg in out if seg[1] > seg[0]]


def _plan_tensor(
    name: str,
    info: TensorInfo | None,
    dst: tuple[int, ...] | None,
    target: TensorSpec | None,
    source: TensorSpec | None,
) -> TensorPlan:
    if info is None:
        assert dst is not None
        return TensorPlan(
            name, "init", None, dst, "", new=1.0, buffer=bool(target and target.buffer), target=target
        )
    src = tuple(info.shape)
    if dst is None:
        return TensorPlan(name, "drop", src, None, info.dtype, kept=0.0)
    if src == dst:
        return TensorPlan(
            name, "copy", src, dst, info.dtype, buffer=bool(target and target.buffer), target=target
        )
    if len(src) != len(dst):
        plan = TensorPlan(name, "init", src, dst, info.dtype, kept=0.0, new=1.0, target=target)
        plan.how = f"rank changed ({len(src)} -> {len(dst)} dims): nothing can be carried over"
        return plan
    segments: list[Segments] = []
    for d, (a, b) in enumerate(zip(src, dst, strict=True)):
        parts = 1
        if target is not None and target.chunks and target.chunks[0] == d:
            parts = len(target.chunks[1])
        side = dict(target.align).get(d, "start") if target is not None else "start"
        segments.append(dim_segments(a, b, parts, side))
    kept_elems = math.prod(sum(s1 - s0 for s0, s1, _, _ in segs) for segs in segments)
    plan = TensorPlan(name, "partial", src, dst, info.dtype, segments=segments, target=target)
    plan.kept = kept_elems / math.prod(src) if math.prod(src) else 1.0
    plan.new = 1 - kept_elems / math.prod(dst) if math.prod(dst) else 0.0
    if target is not None and source is not None:
        chunked = target.chunks is not None and any(a != b for a, b in zip(src, dst, strict=True))
        plan.how = "chunk-aware (spec)" if chunked else "spec"
        if target.align:
            plan.how += (
                ", old channels at the " + "/".join(side for _, side in target.align) + " of each part"
            )
    else:
        plan.how = "leading overlap of each dim (no spec: chunked dims would be shifted)"
    return plan


# --- targets ------------------------------------------------------------------------------------------------
def _network_tensors(ckpt: Checkpoint, path: str) -> dict[str, TensorInfo]:
    sd = get_path(ckpt.root, path) if path else ckpt.root
    return {str(k): v for k, v in sd.items() if isinstance(v, TensorInfo)} if isinstance(sd, dict) else {}


def _config_values(spec: Spec, config: Mapping[str, Any]) -> dict[str, Any]:
    """Only the variables the given config actually sets (unset ones keep the source's values)."""
    found: dict[str, Any] = {}
    for name, path in spec.config_keys.items():
        node: Any = config
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            found[name] = node
    return found


@dataclass
class Target:
    """Where the new shapes come from: a config (file and/or --set) or a template checkpoint."""

    config: dict[str, Any] | None = None
    template: Checkpoint | None = None
    template_layout: Layout | None = None
    description: str = ""


def load_target(config: ConfigOptions, template: Checkpoint | None, template_layout: Layout | None) -> Target:
    """The migration's target: a template checkpoint, or a config file and/or overrides (not both)."""
    sets = config.overrides
    config_path = config.file[0] if config.file else None
    if template is not None and (config_path or sets):
        raise UsageError("give either --template or --config/--set, not both")
    if template is not None:
        return Target(
            template=template, template_layout=template_layout, description=f"template {template.path}"
        )
    if config_path is None and not sets:
        raise UsageError(
            "say what to migrate to: --config NEW.json, --set model.KEY=VALUE or --template T.pth"
        )
    values = with_overrides(config.file[1] if config.file else {}, sets)
    what = " + ".join(x for x in (config_path, " ".join(f"--set {k}={v}" for k, v in sets)) if x)
    return Target(config=values, description=what)


def plan_network(
    ckpt: Checkpoint, layout: Layout, label: str, path: str, target: Target
) -> tuple[NetworkPlan, list[str]]:
    """The plan for one network of ``ckpt`` (``label``, its state dict at key ``path``) and the warnings met.

    Target shapes come from the template's network of the same label (or its only network), else from the
    architecture spec expanded with the config's values; a network no spec matches is copied unchanged. Raises
    UsageError when the template has no such network or is another model family, or when the new shapes give a
    tensor a dimension <= 0.
    """
    warnings: list[str] = []
    tensors = _network_tensors(ckpt, path)
    prefix, plain = strip_wrapper({k: tuple(v.shape) for k, v in tensors.items()})
    infos = {k[len(prefix) :]: v for k, v in tensors.items()}
    hint = spec_hint(layout)
    fp = _matched_fingerprint(plain, hint)
    if fp is not None and fp.peft is not None:
        raise UsageError(
            f"{label}: a PEFT-wrapped state dict ({fp.peft.describe()}); migrate does not carry LoRA adapters "
            "and PEFT's renamed keys yet: migrate the plain model and train new adapters"
        )
    spec = get_spec(fp.family) if fp else None
    source_specs = {t.name: t for t in spec.expand(fp.values)} if spec and fp else {}
    if target.template is not None:
        shapes = _template_shapes(layout, label, target, hint, fp, spec)
    elif spec is not None and fp is not None:
        shapes = _config_shapes(label, target, fp, spec, infos, warnings)
    else:
        # No spec: only a config that changes nothing about this network can be honoured.
        shapes = _TargetShapes(dict(plain), fp.version if fp else None)
        if target.config:
            warnings.append(
                f"{label}: no architecture spec matches this network, so the config cannot say its new shapes; "
                "it is copied unchanged (use --template to migrate it)"
            )
    _check_positive(label, shapes.shapes, infos)
    plans = _plan_tensors(infos, shapes.shapes, shapes.specs, source_specs)
    if spec is None and any(p.action == "partial" for p in plans):
        warnings.append(
            f"{label}: no architecture spec: partial copies keep the leading overlap of each dim, which is wrong "
            "for dims made of parts (like [m; logs]); check the result"
        )
    net = NetworkPlan(
        label,
        path,
        prefix,
        fp.family if fp else None,
        fp.version if fp else None,
        shapes.version_to,
        shapes.changes,
        plans,
        shapes.values,
        shapes.template_path,
        shapes.template_prefix,
    )
    return net, warnings


@dataclass
class _TargetShapes:
    """What a target says about one network: its tensor shapes (unprefixed names), and where known their specs,
    the variable values, the config changes and the version they imply."""

    shapes: dict[str, tuple[int, ...]]
    version_to: str | None
    specs: dict[str, TensorSpec] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    template_path: str | None = None
    template_prefix: str = ""


def _matched_fingerprint(shapes: Mapping[str, tuple[int, ...]], hint: str | None) -> Fingerprint | None:
    """The spec fingerprint of ``shapes``, or None when it matches fewer than half of the tensors."""
    fp = fingerprint(shapes, hint=hint)
    if fp is not None and fp.matched < 0.5 * len(shapes):
        return None
    return fp


def _template_shapes(
    layout: Layout, label: str, target: Target, hint: str | None, fp: Fingerprint | None, spec: Spec | None
) -> _TargetShapes:
    """The shapes of the template's network ``label`` (or its only network, when both files have one)."""
    assert target.template is not None
    t_layout = target.template_layout
    assert t_layout is not None
    t_path = t_layout.networks.get(label)
    if t_path is None and len(t_layout.networks) == 1 and len(layout.networks) == 1:
        t_path = next(iter(t_layout.networks.values()))  # one network each: pair them whatever the labels
    if t_path is None:
        raise UsageError(
            f"the template has no network {label!r} (it has {', '.join(t_layout.networks) or 'none'}); "
            "give a template of the same kind of file"
        )
    template_prefix, dst_shapes = strip_wrapper(
        {k: tuple(v.shape) for k, v in _network_tensors(target.template, t_path).items()}
    )
    out = _TargetShapes(
        dst_shapes, fp.version if fp else None, template_path=t_path, template_prefix=template_prefix
    )
    tfp = _matched_fingerprint(dst_shapes, hint)
    if (fp is None) != (tfp is None) or (fp and tfp and fp.family != tfp.family):
        raise UsageError(
            f"network {label}: the source is {fp.family if fp else 'of no known family'} but the template's is "
            f"{tfp.family if tfp else 'of no known family'}; a template must be the same model, changed"
        )
    if spec is not None and tfp is not None and fp is not None:
        out.specs = {t.name: t for t in spec.expand(tfp.values)}
        out.values, out.version_to = tfp.values, tfp.version
        out.changes = _changes(spec, fp, tfp.values)
    return out


def _config_shapes(
    label: str,
    target: Target,
    fp: Fingerprint,
    spec: Spec,
    infos: Mapping[str, TensorInfo],
    warnings: list[str],
) -> _TargetShapes:
    """The spec expanded with the source's values overridden by the config's; broken constraints warn."""
    assert target.config is not None
    set_here = _config_values(spec, target.config)
    values = dict(fp.values)
    values.update(set_here)
    # a partial file (an export without enc_q) stays partial: its absent subtrees are not created
    absent = absent_prefixes(spec, fp.partial)
    expanded = [
        t for t in spec.expand(values) if not (absent and t.name.startswith(absent) and t.name not in infos)
    ]
    out = _TargetShapes(
        {t.name: t.shape for t in expanded},
        set_here.get("version", fp.version),
        specs={t.name: t for t in expanded},
        values=values,
        changes=_changes(spec, fp, values),
    )
    for problem in spec.check_constraints(values):
        warnings.append(f"{label}: the new config breaks a model constraint: {problem}")
    return out


def _check_positive(
    label: str, dst_shapes: Mapping[str, tuple[int, ...]], infos: Mapping[str, TensorInfo]
) -> None:
    """Raise UsageError when the new shapes give a tensor a dimension <= 0 it did not already have."""
    bad = sorted(n for n, shape in dst_shapes.items() if any(d <= 0 for d in shape) and n not in infos)
    bad += sorted(
        n
        for n, shape in dst_shapes.items()
        if any(d <= 0 for d in shape) and n in infos and not any(d <= 0 for d in infos[n].shape)
    )
    if bad:
        raise UsageError(
            f"network {label}: the new shapes give {bad[0]} a dimension of {min(min(dst_shapes[bad[0]]), 0)}"
            f"{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}; check the values you set"
        )


def _plan_tensors(
    infos: Mapping[str, TensorInfo],
    dst_shapes: Mapping[str, tuple[int, ...]],
    target_specs: Mapping[str, TensorSpec],
    source_specs: Mapping[str, TensorSpec],
) -> list[TensorPlan]:
    """One plan per target tensor, in target order, then a drop for each source tensor the target lacks."""
    plans = [
        _plan_tensor(n, infos.get(n), dst_shapes[n], target_specs.get(n), source_specs.get(n))
        for n in dst_shapes
    ]
    plans += [_plan_tensor(n, infos[n], None, None, None) for n in infos if n not in dst_shapes]
    for p in plans:
        if p.action == "init" and p.src_shape is None:
            p.dtype = _majority_dtype(infos)
        if p.action in ("partial", "init"):
            p.init = describe_init(p)
    return plans


def _changes(spec: Spec, fp: Fingerprint | None, values: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    if fp is None:
        return {}
    out = {}
    for k in list(spec.config_keys) + [k for k, v in spec.variables.items() if v.config is None]:
        if k in values and fp.values.get(k) != values[k]:
            out[k] = (fp.values.get(k), values[k])
    return out


def _majority_dtype(infos: Mapping[str, TensorInfo]) -> str:
    counts: dict[str, int] = {}
    for t in infos.values():
        if t.dtype.startswith(("float", "bfloat")):
            counts[t.dtype] = counts.get(t.dtype, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else "float32"


def axes_of(plan: TensorPlan) -> tuple[str, ...] | None:
    """Axis roles: from the spec, else torch's convention for weights ([out, in, kernel...])."""
    if plan.target is not None and plan.target.axes:
        return plan.target.axes
    shape = plan.dst_shape or ()
    if len(shape) >= 2 and plan.name.rsplit(".", 1)[-1] in ("weight", "weight_v", "original1"):
        return ("out", "in", *("kernel",) * (len(shape) - 2))
    return None


def describe_init(plan: TensorPlan) -> str:
    """How the new entries of ``plan`` are filled with ``--init normal``, in words (the plan's ``init``
    column). Mirrors ``migrate._new_values``: the spec's own init (zeros, a fill value, a residual branch's
    zero output), weight-norm magnitudes rescaled, zeros for buffers and new inputs, N(0, 0.01) for new
    outputs and wholly new weights."""
    t = plan.target
    leaf = plan.name.rsplit(".", 1)[-1]
    grown = _grown_dims(plan)
    if plan.action == "partial" and not grown:
        return "none (only cut: every kept entry comes from the source)"
    if t is not None and t.zero_init:
        return "zeros (the model zero-initialises it)"
    if t is not None and t.fill is not None:
        return f"{t.fill:g} (the model's own init)"
    if leaf in ("weight_g", "original0"):
        return "weight-norm g: rescaled so kept weights keep their values; new rows |v|"
    if plan.buffer:
        return "zeros (buffer)"
    if plan.action == "init":
        if t is not None and t.preserve:
            return "zeros (a residual branch's output: the new layer adds nothing at first)"
        if (plan.dst_shape is not None and len(plan.dst_shape) >= 2) or axes_of(plan) is not None:
            return "N(0, 0.01) (a new tensor: trainable from the first step)"
        return "zeros"
    axes = axes_of(plan)
    if axes is None:
        return "zeros"
    roles = {axes[d] if d < len(axes) else "in" for d in grown}
    parts = (["0 on new inputs"] if roles - {"out"} else []) + (
        ["N(0, 0.01) on new outputs"] if "out" in roles else []
    )
    return ", ".join(parts)


def _grown_dims(plan: TensorPlan) -> list[int]:
    """The dims of a partial copy that have entries no source value fills (the target is larger there, or
    the copied ranges leave gaps); all dims when the segments are unknown."""
    if plan.dst_shape is None:
        return []
    if plan.segments is None:
        return list(range(len(plan.dst_shape)))
    return [
        d
        for d, size in enumerate(plan.dst_shape)
        if d < len(plan.segments) and sum(d1 - d0 for _, _, d0, d1 in plan.segments[d]) < size
    ]
