"""What the built-in GPT-SoVITS recipes share: the run config as upstream reads it, the way upstream applies a
saved ``utils.save_checkpoint`` file, the scheduler rebuild, per-step seeding and the ``state()`` of an optimizer.

Facts from RVC-Boss/GPT-SoVITS@48b1a01 (paths under ``GPT_SoVITS/``). Nothing here opens a checkpoint file: the
state comes from ckpttool's own reading (:class:`~ckpttool.resume.recipe.LoadedFile`).
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpttool.errors import UsageError
from ckpttool.resume.recipe import LoadedFile, RecipeContext

if TYPE_CHECKING:
    import torch

# A step's data and randomness come from this seed plus the step index: the same in every run.
STEP_SEED = 20_000


class Hps:
    """The run config with attribute access, like upstream's ``utils.HParams`` (utils.py:324-353): nested dicts
    become Hps, and ``**hps.model`` unpacks it as keyword arguments (``keys`` and ``__getitem__``)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = {k: Hps(v) if isinstance(v, dict) else v for k, v in data.items()}

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["_data"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def keys(self) -> Any:
        """The keys, as ``dict.keys``."""
        return self._data.keys()

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        return self._data.get(key, default)


def run_config(context: RecipeContext, recipe: str) -> Hps:
    """The run config of an s2 run (``logs/<exp>/config.json``, which ``utils.get_hparams`` writes:
    utils.py:226-232). Raises UsageError when there is none."""
    if context.config is None:
        raise UsageError(
            f"the {recipe} model run needs the run's config to build the model: pass --config "
            "logs/<exp>/config.json (s2_train writes it there), or keep it beside the checkpoints' folder"
        )
    return Hps(context.config)


def by_role(files: list[LoadedFile], role: str, recipe: str) -> LoadedFile:
    """The file holding network ``role`` (``G`` or ``D``). Raises UsageError when none does."""
    for f in files:
        if role in f.roles:
            return f
    names = ", ".join(f.path.name for f in files)
    raise UsageError(f"the {recipe} model run needs the {role} file; given: {names}")


def apply_saved(model: Any, optimizer: Any, saved: Any, notes: list[str], label: str) -> int:
    """Apply a ``utils.save_checkpoint`` tree to ``model`` and ``optimizer`` exactly as upstream's
    ``utils.load_checkpoint`` does (utils.py:23-60): the optimizer first (when the file has one), then every key
    of the *model's* state dict from the file when present with the same shape, else the model's own value (upstream
    prints a traceback and carries on; here it becomes a note), then a strict ``load_state_dict``. Extra keys in
    the file are ignored. Returns ``iteration``."""
    if not isinstance(saved, dict) or "model" not in saved:
        raise UsageError(f"{label}: not a utils.save_checkpoint file (no 'model' key)")
    if saved.get("optimizer") is not None:
        optimizer.load_state_dict(saved["optimizer"])
    own = model.state_dict()
    stored = saved["model"]
    merged = {}
    for key, value in own.items():
        got = stored.get(key) if isinstance(stored, dict) else None
        if got is None or tuple(got.shape) != tuple(value.shape):
            notes.append(
                f"{label}: {key} missing or reshaped in the file; the trainer keeps its initial value"
            )
            merged[key] = value
        else:
            merged[key] = got
    model.load_state_dict(merged)
    return int(saved["iteration"])


def exponential_lr(optimizer: Any, gamma: float, epoch_str: int, exact: bool) -> Any:
    """The scheduler of s2_train.py:268-280 (and s2_train_v3_lora.py:221-223): ``ExponentialLR(gamma,
    last_epoch=-1)`` stepped ``epoch_str`` times over the LR the optimizer was loaded with. With ``exact``,
    instead the one an uninterrupted run has at this point: built over the loaded LR, not stepped (the caller
    steps it once before the next epoch, as the uninterrupted run does after the saved epoch)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
        sched = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma, last_epoch=-1)
        if not exact:
            for _ in range(epoch_str):
                sched.step()
    return sched


def single_process_group() -> None:
    """Join a one-process ``gloo`` group when none exists, as s2_train.run always does (s2_train.py:80-85): its
    vector quantizer asks ``dist.get_rank()`` (module/core_vq.py:165, 195). ckpttool's recipe runner destroys
    a group a run created when the run ends."""
    import tempfile

    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized():
        store = Path(tempfile.mkdtemp(prefix="ckpttool-pg-")) / "store"
        dist.init_process_group("gloo", init_method=f"file://{store}", world_size=1, rank=0)


def seed_step(index: int) -> torch.Generator:
    """Seed the global torch (every device) and Python RNGs for step ``index`` (dropout, random slices, CFM's
    noise and its ``random.random()``), and return a CPU generator for the step's batch."""
    import torch

    torch.manual_seed(STEP_SEED + index)
    random.seed(STEP_SEED + index)
    return torch.Generator().manual_seed(STEP_SEED + index)


def save_like_upstream(path: Path, model: Any, optimizer: Any, learning_rate: float, iteration: int) -> Path:
    """Write the four keys ``utils.save_checkpoint`` writes (utils.py:75-90): ``model`` (state dict),
    ``iteration`` (the epoch just finished), ``optimizer``, ``learning_rate`` (the config constant)."""
    import torch

    torch.save(
        {
            "model": model.state_dict(),
            "iteration": iteration,
            "optimizer": optimizer.state_dict(),
            "learning_rate": learning_rate,
        },
        path,
    )
    return path


def optimizer_state(prefix: str, optimizer: Any) -> dict[str, torch.Tensor]:
    """Every value of an optimizer's state (tensors and numbers, e.g. ScaledAdam's ``step``) and each group's
    LR, as CPU tensors keyed ``<prefix>.state.<index>.<name>`` and ``<prefix>.lr``."""
    import torch

    out: dict[str, torch.Tensor] = {}
    sd = optimizer.state_dict()
    for index, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                out[f"{prefix}.state.{index}.{name}"] = value.detach().cpu().clone()
            elif isinstance(value, int | float | bool):
                out[f"{prefix}.state.{index}.{name}"] = torch.tensor(value, dtype=torch.float64)
    out[f"{prefix}.lr"] = torch.tensor([float(g["lr"]) for g in optimizer.param_groups], dtype=torch.float64)
    return out


def module_state(prefix: str, module: Any) -> dict[str, torch.Tensor]:
    """A copy of a module's state dict as CPU tensors keyed ``<prefix>.<name>``."""
    return {f"{prefix}.{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()}


def amp_note(amp: bool) -> str:
    """How a GPT-SoVITS s2 run steps: fp16 autocast with a GradScaler when ``train.fp16_run`` on CUDA."""
    return "fp16 autocast + GradScaler (fp16_run)" if amp else "fp32 (fp16_run applies on CUDA only)"


def scaled_step(scaler: Any, optimizer: Any, module: Any, loss: Any, clip_grad_value: Any) -> None:
    """One optimizer step as s2_train.py and s2_train_v3_lora.py take it: zero_grad, scaled backward, unscale,
    ``commons.clip_grad_value_(params, None)`` (norm only, no clipping; passed in as ``clip_grad_value``, the
    checkout's own function), scaler step. The caller updates the scaler once per training step."""
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    clip_grad_value(module.parameters(), None)
    scaler.step(optimizer)
