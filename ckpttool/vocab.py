"""The closed vocabularies of ckpttool's reports, as types mypy can check.

Each is a ``str`` enum: members compare equal to their values, print as their values and serialise to JSON as
their values, so the public JSON schemas (docs/json-schema.md) are unchanged by using them.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal


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
    PICKLE = "pickle"
    TAR = "torch-tar"
    HF_PRETRAINED = "hf-pretrained-dir"
    HF_TRAINER = "hf-trainer-dir"


# Closed string vocabularies, checked by mypy wherever they are written (each is a field of a public JSON schema).
PieceStatus = Literal[
    "present", "absent", "rebuilt"
]  # rebuilt: not saved, but recomputed by the trainer on resume
Verdict = Literal["full", "warm-start", "weights-only", "none"]  # can training resume (docs/json-schema.md)
Severity = Literal["error", "warning", "info"]
CheckStatus = Literal["pass", "fail", "warn", "skip"]
PlanAction = Literal["copy", "partial", "init", "drop"]  # what migrate does with one tensor
FindingCode = Literal[
    "optimizer-misaligned", "optimizer-shape", "optimizer-unchecked", "optimizer-aligned", "optimizer-partial",
    "adam-step", "adam-step-spread", "g-d-stage", "devices", "stubbed-class", "amp-skipped-steps",
]  # fmt: skip


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
