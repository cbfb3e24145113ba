"""A checkpoint turned back into live training state: parameters, optimizers, schedulers and counters.

No model code is needed: parameters are rebuilt from the tensors, the optimizer from its class (inferred from
its state) and ``param_groups``, the scheduler from its saved state or from the trainer's rebuild rule. The same
builder reads the original file and the file the shadow run saves, so a save/reload round trip goes through
ckpttool's own reader exactly as a resume goes through the trainer's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ckpttool.errors import UsageError
from ckpttool.formats.values import StorageReader
from ckpttool.interpret.optimizer import analyse, guess_kind
from ckpttool.interpret.pieces import network_params
from ckpttool.interpret.profiles import Layout, counter_value
from ckpttool.interpret.structure import is_optimizer
from ckpttool.interpret.trainable import strategies
from ckpttool.model import Checkpoint, get_path
from ckpttool.resume.schedulers import DEFAULT_GAMMA, Rebuild, infer_class, rule_of
from ckpttool.resume.warmup_cosine import PinnedSchedule

if TYPE_CHECKING:
    import torch

OPTIMIZERS = ("AdamW", "Adam", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam", "ASGD")
REBUILDABLE = ("ExponentialLR", "StepLR", "MultiStepLR", "CosineAnnealingLR", "ConstantLR", "LinearLR")


class NotRebuildable(ValueError):
    """The checkpoint is fine, but its training state cannot be rebuilt without the trainer's own code."""


@dataclass
class LiveOptimizer:
    """A rebuilt ``torch.optim`` optimizer, the saved one it comes from (``path``) and the network it drives."""

    path: str
    network: str
    kind: str
    optimizer: Any
    names: list[str]  # parameter name per position in the optimizer (groups concatenated)


@dataclass
class LiveScheduler:
    """An LR scheduler rebuilt from a saved state (``path``) or by the trainer's rule, and the optimizer it
    drives; ``scheduler`` None when its class cannot be rebuilt (the LR is held constant)."""

    path: str | None  # None: rebuilt by the trainer's rule, not stored in the file
    optimizer: str
    kind: str
    scheduler: Any


@dataclass
class Live:
    """The training state of one checkpoint, live: tensors on the device (parameters require grad), rebuilt
    optimizers and schedulers, and the step and epoch counters."""

    networks: dict[str, dict[str, torch.Tensor]]  # label -> name -> tensor (parameters require grad)
    optimizers: list[LiveOptimizer]
    schedulers: list[LiveScheduler]
    step: int | None
    epoch: int | None
    notes: list[str] = field(default_factory=list)
    rule: str | None = None  # the trainer whose scheduler rebuild rule applies (it saves no scheduler)
    next_epoch: int | None = None  # the epoch the (resumed) run trains next

    def params(self, label: str) -> dict[str, torch.Tensor]:
        """The tensors of network ``label`` that train (those that require grad)."""
        return {k: v for k, v in self.networks[label].items() if v.requires_grad}


def optimizer_class(kind: str, override: str | None) -> Any:
    """The ``torch.optim`` class named by ``override``, else by the first word of ``kind`` (a
    :func:`guess_kind` result). Raises UsageError when it names no ``torch.optim.Optimizer`` subclass."""
    import torch

    name = override or kind.split(" ")[0]
    cls = getattr(torch.optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise UsageError(
            f"cannot rebuild a {kind!r} optimizer; name its torch.optim class with --optimizer-class "
            f"(e.g. {', '.join(OPTIMIZERS)})"
        )
    return cls


def driven_optimizer(sched_path: str, opt_paths: list[str], layout: Layout) -> str | None:
    """Which optimizer a saved scheduler drives: the one for the same network (scheduler_g -> the G optimizer),
    the one at the same index (Lightning's lists), or the only one."""
    leaf = sched_path.rsplit(".", 1)[-1]
    numbered = re.fullmatch(r"scheduler(_\d+)?", leaf)
    if numbered:  # accelerate: scheduler_N drives optimizer_N
        want = "optimizer" + (numbered.group(1) or "")
        match = next((p for p in opt_paths if p.rsplit(".", 1)[-1] == want), None)
        if match is not None:
            return match
    for suffix, label in (("_g", "G"), ("_d", "D")):
        if leaf.endswith(suffix):
            return next((p for p in opt_paths if layout.optimizers.get(p) == label), None)
    for p in opt_paths:
        if leaf.isdigit() and p.rsplit(".", 1)[-1] == leaf:
            return p
    return opt_paths[0] if len(opt_paths) == 1 else None


def build_live(
    ckpt: Checkpoint,
    layout: Layout,
    device: torch.device,
    *,
    trainer_rule: bool = False,
    gamma: float = DEFAULT_GAMMA,
    optimizer_override: str | None = None,
) -> Live:
    """Rebuild the training state. ``trainer_rule``: rebuild a missing scheduler (and the resumed epoch) the
    way the trainer does; otherwise continue it exactly as an uninterrupted run would."""
    import warnings

    with warnings.catch_warnings():
        # Rebuilding a scheduler steps it before any optimizer step, as the trainers themselves do.
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
        return _build_live(ckpt, layout, device, trainer_rule, gamma, optimizer_override)


def _build_live(
    ckpt: Checkpoint,
    layout: Layout,
    device: torch.device,
    trainer_rule: bool,
    gamma: float,
    optimizer_override: str | None,
) -> Live:
    live = Live({}, [], [], counter_value(ckpt, layout, "step"), counter_value(ckpt, layout, "epoch"))
    with StorageReader() as reader:
        for label, path in layout.networks.items():
            live.networks[label] = _live_tensors(ckpt, path, reader, device)
        opt_paths = [p for p in layout.optimizers if is_optimizer(get_path(ckpt.root, p))]
        for opt_path in opt_paths:
            live.optimizers.append(_live_optimizer(ckpt, layout, opt_path, live, reader, optimizer_override))
        held = {(o.network, n) for o in live.optimizers for n in o.names}
        for label, tensors in live.networks.items():  # buffers and frozen tensors take no steps
            for name, t in tensors.items():
                if t.requires_grad and (label, name) not in held and live.optimizers:
                    t.requires_grad_(False)
        by_path = {o.path: o for o in live.optimizers}
        for sched_path in layout.schedulers:
            state = get_path(ckpt.root, sched_path)
            target = driven_optimizer(sched_path, list(by_path), layout)
            if not isinstance(state, dict) or target is None:
                continue
            plain = reader.materialise(state)
            live.schedulers.append(_rebuild_saved(sched_path, plain, by_path[target], live.notes))
    _apply_rule(live, layout, gamma, trainer_rule)
    return live


def _live_tensors(
    ckpt: Checkpoint, path: str, reader: StorageReader, device: torch.device
) -> dict[str, torch.Tensor]:
    """The network at ``path``, read onto ``device``; floating-point tensors are leaves that require grad."""
    tensors: dict[str, torch.Tensor] = {}
    for name, info in network_params(ckpt, path).items():
        t = reader.tensor(info, device=str(device))
        if t.is_floating_point():
            t = t.detach().clone().requires_grad_(True)
        tensors[str(name)] = t
    return tensors


def _live_optimizer(
    ckpt: Checkpoint,
    layout: Layout,
    opt_path: str,
    live: Live,
    reader: StorageReader,
    optimizer_override: str | None,
) -> LiveOptimizer:
    """The torch optimizer saved at ``opt_path``, over ``live``'s tensors, with its state loaded.

    Raises NotRebuildable for ScaledAdam (its batched state needs icefall's code), ValueError when the state
    cannot be aligned with the network, UsageError when the class is not a ``torch.optim`` optimizer.
    """
    label = layout.optimizers[opt_path]
    tree = get_path(ckpt.root, opt_path)
    params = network_params(ckpt, layout.networks[label]) if label in layout.networks else {}
    g_only = label == "G"
    extra = strategies(layout.trainable.get(opt_path))
    report = analyse(opt_path, label, tree, dict(params), layout.group_layout if g_only else None, extra)
    if report.kind.startswith("ScaledAdam"):
        raise NotRebuildable(
            f"{opt_path}: {report.kind} keeps batched state that only its own code understands; "
            "verify this run through its real model (--trainer-root with a GPT-SoVITS checkout, or --recipe)"
        )
    if not report.aligned:
        raise ValueError(f"{opt_path}: cannot rebuild the optimizer: {report.problem or 'state not aligned'}")
    cls = optimizer_class(guess_kind(tree), optimizer_override)
    live_params = live.networks[label]
    groups, names = [], []
    for g in tree.get("param_groups") or []:
        hyper = reader.materialise({k: v for k, v in g.items() if k != "params"})
        members = [report.mapping[i] for i in g.get("params", [])]
        names += members
        groups.append({**hyper, "params": [live_params[str(n)] for n in members]})
    opt = cls(groups)
    state = reader.materialise(tree)
    opt.load_state_dict(state)
    return LiveOptimizer(opt_path, label, cls.__name__, opt, [str(n) for n in names])


def _apply_rule(live: Live, layout: Layout, gamma: float, trainer_rule: bool) -> None:
    """For a trainer that saves no scheduler, add the schedulers its rebuild rule makes; set the next epoch."""
    rule = rule_of(layout)
    if rule is not None and not layout.schedulers:
        live.rule = rule.trainer
        for o in live.optimizers:
            live.schedulers.append(_rebuild_by_rule(o, rule, gamma, live.epoch, trainer_rule))
        if live.epoch is not None:
            # These trainers save at the end of an epoch, before that epoch's scheduler step.
            live.next_epoch = rule.resumed_epoch(live.epoch) if trainer_rule else live.epoch + 1
    elif live.epoch is not None:
        live.next_epoch = live.epoch + 1


def _rebuild_saved(path: str, state: dict[str, Any], opt: LiveOptimizer, notes: list[str]) -> LiveScheduler:
    import torch

    kind = infer_class(state) or "unknown"
    optimizer = opt.optimizer
    lrs = [g["lr"] for g in optimizer.param_groups]
    if kind == "WarmupCosineLRSchedule":  # GPT-SoVITS s1: driven as its step() does (pins the LR)
        return LiveScheduler(path, opt.path, kind, PinnedSchedule(optimizer, state))
    if kind not in REBUILDABLE:
        notes.append(
            f"{path}: a {kind} scheduler cannot be rebuilt without its code; the LR is held constant"
        )
        return LiveScheduler(path, opt.path, kind, None)
    args: dict[str, Any] = {}
    if kind in ("ExponentialLR", "StepLR", "MultiStepLR"):
        args["gamma"] = state["gamma"]
    if kind == "StepLR":
        args["step_size"] = state["step_size"]
    if kind == "MultiStepLR":
        args["milestones"] = sorted(dict(state["milestones"]))
    if kind == "CosineAnnealingLR":
        args.update(T_max=state["T_max"], eta_min=state["eta_min"])
    if kind in ("ConstantLR", "LinearLR"):
        args.update(
            {k: state[k] for k in ("factor", "start_factor", "end_factor", "total_iters") if k in state}
        )
    sched = getattr(torch.optim.lr_scheduler, kind)(optimizer, **args)
    sched.load_state_dict(state)
    for g, lr in zip(optimizer.param_groups, lrs, strict=True):  # constructing stepped once; undo that
        g["lr"] = lr
    return LiveScheduler(path, opt.path, kind, sched)


def _rebuild_by_rule(
    opt: LiveOptimizer, rule: Rebuild, gamma: float, epoch: int | None, as_trainer: bool
) -> LiveScheduler:
    import torch

    optimizer = opt.optimizer
    lrs = [g["lr"] for g in optimizer.param_groups]
    if not as_trainer or epoch is None:
        # An uninterrupted run: the file was saved before the epoch's scheduler step, which happens next; the
        # chainable ExponentialLR multiplies the current lr by gamma at each step.
        sched = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
        for g, lr in zip(optimizer.param_groups, lrs, strict=True):
            g["lr"] = lr
        sched.step()
        return LiveScheduler(None, opt.path, "ExponentialLR (continued)", sched)
    if rule.rule.name == "restep":
        # ExponentialLR(last_epoch=-1), then stepped epoch+1 times: set to where those steps end, in closed form
        # (a file claiming epoch 10**9 must not take an hour)
        sched = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma, last_epoch=-1)
        for g, lr in zip(optimizer.param_groups, lrs, strict=True):
            g["lr"] = rule.resumed_lr(lr, g.get("initial_lr", lr), gamma, epoch)
        sched.last_epoch = epoch + 1
        sched._last_lr = [g["lr"] for g in optimizer.param_groups]
    else:
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        sched = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma, last_epoch=epoch - 2)
    return LiveScheduler(None, opt.path, f"ExponentialLR (rebuilt like {rule.trainer})", sched)


def lr_of(live: Live) -> list[float]:
    """Every group's LR, optimizer by optimizer."""
    return [float(g["lr"]) for o in live.optimizers for g in o.optimizer.param_groups]
