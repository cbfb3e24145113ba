"""inspect on every fixture kind: pieces, verdicts, optimizer alignment, --require, JSON fields."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import fixture, run_cli, sha256

from ckpttool.ops.inspect import inspect_checkpoint

PIECES = [
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
]

# fixture -> (profile, verdict, {piece: status})
EXPECTED = {
    "seed_bundle.pth": ("bundle", "full", {"model": "present", "optimizer": "present", "scheduler": "present",
                        "step": "present", "epoch": "present", "norm_stats": "present", "rng": "present",
                        "scaler": "present", "config": "present", "version": "present"}),
    "vits/G_2000.pth": ("vits-train", "full", {"optimizer": "present", "scheduler": "rebuilt", "step": "rebuilt",
                        "epoch": "present", "rng": "absent", "scaler": "absent"}),
    "vits/D_2000.pth": ("vits-train", "full", {"optimizer": "present", "scheduler": "rebuilt"}),
    "gpt_sovits/logs_s2_v2/G_233333333333.pth": ("gpt-sovits-train", "full", {"scheduler": "rebuilt",
                                                 "step": "rebuilt", "epoch": "present"}),
    "gpt_sovits/logs_s2_v2/D_233333333333.pth": ("gpt-sovits-train", "full", {"optimizer": "present"}),
    "gpt_sovits/SoVITS_weights_v2/demo_e8_s144.pth": ("gpt-sovits-export", "weights-only",
                                                      {"optimizer": "absent", "config": "present",
                                                       "epoch": "present", "step": "present"}),
    "gpt_sovits/SoVITS_weights_v2Pro/demo_e8_s144.pth": ("gpt-sovits-export", "weights-only",
                                                         {"version": "present", "config": "present"}),
    "gpt_sovits/GPT_weights_v2/demo-e15.ckpt": ("gpt-sovits-gpt-export", "weights-only", {"epoch": "present"}),
    "lightning/epoch=3-step=120.ckpt": ("gpt-sovits-s1-train", "full", {"optimizer": "present", "scheduler": "present",
                                        "step": "present", "epoch": "present", "rng": "present",
                                        "scaler": "present", "config": "present", "version": "present"}),
    "rvc/assets/weights/demo_e20_s400.pth": ("rvc-export", "weights-only", {"config": "present",
                                             "version": "present"}),
    "plain_state_dict.pth": ("state-dict", "weights-only", {"model": "present", "optimizer": "absent"}),
    "legacy_format.pth": ("generic", None, {"model": "present", "optimizer": "present"}),
    "weights.safetensors": ("state-dict", "weights-only", {"optimizer": "absent"}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture(name: str) -> None:
    path = fixture(name)
    before = sha256(path)
    profile, verdict, pieces = EXPECTED[name]
    r = run_cli("inspect", str(path), "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["schema"] == "ckpttool.inspect/1"
    assert doc["profile"] == profile
    if verdict:
        assert doc["verdict"] == verdict, doc["verdict_reason"]
    assert list(doc["pieces"]) == PIECES
    for piece, status in pieces.items():
        assert doc["pieces"][piece]["status"] == status, (piece, doc["pieces"][piece])
    for key in ("format", "networks", "findings", "verdict", "pieces", "profile"):
        assert key in doc
    text = run_cli("inspect", str(path))
    assert text.code == 0
    assert "verdict: " in text.stdout and "piece" in text.stdout
    assert sha256(path) == before


def test_tagged_export_reports_version() -> None:
    doc = run_cli(
        "inspect", str(fixture("gpt_sovits/SoVITS_weights_v2Pro/demo_e8_s144.pth")), "--json"
    ).json()
    assert doc["format"] == "gpt-sovits-tagged-zip"
    assert doc["version"] == "v2Pro"


def test_gpt_sovits_four_group_optimizer_is_aligned() -> None:
    doc = run_cli("inspect", str(fixture("gpt_sovits/logs_s2_v2/G_233333333333.pth")), "--json").json()
    (opt,) = doc["optimizers"]
    assert len(opt["groups"]) == 4
    assert opt["aligned"] is True
    assert opt["alignment_method"] == "the trainer's known param-group layout"
    assert opt["groups"][1]["lr"] == pytest.approx(opt["groups"][0]["lr"] * 0.4)


def test_require_gate() -> None:
    path = str(fixture("plain_state_dict.pth"))
    r = run_cli("inspect", path, "--require", "optimizer,step")
    assert r.code == 1
    assert "required piece(s) absent: optimizer, step" in r.stdout
    assert run_cli("inspect", path, "--require", "model").code == 0
    bad = run_cli("inspect", path, "--require", "weights")
    assert bad.code == 2 and "unknown piece" in bad.stderr


def _save_with_bad_moment(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    sd["state"][2]["exp_avg"] = torch.zeros(3, 8)  # second Linear's weight is [2, 8]
    path = tmp_path / "bad.pth"
    torch.save({"model": model.state_dict(), "optimizer": sd, "step": 1}, path)
    return path


def test_wrong_moment_shape_is_an_error(tmp_path: Path) -> None:
    r = run_cli("inspect", str(_save_with_bad_moment(tmp_path)), "--json")
    assert r.code == 1
    doc = r.json()
    assert doc["verdict"] == "weights-only"
    codes = [f["code"] for f in doc["findings"] if f["severity"] == "error"]
    assert "optimizer-shape" in codes
    (opt,) = doc["optimizers"]
    assert opt["mismatches"] == [
        {
            "index": 2,
            "param": "1.weight",
            "state_shape": [3, 8],
            "param_shape": [2, 8],
            "state_key": "exp_avg",
        }
    ]


def test_optimizer_from_another_model(tmp_path: Path) -> None:
    small = torch.nn.Linear(2, 2)
    big = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    opt = torch.optim.Adam(small.parameters())
    torch.save({"model": big.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, tmp_path / "x.pth")
    report = inspect_checkpoint(tmp_path / "x.pth")
    assert report.verdict == "weights-only"
    assert "belongs to another model" in (report.optimizers[0].problem or "")


def test_named_param_groups_and_buffers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0}, {"params": decay}])
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 10)
    torch.save(
        {"net": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": 1},
        tmp_path / "y.pth",
    )
    report = inspect_checkpoint(tmp_path / "y.pth")
    assert report.optimizers[0].aligned is True
    assert report.verdict == "full"
    scheduler = next(p for p in report.pieces if p.name == "scheduler")
    assert scheduler.status == "present" and scheduler.detail.startswith("StepLR")


def test_g_and_d_from_different_stages(tmp_path: Path) -> None:
    def trained(steps: int) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
        m = torch.nn.Linear(2, 2)
        o = torch.optim.AdamW(m.parameters())
        for _ in range(steps):
            m(torch.ones(1, 2)).sum().backward()
            o.step()
        return m.state_dict(), o.state_dict()

    g, og = trained(3)
    d, od = trained(5)
    torch.save(
        {"model_g": g, "model_d": d, "optimizer_g": og, "optimizer_d": od, "step": 3}, tmp_path / "b.pth"
    )
    doc = run_cli("inspect", str(tmp_path / "b.pth"), "--json").json()
    assert any(f["code"] == "g-d-stage" for f in doc["findings"])
