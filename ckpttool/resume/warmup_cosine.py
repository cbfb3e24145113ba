"""GPT-SoVITS's WarmupCosineLRSchedule (the GPT stage's scheduler), as its saved state and its code define it.

``GPT_SoVITS/AR/modules/lr_schedulers.py`` (RVC-Boss/GPT-SoVITS@48b1a01) subclasses ``_LRScheduler`` without
calling its ``__init__`` (L11-36), so its ``state_dict()`` is its ``__dict__`` minus the optimizer: ``init_lr``,
``peak_lr``, ``end_lr``, ``_warmup_rate``, ``_decay_rate``, ``_current_step``, ``lr``, ``warmup_steps``,
``total_steps``, ``_last_lr`` — no ``base_lrs``, no ``last_epoch``. Its ``step()`` computes a warm-up/cosine
value and then throws it away: L58 sets ``self.lr``, the local ``lr`` and ``self.end_lr`` to 0.002, and
``set_lr`` writes ``self.end_lr`` into every param group (L38-42, the ``g['lr'] = lr`` line is commented out).
So the LR is ScaledAdam's ``lr`` argument (0.01, t2s_lightning_module.py:124-132) until the first scheduler step
and 0.002 for the rest of training, whatever ``warmup_steps``, ``lr``, ``lr_init``, ``lr_end`` and
``decay_steps`` the config says. ``_last_lr`` is the groups' LR *before* each step (L39).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PINNED_LR = 0.002  # lr_schedulers.py:58
SOURCE = "GPT_SoVITS/AR/modules/lr_schedulers.py:58"
KEYS = frozenset({"_current_step", "warmup_steps", "total_steps", "peak_lr", "end_lr", "_decay_rate"})


def _num(state: Mapping[str, Any], key: str) -> float | None:
    value = state.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def configured_end_lr(state: Mapping[str, Any]) -> float | None:
    """The ``end_lr`` the run was configured with (the YAML's ``optimizer.lr_end``), recovered from
    ``_decay_rate = (end_lr - peak_lr) / (total_steps - warmup_steps)`` (L31): the saved ``end_lr`` itself is
    overwritten with 0.002 by the first ``step()``."""
    rate, peak = _num(state, "_decay_rate"), _num(state, "peak_lr")
    total, warmup = _num(state, "total_steps"), _num(state, "warmup_steps")
    if None in (rate, peak, total, warmup):
        return None
    assert rate is not None and peak is not None and total is not None and warmup is not None
    return peak + rate * (total - warmup)


def describe(state: Mapping[str, Any]) -> str:
    """The saved state in one line: step, LR, last LR and the configured schedule that never applies."""
    end = configured_end_lr(state)
    parts = [
        f"_current_step {state.get('_current_step')}",
        f"lr {state.get('lr')}",
        f"_last_lr {state.get('_last_lr')}",
        f"configured init_lr {state.get('init_lr')} -> peak_lr {state.get('peak_lr')} over warmup_steps "
        f"{state.get('warmup_steps')}, cosine to end_lr {end:.3g} by total_steps {state.get('total_steps')}"
        if end is not None
        else f"warmup_steps {state.get('warmup_steps')}, total_steps {state.get('total_steps')}",
    ]
    return ", ".join(parts)


def pin_sentence() -> str:
    """The fact, plainly."""
    return (
        f"upstream's step() sets every param group's LR to {PINNED_LR} ({SOURCE}), so the warmup and cosine "
        "settings (warmup_steps, lr, lr_init, lr_end, decay_steps) have no effect: the LR is the optimizer's "
        f"initial lr until the first scheduler step and {PINNED_LR} after it, in an uninterrupted run and after "
        "a resume alike"
    )


def lr_problems(state: Mapping[str, Any], group_lrs: list[Any]) -> list[str]:
    """Where the saved state and the optimizer's LRs disagree with what the upstream code produces: after at
    least one step, the state's ``lr`` and every group's LR are 0.002."""
    step = state.get("_current_step")
    if not isinstance(step, int) or step < 1:
        return []
    out = []
    lr = _num(state, "lr")
    if lr is not None and not math.isclose(lr, PINNED_LR, rel_tol=1e-9):
        out.append(f"the state's lr is {lr:g}, not the pinned {PINNED_LR}")
    for i, g in enumerate(group_lrs):
        if isinstance(g, int | float) and not math.isclose(float(g), PINNED_LR, rel_tol=1e-9):
            out.append(f"param group {i} holds lr {g:g}, not the pinned {PINNED_LR}")
    return out


class PinnedSchedule:
    """Drives a live optimizer the way WarmupCosineLRSchedule.step() does (L38-62): the warm-up/cosine value it
    computes is discarded, so a step records the groups' LRs in ``_last_lr``, sets ``lr`` and ``end_lr`` to
    0.002, writes 0.002 into every group and counts ``_current_step``. Built from a saved state; its
    ``state_dict()`` has the same ten keys, so a shadow run saves and reloads it like the real one."""

    def __init__(self, optimizer: Any, state: Mapping[str, Any]) -> None:
        self.optimizer = optimizer
        self.state = dict(state)

    def step(self) -> None:
        """One scheduler step, as upstream's."""
        self.state["_last_lr"] = [g["lr"] for g in self.optimizer.param_groups]
        self.state["lr"] = self.state["end_lr"] = PINNED_LR
        for g in self.optimizer.param_groups:
            g["lr"] = PINNED_LR
        self.state["_current_step"] = int(self.state.get("_current_step", 0)) + 1

    def state_dict(self) -> dict[str, Any]:
        """The state upstream's ``state_dict()`` returns (its ``__dict__`` without the optimizer)."""
        return dict(self.state)
