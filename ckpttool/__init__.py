"""ckpttool: know before you resume. Safe, torch-free checkpoint inspection and repair.

The library API mirrors the CLI: each function takes paths and options and returns a report dataclass with a
``to_json()``; nothing here prints.
"""

from ckpttool.errors import CkptError
from ckpttool.model import Checkpoint, TensorInfo
from ckpttool.ops.inspect import InspectReport, inspect_checkpoint
from ckpttool.readers import open_checkpoint
from ckpttool.saving import latest_checkpoint, prune_checkpoints, save_checkpoint

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
