"""Tie every optimizer state entry to the parameter it belongs to, and check the shapes agree.

``Optimizer.load_state_dict`` only compares group sizes: moments of the wrong shape load silently and fail at
the first ``step()`` (or worse, fit by accident). Indices follow param-group order, not ``state_dict`` order
(GPT-SoVITS G has four AdamW groups), and a state dict also holds buffers, so the mapping has to be solved:
by ``param_names`` when torch recorded them, by the profile's known grouping, or by matching shapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckpttool.interpret.scaled_adam import METHOD, align_scaled_adam
from ckpttool.interpret.sorted_order import METHOD as SORTED_METHOD
from ckpttool.interpret.sorted_order import recover
from ckpttool.keys import NORM_BUFFER
from ckpttool.model import TensorInfo

Shape = tuple[int, ...]
# An alignment strategy: (its method, as reported; candidate names -> the name per state index, or None).
_Strategy = tuple[str, Callable[[list[str]], list[str] | None]]
# State-dict entries that are buffers, not parameters, in common modules (BatchNorm, VQ codebooks, HF).
BUFFER_PATTERN = re.compile(
    r"(running_mean|running_var|num_batches_tracked|_codebook\.(inited|cluster_size|embed|embed_avg)"
    r"|position_ids|masked_bias|_float_tensor|rotary_embed\.inv_freq|rotary_emb\.inv_freq)$|"
    + NORM_BUFFER.pattern
)
# Keys of one parameter's state that have the parameter's shape, in order of preference.
MOMENT_KEYS = ("exp_avg", "momentum_buffer", "square_avg", "exp_avg_sq", "sum", "exp_inf", "ax", "prev")


@dataclass
class GroupInfo:
    """One entry of an optimizer's ``param_groups``: its index, parameter count and main hyper-parameters."""

    index: int
    params: int
    lr: Any = None
    initial_lr: Any = None
    betas: Any = None
    eps: Any = None
    weight_decay: Any = None

    def to_json(self) -> dict[str, Any]:
        """An entry of ``optimizers[].groups`` in ``ckpttool.inspect/1``."""
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Mismatch:
    """A state entry whose moment shape differs from its parameter's (``index`` in the optimizer's numbering)."""

    index: int
    param: str
    state_shape: Shape
    param_shape: Shape
    key: str = "exp_avg"  # the state tensor compared
    expected_as: str = "the parameter"  # what its shape must equal (ScaledAdam: the stacked batch)

    def to_json(self) -> dict[str, Any]:
        """An entry of ``optimizers[].mismatches`` in ``ckpttool.inspect/1``."""
        return {
            "index": self.index,
            "param": self.param,
            "state_shape": list(self.state_shape),
            "param_shape": list(self.param_shape),
            "state_key": self.key,
        }


@dataclass
class OptimizerReport:
    """One saved optimizer: its class (guessed), groups, state count and how its state entries map onto the
    network's parameters (``mapping``: state index -> parameter name; ``aligned`` None when not checked).
    Adam's ``step`` counters are kept as tensors (``step_tensors``, read later) or values."""

    path: str
    network: str
    kind: str
    groups: list[GroupInfo]
    n_params: int
    n_state: int
    aligned: bool | None = None  # None: alignment not applicable or not possible
    method: str = ""
    mismatches: list[Mismatch] = field(default_factory=list)
    problem: str | None = None
    mapping: dict[int, str] = field(default_factory=dict)
    step_tensors: list[TensorInfo] = field(default_factory=list)
    step_values: list[float] = field(default_factory=list)
    step_range: tuple[float, float] | None = None
    batches: int | None = None  # ScaledAdam: the batches its state is kept in (None: per-parameter state)
    covered: int | None = None  # ScaledAdam: parameters whose batch has state
    stray: list[Any] = field(default_factory=list)  # ScaledAdam: state indices that own no batch
    missing_keys: dict[Any, list[str]] = field(default_factory=dict)  # ScaledAdam: state keys step() needs

    def to_json(self) -> dict[str, Any]:
        """An entry of ``optimizers`` in ``ckpttool.inspect/1``."""
        return {
            "path": self.path,
            "network": self.network,
            "kind": self.kind,
            "groups": [g.to_json() for g in self.groups],
            "params": self.n_params,
            "state_entries": self.n_state,
            "aligned": self.aligned,
            "alignment_method": self.method,
            "mismatches": [m.to_json() for m in self.mismatches],
            "problem": self.problem,
            "adam_step": list(self.step_range) if self.step_range else None,
            "batches": self.batches,
            "covered_params": self.covered,
        }


def guess_kind(opt: dict[str, Any]) -> str:
    """The ``torch.optim`` class (or icefall's ScaledAdam) that wrote ``opt``, from its state keys and its
    first group's keys; ``"unknown"`` when nothing fits.

    Source: the keys each class in torch/optim/*.py writes (``exp_inf`` only Adamax, ``mu_product`` only
    NAdam, ...) and icefall's optim.py (ScaledAdam's ``clipping_scale``). Adam with weight decay and AdamW
    store the same keys unless torch recorded ``decoupled_weight_decay``.
    """
    groups = [g for g in opt.get("param_groups", []) if isinstance(g, dict)]
    g0 = groups[0] if groups else {}
    keys: set[str] = set()
    for entry in opt.get("state", {}).values():
        if isinstance(entry, dict):
            keys |= set(map(str, entry))
    if "clipping_scale" in g0 or {"delta", "param_rms"} & keys:
        return "ScaledAdam (icefall; batched state)"
    # classes whose state or groups carry a key of their own, before the generic Adam/SGD rules
    if "exp_inf" in keys:
        return "Adamax"
    if "mu_product" in keys or "momentum_decay" in g0:
        return "NAdam"
    if "square_avg" in keys or "centered" in g0:
        return "RMSprop"
    if "acc_delta" in keys:
        return "Adadelta"
    if "eta" in keys and "ax" in keys:
        return "ASGD"
    if ("exp_avg" in keys or "betas" in g0) and "amsgrad" not in g0 and "decoupled_weight_decay" in g0:
        return "RAdam"
    if "exp_avg" in keys or ("betas" in g0 and not keys):
        if "decoupled_weight_decay" in g0:
            return "AdamW" if g0["decoupled_weight_decay"] else "Adam"
        if g0.get("weight_decay"):
            return "AdamW (probably; Adam with weight decay looks the same)"
        return "Adam"
    for key, name in (
        ("momentum_buffer", "SGD (momentum)"),
        ("acc_delta", "Adadelta"),
        ("square_avg", "RMSprop"),
        ("exp_inf", "Adamax"),
        ("sum", "Adagrad"),
        ("eta", "ASGD"),
    ):
        if key in keys:
            return name
    if "momentum" in g0 and not keys:
        return "SGD"
    return "unknown"


def _state_shape(entry: Any) -> Shape | None:
    if not isinstance(entry, dict):
        return None
    for key in MOMENT_KEYS:
        t = entry.get(key)
        if isinstance(t, TensorInfo):
            return t.shape
    return None


def analyse(
    path: str,
    network: str,
    opt: dict[str, Any],
    params: dict[str, TensorInfo] | None,
    group_layout: tuple[tuple[str, ...], ...] | None = None,
    extra: tuple[_Strategy, ...] = (),
) -> OptimizerReport:
    """The report on optimizer ``opt`` (at ``path``, driving network ``network`` whose tensors are
    ``params``). ``group_layout``: the trainer's parameter-group prefixes (groups 1..; group 0 takes the
    rest), when known. ScaledAdam's batched state is checked batch by batch (:mod:`.scaled_adam`);
    ``params`` None leaves the report unaligned with a ``problem``. Reads no tensor bytes.
    ``extra``: alignment strategies from the trainer's record (ckpttool.interpret.trainable), after param_names."""
    groups_raw = [g for g in opt.get("param_groups", []) if isinstance(g, dict)]
    groups = [
        GroupInfo(
            i,
            len(g.get("params", [])),
            g.get("lr"),
            g.get("initial_lr"),
            g.get("betas"),
            g.get("eps"),
            g.get("weight_decay"),
        )
        for i, g in enumerate(groups_raw)
    ]
    state = opt.get("state", {})
    report = OptimizerReport(
        path, network, guess_kind(opt), groups, sum(g.params for g in groups), len(state)
    )
    for entry in state.values():
        if isinstance(entry, dict) and isinstance(entry.get("step"), TensorInfo):
            report.step_tensors.append(entry["step"])
        elif isinstance(entry, dict) and isinstance(entry.get("step"), (int, float)):
            report.step_values.append(float(entry["step"]))
    if params is not None and report.kind.startswith("ScaledAdam"):
        found = align_scaled_adam(
            groups_raw, state, params, [n for n in params if not BUFFER_PATTERN.search(n)]
        )
        report.aligned, report.problem, report.mapping = found.aligned, found.problem, found.mapping
        report.method = METHOD if found.batches else ""
        report.batches, report.covered, report.stray = found.batches or None, found.covered, found.stray
        report.missing_keys = found.missing_keys
        report.mismatches = [
            Mismatch(b.index, b.param, b.state_shape, b.expected, b.key, f"its batch ({b.batch})")
            for b in found.bad
        ]
        return report
    if params is None:
        report.problem = "no network found to align the optimizer state with"
        return report
    index_order = [idx for g in groups_raw for idx in g.get("params", [])]
    shapes = {idx: _state_shape(state.get(idx, state.get(str(idx)))) for idx in index_order}
    _align(report, groups_raw, index_order, shapes, params, group_layout, extra)
    return report


def _align(
    report: OptimizerReport,
    groups: list[dict[str, Any]],
    order: list[Any],
    shapes: dict[Any, Shape | None],
    params: dict[str, TensorInfo],
    group_layout: tuple[tuple[str, ...], ...] | None,
    extra: tuple[_Strategy, ...] = (),
) -> None:
    """Fill ``report``'s mapping (state index -> parameter name), method, mismatches and problem.

    The strategies are tried in order, each on all the tensors and on the parameters without buffers; the
    first exact fit wins, else the fewest shape mismatches, unless an unambiguous ordered subset fits exactly.
    """
    names_all = list(params)
    names_nobuf = [n for n in names_all if not BUFFER_PATTERN.search(n)]
    strategies = _strategies(groups, order, shapes, params, group_layout, extra)
    best = _best_assignment(strategies, order, shapes, params, names_all, names_nobuf)
    if best is None or best[0] > 0:
        subset = _by_subset(order, shapes, names_nobuf, params, group_layout)
        if subset is not None:
            assigned, skipped = subset
            report.method = (
                f"an ordered subset of the parameters ({len(skipped)} frozen or unused skipped: "
                f"{', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''})"
            )
            report.mapping = dict(zip(order, assigned, strict=True))
            report.aligned = True
            return
    if best is None:
        report.aligned = False
        report.problem = (
            f"optimizer covers {len(order)} parameters but the network has {len(names_nobuf)} "
            f"parameter tensors ({len(names_all)} with buffers): it belongs to another model"
        )
        return
    _, method, assigned, mismatches = best
    report.method = method
    if method.endswith(SORTED_METHOD) and not mismatches:
        # the recovered order is confirmed by shapes only: say where equal shapes leave it open
        wanted = [shapes.get(i) for i in order]
        cut = len(groups[0]["params"]) if method != SORTED_METHOD else len(order)
        ambiguous: list[str] = []
        for part, part_wanted in ((assigned[:cut], wanted[:cut]), (assigned[cut:], wanted[cut:])):
            rec = recover(part, part_wanted, params) if part else None
            ambiguous += rec.ambiguous if rec is not None else []
        if ambiguous:
            report.method += (
                f"; fits by shape, order ambiguous among {len(ambiguous)} same-shape parameters of one "
                f"block (e.g. {', '.join(ambiguous[:3])})"
            )
    report.mapping = dict(zip(order, assigned, strict=True))
    report.mismatches = mismatches
    report.aligned = not mismatches
    if mismatches:
        report.problem = (
            f"{len(mismatches)} optimizer state entries do not have the shape of their parameter; "
            "loading works but the first optimizer.step() fails"
        )


def _strategies(
    groups: list[dict[str, Any]],
    order: list[Any],
    shapes: dict[Any, Shape | None],
    params: dict[str, TensorInfo],
    group_layout: tuple[tuple[str, ...], ...] | None,
    extra: tuple[_Strategy, ...] = (),
) -> list[_Strategy]:
    """The ways to assign parameter names to the state indices that apply here, most trustworthy first."""
    strategies: list[_Strategy] = []
    if all("param_names" in g for g in groups):
        strategies.append(
            ("param_names recorded by torch", lambda _: [n for g in groups for n in g["param_names"]])
        )
    strategies += extra
    if group_layout is not None:
        strategies.append(
            ("the trainer's known param-group layout", lambda ns: _by_prefix(ns, groups, group_layout))
        )
    strategies.append(("state_dict order", lambda ns: ns))
    wanted = [shapes.get(i) for i in order]
    strategies.append((SORTED_METHOD, lambda ns: r.names if (r := recover(ns, wanted, params)) else None))
    strategies.append(
        (
            "module-wise shape matching (the file does not keep registration order, e.g. safetensors)",
            lambda ns: _by_module_shapes(ns, [shapes.get(i) for i in order], params),
        )
    )
    if len(groups) > 1:
        strategies.append(
            ("contiguous blocks matched by shape", lambda ns: _by_blocks(ns, groups, shapes, params))
        )
        strategies.append(("decay / no-decay split", lambda ns: _by_decay(ns, groups)))
        for by_shape in (False, True):
            how = "; LayerNorm modules told by their parameters" if by_shape else ""
            for recovered in (False, True):
                label = HF_DECAY_METHOD + how
                if recovered:
                    label += f", each group in registration order recovered from {SORTED_METHOD}"
                strategies.append((label, _hf_decay_strategy(groups, wanted, params, recovered, by_shape)))
    return strategies


def _best_assignment(
    strategies: list[_Strategy],
    order: list[Any],
    shapes: dict[Any, Shape | None],
    params: dict[str, TensorInfo],
    names_all: list[str],
    names_nobuf: list[str],
) -> tuple[int, str, list[str], list[Mismatch]] | None:
    """(mismatch count, method, assigned names, mismatches) of the first exact fit, else of the fit with the
    fewest mismatches; None when no strategy assigns an existing name to every state index."""
    best: tuple[int, str, list[str], list[Mismatch]] | None = None
    for method, build in strategies:
        for names in [names_all] if names_all == names_nobuf else [names_all, names_nobuf]:
            assigned = build(names)
            if assigned is None or len(assigned) != len(order):
                continue
            mismatches = [
                Mismatch(i, n, s, params[n].shape)
                for i, n in zip(order, assigned, strict=True)
                if (s := shapes.get(i)) is not None and n in params and params[n].shape != s
            ]
            if any(n not in params for n in assigned):
                continue
            if best is None or len(mismatches) < best[0]:
                best = (len(mismatches), method, assigned, mismatches)
            if not mismatches:
                break
        if best is not None and best[0] == 0:
            break
    return best


def _by_module_shapes(
    names: list[str], wanted: list[Shape | None], params: dict[str, TensorInfo]
) -> list[str] | None:
    """Modules in the order they appear, each module's tensors matched to the state entries by shape.

    Formats that sort keys (safetensors) lose the order parameters were registered in (``weight`` before
    ``bias``); the modules keep their relative order, so within each module the shapes decide."""
    if any(w is None for w in wanted):
        return None
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(n.rsplit(".", 1)[0] if "." in n else "", []).append(n)
    out: list[str] = []
    pending = list(groups.values())
    gi = 0
    for w in wanted:
        while gi < len(pending) and not pending[gi]:
            gi += 1
        if gi >= len(pending):
            return None
        match = next((n for n in pending[gi] if params[n].shape == w), None)
        if match is None:
            return None
        pending[gi].remove(match)
        out.append(match)
    return out


def _subsequence(wanted: list[Shape], names: list[str], params: dict[str, TensorInfo]) -> list[str] | None:
    out, i = [], 0
    for n in names:
        if i < len(wanted) and params[n].shape == wanted[i]:
            out.append(n)
            i += 1
    return out if i == len(wanted) else None


def _by_subset(
    order: list[Any],
    shapes: dict[Any, Shape | None],
    names: list[str],
    params_of: dict[str, TensorInfo],
    group_layout: tuple[tuple[str, ...], ...] | None,
) -> tuple[list[str], list[str]] | None:
    """An optimizer over some of the parameters (frozen layers filtered out with requires_grad): the state
    shapes, in order, matched as a subsequence of the parameters. Accepted only when the match is unique
    (matching from the front and from the back agree), so equal shapes cannot be assigned by guesswork."""
    wanted = [shapes.get(i) for i in order]
    if not wanted or any(w is None for w in wanted) or len(wanted) >= len(names):
        return None
    candidates = [names]
    if group_layout is not None:
        by_prefix = _by_prefix(names, [{}] * (len(group_layout) + 1), group_layout)
        if by_prefix is not None:
            candidates.insert(0, by_prefix)
    for cand in candidates:
        known = [w for w in wanted if w is not None]
        front = _subsequence(known, cand, params_of)
        back = _subsequence(known[::-1], cand[::-1], params_of)
        if front is not None and back is not None and front == back[::-1]:
            return front, [n for n in cand if n not in set(front)]
    return None


def _by_prefix(
    names: list[str], groups: list[dict[str, Any]], layout: tuple[tuple[str, ...], ...]
) -> list[str] | None:
    if len(groups) != len(layout) + 1:
        return None
    blocks = [[n for n in names if any(n.startswith(p + ".") for p in prefixes)] for prefixes in layout]
    claimed = {n for b in blocks for n in b}
    rest = [n for n in names if n not in claimed]
    return [n for block in [rest, *blocks] for n in block]


def _by_blocks(
    names: list[str],
    groups: list[dict[str, Any]],
    shapes: dict[Any, Shape | None],
    params: dict[str, TensorInfo],
) -> list[str] | None:
    """Groups 1.. are contiguous runs of the state dict (a submodule each); group 0 is the rest, in order."""
    taken: set[int] = set()
    blocks: list[list[str]] = []
    for g in groups[1:]:
        want = [shapes.get(i) for i in g.get("params", [])]
        n = len(want)
        for start in range(0, len(names) - n + 1):
            window = range(start, start + n)
            if any(j in taken for j in window):
                continue
            if all(w is None or params[names[j]].shape == w for j, w in zip(window, want, strict=True)):
                taken.update(window)
                blocks.append([names[j] for j in window])
                break
        else:
            return None
    rest = [n for j, n in enumerate(names) if j not in taken]
    return [n for block in [rest, *blocks] for n in block]


HF_DECAY_METHOD = "transformers' decay / no-decay groups (Trainer.get_decay_parameter_names)"
# transformers trainer.py:1408-1418: no weight decay for names matching these (lower-cased), group 0 the rest, in
# named_parameters() order (create_optimizer, :1273-1286)
HF_NO_DECAY = tuple(
    re.compile(p) for p in (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")
)


def _by_hf_decay(
    names: list[str],
    groups: list[dict[str, Any]],
    wanted: list[Shape | None],
    params: dict[str, TensorInfo],
    *,
    recovered: bool,
    norms: bool = False,
) -> list[str] | None:
    """The transformers Trainer's two groups: parameters with weight decay, then those without (bias and norm
    names), each in registration order -- the file's own order, or (``recovered``) the order rebuilt from
    module structure and shapes when the file sorted its keys (model.safetensors beside optimizer.pt).

    transformers also leaves out every parameter of an ``nn.LayerNorm`` whatever its name (GPT-2's ``ln_1``):
    the type is not in the file, so with ``norms`` a module whose parameters are a 1-D ``weight`` and a 1-D
    ``bias`` of the same length and that keeps no running statistics (BatchNorm does) is taken for one."""
    if len(groups) != 2 or not isinstance(groups[0].get("params"), list):
        return None
    layer_norms = _layer_norm_modules(params) if norms else set()
    no_decay = [
        n
        for n in names
        if any(p.search(n.lower()) for p in HF_NO_DECAY) or n.rpartition(".")[0] in layer_norms
    ]
    skip = set(no_decay)
    decay = [n for n in names if n not in skip]
    n0 = len(groups[0]["params"])
    if len(decay) != n0 or len(decay) + len(no_decay) != len(wanted):
        return None
    if not recovered:
        return decay + no_decay
    first, second = recover(decay, wanted[:n0], params), recover(no_decay, wanted[n0:], params)
    return None if first is None or second is None else first.names + second.names


def _hf_decay_strategy(
    groups: list[dict[str, Any]],
    wanted: list[Shape | None],
    params: dict[str, TensorInfo],
    recovered: bool,
    norms: bool,
) -> Callable[[list[str]], list[str] | None]:
    return lambda ns: _by_hf_decay(ns, groups, wanted, params, recovered=recovered, norms=norms)


def _layer_norm_modules(params: dict[str, TensorInfo]) -> set[str]:
    """Modules whose tensors are exactly a 1-D ``weight`` and a 1-D ``bias`` of one length (LayerNorm's
    parameters); a module with running statistics (BatchNorm) or any other tensor is not one."""
    members: dict[str, dict[str, TensorInfo]] = {}
    for name, t in params.items():
        module, _, attr = name.rpartition(".")
        members.setdefault(module, {})[attr] = t
    return {
        m
        for m, ts in members.items()
        if set(ts) == {"weight", "bias"}
        and len(ts["weight"].shape) == 1
        and ts["weight"].shape == ts["bias"].shape
    }


def _by_decay(names: list[str], groups: list[dict[str, Any]]) -> list[str] | None:
    if len(groups) != 2:
        return None
    no_decay = [
        n for n in names if n.endswith("bias") or "norm" in n.lower() or ".ln" in n or "bn" in n.lower()
    ]
    decay = [n for n in names if n not in set(no_decay)]
    first_no_decay = not groups[0].get("weight_decay") and groups[1].get("weight_decay")
    return no_decay + decay if first_no_decay else decay + no_decay
