"""LR schedulers as the state dicts describe them, and the trainers' scheduler rebuild rules.

A scheduler's ``state_dict()`` does not name its class, and ``load_state_dict`` accepts any dict without a
word, so a state from another scheduler class loads silently. The class is therefore inferred from the keys
that only it has, and each chainable scheduler's closed form says which LR its state implies: a state that
does not imply the LR its optimizer holds does not belong to that optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ckpttool.resume.warmup_cosine import KEYS as WARMUP_COSINE_KEYS

# class -> keys only its state has (checked in order: the first class whose keys are all present wins)
SIGNATURES: list[tuple[str, frozenset[str]]] = [
    ("WarmupCosineLRSchedule", WARMUP_COSINE_KEYS),  # GPT-SoVITS s1: its __dict__ (resume/warmup_cosine.py)
    ("OneCycleLR", frozenset({"total_steps", "_schedule_phases"})),
    ("CyclicLR", frozenset({"max_lrs", "total_size"})),
    ("ReduceLROnPlateau", frozenset({"patience", "best", "num_bad_epochs"})),
    ("CosineAnnealingWarmRestarts", frozenset({"T_0", "T_i", "T_cur"})),
    ("CosineAnnealingLR", frozenset({"T_max", "eta_min"})),
    ("MultiStepLR", frozenset({"milestones", "gamma"})),
    ("StepLR", frozenset({"step_size", "gamma"})),
    ("PolynomialLR", frozenset({"total_iters", "power"})),
    ("LinearLR", frozenset({"start_factor", "end_factor", "total_iters"})),
    ("ConstantLR", frozenset({"factor", "total_iters"})),
    ("SequentialLR", frozenset({"_schedulers", "_milestones"})),
    ("LambdaLR", frozenset({"lr_lambdas"})),
    ("MultiplicativeLR", frozenset({"lr_lambdas"})),
    ("ExponentialLR", frozenset({"gamma"})),
]


def infer_class(state: Mapping[str, Any]) -> str | None:
    """The ``torch.optim.lr_scheduler`` class whose state keys ``state`` has (SIGNATURES, first match), or
    None."""
    keys = set(state)
    for name, needed in SIGNATURES:
        if needed <= keys:
            return name
    return None


def closed_form_lr(kind: str, state: Mapping[str, Any], base_lr: float) -> float | None:
    """The LR this scheduler class gives at the state's ``last_epoch``, from ``base_lr`` (None when unknown)."""
    t = state.get("last_epoch")
    if not isinstance(t, int) or isinstance(t, bool) or t < 0:
        return None
    try:
        if kind == "ExponentialLR":
            return base_lr * float(state["gamma"]) ** t
        if kind == "StepLR":
            return base_lr * float(state["gamma"]) ** (t // int(state["step_size"]))
        if kind == "MultiStepLR":
            milestones = state["milestones"]
            passed = sum(int(n) for m, n in dict(milestones).items() if int(m) <= t)
            return base_lr * float(state["gamma"]) ** passed
        if kind == "CosineAnnealingLR":
            t_max, eta_min = int(state["T_max"]), float(state["eta_min"])
            return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2
        if kind == "ConstantLR":
            return base_lr * (float(state["factor"]) if t < int(state["total_iters"]) else 1.0)
        if kind == "LinearLR":
            s, e, n = float(state["start_factor"]), float(state["end_factor"]), int(state["total_iters"])
            return base_lr * (s + (e - s) * min(t, n) / n)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return None


@dataclass
class RebuildRule:
    """How a trainer that does not save its scheduler rebuilds it on resume; a trainer record names its rule
    (``resume.scheduler_rule``) and says whether it resumes at the next epoch or re-runs the saved one."""

    name: str
    description: str

    def resumed_lr(
        self,
        saved_lr: float,
        initial_lr: float,
        gamma: float,
        saved_epoch: int,
        torch_version: str | None = None,
    ) -> float:
        """The LR the trainer's rebuilt scheduler leaves in the optimizer, in closed form (no loop, no torch).

        ``restep``: ``ExponentialLR(last_epoch=-1)`` steps once without changing the LR (the chainable form
        returns the group's LR at ``last_epoch == 0``), then ``epoch_str = saved_epoch + 1`` steps each
        multiply it by gamma: ``saved_lr * gamma ** (saved_epoch + 1)``.
        ``last-epoch``: ``ExponentialLR(last_epoch=saved_epoch - 2)`` steps once in its constructor; before the
        fix of pytorch/pytorch#102261 (PR #149312, in torch 2.8) that step multiplies the loaded LR by gamma
        unless it lands on ``last_epoch == 0``; from 2.8 it leaves it. ``torch_version`` of the training
        environment decides (default: the installed one).
        """
        if self.name == "restep":
            return saved_lr * gamma ** (saved_epoch + 1)
        version = torch_version if torch_version is not None else installed_torch_version()
        extra = (saved_epoch - 1) != 0 and (version is None or _parse(version) < FIXED_INITIAL_STEP)
        return saved_lr * gamma if extra else saved_lr


@dataclass
class Rebuild:
    """A rule applied for one trainer: the rule plus the trainer's epoch convention."""

    rule: RebuildRule
    trainer: str
    next_epoch: str  # "next" or "same" (trainer record resume.next_epoch)

    @property
    def description(self) -> str:
        """The rule in words."""
        return self.rule.description

    def resumed_epoch(self, saved_epoch: int) -> int:
        """The epoch the trainer trains first after resuming from a save at ``saved_epoch``."""
        return saved_epoch + 1 if self.next_epoch == "next" else saved_epoch

    def resumed_lr(
        self,
        saved_lr: float,
        initial_lr: float,
        gamma: float,
        saved_epoch: int,
        torch_version: str | None = None,
    ) -> float:
        """The LR the trainer's rebuilt scheduler leaves in the optimizer (:meth:`RebuildRule.resumed_lr`)."""
        return self.rule.resumed_lr(saved_lr, initial_lr, gamma, saved_epoch, torch_version)

    def uninterrupted_lr(self, initial_lr: float, gamma: float, saved_epoch: int) -> float:
        """The LR an uninterrupted run uses for the epoch the resumed run starts with."""
        if self.next_epoch == "next":
            return initial_lr * gamma ** self.resumed_epoch(saved_epoch)
        return initial_lr * gamma ** (self.resumed_epoch(saved_epoch) - 1)


FIXED_INITIAL_STEP = (2, 8)  # pytorch/pytorch PR #149312 (the _is_initial flag); 2.13 verified by a test


def _parse(version: str) -> tuple[int, int]:
    head = version.split("+")[0].split(".")
    return int(head[0]), int("".join(c for c in head[1] if c.isdigit()) or 0)


def installed_torch_version() -> str | None:
    """The installed torch's version from package metadata, without importing torch."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


RULES = {
    # GPT-SoVITS s2_train.py:268-280
    "restep": RebuildRule("restep", "ExponentialLR rebuilt, then stepped epoch+1 times over the saved LR"),
    # VITS train.py:110-111, RVC train/train.py:273-278
    "last-epoch": RebuildRule("last-epoch", "ExponentialLR(last_epoch=epoch-2) rebuilt over the saved LR"),
}
DEFAULT_GAMMA = 0.999875  # train.lr_decay in GPT-SoVITS s2.json and the VITS configs


def rule_of(layout: Any) -> Rebuild | None:
    """The scheduler rebuild of the trainer that wrote ``layout``'s file, when it rebuilds instead of saving."""
    record = layout.record
    if record is None or record.resume.scheduler_rule is None:
        return None
    return Rebuild(RULES[record.resume.scheduler_rule], record.name, record.resume.next_epoch)
