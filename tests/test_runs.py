"""The resume workflow: latest, check, prune, pack/unpack and crash-safe saving."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, fixture, run_cli, sha256

from ckpttool import latest_checkpoint, save_checkpoint
from ckpttool.formats import open_checkpoint
from ckpttool.formats.torch_zip import torch_save_to
from ckpttool.formats.values import StorageReader

G, D = "gpt_sovits/logs_s2_v2/G_233333333333.pth", "gpt_sovits/logs_s2_v2/D_233333333333.pth"


def _copy_with(src: Path, out: Path, mtime: float, **counters: Any) -> Path:
    """A copy of a fixture whose counters say another epoch/step (read and written with ckpttool)."""
    ckpt = open_checkpoint(src)
    with StorageReader() as reader:
        root = reader.materialise(ckpt.root)
    root.update(counters)
    for opt in [v for v in root.values() if isinstance(v, dict) and "param_groups" in v]:
        for entry in opt["state"].values():
            if "step" in entry and "adam_step" in counters:
                entry["step"] = torch.tensor(float(counters["adam_step"]))
    root.pop("adam_step", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        torch_save_to(fh, root)
    os.utime(out, (mtime, mtime))
    return out


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """logs/exp/logs_s2_v2 with G/D at epochs 10, 12 (D truncated), 11, and a stale latest pair at epoch 3."""
    folder = tmp_path / "logs" / "exp" / "logs_s2_v2"
    now = time.time()
    for tag, epoch, age in (
        ("1000", 10, 300),
        ("3000", 12, 100),
        ("2000", 11, 200),
        ("233333333333", 3, 900),
    ):
        for role, src in (("G", fixture(G)), ("D", fixture(D))):
            _copy_with(src, folder / f"{role}_{tag}.pth", now - age, iteration=epoch, adam_step=epoch * 2)
    d = folder / "D_3000.pth"
    d.write_bytes(d.read_bytes()[: d.stat().st_size // 2])  # the crash during the newest save
    shutil.copyfile(fixture("gpt_sovits/config.json"), tmp_path / "logs" / "exp" / "config.json")
    return tmp_path / "logs" / "exp"


def test_latest_skips_truncated_and_stale(run_dir: Path) -> None:
    res = latest_checkpoint(run_dir)
    assert res.chosen is not None
    assert [p.name for p in res.chosen.paths] == ["G_2000.pth", "D_2000.pth"]
    r = run_cli("latest", run_dir)
    assert r.code == 0
    assert r.stdout.splitlines() == [str(p) for p in res.chosen.paths]  # plain paths, for scripts
    assert "D_3000.pth" in r.stderr and "truncated" in r.stderr
    # what GPT-SoVITS itself will load (by the digits of the path), and the command that fixes it
    assert "will resume from D_233333333333.pth, G_233333333333.pth (epoch 3, Adam step 6)" in r.stderr
    assert "8 epochs (epoch 11 -> 3) lost; run: ckpttool fix" in r.stderr
    doc = run_cli("latest", run_dir, "--json").json()
    assert doc["schema"] == "ckpttool.latest/2" and doc["chosen"][0].endswith("G_2000.pth")
    (pred,) = doc["predictions"]
    assert pred["trainer"] == "gpt-sovits-s2" and pred["outcome"] == "stale" and not pred["ok"]
    assert [Path(s["path"]).name for s in pred["loads"]] == ["D_233333333333.pth", "G_233333333333.pth"]
    assert any(s.get("path", "").endswith("D_3000.pth") for s in doc["skipped"])
    assert "*" in run_cli("latest", run_dir, "--table").stdout


def test_latest_with_nothing_valid_exits_1(tmp_path: Path) -> None:
    (tmp_path / "G_1.pth").write_bytes(b"PK\x03\x04 broken")
    r = run_cli("latest", tmp_path)
    assert r.code == 1 and r.stdout == ""
    assert run_cli("latest", tmp_path / "missing").code == 3


def test_latest_in_lightning_dirs(tmp_path: Path) -> None:
    ckdir = tmp_path / "logs_s1_v2" / "ckpt"
    src = fixture("lightning/epoch=3-step=120.ckpt")
    now = time.time()
    _copy_with(src, ckdir / "epoch=3-step=120.ckpt", now - 100)
    _copy_with(src, ckdir / "epoch=5-step=200.ckpt", now - 50, epoch=5, global_step=200)
    (ckdir / "epoch=6-step=240.ckpt").write_bytes(b"")  # an empty file from a full disk
    res = latest_checkpoint(tmp_path)
    assert res.chosen is not None and res.chosen.paths[0].name == "epoch=5-step=200.ckpt"
    assert any(c.path.name == "epoch=6-step=240.ckpt" and not c.ok for c in res.candidates)


def test_check_gate(run_dir: Path, tmp_path: Path) -> None:
    # GPT-SoVITS sorts by the digits in the path: the stale 233333333333 pair (epoch 3) wins over G_2000 (11)
    r = run_cli("check", run_dir)
    assert r.code == 1, r.stdout
    text = " ".join(r.stdout.split())  # long lines wrap to fit the terminal
    assert "outcome stale" in text and "8 epochs (epoch 11 -> 3) lost" in text
    assert "newest complete state" in text and "G_2000.pth" in text and "NOT ready" in text
    config = run_dir / "config.json"
    config.write_text(config.read_text().replace('"epochs": 8', '"epochs": 100'))
    for role in "GD":  # with the stale pair and the broken D_3000 moved away, the trainer resumes G/D_2000
        folder = run_dir / "logs_s2_v2"
        (folder / f"{role}_233333333333.pth").rename(tmp_path / f"{role}_233333333333.pth")
        (folder / f"{role}_3000.pth").rename(tmp_path / f"{role}_3000.pth")
    r = run_cli("check", run_dir)
    assert r.code == 0, r.stdout
    assert "resumes-with-drift — " in r.stdout and "G_2000.pth" in r.stdout and "ready to resume" in r.stdout
    # a v1 checkpoint against the run's v2 config
    r = run_cli(
        "check", fixture("gpt_sovits/variants/G_v1.pth"), "--config", fixture("gpt_sovits/config.json")
    )
    assert r.code == 1 and "contradicts" in r.stdout
    # a bundle without optimizer state, required
    bundle = tmp_path / "bundle.pth"
    ckpt = open_checkpoint(fixture("seed_bundle.pth"))
    with StorageReader() as reader:
        root = reader.materialise(ckpt.root)
    root.pop("optimizer_g")
    root.pop("optimizer_d")
    with open(bundle, "wb") as fh:
        torch_save_to(fh, root)
    r = run_cli("check", bundle, "--require", "optimizer", "--json")
    assert r.code == 1
    failed = {c["name"] for c in r.json()["checks"] if c["status"] == "fail"}
    assert "require" in failed
    assert run_cli("check", fixture("seed_bundle.pth"), "--require", "optimizer", "--verify").code == 0


def test_prune_dry_run_lists_exactly_what_goes(run_dir: Path) -> None:
    folder = run_dir / "logs_s2_v2"
    before = {p.name: sha256(p) for p in folder.iterdir()}
    r = run_cli("prune", run_dir, "--keep", "1", "--dry-run", "--json")
    assert r.code == 0
    doc = r.json()
    assert sorted(Path(p).name for p in doc["delete"]) == ["D_1000.pth", "G_1000.pth"]
    kept = {Path(p).name for k in doc["keep"] for p in k["paths"]}
    assert {
        "G_2000.pth",
        "D_2000.pth",
        "G_233333333333.pth",
    } <= kept  # newest valid, the trainer's latest file
    assert {p.name: sha256(p) for p in folder.iterdir()} == before  # a dry run touches nothing
    assert run_cli("prune", run_dir, "--keep", "1").code == 0
    assert not (folder / "G_1000.pth").exists() and (folder / "G_2000.pth").exists()
    assert (folder / "D_3000.pth").exists()  # unreadable files are left alone


def test_pack_and_unpack_verify(run_dir: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "run.tar"
    r = run_cli("pack", run_dir, "-o", pkg, "--json")
    assert r.code == 0, r.stderr
    names = [f["name"] for f in r.json()["manifest"]["files"]]
    assert names == ["G_2000.pth", "D_2000.pth", "config.json"]
    out = tmp_path / "restored"
    r = run_cli("unpack", pkg, "-o", out)
    assert r.code == 0 and "verified" in r.stdout
    assert sha256(out / "G_2000.pth") == sha256(run_dir / "logs_s2_v2" / "G_2000.pth")
    assert run_cli("unpack", pkg, "-o", out).code == 2  # refuses to overwrite without --force
    assert run_cli("pack", run_dir, "-o", pkg).code == 2
    # damage in transit is caught
    data = bytearray(pkg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    r = run_cli("unpack", bad, "-o", tmp_path / "other")
    assert r.code in (1, 3) and not (tmp_path / "other" / "G_2000.pth").exists()


def test_unpack_refuses_path_traversal(tmp_path: Path) -> None:
    import io
    import tarfile

    pkg = tmp_path / "evil.tar"
    manifest = {"schema": "ckpttool.pack/1", "files": [{"name": "../escape.pth", "size": 1, "sha256": "0"}]}
    with tarfile.open(pkg, "w") as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("ckpttool-manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("../escape.pth")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    r = run_cli("unpack", pkg, "-o", tmp_path / "out")
    assert r.code == 3 and "malformed entry" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "escape.pth").exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


SAVER = """
import sys, torch
from ckpttool import save_checkpoint
path = sys.argv[1]
i = 0
while True:
    i += 1
    save_checkpoint({"model": {"w": torch.full((1_500_000,), float(i))}, "step": i}, path)
    print(i, flush=True)
"""


def test_sigkill_during_atomic_save_never_leaves_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "G_latest.pth"
    save_checkpoint({"model": {"w": torch.zeros(1_500_000)}, "step": 0}, target)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for attempt in range(12):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one save finished, the next one is in flight
        time.sleep(0.005 * (attempt % 5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = open_checkpoint(target)  # the final name always holds a complete checkpoint
        step = ckpt.root["step"]
        with StorageReader() as reader:
            w = reader.tensor(ckpt.root["model"]["w"])
        assert torch.all(w == float(step))
        assert latest_checkpoint(tmp_path).chosen is not None
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert all(p.name.startswith(".") for p in leftovers)  # hidden, and ignored by latest/prune


def test_json_schemas_of_the_workflow_commands_are_documented(run_dir: Path, tmp_path: Path) -> None:
    from test_docs import _documented_keys

    docs = {
        "ckpttool.latest/2": run_cli("latest", run_dir, "--json").json(),
        "ckpttool.check/2": run_cli("check", run_dir, "--json").json(),
        "ckpttool.fix/1": run_cli("fix", run_dir, "--dry-run", "--json").json(),
        "ckpttool.prune/1": run_cli("prune", run_dir, "--dry-run", "--json").json(),
        "ckpttool.pack/1": run_cli("pack", run_dir, "-o", tmp_path / "p.tar", "--json").json(),
    }
    for schema, doc in docs.items():
        assert doc["schema"] == schema
        assert set(doc) == _documented_keys(schema), schema


def test_check_without_verify_does_not_import_torch() -> None:
    from conftest import run_subprocess

    r = run_subprocess("check", fixture("seed_bundle.pth"), "--require", "optimizer",
                       pre="import sys; sys.modules['torch'] = None")  # fmt: skip
    assert r.code == 0, r.stderr
