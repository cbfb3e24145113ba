"""ckpttool: know before you resume. Safe, torch-free checkpoint inspection and repair.

The library API mirrors the CLI: each function takes paths and options and returns a report dataclass with a
``to_json()``; nothing here prints.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ckpttool.errors import CkptError
    from ckpttool.formats import open_checkpoint
    from ckpttool.model import Checkpoint, TensorInfo
    from ckpttool.ops.inspect import InspectReport, inspect_checkpoint
    from ckpttool.saving import latest_checkpoint, prune_checkpoints, save_checkpoint

# Imported on first use (PEP 562), so `import ckpttool` and the CLI's start-up stay fast.
_LAZY = {
    "CkptError": "ckpttool.errors",
    "Checkpoint": "ckpttool.model",
    "TensorInfo": "ckpttool.model",
    "InspectReport": "ckpttool.ops.inspect",
    "inspect_checkpoint": "ckpttool.ops.inspect",
    "open_checkpoint": "ckpttool.formats",
    "latest_checkpoint": "ckpttool.saving",
    "prune_checkpoints": "ckpttool.saving",
    "save_checkpoint": "ckpttool.saving",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ckpttool' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Checkpoint",
    "CkptError",
    "InspectReport",
    "TensorInfo",
    "inspect_checkpoint",
    "latest_checkpoint",
    "open_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
]
__version__ = "0.1.0"
