"""`ckpttool verify-resume`: static checks name each cause; the shadow run proves exact resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import fixture, run_cli, sha256

from ckpttool.formats import open_checkpoint
from ckpttool.formats.torch_zip import torch_save_to
from ckpttool.formats.values import StorageReader
from ckpttool.recipes import tiny_gan

SEED = "seed_bundle.pth"
G = "gpt_sovits/logs_s2_v2/G_233333333333.pth"
D = "gpt_sovits/logs_s2_v2/D_233333333333.pth"


def _variant(src: Path, out: Path, change: Any) -> Path:
    """Read a fixture with ckpttool (no unsafe unpickling), change its tree, write it back."""
    ckpt = open_checkpoint(src)
    with StorageReader() as reader:
        root = reader.materialise(ckpt.root)
    change(root)
    with open(out, "wb") as fh:
        torch_save_to(fh, root)
    return out


def _verify(*args: object) -> tuple[int, dict[str, Any]]:
    r = run_cli("verify-resume", *map(str, args), "--json")
    assert r.code in (0, 1), r.stderr
    doc = r.json()
    assert doc["schema"] == "ckpttool.verify-resume/1"
    return r.code, doc


def _failed(doc: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in doc["checks"]:
        if c["status"] == "fail":
            out.setdefault(c["name"], []).append(c["message"])
    return out


def test_complete_bundle_passes_bit_exactly() -> None:
    before = sha256(fixture(SEED))
    code, doc = _verify(fixture(SEED))
    assert code == 0 and doc["verified"] is True and not _failed(doc)
    (run,) = doc["shadow_runs"]
    assert run["exact_reload"]["identical"] and run["exact_reload"]["max_param_diff"] == 0
    assert run["device"] == "cpu" and run["steps"] == 4
    assert sha256(fixture(SEED)) == before


def test_missing_optimizer_fails(tmp_path: Path) -> None:
    bad = _variant(fixture(SEED), tmp_path / "no_opt.pth", lambda r: r.pop("optimizer_g"))
    code, doc = _verify(bad)
    assert code == 1
    assert any("no optimizer" in m and "Adam moments restart from zero" in m for m in _failed(doc)["pieces"])


def test_wrong_exp_avg_shape_fails(tmp_path: Path) -> None:
    def shrink(root: dict[str, Any]) -> None:
        entry = root["optimizer_g"]["state"][0]
        entry["exp_avg"] = entry["exp_avg"].reshape(-1)[:-1].clone()

    code, doc = _verify(_variant(fixture(SEED), tmp_path / "bad_avg.pth", shrink))
    assert code == 1
    messages = " ".join(_failed(doc)["optimizer"])
    assert "optimizer_g" in messages and "exp_avg" in messages


def test_scheduler_of_another_class_fails(tmp_path: Path) -> None:
    def swap(root: dict[str, Any]) -> None:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([p], lr=root["optimizer_g"]["param_groups"][0]["initial_lr"])
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        for _ in range(3):
            opt.step()
            sched.step()
        root["scheduler_g"] = sched.state_dict()

    bad = _variant(fixture(SEED), tmp_path / "steplr.pth", swap)
    code, doc = _verify(bad)
    assert code == 1
    (message,) = _failed(doc)["scheduler"]
    assert "scheduler_g does not belong to optimizer_g" in message and "StepLR" in message
    code, doc = _verify(fixture(SEED), "--scheduler-class", "StepLR", "--no-shadow")
    assert code == 1 and "the trainer builds StepLR" in _failed(doc)["scheduler"][0]


def test_g_and_d_from_different_steps_fail(tmp_path: Path) -> None:
    older_d = _variant(fixture(D), tmp_path / "D_7.pth", lambda r: r.update(iteration=7))
    code, doc = _verify(fixture(G), older_d)
    assert code == 1
    (message,) = _failed(doc)["g-d-stage"]
    assert "different stages" in message and "epoch 8" in message and "epoch 7" in message


def test_gpt_sovits_pair_reports_the_lr_rebuild_error() -> None:
    code, doc = _verify(fixture(G), fixture(D))
    assert code == 0  # known, bounded trainer behaviour: a warning
    lr = [c for c in doc["checks"] if c["name"] == "lr-after-resume"]
    assert len(lr) == 2 and all(c["status"] == "warn" for c in lr)
    data = lr[0]["data"]
    gamma, e = 0.999875, 8
    assert data["epoch"] == 9
    assert data["relative_error"] == pytest.approx(gamma**e - 1, rel=1e-6)  # lr0·γ^(2e+1) vs lr0·γ^(e+1)
    assert "relative error -0.100%" in lr[0]["message"]
    runs = {r["path"]: r for r in doc["shadow_runs"]}
    assert all(r["exact_reload"]["identical"] for r in runs.values())  # the save/reload itself is exact
    assert all(not r["trainer_reload"]["identical"] for r in runs.values())  # the trainer's rebuild drifts
    code, doc = _verify(fixture(G), fixture(D), "--strict")
    assert code == 1 and "lr-after-resume" in _failed(doc)


def test_lightning_checkpoint_shadow_run() -> None:
    _, doc = _verify(fixture("lightning/epoch=3-step=120.ckpt"))
    assert doc["shadow_runs"][0]["exact_reload"]["identical"]
    # GPT-SoVITS's WarmupCosineLRSchedule is driven as its step() does (it pins the LR at 0.002), not held
    run = doc["shadow_runs"][0]
    assert not any("cannot be rebuilt without its code" in n for n in run["notes"])
    assert run["exact_reload"]["lr_straight"] == run["exact_reload"]["lr_resumed"] == [0.002]


def test_cuda_without_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = run_cli("verify-resume", fixture(SEED), "--device", "cuda")
    assert r.code == 2 and "no CUDA device is available" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_shadow_run_on_cuda() -> None:
    code, doc = _verify(fixture(SEED), "--device", "cuda")
    assert code == 0 and doc["device"].startswith("cuda")


def test_tiny_gan_recipe_resumes_exactly(tmp_path: Path) -> None:
    files = tiny_gan.make_checkpoint(tmp_path)
    code, doc = _verify(*files, "--recipe", "ckpttool.recipes.tiny_gan:recipe", "--no-shadow")
    assert code == 0, doc["checks"]
    assert doc["recipe_run"]["identical"] is True


def test_vits_style_recipe_is_caught(tmp_path: Path) -> None:
    files = tiny_gan.make_checkpoint(tmp_path)
    code, doc = _verify(*files, "--recipe", "ckpttool.recipes.tiny_gan:vits_style", "--no-shadow")
    assert code == 1
    # VITS re-runs the interrupted epoch: the epoch counter (and with older torch, the LR) drift
    assert any("epoch: max |Δ| 1" in m for m in _failed(doc)["recipe-run"])


def test_bad_recipe_is_a_usage_error(tmp_path: Path) -> None:
    r = run_cli("verify-resume", fixture(SEED), "--recipe", "no_such_module_xyz:recipe", "--no-shadow")
    assert r.code == 2 and "cannot import" in r.stderr


@pytest.mark.parametrize("kind", ["Adamax", "RMSprop", "NAdam", "RAdam", "SGD"])
def test_other_optimizers_and_multistep_scheduler(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    extra = {"momentum": 0.9} if kind in ("RMSprop", "SGD") else {}
    opt = getattr(torch.optim, kind)(net.parameters(), lr=0.01, **extra)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [1, 3], 0.5)
    for _ in range(2):
        net(torch.randn(4, 3)).sum().backward()
        opt.step()
        sched.step()
    path = tmp_path / "b.pth"
    torch.save({"model_g": net.state_dict(), "optimizer_g": opt.state_dict(), "scheduler_g": sched.state_dict(),
                "step": 2, "epoch": 2}, path)  # fmt: skip
    code, doc = _verify(path)
    assert code == 0, _failed(doc)
    assert doc["shadow_runs"][0]["exact_reload"]["identical"]


def test_scheduler_without_closed_form_is_not_called_consistent(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    path = tmp_path / "oc.pth"
    torch.save({"model_g": net.state_dict(), "optimizer_g": opt.state_dict(), "scheduler_g": sched.state_dict(),
                "step": 1}, path)  # fmt: skip
    _, doc = _verify(path, "--no-shadow")
    (sched_check,) = [c for c in doc["checks"] if c["name"] == "scheduler"]
    # what can be checked passes (the LRs it last set are the optimizer's); the schedule itself is not vouched for
    assert sched_check["status"] == "pass" and "the LRs to come are not checked" in sched_check["message"]
    assert "consistent" not in sched_check["message"]
    # a state whose last LRs are not the optimizer's: another save, or another run
    state = sched.state_dict()
    state["_last_lr"] = [0.5]
    torch.save(
        {"model_g": net.state_dict(), "optimizer_g": opt.state_dict(), "scheduler_g": state, "step": 1}, path
    )
    _, doc = _verify(path, "--no-shadow")
    (sched_check,) = [c for c in doc["checks"] if c["name"] == "scheduler"]
    assert (
        sched_check["status"] == "warn" and "last set lr 0.5 but optimizer_g holds" in sched_check["message"]
    )


def test_odd_steps_and_duplicate_files_are_usage_errors() -> None:
    assert run_cli("verify-resume", fixture(SEED), "--steps", "3").code == 2
    assert run_cli("verify-resume", fixture(SEED), fixture(SEED)).code == 2


def test_scaled_adam_is_skipped_not_failed(tmp_path: Path) -> None:
    """GPT-SoVITS's s1 (Lightning) uses icefall's ScaledAdam, whose batched state needs its own code."""
    net = torch.nn.Linear(3, 2)
    # one batch per (dtype, shape), sorted by shape: bias (2,) first, then weight (2, 3); state on its first member
    bias = {
        "step": 3,
        "delta": torch.zeros(1, 2),
        "param_rms": torch.ones(1, 1),
        "scale_exp_avg_sq": torch.zeros(1, 1),
        "scale_grads": torch.zeros(4, 1, 1),
        "exp_avg_sq": torch.zeros(1, 2),
        "model_norms": torch.zeros(100),
    }
    weight = {
        "step": 3,
        "delta": torch.zeros(1, 2, 3),
        "param_rms": torch.ones(1, 1, 1),
        "scale_exp_avg_sq": torch.zeros(1, 1, 1),
        "scale_grads": torch.zeros(4, 1, 1, 1),
        "exp_avg_sq": torch.zeros(1, 2, 3),
    }
    opt = {"state": {1: bias, 0: weight},
           "param_groups": [{"lr": 0.01, "clipping_scale": 2.0, "params": [0, 1]}]}  # fmt: skip
    path = tmp_path / "s1.ckpt"
    torch.save({"epoch": 3, "global_step": 30, "pytorch-lightning_version": "2.6.0", "state_dict": net.state_dict(),
                "optimizer_states": [opt], "lr_schedulers": [{"base_lrs": [0.01], "last_epoch": 3, "gamma": 0.5,
                "step_size": 2, "_step_count": 4, "_last_lr": [0.005]}]}, path)  # fmt: skip
    _, doc = _verify(path)
    shadow = [c for c in doc["checks"] if c["name"] == "shadow-run"]
    assert shadow and shadow[0]["status"] == "skip" and "--recipe" in shadow[0]["message"]
