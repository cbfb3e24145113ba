"""The shadow run: N steps straight versus N/2 steps, save, reload, N/2 steps — no model code needed.

Why it proves something: the gradient of a fixed surrogate loss (L = Σ w·p + ½·c·|p|², w fixed per parameter)
depends only on the parameters, so two runs from the same state take bit-identical steps on the CPU. Any
difference between the straight and the split run then comes from what the save/reload lost or changed: moments,
Adam's step counter, the scheduler, the LR, the counters. The split run saves through the checkpoint's own
layout and reloads through ckpttool's reader; for trainers that rebuild their scheduler instead of saving it,
the reload is done twice: exactly (must match bit for bit) and the way the trainer does it (its known drift).
"""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpttool.formats import open_checkpoint
from ckpttool.formats.torch_zip import torch_save_to
from ckpttool.formats.values import StorageReader
from ckpttool.interpret.profiles import Layout
from ckpttool.model import Checkpoint, TensorInfo, get_path, iter_nodes, set_path
from ckpttool.progress import Progress
from ckpttool.progress import report as report_progress
from ckpttool.resume.live import Live, build_live, lr_of

if TYPE_CHECKING:
    import torch

DECAY = 1e-2
GRAD_SCALE = 1e-3


@dataclass
class Comparison:
    """Two end states compared: identical or not, the largest parameter and optimizer-state differences
    (absolute), each side's LRs and (step, epoch) counters, and the differences in words."""

    identical: bool
    max_param_diff: float
    max_state_diff: float
    lr_a: list[float]
    lr_b: list[float]
    counters_a: tuple[int | None, int | None]
    counters_b: tuple[int | None, int | None]
    differences: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``exact_reload`` / ``trainer_reload`` field of ``ckpttool.verify-resume/1``."""
        return {
            "identical": self.identical,
            "max_param_diff": self.max_param_diff,
            "max_optimizer_state_diff": self.max_state_diff,
            "lr_straight": self.lr_a,
            "lr_resumed": self.lr_b,
            "counters_straight": list(self.counters_a),
            "counters_resumed": list(self.counters_b),
            "differences": self.differences,
        }


@dataclass
class ShadowResult:
    """A shadow run: steps, device, wall time in seconds, parameter count (values), the exact-reload
    comparison and, for trainers that rebuild their scheduler, the trainer-style one."""

    steps: int
    device: str
    seconds: float
    parameters: int
    exact: Comparison
    trainer: Comparison | None  # the trainer's own rebuild rule, when it saves no scheduler
    trainer_rule: str | None
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        """An entry of ``shadow_runs`` in ``ckpttool.verify-resume/1`` (without its ``path``)."""
        return {
            "steps": self.steps,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "parameters": self.parameters,
            "exact_reload": self.exact.to_json(),
            "trainer_reload": self.trainer.to_json() if self.trainer else None,
            "trainer_rule": self.trainer_rule,
            "notes": self.notes,
        }


class _Surrogate:
    """Fixed per-parameter weights w, drawn once, so every run sees the same loss."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.w: dict[tuple[str, str], torch.Tensor] = {}

    def grad(self, label: str, name: str, p: torch.Tensor) -> torch.Tensor:
        import torch

        key = (label, name)
        w = self.w.get(key)
        if w is None:
            gen = torch.Generator().manual_seed(zlib.crc32(f"{label}:{name}".encode()))
            w = torch.empty(p.shape, dtype=torch.float32).normal_(0.0, GRAD_SCALE, generator=gen)
            w = self.w[key] = w.to(device=self.device, dtype=p.dtype)
        return w + DECAY * p.detach()


def _train(
    live: Live,
    loss: _Surrogate,
    n: int,
    skip_last_scheduler_step: bool = False,
    tick: Callable[[], None] | None = None,
) -> None:
    for i in range(n):
        for o in live.optimizers:
            o.optimizer.zero_grad(set_to_none=True)
        for label in live.networks:
            for name, p in live.params(label).items():
                p.grad = loss.grad(label, name, p)
        for o in live.optimizers:
            o.optimizer.step()
        if not (skip_last_scheduler_step and i == n - 1):
            for s in live.schedulers:
                if s.scheduler is not None:
                    s.scheduler.step()
        if live.step is not None:
            live.step += 1
        if live.epoch is not None:
            live.epoch += 1
        if tick is not None:
            tick()


def _save(ckpt: Checkpoint, layout: Layout, live: Live, path: Path) -> None:
    """Write the live state back through the checkpoint's own layout (what a trainer's save would do)."""
    replaced = set(layout.networks.values()) | {o.path for o in live.optimizers}
    replaced |= {s.path for s in live.schedulers if s.path}
    skip: set[int] = set()
    for p in replaced:
        obj = get_path(ckpt.root, p) if p else ckpt.root
        skip |= {id(x) for _, x in iter_nodes(obj) if isinstance(x, TensorInfo)}
    with StorageReader() as reader:
        root = reader.materialise(ckpt.root, tensor_of=lambda t: None if id(t) in skip else reader.tensor(t))
    for label, path_ in layout.networks.items():
        sd = OrderedDict((k, v.detach().cpu()) for k, v in live.networks[label].items())
        root = set_path(root, path_, sd)
    for o in live.optimizers:
        root = set_path(root, o.path, o.optimizer.state_dict())
    for s in live.schedulers:
        if s.path and s.scheduler is not None:
            root = set_path(root, s.path, s.scheduler.state_dict())
    for piece, value in (("step", live.step), ("epoch", live.epoch)):
        counter = getattr(layout, piece)
        if counter and piece not in layout.counter_parse and value is not None:
            root = set_path(root, counter, value)
    with open(path, "wb") as fh:
        torch_save_to(fh, root)


def compare(a: Live, b: Live, exact: bool = True) -> Comparison:
    """Compare two live states: parameters, optimizer state, LRs and counters; bit for bit when ``exact``,
    else within rtol 1e-6, atol 1e-8."""
    import torch

    def close(x: torch.Tensor, y: torch.Tensor) -> bool:
        return torch.equal(x, y) if exact else torch.allclose(x, y, rtol=1e-6, atol=1e-8)

    diffs: list[str] = []
    max_p = 0.0
    for label, tensors in a.networks.items():
        other = b.networks.get(label, {})
        for name, t in tensors.items():
            u = other.get(name)
            if u is None or u.shape != t.shape:
                diffs.append(f"{label}.{name} missing or reshaped after the reload")
                continue
            if not close(t.detach(), u.detach()):
                d = float((t.detach().double() - u.detach().double()).abs().max())
                max_p = max(max_p, d)
        if max_p:
            diffs.append(f"{label} parameters differ (max |Δ| {max_p:.3g})")
    max_s = 0.0
    for oa, ob in zip(a.optimizers, b.optimizers, strict=False):
        sa, sb = oa.optimizer.state_dict()["state"], ob.optimizer.state_dict()["state"]
        if set(sa) != set(sb):
            diffs.append(f"{oa.path}: state entries differ ({len(sa)} vs {len(sb)})")
        for key, entry in sa.items():
            other_entry = sb.get(key, {})
            for k, v in entry.items():
                w = other_entry.get(k)
                if isinstance(v, torch.Tensor) and isinstance(w, torch.Tensor):
                    if v.shape == w.shape and not close(v, w):
                        max_s = max(max_s, float((v.double() - w.double()).abs().max()))
                elif v != w:
                    max_s = max(max_s, float("inf"))
        if max_s:
            diffs.append(f"{oa.path}: optimizer state differs (max |Δ| {max_s:.3g})")
    lr_a, lr_b = lr_of(a), lr_of(b)
    if lr_a != lr_b:
        rel = max((abs(x - y) / abs(x) if x else abs(y)) for x, y in zip(lr_a, lr_b, strict=False))
        diffs.append(f"learning rates differ (relative {rel:.3g}): {lr_a[:4]} vs {lr_b[:4]}")
    if (a.step, a.epoch) != (b.step, b.epoch):
        diffs.append(f"counters differ: step/epoch {a.step}/{a.epoch} vs {b.step}/{b.epoch}")
    return Comparison(not diffs, max_p, max_s, lr_a, lr_b, (a.step, a.epoch), (b.step, b.epoch), diffs)


def shadow_run(
    ckpt: Checkpoint,
    layout: Layout,
    device: torch.device,
    steps: int,
    workdir: Path,
    *,
    gamma: float,
    optimizer_override: str | None = None,
    progress: Progress | None = None,
) -> ShadowResult:
    """Train ``steps`` surrogate steps straight from ``ckpt``, and ``steps // 2`` + save to ``workdir`` + reload
    + the rest; compare the end states (bit for bit on the CPU, rtol 1e-6 on CUDA).

    ``steps`` is rounded down to an even number, at least 2. ``gamma`` is the ExponentialLR decay used when the
    trainer rebuilds its scheduler instead of saving it; then the reload is also done the trainer's way and
    compared (``ShadowResult.trainer``). ``progress`` is called after each surrogate step (label
    ``shadow run <file>``; about 2 × ``steps`` steps, 3 × with the trainer's resume). Raises NotRebuildable,
    ValueError or UsageError from :func:`~ckpttool.resume.live.build_live` when the training state cannot be
    rebuilt.
    """
    import torch

    start = time.perf_counter()
    steps = max(2, steps - steps % 2)
    half = steps // 2
    loss = _Surrogate(device)
    exact = device.type == "cpu"

    straight = build_live(ckpt, layout, device, gamma=gamma, optimizer_override=optimizer_override)
    n_params = sum(p.numel() for label in straight.networks for p in straight.params(label).values())
    notes = list(straight.notes)
    rule = straight.rule
    first_epoch = straight.next_epoch
    total = 2 * steps + (steps - half if rule is not None else 0)
    done = [0]
    label = f"shadow run {Path(ckpt.path).name}"

    def tick() -> None:
        done[0] = min(done[0] + 1, total)
        report_progress(progress, label, done[0], total)

    report_progress(progress, label, 0, total)
    _train(straight, loss, steps, tick=tick)

    split = build_live(ckpt, layout, device, gamma=gamma, optimizer_override=optimizer_override)
    _train(split, loss, half, skip_last_scheduler_step=rule is not None, tick=tick)
    saved = workdir / "shadow_split.ckpt"
    _save(ckpt, layout, split, saved)
    del split
    again = open_checkpoint(saved)
    # The saved file has the source's structure by construction; its name and folder (which tell a D file's
    # trainer apart) do not, so the source's layout is used to read it back.
    resumed = build_live(again, layout, device, gamma=gamma, optimizer_override=optimizer_override)
    _train(resumed, loss, steps - half, tick=tick)
    exact_cmp = compare(straight, resumed, exact)
    del resumed

    trainer_cmp = None
    if rule is not None:
        as_trainer = build_live(
            again, layout, device, trainer_rule=True, gamma=gamma, optimizer_override=optimizer_override
        )
        trainer_cmp = _compare_trainer_resume(straight, as_trainer, loss, steps, first_epoch, exact, tick)
    if device.type == "cuda":
        torch.cuda.synchronize()
    report_progress(progress, label, total, total)
    return ShadowResult(
        steps, str(device), time.perf_counter() - start, n_params, exact_cmp, trainer_cmp, rule, notes
    )


def _compare_trainer_resume(
    straight: Live,
    as_trainer: Live,
    loss: _Surrogate,
    steps: int,
    first_epoch: int | None,
    exact: bool,
    tick: Callable[[], None] | None = None,
) -> Comparison:
    """Train the run resumed the trainer's way up to the straight run's last epoch and compare; a resume that
    trains another number of epochs than the uninterrupted run differs."""
    half = steps // 2
    final_epoch = (first_epoch or 0) + steps - 1
    remaining = final_epoch - (as_trainer.next_epoch or 0) + 1 if first_epoch is not None else steps - half
    _train(as_trainer, loss, max(0, remaining), tick=tick)
    trainer_cmp = compare(straight, as_trainer, exact)
    if remaining != steps - half:
        trainer_cmp.differences.append(
            f"the trainer resumes at epoch {as_trainer.next_epoch} and trains {remaining} epoch(s) where the "
            f"uninterrupted run trained {steps - half}"
        )
        trainer_cmp.identical = False
    return trainer_cmp
