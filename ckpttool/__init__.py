"""ckpttool: know before you resume. Safe, torch-free checkpoint inspection and repair.

The library API mirrors the CLI: :func:`inspect`, :func:`check`, :func:`diff` and :func:`verify_resume` take
paths and keyword-only options and return a report dataclass with ``ok`` and ``to_json()``; nothing here prints
(docs/api.md). Everything is imported on first use, so ``import ckpttool`` imports neither torch nor the
readers; trainer callbacks live in ``ckpttool.integrations`` (imported only when asked for).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ckpttool.api import check, diff, inspect, inspect_checkpoint, verify_resume
    from ckpttool.errors import CkptError, ResumeRefused
    from ckpttool.formats import open_checkpoint
    from ckpttool.model import Checkpoint, TensorInfo
    from ckpttool.ops.check import CheckReport
    from ckpttool.ops.diff import DiffReport
    from ckpttool.ops.inspect import InspectReport
    from ckpttool.ops.verify import VerifyReport
    from ckpttool.saving import latest_checkpoint, prune_checkpoints, save_checkpoint

# Imported on first use (PEP 562), so `import ckpttool` and the CLI's start-up stay fast.
_LAZY = {
    "inspect": "ckpttool.api",
    "check": "ckpttool.api",
    "diff": "ckpttool.api",
    "verify_resume": "ckpttool.api",
    "inspect_checkpoint": "ckpttool.api",  # deprecated alias of inspect (warns)
    "CheckReport": "ckpttool.ops.check",
    "DiffReport": "ckpttool.ops.diff",
    "VerifyReport": "ckpttool.ops.verify",
    "ResumeRefused": "ckpttool.errors",
    "CkptError": "ckpttool.errors",
    "Checkpoint": "ckpttool.model",
    "TensorInfo": "ckpttool.model",
    "InspectReport": "ckpttool.ops.inspect",
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
    "CheckReport",
    "Checkpoint",
    "CkptError",
    "DiffReport",
    "InspectReport",
    "ResumeRefused",
    "TensorInfo",
    "VerifyReport",
    "check",
    "diff",
    "inspect",
    "inspect_checkpoint",
    "latest_checkpoint",
    "open_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
    "verify_resume",
]
__version__ = "0.1.0"
