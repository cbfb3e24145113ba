"""``latest``: the newest complete state of a run folder, and what the trainer will load instead (if anything)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ckpttool.predict import Prediction, predict_run
from ckpttool.runs import LatestResult, latest

SCHEMA = "ckpttool.latest/2"


@dataclass
class LatestReport:
    """:class:`ckpttool.runs.LatestResult` plus one prediction per folder whose trainer ckpttool knows."""

    result: LatestResult
    predictions: list[Prediction] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``ckpttool.latest/2`` JSON document: ``ckpttool.latest/1`` plus ``predictions``."""
        return {
            **self.result.to_json(),
            "schema": SCHEMA,
            "predictions": [p.to_json() for p in self.predictions],
        }


def latest_run(
    run_dir: str | os.PathLike[str],
    allow: frozenset[str] = frozenset(),
    *,
    trainer: str | None = None,
    trainer_root: str | None = None,
    torch_version: str | None = None,
    lightning_version: str | None = None,
) -> LatestReport:
    """The newest complete state in ``run_dir`` (by content) and what the trainer's own rule picks."""
    result = latest(run_dir, allow)
    preds = predict_run(
        result, trainer=trainer, trainer_root=trainer_root, torch_version=torch_version,
        lightning_version=lightning_version,
    )  # fmt: skip
    return LatestReport(result, preds)
