"""Optimizer steps the AMP GradScaler skipped, told apart from gradient accumulation.

With fp16 mixed precision, ``GradScaler.step`` calls ``optimizer.step()`` only when the unscaled gradients are
finite; on an overflow it skips the step and ``update()`` multiplies the scale by ``backoff_factor``. After
``growth_interval`` consecutive good steps it multiplies it by ``growth_factor`` (torch 2.13
``torch/amp/grad_scaler.py``: defaults ``init_scale=2.**16``, ``growth_factor=2.0``, ``backoff_factor=0.5``,
``growth_interval=2000`` at L126-129; skip at L371-372). A trainer that counts its ``opt.step()`` calls counts
the skipped ones too (Lightning: ``LightningOptimizer.step`` runs its progress hooks whatever the scaler does,
core/optimizer.py:146-156), while the optimizer's own ``step`` counts executed steps only. The scale saved in
the checkpoint tells how many skips there were — an inference, since ``init_scale`` itself is not saved
(``GradScaler.state_dict`` keeps scale, factors, interval and ``_growth_tracker``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

INIT_SCALE = (
    2.0**16
)  # torch.amp.GradScaler's default init_scale (grad_scaler.py:126); Lightning keeps it (amp.py:74)
GROWTH_FACTOR = 2.0
BACKOFF_FACTOR = 0.5
GROWTH_INTERVAL = 2000


@dataclass
class SkippedSteps:
    """``skipped`` steps explain the gap between the optimizer's ``executed`` steps and the ``recorded`` step;
    ``exact`` when no scale growth could have happened (fewer executed steps than ``growth_interval``)."""

    skipped: int
    executed: int
    recorded: int
    scale: float
    halvings: int
    growths: int
    exact: bool
    interval: float = GROWTH_INTERVAL

    def sentence(self, counter: str, optimizer: str = "the optimizer") -> str:
        """The explanation in words; ``counter`` names what counts the skipped steps (``Lightning's
        global_step``), ``optimizer`` whose step counter counts executed steps only."""
        head = (
            f"{self.skipped} optimizer steps were skipped by the GradScaler (scale {INIT_SCALE:g} -> "
            f"{self.scale:g}); {counter} counts them"
        )
        gap = f"the gap between {optimizer}'s step {self.executed} and {counter} {self.recorded}"
        why = (
            f"inferred: {INIT_SCALE:g} -> {self.scale:g} is {self.halvings} backoffs from torch's default "
            f"init_scale 2**16, and {self.executed} executed steps are fewer than growth_interval "
            f"{self.interval:g}, so the scale never grew: {self.skipped} skips, {gap}"
            if self.exact
            else f"inferred: {self.halvings} backoffs and {self.growths} growth(s) of the scale from torch's "
            f"default init_scale 2**16 fit {gap}; other mixes of skips and growths are possible"
        )
        return f"{head} ({why})"


def _number(state: dict[str, Any], key: str, default: float) -> float | None:
    value = state.get(key, default)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def skipped_steps(scaler: Any, executed: int, recorded: int) -> SkippedSteps | None:
    """The skipped steps that explain ``recorded - executed`` from a GradScaler ``state_dict`` (``scaler``), or
    None when the state does not explain the gap (no scaler, scale not a whole number of backoffs below
    ``init_scale``, a growth tracker longer than the executed steps, or a gap the scale cannot account for)."""
    if not isinstance(scaler, dict) or recorded <= executed or executed < 0:
        return None
    scale = _number(scaler, "scale", math.nan)
    backoff = _number(scaler, "backoff_factor", BACKOFF_FACTOR)
    growth = _number(scaler, "growth_factor", GROWTH_FACTOR)
    interval = _number(scaler, "growth_interval", GROWTH_INTERVAL)
    tracker = scaler.get("_growth_tracker", 0)
    if None in (scale, backoff, growth, interval) or not (0 < (backoff or 0) < 1 < (growth or 0)):
        return None
    assert scale is not None and backoff is not None and growth is not None and interval is not None
    if not (scale > 0 and math.isfinite(scale)) or not isinstance(tracker, int) or tracker > executed:
        return None
    gap = recorded - executed
    max_growths = int(executed // interval) if interval >= 1 else 0
    for growths in range(max_growths + 1):
        # scale = INIT * backoff**halvings * growth**growths
        halvings = math.log(INIT_SCALE * growth**growths / scale) / math.log(1 / backoff)
        if abs(halvings - round(halvings)) < 1e-9 and round(halvings) == gap:
            return SkippedSteps(gap, executed, recorded, scale, gap, growths, max_growths == 0, interval)
    return None
