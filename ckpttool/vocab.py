"""The closed vocabularies of ckpttool's reports, as types mypy can check.

Each is a ``str`` enum: members compare equal to their values, print as their values and serialise to JSON as
their values, so the public JSON schemas (docs/json-schema.md) are unchanged by using them.
"""

from __future__ import annotations

from enum import Enum


class Vocab(str, Enum):
    """A str enum that formats as its value (``f"{Verdict.FULL}"`` is ``"full"``)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Format(Vocab):
    """What a checkpoint is on disk (``Checkpoint.format``, the ``format`` field of inspect's JSON)."""

    TORCH_ZIP = "torch-zip"
    TAGGED_ZIP = "gpt-sovits-tagged-zip"
    TORCHSCRIPT = "torchscript"
    LEGACY = "torch-legacy"
    SAFETENSORS = "safetensors"
    ACCELERATE = "accelerate-dir"
    HF_SHARDED = "hf-sharded-dir"
    DCP = "dcp-dir"


class PieceStatus(Vocab):
    PRESENT = "present"
    ABSENT = "absent"
    REBUILT = "rebuilt"  # not saved, but the trainer recomputes it on resume


class Verdict(Vocab):
    """Can training resume from this file (docs/json-schema.md)."""

    FULL = "full"
    WARM_START = "warm-start"
    WEIGHTS_ONLY = "weights-only"
    NONE = "none"


class Severity(Vocab):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class CheckStatus(Vocab):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


class PlanAction(Vocab):
    """What migrate does with one tensor."""

    COPY = "copy"
    PARTIAL = "partial"
    INIT = "init"
    DROP = "drop"


# The ten pieces of training state (DESIGN.md), in report order.
PIECES = (
    "model",
    "optimizer",
    "scheduler",
    "step",
    "epoch",
    "norm_stats",
    "rng",
    "scaler",
    "config",
    "version",
)
