"""Directory checkpoints written by the real libraries (accelerate, DCP, huggingface_hub), and convert."""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from conftest import fixture, run_cli, run_subprocess, sha256

from ckpttool.formats import open_checkpoint
from ckpttool.ops.convert import compare_checkpoints

warnings.filterwarnings("ignore", category=UserWarning)


def _net() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    return net, torch.optim.AdamW(net.parameters(), lr=1e-3)


@pytest.fixture(scope="module")
def accelerate_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    accelerate = pytest.importorskip("accelerate")
    from accelerate.utils import ProjectConfiguration

    project = tmp_path_factory.mktemp("accel")
    acc = accelerate.Accelerator(cpu=True, project_config=ProjectConfiguration(
        project_dir=str(project), automatic_checkpoint_naming=True))  # fmt: skip
    net, opt = _net()
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    net, opt, sched = acc.prepare(net, opt, sched)
    for _ in range(3):
        acc.backward(net(torch.randn(5, 4)).pow(2).mean())
        opt.step()
        sched.step()
        opt.zero_grad()
        acc.save_state()
    return project / "checkpoints"


def test_accelerate_inspect_latest_diff(accelerate_run: Path) -> None:
    last = accelerate_run / "checkpoint_2"
    doc = run_cli("inspect", last, "--json").json()
    assert doc["format"] == "accelerate-dir" and doc["profile"] == "accelerate"
    assert (
        doc["pieces"]["optimizer"]["status"] == "present"
        and doc["pieces"]["scheduler"]["status"] == "present"
    )
    assert doc["pieces"]["rng"]["status"] == "present"
    assert doc["optimizers"][0]["aligned"]  # safetensors sorted the keys; shapes per module still align them
    r = run_cli("latest", accelerate_run.parent)
    assert r.code == 0 and r.stdout.strip() == str(last)
    d = run_cli("diff", accelerate_run / "checkpoint_1", last, "--values", "--json").json()
    assert d["networks"][0]["common"] == 6 and any(v["max_abs"] > 0 for v in d["networks"][0]["values"])
    r = run_cli("check", last, "--verify")
    assert r.code == 0, r.stdout  # accelerate records no step: not required, and the shadow run is exact


@pytest.fixture(scope="module")
def dcp_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from torch.distributed import checkpoint as dcp

    folder = tmp_path_factory.mktemp("dcp") / "step_3"
    net, opt = _net()
    net(torch.randn(3, 4)).sum().backward()
    opt.step()
    state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": 3}
    dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    return folder, state


def test_dcp_inspect_without_torch_and_values(dcp_dir: tuple[Path, dict]) -> None:
    folder, state = dcp_dir
    r = run_subprocess("inspect", folder, "--json", pre="import sys; sys.modules['torch'] = None")
    assert r.code == 0, r.stderr
    assert '"format": "dcp-dir"' in r.stdout and '"verdict"' in r.stdout
    ckpt = open_checkpoint(folder)
    assert ckpt.root["step"] == 3
    assert ckpt.root["optimizer"]["param_groups"][0]["lr"] == 1e-3
    from ckpttool.formats.values import StorageReader

    with StorageReader() as reader:
        w = reader.tensor(ckpt.root["model"]["0.weight"])
    assert torch.equal(w, state["model"]["0.weight"])


def test_dcp_unsafe_metadata_is_refused(tmp_path: Path, dcp_dir: tuple[Path, dict]) -> None:
    folder = tmp_path / "evil"
    shutil.copytree(dcp_dir[0], folder)

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("touch ckpttool_pwned_marker",))

    (folder / ".metadata").write_bytes(pickle.dumps({"state_dict_metadata": Evil()}, protocol=2))
    r = run_cli("inspect", folder, "--json")
    assert r.code == 3 and r.json()["kind"] == "unsafe" and "posix.system" in r.json()["globals"]
    assert not Path("ckpttool_pwned_marker").exists()


def test_hf_sharded(tmp_path: Path) -> None:
    hub = pytest.importorskip("huggingface_hub")
    net, _ = _net()
    big = {**net.state_dict(), "extra.weight": torch.randn(64, 64)}
    folder = tmp_path / "sharded"
    folder.mkdir()
    hub.save_torch_state_dict(big, folder, max_shard_size=10_000)
    assert len(list(folder.glob("*.safetensors"))) > 1
    doc = run_cli("inspect", folder, "--json").json()
    assert doc["format"] == "hf-sharded-dir" and doc["networks"][0]["tensors"] == len(big)
    assert run_cli("diff", folder, folder, "--exit-code").code == 0
    next(iter(folder.glob("*-00002-*.safetensors"))).unlink()
    r = run_cli("inspect", folder)
    assert r.code == 3 and ("are in no shard" in r.stderr or "no such file" in r.stderr.lower())


ROUND_TRIP = [
    "seed_bundle.pth",
    "gpt_sovits/logs_s2_v2/G_233333333333.pth",
    "lightning/epoch=3-step=120.ckpt",
    "gpt_sovits/SoVITS_weights_v2/demo_e8_s144.pth",
]


@pytest.mark.parametrize("name", ROUND_TRIP)
@pytest.mark.parametrize("via", ["safetensors", "dcp"])
def test_round_trips_keep_everything(tmp_path: Path, name: str, via: str) -> None:
    src = fixture(name)
    before = sha256(src)
    mid = tmp_path / ("mid.safetensors" if via == "safetensors" else "mid_dcp")
    back = tmp_path / "back.pth"
    r = run_cli("convert", src, "-o", mid, "--to", via, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["verified"] is True
    r = run_cli("convert", mid, "-o", back, "--to", "pth")
    assert r.code == 0, r.stderr
    assert compare_checkpoints(open_checkpoint(src), open_checkpoint(back)) == []
    src_doc, back_doc = (run_cli("inspect", p, "--json").json() for p in (src, back))
    assert {k: v["status"] for k, v in src_doc["pieces"].items()} == {
        k: v["status"] for k, v in back_doc["pieces"].items()
    }
    assert src_doc["verdict"] == back_doc["verdict"]
    assert sha256(src) == before


def test_convert_refuses_overwrite_and_reads_dcp_into_safetensors(
    tmp_path: Path, dcp_dir: tuple[Path, dict]
) -> None:
    out = tmp_path / "x.safetensors"
    assert run_cli("convert", dcp_dir[0], "-o", out, "--to", "safetensors").code == 0
    assert run_cli("convert", dcp_dir[0], "-o", out, "--to", "safetensors").code == 2
    ckpt = open_checkpoint(out)
    assert ckpt.root["step"] == 3 and isinstance(ckpt.root["optimizer"]["state"], dict)


def test_convert_schema_is_documented(tmp_path: Path) -> None:
    from test_docs import _documented_keys

    doc = run_cli("convert", fixture("seed_bundle.pth"), "-o", tmp_path / "b.safetensors", "--to", "safetensors",
                  "--json").json()  # fmt: skip
    assert set(doc) == _documented_keys("ckpttool.convert/1")


def test_truncated_distcp_is_caught(tmp_path: Path, dcp_dir: tuple[Path, dict]) -> None:
    folder = tmp_path / "cut"
    shutil.copytree(dcp_dir[0], folder)
    data = next(folder.glob("*.distcp"))
    data.write_bytes(data.read_bytes()[:200])
    r = run_cli("inspect", folder)
    assert r.code == 3 and "cut short" in r.stderr and r.stderr.count("\n") == 1
    r = run_cli("convert", folder, "-o", tmp_path / "x.pth", "--to", "pth")
    assert r.code == 3 and "Traceback" not in r.stderr
    assert run_cli("latest", tmp_path).code == 1


def test_dcp_values_holding_tensors_survive(tmp_path: Path) -> None:
    from torch.distributed import checkpoint as dcp

    folder = tmp_path / "vals"
    dcp.save(
        {"model": {"w": torch.ones(2)}, "extra": (torch.arange(3), 4)},
        checkpoint_id=str(folder),
        no_dist=True,
    )
    out = tmp_path / "vals.pth"
    r = run_cli("convert", folder, "-o", out, "--to", "pth")
    assert r.code == 0, r.stderr
    got = torch.load(out, weights_only=True)
    assert torch.equal(got["extra"][0], torch.arange(3)) and got["extra"][1] == 4


def test_converted_dcp_loads_with_dcp_itself(tmp_path: Path) -> None:
    from torch.distributed import checkpoint as dcp

    net, opt = _net()
    net(torch.randn(3, 4)).sum().backward()
    opt.step()
    src = tmp_path / "src.pth"
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict()}, src)
    out = tmp_path / "out_dcp"
    assert run_cli("convert", src, "-o", out, "--to", "dcp").code == 0
    net2, opt2 = _net()
    state = {"model": net2.state_dict(), "optimizer": opt2.state_dict()}
    net2(torch.randn(3, 4)).sum().backward()
    opt2.step()  # so the optimizer has state entries to load into
    state = {"model": net2.state_dict(), "optimizer": opt2.state_dict()}
    dcp.load(state, checkpoint_id=str(out), no_dist=True)
    assert torch.equal(state["model"]["0.weight"], net.state_dict()["0.weight"])
    assert torch.equal(state["optimizer"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_convert_edge_cases(tmp_path: Path) -> None:
    lin = torch.nn.Linear(3, 3)
    tied = {"a": lin.weight, "b": lin.weight, "view": lin.weight[0], "nan": torch.tensor([1.0, float("nan")]),
            "half": torch.ones(2, dtype=torch.bfloat16), "empty": torch.zeros(0, 4), "scalar": torch.tensor(3)}  # fmt: skip
    src = tmp_path / "edge.pth"
    torch.save({"sd": tied, "none": None, "nested": {"e": {}, "l": []}}, src)
    for to in ("pth", "safetensors", "dcp"):
        out = tmp_path / f"edge_{to}"
        r = run_cli("convert", src, "-o", out, "--to", to)
        assert r.code == 0, (to, r.stderr)
    back = torch.load(tmp_path / "edge_pth", weights_only=True)
    assert back["sd"]["a"].data_ptr() == back["sd"]["b"].data_ptr()  # tied weights stay tied
    assert isinstance(back["sd"]["a"], torch.nn.Parameter)
    assert back["sd"]["view"].untyped_storage().data_ptr() == back["sd"]["a"].untyped_storage().data_ptr()
    r = run_cli("convert", src, "-o", tmp_path / "no" / "x_dcp", "--to", "dcp")
    assert r.code == 2 and "does not exist" in r.stderr
