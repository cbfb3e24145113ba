"""Model runs through a recipe: the user's own model, optimizers, schedulers and training step.

The protocol (docs/verify-resume.md). ``--recipe package.module:function`` (or a built-in recipe chosen from the
files, ckpttool.recipes.select) names a callable that takes a :class:`RecipeContext` and returns a *trainer*
object with four methods:

- ``load(files: list[LoadedFile]) -> None`` — apply the checkpoint state **that ckpttool read** (real tensors in
  plain containers, ``LoadedFile.root``) to the trainer's modules, optimizers and schedulers exactly as the real
  trainer's resume does (``load_state_dict`` with its semantics, the scheduler rebuilt its way, its counters). A
  recipe never opens the user's file itself (no ``torch.load``, no upstream loader).
  A trainer whose real resume is known to drift (it rebuilds a scheduler instead of loading one) may accept a
  keyword ``exact: bool``: with ``exact=True`` it restores the same state the way an uninterrupted run would
  continue; ckpttool then proves the round trip bit for bit and reports the trainer's own drift separately;
- ``train_step(index: int) -> None`` — one training step; its data (and any randomness, e.g. dropout) must
  depend only on ``index``, so two runs that reach the same step see the same batch;
- ``save(folder: pathlib.Path) -> list[pathlib.Path]`` — save the way the real trainer does, return the files
  (ckpttool reads them back with its own reader and hands them to a fresh trainer's ``load``);
- ``state() -> dict[str, torch.Tensor]`` — everything that must match after a resume (weights, optimizer
  moments, the LR, counters as tensors).

A trainer may also have ``notes: list[str]`` (what its run simplifies); they are reported. A recipe module may
declare ``REQUIRES`` (import names): ckpttool checks them before the run starts.

ckpttool runs it N steps straight, and N/2 + save + load in a fresh trainer + N/2, and compares the states. The
recipe is code the user chose to run; the checkpoint itself is never unpickled by anyone but ckpttool's reader.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ckpttool.errors import UsageError
from ckpttool.formats.values import StorageReader
from ckpttool.interpret.source import Source, load

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class RecipeContext:
    """What a recipe factory is given: the ``device`` to train on; the run config (``config``, read from
    ``--config`` or the trainer's config file beside the checkpoints, None when there is none) and where it came
    from (``config_from``); the trainer checkout (``trainer_root``, on ``sys.path`` during the run) if any."""

    device: torch.device
    config: dict[str, Any] | None = None
    config_from: str = ""
    trainer_root: Path | None = None


@dataclass
class LoadedFile:
    """One checkpoint file as ckpttool read it: ``root`` is the whole tree with real CPU tensors, dtypes and
    devices in plain dicts/lists/tuples (what ``torch.load(map_location="cpu")`` gives for the same file, except
    that globals outside torch's own, e.g. ``pathlib.PosixPath`` or ``utils.HParams``, stay inert ckpttool
    stubs); ``roles`` the network labels ckpttool found in it (``("G",)``, ``("D",)``, ``("G", "D")``),
    ``profile`` the layout it matched."""

    path: Path
    root: Any
    roles: tuple[str, ...] = ()
    profile: str = ""


class Trainer(Protocol):
    """The trainer object a recipe returns (the protocol in this module's docstring)."""

    def load(self, files: list[LoadedFile]) -> None:
        """Apply ckpttool's reading of the checkpoint files exactly as the real trainer does on resume."""

    def train_step(self, index: int) -> None:
        """One training step on a batch that depends only on ``index``."""

    def save(self, folder: Path) -> list[Path]:
        """Save into ``folder`` the way the real trainer does; the files written."""

    def state(self) -> dict[str, torch.Tensor]:
        """Everything that must match after a resume: weights, optimizer moments, the LR, counters."""


@dataclass
class RecipeResult:
    """A recipe run: its name, steps, device, wall time in seconds; whether the straight and the split end
    states match (``identical``, with ``differences``); for a trainer that accepts ``exact``, the same for the
    resume done the trainer's own way (``trainer_identical``, ``trainer_differences``; None otherwise); the
    trainer's ``notes``."""

    recipe: str
    steps: int
    seconds: float
    identical: bool
    differences: list[str] = field(default_factory=list)
    device: str = "cpu"
    trainer_identical: bool | None = None
    trainer_differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``recipe_run`` field of ``ckpttool.verify-resume/1``."""
        out = dict(self.__dict__)
        out["seconds"] = round(self.seconds, 3)
        return out


def load_recipe(spec: str) -> Callable[[RecipeContext], Trainer]:
    """The factory named by ``package.module:function`` (imported; the user chose to run it). Raises
    UsageError when the spec is malformed, the module cannot be imported or has no such callable."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--recipe {spec!r}: expected package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(
                f"--recipe {spec!r}: cannot import {module_name} ({exc}); is it on PYTHONPATH?"
            ) from None
        raise
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"--recipe {spec!r}: {module_name} has no callable {attr}")
    return factory


def check_requirements(factory: Callable[..., Any]) -> None:
    """Fail before anything runs when a module the recipe declares in ``REQUIRES`` (import names, in the
    factory's module) cannot be found: raises ModuleNotFoundError naming it."""
    import sys

    module = sys.modules.get(getattr(factory, "__module__", "") or "")
    for name in getattr(module, "REQUIRES", ()):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def read_files(sources: list[Source]) -> list[LoadedFile]:
    """ckpttool's own reading of ``sources``: each whole tree materialised on the CPU (tensors, dtypes, devices,
    numpy arrays; stubs stay stubs). Reads every tensor; imports torch."""
    out = []
    with StorageReader() as reader:
        for s in sources:
            root = reader.materialise(s.ckpt.root)
            out.append(LoadedFile(Path(s.name), root, tuple(s.layout.networks), s.layout.profile))
    return out


def accepts_exact(trainer: Any) -> bool:
    """Whether ``trainer.load`` takes the optional ``exact`` keyword of the protocol."""
    try:
        return "exact" in inspect.signature(trainer.load).parameters
    except (TypeError, ValueError):
        return False


def run_recipe(
    spec: str,
    sources: list[Source],
    context: RecipeContext,
    steps: int,
    workdir: Path,
    factory: Callable[[RecipeContext], Trainer] | None = None,
) -> RecipeResult:
    """Run the recipe ``steps`` steps straight, and ``steps // 2`` + save to ``workdir`` + load in a fresh
    trainer + the rest, all from ckpttool's reading of ``sources``; compare the two ``state()`` dicts (bit for bit
    on the CPU, rtol 1e-6 elsewhere). A trainer that accepts ``exact`` is resumed both ways (exact: the
    result; the trainer's way: ``trainer_identical``). ``steps`` is rounded down to an even number, at least 2.

    ``factory`` is used instead of importing ``spec`` when given. Raises UsageError from the recipe (e.g. no
    run config); every other exception of the recipe's code propagates to the caller.
    """
    import torch

    factory = factory or load_recipe(spec)
    check_requirements(factory)
    start = time.perf_counter()
    steps = max(2, steps - steps % 2)
    half = steps // 2
    exact = context.device.type == "cpu"
    # Every trainer gets its own reading: torch's Optimizer.load_state_dict keeps the given state tensors
    # (``step``, moments) and updates them in place, so one tree shared by two trainers would leak steps.
    # TorchScript functions run unoptimised: the profiling executor switches to other (fused) kernels after a
    # function's first calls, so the same step would compute differently early and late in the process.
    with _global_rng_kept(), torch.jit.optimized_execution(False):
        straight = factory(context)
        straight.load(read_files(sources))
        for i in range(steps):
            straight.train_step(i)
        want = straight.state()
        notes = list(getattr(straight, "notes", []) or [])
        exact_mode = accepts_exact(straight)
        del straight
        first = factory(context)
        first.load(read_files(sources))
        for i in range(half):
            first.train_step(i)
        folder = workdir / "recipe_split"
        folder.mkdir(parents=True, exist_ok=True)
        saved = [load(p) for p in first.save(folder)]
        del first
        resumed = factory(context)
        if exact_mode:
            resumed.load(read_files(saved), exact=True)  # type: ignore[call-arg]
        else:
            resumed.load(read_files(saved))
        for i in range(half, steps):
            resumed.train_step(i)
        got = resumed.state()
        del resumed
        diffs = compare_states(want, got, exact=exact)
        result = RecipeResult(spec, steps, 0.0, not diffs, diffs, str(context.device), notes=notes)
        if exact_mode:
            as_trainer = factory(context)
            as_trainer.load(read_files(saved))
            for i in range(half, steps):
                as_trainer.train_step(i)
            trainer_diffs = compare_states(want, as_trainer.state(), exact=exact)
            del as_trainer
            result.trainer_identical = not trainer_diffs
            result.trainer_differences = trainer_diffs
    if context.device.type == "cuda":
        torch.cuda.synchronize()
    result.seconds = time.perf_counter() - start
    return result


def compare_states(want: dict[str, torch.Tensor], got: dict[str, torch.Tensor], *, exact: bool) -> list[str]:
    """The differences between two ``state()`` dicts, the LR and counters first (they usually explain every
    other difference): bit for bit when ``exact``, else within rtol 1e-6, atol 1e-8."""
    import torch

    diffs = []
    for key in sorted(set(want) | set(got), key=lambda k: (not k.endswith(("lr", "epoch", "step")), k)):
        a, b = want.get(key), got.get(key)
        if a is None or b is None:
            diffs.append(f"{key}: only in the {'resumed' if a is None else 'straight'} run")
            continue
        if a.shape != b.shape:
            diffs.append(f"{key}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
            continue
        same = torch.equal(a, b) if exact else torch.allclose(a.double(), b.double(), rtol=1e-6, atol=1e-8)
        if not same and key.endswith("lr"):
            x, y = a.double().flatten(), b.double().flatten()
            rel = float(((y - x).abs() / x.abs().clamp_min(1e-30)).max())
            diffs.append(f"{key}: {x.tolist()[:4]} vs {y.tolist()[:4]} (relative {rel:.3g})")
        elif not same:
            delta = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
            diffs.append(f"{key}: max |Δ| {delta:.3g}")
    return diffs


@contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Recipes seed the global RNGs per step; put the caller's torch and Python RNG states back afterwards, and
    leave no process group behind that a recipe created."""
    import random

    import torch
    import torch.distributed as dist

    had_group = dist.is_available() and dist.is_initialized()
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    py_state = random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        random.setstate(py_state)
        if dist.is_available() and dist.is_initialized() and not had_group:
            dist.destroy_process_group()  # a recipe joined a one-process group as its trainer does


__all__ = [
    "LoadedFile",
    "RecipeContext",
    "RecipeResult",
    "Trainer",
    "accepts_exact",
    "compare_states",
    "load_recipe",
    "read_files",
    "run_recipe",
]
