"""Model runs through a recipe: the user's own model, optimizers, schedulers and training step.

The protocol (docs/verify-resume.md): ``--recipe package.module:function`` names a callable that takes a
``torch.device`` and returns a *trainer* object with four methods:

- ``load(paths: list[pathlib.Path]) -> None`` — restore the checkpoint files exactly as the real trainer does on
  resume (models, optimizers, schedulers, scaler, counters, RNG);
- ``train_step(index: int) -> None`` — one training step; its data must depend only on ``index`` (seed a
  generator with it), so two runs that reach the same step see the same batch;
- ``save(folder: pathlib.Path) -> list[pathlib.Path]`` — save the way the real trainer does, return the files;
- ``state() -> dict[str, torch.Tensor]`` — everything that must match after a resume (weights, optimizer
  moments, the LR, counters as tensors).

ckpttool runs it N steps straight and N/2 + save + load in a fresh trainer + N/2, and compares the states. The
recipe is code the user chose to run; the checkpoint itself is still never unpickled unsafely by ckpttool.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ckpttool.errors import UsageError

if TYPE_CHECKING:
    import torch


class Trainer(Protocol):
    """The trainer object a recipe returns (the protocol in this module's docstring)."""

    def load(self, paths: list[Path]) -> None:
        """Restore the checkpoint files exactly as the real trainer does on resume."""

    def train_step(self, index: int) -> None:
        """One training step on a batch that depends only on ``index``."""

    def save(self, folder: Path) -> list[Path]:
        """Save into ``folder`` the way the real trainer does; the files written."""

    def state(self) -> dict[str, torch.Tensor]:
        """Everything that must match after a resume: weights, optimizer moments, the LR, counters."""


@dataclass
class RecipeResult:
    """A recipe run: steps run, wall time in seconds, and whether the straight and split end states match."""

    recipe: str
    steps: int
    seconds: float
    identical: bool
    differences: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``recipe_run`` field of ``ckpttool.verify-resume/1``."""
        return dict(self.__dict__)


def load_recipe(spec: str) -> Callable[[Any], Trainer]:
    """The factory named by ``package.module:function`` (imported; the user chose to run it). Raises
    UsageError when the spec is malformed, the module cannot be imported or has no such callable."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--recipe {spec!r}: expected package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"--recipe {spec!r}: cannot import {module_name} ({exc}); is it on PYTHONPATH?"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"--recipe {spec!r}: {module_name} has no callable {attr}")
    return factory


def run_recipe(spec: str, paths: list[Path], device: torch.device, steps: int, workdir: Path) -> RecipeResult:
    """Run the recipe ``steps`` steps straight, and ``steps // 2`` + save to ``workdir`` + load in a fresh
    trainer + the rest, all from ``paths``; compare the two ``state()`` dicts (bit for bit on the CPU, rtol
    1e-6 elsewhere). ``steps`` is rounded down to an even number, at least 2."""
    import torch

    factory = load_recipe(spec)
    start = time.perf_counter()
    steps = max(2, steps - steps % 2)
    half = steps // 2
    straight = factory(device)
    straight.load(paths)
    for i in range(steps):
        straight.train_step(i)
    want = straight.state()
    first = factory(device)
    first.load(paths)
    for i in range(half):
        first.train_step(i)
    folder = workdir / "recipe_split"
    folder.mkdir(parents=True, exist_ok=True)
    files = first.save(folder)
    resumed = factory(device)
    resumed.load(files)
    for i in range(half, steps):
        resumed.train_step(i)
    got = resumed.state()
    diffs = []
    # the LR and counters first: they usually explain every other difference
    for key in sorted(set(want) | set(got), key=lambda k: (not k.endswith(("lr", "epoch", "step")), k)):
        a, b = want.get(key), got.get(key)
        if a is None or b is None:
            diffs.append(f"{key}: only in the {'resumed' if a is None else 'straight'} run")
            continue
        same = torch.equal(a, b) if device.type == "cpu" else torch.allclose(a, b, rtol=1e-6, atol=1e-8)
        if a.shape != b.shape or not same:
            delta = float((a.double() - b.double()).abs().max()) if a.shape == b.shape else float("inf")
            diffs.append(f"{key}: max |Δ| {delta:.3g}")
    return RecipeResult(spec, steps, time.perf_counter() - start, not diffs, diffs)
