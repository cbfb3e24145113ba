"""Whether a resumed run trains at all: the trainer's epoch limit against the epochs the file has done.

A trainer record names the run-config key its trainer stops at (``resume.max_epochs_config``: GPT-SoVITS s1
passes ``train.epochs`` as Lightning's ``max_epochs``, s1_train.py:111-112) and the checkpoint key that counts
the epochs done (``resume.epochs_done``: Lightning's ``epoch_progress.current.processed``, which the fit loop
compares with ``max_epochs`` before training anything: loops/fit_loop.py:183-192). When the file has done them
all, a resume loads everything and stops at once — the usual "I resumed and nothing happened".
"""

from __future__ import annotations

from typing import Any

from ckpttool.configs import embedded_config
from ckpttool.interpret.source import Source
from ckpttool.model import get_path
from ckpttool.resume.static import Check


def _lookup(config: Any, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def max_epochs_check(src: Source, run_config: dict[str, Any] | None, config_from: str) -> list[Check]:
    """Warn when the epochs ``src`` has done reach the trainer's epoch limit (the resumed fit stops before its
    first batch), pass with the epochs left otherwise; nothing when the record or the values are missing.
    ``run_config`` (from ``config_from``) is the config the resume will use; default: the file's own."""
    record = src.layout.record
    if record is None or not record.resume.max_epochs_config or not record.resume.epochs_done:
        return []
    key = record.resume.max_epochs_config
    if run_config is None or _lookup(run_config, key) is None:
        found = embedded_config(src.ckpt)
        run_config, config_from = (found[1], found[0]) if found else (None, "")
    limit = _int(_lookup(run_config, key)) if run_config is not None else None
    try:
        done = _int(get_path(src.ckpt.root, record.resume.epochs_done))
    except (KeyError, IndexError, ValueError, TypeError):
        done = None
    if limit is None or done is None:
        return []
    data = {"epochs_done": done, "max_epochs": limit, "config_key": key, "config_from": config_from}
    where = f"{key} {limit} in {config_from}"
    if done >= limit:
        return [
            Check(
                "max-epochs",
                "warn",
                f"{src.name}: {done} epoch(s) done and the trainer stops at {where}: a resume with this "
                f"setting loads the file and trains nothing; raise {key} to train further",
                data,
            )
        ]
    return [
        Check("max-epochs", "pass", f"{src.name}: {done} epoch(s) done, {limit - done} left ({where})", data)
    ]
