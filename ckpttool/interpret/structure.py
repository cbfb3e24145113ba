"""Recognise training-state objects by their structure, whatever key they sit under.

Unknown layouts are the norm (every trainer invents its own bundle), so every piece has a structural test:
an optimizer is a dict with ``state`` and ``param_groups``; a scheduler carries ``last_epoch`` or ``_last_lr``;
a GradScaler has ``scale`` and ``_growth_tracker``; RNG states have recognisable shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ckpttool.model import SKIP, NumpyArray, Stub, TensorInfo, TreeError, dotted, fold_tree, iter_nodes

# Torch's CPU generator state is a uint8 tensor of this many bytes (mt19937 + philox bookkeeping).
TORCH_CPU_RNG_BYTES = 5056
# Names a trainer uses for progress counters, normalisation stats and configs, lower-cased.
STEP_KEYS = ("global_step", "step", "steps", "total_steps", "num_updates", "updates", "iter", "iters")
# not "epochs": that is how many to train (coqui's config.epochs: 1000), never how many were done
EPOCH_KEYS = ("epoch", "current_epoch", "epoch_idx")
CONFIG_KEYS = ("config", "hparams", "hps", "args", "hyper_parameters", "cfg", "conf", "opt", "options")
NORM_HINTS = (
    "mel_mean",
    "mel_std",
    "norm_stats",
    "normalizer",
    "norm",
    "stats",
    "mean",
    "std",
    "spec_mean",
    "spec_std",
    "f0_mean",
    "f0_std",
    "pitch_mean",
    "pitch_std",
    "energy_mean",
    "energy_std",
    "mel_stats",
    "feat_stats",
    "cmvn",
)
VERSION_KEYS = ("version", "model_version", "format_version", "pytorch-lightning_version")


def is_state_dict(obj: Any) -> bool:
    """A non-empty dict of tensors only."""
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, TensorInfo) for v in obj.values())


def is_optimizer(obj: Any) -> bool:
    """An ``Optimizer.state_dict()``: a dict with a ``state`` dict and a ``param_groups`` list."""
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("state"), dict)
        and isinstance(obj.get("param_groups"), list)
    )


def is_scheduler(obj: Any) -> bool:
    """An ``LRScheduler.state_dict()`` (``last_epoch``, ``_last_lr`` or ``base_lrs``) or a warmup schedule
    (``_current_step`` and ``warmup_steps``); never an optimizer."""
    if not isinstance(obj, dict) or is_optimizer(obj):
        return False
    keys = set(obj)
    return bool({"last_epoch", "_last_lr", "base_lrs"} & keys) or {"_current_step", "warmup_steps"} <= keys


def is_scaler(obj: Any) -> bool:
    """A ``GradScaler.state_dict()``: ``scale`` with ``_growth_tracker`` or ``growth_factor``."""
    return isinstance(obj, dict) and "scale" in obj and ("_growth_tracker" in obj or "growth_factor" in obj)


def rng_kind(obj: Any) -> str | None:
    """Name the RNG whose state ``obj`` is, or None."""
    if isinstance(obj, TensorInfo) and obj.dtype == "uint8" and obj.shape == (TORCH_CPU_RNG_BYTES,):
        return "torch"
    if isinstance(obj, tuple) and len(obj) == 5 and obj[0] == "MT19937" and isinstance(obj[1], NumpyArray):
        return "numpy"
    if isinstance(obj, dict) and "bit_generator" in obj and "state" in obj:
        return "numpy"
    if (
        isinstance(obj, tuple)
        and len(obj) == 3
        and obj[0] == 3
        and isinstance(obj[1], tuple)
        and len(obj[1]) == 625
    ):
        return "python"
    return None


def is_config(obj: Any) -> bool:
    """A config-like object: a stub of an hparams or namespace class (``utils.HParams``, argparse
    ``Namespace``, OmegaConf ``DictConfig``, Lightning ``AttributeDict``, ``SimpleNamespace``), or a non-empty
    dict that is neither a state dict nor an optimizer."""
    if isinstance(obj, Stub):
        return obj.qualname.endswith(
            ("HParams", "Namespace", "DictConfig", "AttributeDict", "SimpleNamespace")
        )
    return isinstance(obj, dict) and len(obj) > 0 and not is_state_dict(obj) and not is_optimizer(obj)


def walk(obj: Any, max_depth: int = 4) -> Iterator[tuple[str, Any]]:
    """Yield (dotted path, value) for every container and leaf down to ``max_depth`` keys, without entering state
    dicts, optimizers, embedded configs (``config``, ``hparams``, ``hyper_parameters``...: their ``epochs`` or
    ``lr_scheduler_params`` are settings, not training state) or lists longer than 64 (a list of 5,000 RNG
    words is one value, not 5,000); stubs are seen as their attributes."""

    def descend(node: Any, path: tuple[Any, ...]) -> bool:
        if is_state_dict(node) or is_optimizer(node):
            return False
        if path and str(path[-1]).lower() in CONFIG_KEYS:
            return False
        return not (isinstance(node, list | tuple) and len(node) > 64)

    for path, node in iter_nodes(obj, descend=descend, max_depth=max_depth, fields=True):
        yield dotted(path), node


def to_plain(obj: Any, max_depth: int = 12) -> Any:
    """JSON-friendly copy of a config-like object: stubs become dicts (or strings, for ``pathlib`` paths),
    tensors and arrays short summaries; anything deeper than ``max_depth`` is ``"..."``."""

    def enter(x: Any, path: tuple[Any, ...]) -> Any:
        if len(path) > max_depth:
            return "..."
        if isinstance(x, Stub) and x.qualname.startswith("pathlib.") and x.args:
            sep = "\\" if "Windows" in x.qualname else "/"
            parts = [str(a) for a in x.args]
            return parts[0] + sep.join(["", *parts[1:]]) if len(parts) > 1 else parts[0]
        if isinstance(x, Stub) and not x.attributes() and x.args:
            return f"<{x.qualname}{tuple(x.args)!r}>"
        return SKIP

    def leaf(x: Any, _: Any) -> Any:
        if isinstance(x, TensorInfo):
            return f"<tensor {x.dtype}{list(x.shape)}>"
        if isinstance(x, NumpyArray):
            return f"<ndarray {x.dtype}{list(x.shape)}>"
        if isinstance(x, str | int | float | bool) or x is None:
            return x
        if isinstance(x, bytes):
            return f"<{len(x)} bytes>"
        return str(x)

    def build(x: Any, parts: Any, _: Any) -> Any:
        if isinstance(x, dict | Stub):
            return {str(k): v for k, v in parts}
        return list(parts)

    try:
        return fold_tree(obj, leaf, build, enter=enter, fields=True)
    except TreeError:
        return "<self-referencing object>"
