"""The model run through the real GPT-SoVITS: s1, s2 v2 (and v2Pro), v4 LoRA files written by upstream's own code,
resumed by ``verify-resume --trainer-root`` through upstream's own classes.

Runs only when ``GPT_SOVITS_ROOT`` names an upstream checkout and ``ckpttool[gpt-sovits]`` is installed (see
docs/verify-resume.md, ``make gpt-sovits-deps``); skipped otherwise. No torchaudio stand-in is needed: at
RVC-Boss/GPT-SoVITS@48b1a01 neither the models nor what they import (f5_tts -> x_transformers, peft, Lightning,
librosa) import torchaudio, so these tests pass in an environment without it.

The CPU count is pinned to one intra-op thread here: on a shared two-core machine oneDNN's spinning threads
make a step ten times slower, and the comparisons are bit-exact whatever the thread count.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import run_cli
from gsv_upstream import checkout, small_v3_checkout, write_lora_run, write_s1_run, write_s2_run

ROOT = checkout()
NEEDED = ("pytorch_lightning", "torchmetrics", "matplotlib", "einops", "x_transformers", "peft", "librosa")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]

pytestmark = [
    pytest.mark.skipif(ROOT is None, reason="set GPT_SOVITS_ROOT to a GPT-SoVITS checkout to run these"),
    pytest.mark.skipif(bool(MISSING), reason=f"needs ckpttool[gpt-sovits] (missing: {', '.join(MISSING)})"),
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gsv_logs")


@pytest.fixture(scope="module")
def s1_ckpt(logs: Path) -> Path:
    assert ROOT is not None
    return write_s1_run(ROOT, logs)


@pytest.fixture(scope="module")
def s2_pair(logs: Path) -> list[Path]:
    assert ROOT is not None
    return write_s2_run(ROOT, logs, "v2")


def _verify(*args: object) -> tuple[int, dict[str, Any]]:
    r = run_cli("verify-resume", *map(str, args), "--device", "cpu", "--json")
    assert r.code in (0, 1), r.stderr
    doc = r.json()
    assert doc["schema"] == "ckpttool.verify-resume/1"
    return r.code, doc


def _checks(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [c for c in doc["checks"] if c["name"] == name]


def _model_run_identical(doc: dict[str, Any], root: Path) -> dict[str, Any]:
    run = doc["recipe_run"]
    assert run is not None and run["trainer_root"] == str(root)
    assert run["identical"] is True and run["differences"] == [] and run["device"] == "cpu"
    (check,) = [c for c in _checks(doc, "recipe-run") if c["status"] != "warn"]
    assert check["status"] == "pass" and "bit-identical" in check["message"], check
    return run


def test_s1_lightning_checkpoint_resumes_exactly(s1_ckpt: Path) -> None:
    assert ROOT is not None
    code, doc = _verify(s1_ckpt, "--trainer-root", ROOT, "--steps", "4")
    run = _model_run_identical(doc, ROOT)
    assert run["recipe"] == "ckpttool.recipes.gpt_sovits_s1:recipe"
    assert (
        run["trainer_identical"] is None
    )  # Lightning restores everything: one comparison, the trainer's own
    # static checks ran, and the shadow run stood aside for ScaledAdam: only the model run verifies this file
    assert _checks(doc, "pieces")[0]["status"] == "pass"
    assert _checks(doc, "shadow-run")[0]["status"] == "skip"
    assert code == 0 and doc["level"] == "model-run" and doc["verified_by_run"] is True


def test_s2_v2_pair_resumes_exactly_and_shows_the_scheduler_drift(s2_pair: list[Path]) -> None:
    assert ROOT is not None
    g, d = s2_pair
    code, doc = _verify(g, d, "--trainer-root", ROOT, "--steps", "2", "--no-shadow")
    run = _model_run_identical(doc, ROOT)
    assert run["recipe"] == "ckpttool.recipes.gpt_sovits:recipe"
    # s2_train rebuilds ExponentialLR and steps it epoch+1 times over the saved LR: resumed its own way, the
    # run drifts, and the drift starts with the LR
    assert run["trainer_identical"] is False
    assert run["trainer_differences"][0].startswith(("D.optimizer.lr", "G.optimizer.lr"))
    (drift,) = _checks(doc, "recipe-resume")
    assert drift["status"] == "warn"
    assert {c["name"] for c in doc["checks"]} >= {"pieces", "optimizer", "g-d-stage", "lr-after-resume"}
    assert code == 0 and doc["level"] == "model-run"


def test_s2_v2_strict_makes_the_drift_fail(s2_pair: list[Path]) -> None:
    assert ROOT is not None
    g, d = s2_pair
    code, doc = _verify(g, d, "--trainer-root", ROOT, "--steps", "2", "--no-shadow", "--strict")
    assert code == 1 and _checks(doc, "recipe-resume")[0]["status"] == "fail"


def test_v4_lora_resumes_exactly(logs: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert ROOT is not None
    full = os.environ.get("CKPTTOOL_GSV_FULL") == "1"
    root = ROOT if full else small_v3_checkout(ROOT, tmp_path_factory.mktemp("gsv_small"))
    g = write_lora_run(root, logs, "v4")
    _, doc = _verify(g, "--trainer-root", root, "--steps", "4", "--no-shadow")
    run = _model_run_identical(doc, root)
    assert run["recipe"] == "ckpttool.recipes.gpt_sovits_lora:recipe"
    assert run["trainer_identical"] is False  # the LoRA trainer rebuilds its ExponentialLR too
    assert any("LoRA rank 4" in n for n in run["notes"])
    assert _checks(doc, "pieces")[0]["status"] == "pass"


def test_auto_detected_checkout_and_check_verify(s1_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From inside the checkout no flag is needed; ``check --verify`` runs the same model run."""
    assert ROOT is not None
    ckpt = s1_ckpt
    monkeypatch.chdir(ROOT / "GPT_SoVITS")
    code, doc = _verify(ckpt, "--steps", "2")
    assert code == 0 and doc["recipe_run"]["trainer_root"] == str(ROOT) and doc["level"] == "model-run"
    r = run_cli("check", str(ckpt), "--verify", "--steps", "2")
    assert r.code == 0 and "ready to resume (verified by the model run)" in r.stdout, r.stdout + r.stderr
    assert "recipe-run" in r.stdout
