"""Recognise training-state objects by their structure, whatever key they sit under.

Unknown layouts are the norm (every trainer invents its own bundle), so every piece has a structural test:
an optimizer is a dict with ``state`` and ``param_groups``; a scheduler carries ``last_epoch`` or ``_last_lr``;
a GradScaler has ``scale`` and ``_growth_tracker``; RNG states have recognisable shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ckpttool.model import Stub, TensorInfo
from ckpttool.readers.unpickler import NumpyArray

# Torch's CPU generator state is a uint8 tensor of this many bytes (mt19937 + philox bookkeeping).
TORCH_CPU_RNG_BYTES = 5056
# Names a trainer uses for progress counters, normalisation stats and configs, lower-cased.
STEP_KEYS = ("global_step", "step", "steps", "total_steps", "num_updates", "updates", "iter", "iters")
EPOCH_KEYS = ("epoch", "current_epoch", "epochs", "epoch_idx")
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
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, TensorInfo) for v in obj.values())


def is_optimizer(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("state"), dict)
        and isinstance(obj.get("param_groups"), list)
    )


def is_scheduler(obj: Any) -> bool:
    if not isinstance(obj, dict) or is_optimizer(obj):
        return False
    keys = set(obj)
    return bool({"last_epoch", "_last_lr", "base_lrs"} & keys) or {"_current_step", "warmup_steps"} <= keys


def is_scaler(obj: Any) -> bool:
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
    if isinstance(obj, Stub):
        return obj.qualname.endswith(
            ("HParams", "Namespace", "DictConfig", "AttributeDict", "SimpleNamespace")
        )
    return isinstance(obj, dict) and len(obj) > 0 and not is_state_dict(obj) and not is_optimizer(obj)


def walk(obj: Any, path: str = "", depth: int = 0, max_depth: int = 4) -> Iterator[tuple[str, Any]]:
    """Yield (path, value) for every container and leaf down to ``max_depth``, stopping at state dicts."""
    yield path, obj
    if depth >= max_depth or is_state_dict(obj) or is_optimizer(obj):
        return
    items: list[tuple[Any, Any]] = []
    if isinstance(obj, dict):
        items = list(obj.items())
    elif isinstance(obj, (list, tuple)) and len(obj) <= 64:
        items = list(enumerate(obj))
    elif isinstance(obj, Stub):
        items = list(obj.attributes().items())
    for k, v in items:
        yield from walk(v, f"{path}.{k}" if path else str(k), depth + 1, max_depth)


def get_path(root: Any, path: str) -> Any:
    """Follow a dotted path through dicts, lists and stubs; keys containing dots are matched first."""
    if not path:
        return root
    cur = root
    rest = path
    while rest:
        container: dict[Any, Any] | None = None
        if isinstance(cur, dict):
            container = cur
        elif isinstance(cur, Stub):
            container = cur.attributes()
        elif isinstance(cur, (list, tuple)):
            head, _, rest = rest.partition(".")
            cur = cur[int(head)]
            continue
        if container is None:
            raise KeyError(path)
        for key in sorted((k for k in container if isinstance(k, str)), key=len, reverse=True):
            if rest == key or rest.startswith(key + "."):
                cur = container[key]
                rest = rest[len(key) + 1 :]
                break
        else:
            head, _, rest = rest.partition(".")
            if head.isdigit() and int(head) in container:
                cur = container[int(head)]
            else:
                raise KeyError(path)
    return cur


def set_path(root: Any, path: str, value: Any) -> Any:
    """Put ``value`` where ``get_path(root, path)`` would find it (dotted keys matched the same way); returns the
    root (``value`` itself for the empty path). Used on materialised trees: dicts and lists."""
    if not path:
        return value
    cur = root
    rest = path
    while True:
        if isinstance(cur, list):
            head, _, tail = rest.partition(".")
            if not tail:
                cur[int(head)] = value
                return root
            cur, rest = cur[int(head)], tail
            continue
        if not isinstance(cur, dict):
            raise KeyError(path)
        keys = sorted((k for k in cur if isinstance(k, str)), key=len, reverse=True)
        if rest in keys or (rest.isdigit() and int(rest) in cur):
            cur[rest if rest in cur else int(rest)] = value
            return root
        key = next((k for k in keys if rest.startswith(k + ".")), None)
        if key is None:
            head, _, tail = rest.partition(".")
            if not (head.isdigit() and int(head) in cur) or not tail:
                raise KeyError(path)
            key, rest = int(head), tail  # type: ignore[assignment]
            cur = cur[key]
            continue
        cur, rest = cur[key], rest[len(key) + 1 :]


def to_plain(obj: Any, depth: int = 0) -> Any:
    """JSON-friendly copy of a config-like object: stubs become dicts or strings, tensors summaries."""
    if depth > 12:
        return "..."
    if isinstance(obj, Stub):
        if obj.qualname.startswith("pathlib.") and obj.args:
            sep = "\\" if "Windows" in obj.qualname else "/"
            parts = [str(a) for a in obj.args]
            return parts[0] + sep.join(["", *parts[1:]]) if len(parts) > 1 else parts[0]
        attrs = obj.attributes()
        if attrs or not obj.args:
            return {str(k): to_plain(v, depth + 1) for k, v in attrs.items()}
        return f"<{obj.qualname}{tuple(obj.args)!r}>"
    if isinstance(obj, dict):
        return {str(k): to_plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, depth + 1) for v in obj]
    if isinstance(obj, TensorInfo):
        return f"<tensor {obj.dtype}{list(obj.shape)}>"
    if isinstance(obj, NumpyArray):
        return f"<ndarray {obj.dtype}{list(obj.shape)}>"
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    return str(obj)
