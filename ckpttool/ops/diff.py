"""``diff``: two checkpoints, their configs, and which config change explains each shape change.

Structure is compared from metadata alone (no tensor bytes). Known patterns are named instead of listed key by
key: a ``module.``/``_orig_mod.`` prefix (one rename suggestion), an export without ``enc_q``, a LoRA-only file,
a discriminator with extra periods. ``values=True`` streams one tensor pair at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ckpttool.interpret.pieces import network_params
from ckpttool.interpret.profiles import PIECES
from ckpttool.interpret.source import Source, load
from ckpttool.keys import wrapper_prefix
from ckpttool.model import Checkpoint, TensorInfo
from ckpttool.ops.diff_model import (
    Change,
    Explanation,
    KeyGroup,
    NetworkDiff,
    ShapeChange,
)
from ckpttool.ops.diff_peft import adapter_groups, align
from ckpttool.ops.diff_values import Progress, compare_values
from ckpttool.ops.explain import explain, version_changes
from ckpttool.ops.same_save import same_save_counter

SCHEMA = "ckpttool.diff/1"


@dataclass
class DiffReport:
    """Checkpoint A against B: per-network key, shape, dtype (and value) differences, piece, counter and
    config changes, and which config change explains each shape change."""

    path_a: str
    path_b: str
    profile_a: str
    profile_b: str
    networks: list[NetworkDiff]
    pieces: list[Change]
    state: list[Change]
    config: list[Change]
    explanations: list[Explanation]
    unexplained: list[str]
    notes: list[str] = field(default_factory=list)
    architectures: list[Any] = field(default_factory=list)  # explain.FamilyPair per compared network

    @property
    def differs(self) -> bool:
        """Any network, piece, counter or config difference (what ``--exit-code`` exits 1 on)."""
        return bool(any(n.differs for n in self.networks) or self.pieces or self.state or self.config)

    def to_json(self) -> dict[str, Any]:
        """The ``ckpttool.diff/1`` JSON document."""
        return {
            "schema": SCHEMA,
            "a": self.path_a,
            "b": self.path_b,
            "profile_a": self.profile_a,
            "profile_b": self.profile_b,
            "differs": self.differs,
            "networks": [n.to_json() for n in self.networks],
            "pieces": [c.to_json() for c in self.pieces],
            "state": [c.to_json() for c in self.state],
            "config": [c.to_json() for c in self.config],
            "explanations": [e.to_json() for e in self.explanations],
            "unexplained": self.unexplained,
            "architectures": [p.to_json() for p in self.architectures],
            "notes": self.notes,
        }


def _module_prefix(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else parts[0]


def _strip_wrapper(names: set[str]) -> tuple[str, set[str]] | None:
    prefix = wrapper_prefix(names)
    return (prefix, {n[len(prefix) :] for n in names}) if prefix else None


def _group(keys: list[str], side: str, other: set[str]) -> list[KeyGroup]:
    """Group by two-level prefix, or by top-level module when the other side has none of that module."""
    tops = {k.split(".", 1)[0] for k in other}
    groups: dict[str, list[str]] = {}
    for k in keys:
        top = k.split(".", 1)[0]
        groups.setdefault(top if top not in tops and "." in k else _module_prefix(k), []).append(k)
    out = []
    for prefix, items in groups.items():
        out.append(KeyGroup(prefix, len(items), items[:3], _pattern(prefix, items, side, other)))
    return out


def _pattern(prefix: str, items: list[str], side: str, other: set[str]) -> str | None:
    """A known reason for keys to be on one side only: the specs' ``key_patterns``, or a LoRA-only file."""
    from ckpttool.specs.model import builtin_specs

    for spec in builtin_specs().values():
        if (why := spec.key_reason(prefix)) is not None:
            return why
    if all("lora_" in k for k in items):
        return "LoRA adapter weights: a LoRA-only file holds just these"
    return None


def _compare_network(
    name: str, pa: str, pb: str, ta: dict[str, TensorInfo], tb: dict[str, TensorInfo]
) -> NetworkDiff:
    rename = None
    ta, tb, va, vb, peft = align(ta, tb)
    ka, kb = set(ta), set(tb)
    sa, sb = _strip_wrapper(ka), _strip_wrapper(kb)
    if sa and not sb and not (ka & kb):
        rename = f"every key of A has the prefix {sa[0]!r} (DDP/torch.compile wrapper); strip it to match B"
        ta = {k[len(sa[0]) :]: v for k, v in ta.items()}
    elif sb and not sa and not (ka & kb):
        rename = f"every key of B has the prefix {sb[0]!r} (DDP/torch.compile wrapper); strip it to match A"
        tb = {k[len(sb[0]) :]: v for k, v in tb.items()}
    adapters_a, only_a = adapter_groups([k for k in ta if k not in tb], va)
    adapters_b, only_b = adapter_groups([k for k in tb if k not in ta], vb)
    shapes: list[ShapeChange] = []
    dtypes: dict[str, int] = {}
    common = 0
    for k, a in ta.items():
        b = tb.get(k)
        if b is None:
            continue
        common += 1
        if a.shape != b.shape:
            shapes.append(ShapeChange(k, a.shape, b.shape))
        if a.dtype != b.dtype:
            key = f"{a.dtype}->{b.dtype}"
            dtypes[key] = dtypes.get(key, 0) + 1
    return NetworkDiff(
        name,
        pa,
        pb,
        common,
        rename,
        _group(only_a, "a", set(tb)) + adapters_a,
        _group(only_b, "b", set(ta)) + adapters_b,
        shapes,
        dtypes,
        peft=peft,
    )


def _pair_networks(la: dict[str, str], lb: dict[str, str]) -> list[tuple[str, str, str]]:
    pairs = [(label, la[label], lb[label]) for label in la if label in lb]
    if not pairs and len(la) == 1 and len(lb) == 1:
        (na, pa), (nb, pb) = next(iter(la.items())), next(iter(lb.items()))
        pairs = [(na if na == nb else f"{na}/{nb}", pa, pb)]
    return pairs


def _piece_changes(ia: Any, ib: Any) -> list[Change]:
    out = []
    pa = {p.name: p for p in ia.pieces}
    pb = {p.name: p for p in ib.pieces}
    for name in PIECES:
        if pa[name].status != pb[name].status:
            out.append(Change(f"piece {name}", pa[name].status, pb[name].status))
    return out


def _state_changes(ca: Checkpoint, cb: Checkpoint, ia: Any, ib: Any) -> list[Change]:
    from ckpttool.interpret.pieces import _value

    out: list[Change] = []
    for name in ("step", "epoch"):
        va = _value(ca, getattr(ia.layout, name))
        vb = _value(cb, getattr(ib.layout, name))
        if va != vb and same_save_counter(ca, cb, ia.layout, ib.layout, name) is None:
            out.append(Change(name, va, vb))
    opts_a = {o.network: o for o in ia.optimizers}
    for ob in ib.optimizers:
        oa = opts_a.get(ob.network)
        if oa is None:
            continue
        if len(oa.groups) != len(ob.groups):
            out.append(Change(f"optimizer {ob.network} groups", len(oa.groups), len(ob.groups)))
        for ga, gb in zip(oa.groups, ob.groups, strict=False):
            if ga.lr != gb.lr:
                out.append(Change(f"optimizer {ob.network} group {ga.index} lr", ga.lr, gb.lr))
        if oa.step_range != ob.step_range and oa.step_range and ob.step_range:
            out.append(Change(f"optimizer {ob.network} Adam step", oa.step_range[1], ob.step_range[1]))
    return out


@dataclass(frozen=True)
class DiffOptions:
    """``config_a``/``config_b``: run configs (already read) that explain shape changes, else the configs the
    checkpoints embed; ``values``: also compare tensor values, one pair at a time; ``progress`` is called per
    tensor pair as (done, total, name)."""

    config_a: dict[str, Any] | None = None
    config_b: dict[str, Any] | None = None
    values: bool = False
    progress: Progress | None = None
    allow_globals: frozenset[str] = frozenset()


def diff_checkpoints(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    config_a: dict[str, Any] | None = None,
    config_b: dict[str, Any] | None = None,
    values: bool = False,
    progress: Progress | None = None,
) -> DiffReport:
    """Compare two checkpoints (any formats the readers accept). Configs are optional explanations."""
    return diff_paths(a, b, DiffOptions(config_a, config_b, values, progress))


def diff_paths(
    a: str | os.PathLike[str], b: str | os.PathLike[str], options: DiffOptions | None = None
) -> DiffReport:
    """:func:`diff_sources` of the files at ``a`` and ``b`` (what the CLI's ``diff`` runs)."""
    allow = (options or DiffOptions()).allow_globals
    return diff_sources(load(a, gate=allow), load(b, gate=allow), options)


def diff_sources(sa: Source, sb: Source, options: DiffOptions | None = None) -> DiffReport:
    """What differs between two interpreted checkpoints, and which config change explains each shape change."""
    options = options or DiffOptions()
    config_a, config_b, values, progress = (
        options.config_a,
        options.config_b,
        options.values,
        options.progress,
    )
    ca, cb, la, lb, ia, ib = sa.ckpt, sb.ckpt, sa.layout, sb.layout, sa.interp, sb.interp
    networks = [
        _compare_network(name, pa, pb, network_params(ca, pa), network_params(cb, pb))
        for name, pa, pb in _pair_networks(la.networks, lb.networks)
    ]
    notes = [n for name in ("step", "epoch") if (n := same_save_counter(ca, cb, la, lb, name))]
    for net in networks:  # a dtype change the writer explains (exports hold fp16 copies)
        if net.dtype_changes:
            notes += [
                f"{net.name}: {side} holds {lay.meaning['model']}"
                for side, lay in (("A", la), ("B", lb))
                if "model" in lay.meaning
            ]
    if not networks and (la.networks or lb.networks):
        notes.append("the two files hold different networks; nothing to compare key by key")
    config_changes, explanations, unexplained, pairs, spec_notes = explain(
        ca, cb, la, lb, networks, config_a, config_b
    )
    if values:
        _values(networks, ca, cb, progress)
    return DiffReport(
        ca.path,
        cb.path,
        la.profile,
        lb.profile,
        networks,
        _piece_changes(ia, ib),
        _state_changes(ca, cb, ia, ib) + version_changes(pairs),
        config_changes,
        explanations,
        unexplained,
        [*spec_notes, *notes],
        pairs,
    )


def _values(networks: list[NetworkDiff], ca: Checkpoint, cb: Checkpoint, progress: Progress | None) -> None:
    for net in networks:
        ta, tb, *_ = align(network_params(ca, net.path_a), network_params(cb, net.path_b))
        strip_a = net.rename and "of A" in net.rename
        strip_b = net.rename and "of B" in net.rename
        if strip_a:
            ta = {k.split(".", 1)[1]: v for k, v in ta.items()}
        if strip_b:
            tb = {k.split(".", 1)[1]: v for k, v in tb.items()}
        pairs = [(k, ta[k], tb[k]) for k in ta if k in tb and ta[k].shape == tb[k].shape]
        net.values = compare_values(pairs, progress)
