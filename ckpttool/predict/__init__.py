"""What the real trainer will do with a run folder: its pick rule, its loader, its failure behaviour and its
stop condition, simulated from its trainer record (docs/trainers.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ckpttool.configs import load_config_file, run_config_beside
from ckpttool.errors import CkptError
from ckpttool.predict.environment import Environment, detect_environment
from ckpttool.predict.simulate import Prediction, predict
from ckpttool.runs import Candidate, LatestResult

__all__ = ["Environment", "Prediction", "detect_environment", "predict", "predict_run"]


def predict_run(
    result: LatestResult,
    *,
    trainer: str | None = None,
    trainer_root: str | None = None,
    torch_version: str | None = None,
    lightning_version: str | None = None,
    config: dict[str, Any] | None = None,
) -> list[Prediction]:
    """A prediction for every folder of ``result`` holding checkpoints of a trainer with load rules. The
    run config is ``config`` when given, else the one the trainer keeps beside its checkpoints."""
    env = detect_environment(trainer_root, torch_version, lightning_version)
    folders: dict[Path, list[Candidate]] = {}
    for c in result.candidates:
        folders.setdefault(c.path.parent, []).append(c)
    root = Path(trainer_root) if trainer_root else None
    out = []
    for folder, cands in sorted(folders.items()):
        run_config = config
        if run_config is None:
            found = run_config_beside(str(cands[0].path))
            if found is not None:
                try:
                    run_config = load_config_file(found)
                except CkptError:
                    run_config = None
        pred = predict(folder, cands, result, env, trainer=trainer, config=run_config, trainer_root=root)
        if pred is not None:
            out.append(pred)
    return out
