"""Each output agrees with itself and with the other commands: the verdict line with the config check, prune's
``--every`` with the file names, migrate's messages with what it wrote, inspect with convert, and exit codes
with what happened (issue 16, item 4). Every test runs the real CLI on fixtures or files made here."""

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
from conftest import ROOT, fixture, run_cli

from ckpttool.formats import open_checkpoint
from ckpttool.formats.torch_zip import torch_save_to
from ckpttool.formats.values import StorageReader

G_TRAIN = "gpt_sovits/logs_s2_v2/G_233333333333.pth"
D_TRAIN = "gpt_sovits/logs_s2_v2/D_233333333333.pth"


def _copy_with(src: Path, out: Path, mtime: float, **counters: Any) -> Path:
    """A copy of a fixture whose top-level counters are replaced (read and written with ckpttool)."""
    ckpt = open_checkpoint(src)
    with StorageReader() as reader:
        root = reader.materialise(ckpt.root)
    root.update(counters)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        torch_save_to(fh, root)
    os.utime(out, (mtime, mtime))
    return out


def _gsv_run(tmp_path: Path, names: dict[int, int]) -> Path:
    """logs/exp/logs_s2_v2 with a G/D pair per {number in the name: epoch stored}, as GPT-SoVITS s2 saves:
    ``G_{global_step}.pth`` holding ``iteration`` = the epoch (s2_train.py:514-535)."""
    folder = tmp_path / "logs" / "exp" / "logs_s2_v2"
    old = time.time() - 3600
    for i, (number, epoch) in enumerate(sorted(names.items())):
        for role, src in (("G", G_TRAIN), ("D", D_TRAIN)):
            _copy_with(fixture(src), folder / f"{role}_{number}.pth", old + i, iteration=epoch)
    return folder


def _last_line(text: str) -> str:
    """The verdict line: the last one before the one-line summary (``no problems``, ``1 problem: ...``)."""
    return text.rstrip("\n").splitlines()[-2]


# (a) ----------------------------------------------------------------------------------------------------------
def test_the_last_line_says_the_config_contradiction() -> None:
    r = run_cli("inspect", fixture(G_TRAIN), "--set", "model.inter_channels=8")
    assert r.code == 1
    last = _last_line(r.stdout)
    assert not last.startswith("verdict: full")
    assert last.startswith("verdict: config mismatch — G does not fit ")
    assert "(inter_channels config 8, checkpoint 4): a trainer with this config cannot load it" in last
    # with a config that fits, the verdict is the file's
    ok = run_cli("inspect", fixture(G_TRAIN))
    assert ok.code == 0 and _last_line(ok.stdout).startswith("verdict: full — ")


def test_the_last_line_says_a_required_piece_is_absent() -> None:
    r = run_cli("inspect", fixture(G_TRAIN), "--require", "rng")
    assert r.code == 1
    assert _last_line(r.stdout).startswith("verdict: problems — required piece(s) absent: rng")


# (b) ----------------------------------------------------------------------------------------------------------
def test_prune_every_counts_the_numbers_in_gpt_sovits_file_names(tmp_path: Path) -> None:
    folder = _gsv_run(tmp_path, {2000: 1, 4000: 2, 6000: 3, 8000: 4})
    r = run_cli("prune", folder, "--keep", "1", "--every", "4000", "--dry-run")
    assert r.code == 0, r.stderr
    kept = [line for line in r.stdout.splitlines() if line.startswith("  keep")]
    assert len(kept) == 2 and "G_8000.pth" in kept[0] and "(newest valid)" in kept[0]
    assert "G_4000.pth" in kept[1] and "(number in the name 4000, a multiple of 4000)" in kept[1]
    assert (
        "--every 4000 counts the number in the file names (G_8000.pth -> 8000; the file stores epoch 4"
        in r.stdout
    )
    doc = run_cli("prune", folder, "--keep", "1", "--every", "4000", "--dry-run", "--json").json()
    assert doc["unit"] == "name"
    assert sorted(Path(p).name for p in doc["delete"]) == [
        "D_2000.pth",
        "D_6000.pth",
        "G_2000.pth",
        "G_6000.pth",
    ]
    assert run_cli("prune", folder, "--keep", "1", "--every", "4000").code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "D_4000.pth",
        "D_8000.pth",
        "G_4000.pth",
        "G_8000.pth",
    ]


def test_prune_every_counts_the_stored_epoch_when_the_names_are_epochs(tmp_path: Path) -> None:
    folder = _gsv_run(tmp_path, {1: 1, 2: 2, 3: 3, 4: 4})
    r = run_cli("prune", folder, "--keep", "1", "--every", "2", "--dry-run", "--json")
    assert r.json()["unit"] == "epoch"
    assert sorted(Path(p).name for p in r.json()["delete"]) == ["D_1.pth", "D_3.pth", "G_1.pth", "G_3.pth"]
    text = run_cli("prune", folder, "--keep", "1", "--every", "2", "--dry-run").stdout
    assert "--every 2 counts the epoch stored in each file (the file names use it too)" in text


# (c) ----------------------------------------------------------------------------------------------------------
def test_migrate_to_safetensors_does_not_claim_optimizer_moments(tmp_path: Path) -> None:
    out = tmp_path / "w.safetensors"
    r = run_cli(
        "migrate", fixture(G_TRAIN), "-o", out, "--set", "model.inter_channels=8", "--to", "safetensors"
    )
    assert r.code == 0, r.stderr
    assert "optimizer, counters and config are left out" in r.stdout
    assert "carried over" not in r.stdout and "  optimizer  " not in r.stdout
    doc = run_cli("inspect", out, "--json").json()
    assert doc["pieces"]["optimizer"]["status"] == "absent"  # what was written agrees with what was said
    js = run_cli("migrate", fixture(G_TRAIN), "-o", tmp_path / "j.safetensors", "--set",
                 "model.inter_channels=8", "--to", "safetensors", "--json").json()  # fmt: skip
    assert js["optimizer_results"] == []
    # to .pth the optimizer is migrated and said so
    r = run_cli("migrate", fixture(G_TRAIN), "-o", tmp_path / "o.pth", "--set", "model.inter_channels=8")
    assert "moments of 364 parameter(s) carried over" in r.stdout and "left out" not in r.stdout


# (d) ----------------------------------------------------------------------------------------------------------
def test_shrinking_says_nothing_new_and_growing_names_the_init() -> None:
    shrink = run_cli(
        "migrate", fixture(G_TRAIN), "--set", "model.inter_channels=2", "--dry-run", "--json"
    ).json()
    partial = [t for n in shrink["networks"] for t in n["tensors"] if t["action"] == "partial"]
    assert partial and all(
        t["dst_shape"][i] <= t["src_shape"][i] for t in partial for i in range(len(t["dst_shape"]))
    )
    assert {t["init"] for t in partial} == {"none (only cut: every kept entry comes from the source)"}
    text = run_cli("migrate", fixture(G_TRAIN), "--set", "model.inter_channels=2", "--dry-run").stdout
    assert "N(0, 0.01)" not in text
    grow = run_cli(
        "migrate", fixture(G_TRAIN), "--set", "model.inter_channels=8", "--dry-run", "--json"
    ).json()
    rows = {t["name"]: t for n in grow["networks"] for t in n["tensors"]}
    assert (
        rows["enc_p.proj.weight"]["init"] == "N(0, 0.01) on new outputs"
    )  # [8,4,1] -> [16,4,1]: outputs only
    assert rows["dec.conv_pre.weight"]["init"] == "0 on new inputs"  # [8,4,7] -> [8,8,7]: inputs only


# (e) ----------------------------------------------------------------------------------------------------------
def test_inspect_and_convert_agree_on_a_torchscript_file(tmp_path: Path) -> None:
    doc = run_cli("inspect", fixture("torchscript.pt"), "--json").json()
    assert doc["profile"] == "torchscript"
    assert doc["pieces"]["model"]["status"] == "present"
    assert doc["verdict"] == "weights-only"
    counted = sum(n["tensors"] for n in doc["networks"])
    out = tmp_path / "ts.safetensors"
    r = run_cli("convert", fixture("torchscript.pt"), "-o", out, "--to", "safetensors", "--allow-global",
                "__torch__.ckpttool_fixture_scripted.TinyScripted", "--allow-global", "torch.jit.load")  # fmt: skip
    assert r.code == 0, r.stderr
    assert f"(safetensors, {counted} tensors)" in r.stdout and counted == 3
    text = run_cli("inspect", fixture("torchscript.pt")).stdout
    assert "no network weights" not in text
    # the safety verdict stays: torch.load would run its code
    assert doc["safety"]["verdict"] == "unverified"


# (f) ----------------------------------------------------------------------------------------------------------
def test_a_truncated_file_written_seconds_ago_may_still_be_being_written(tmp_path: Path) -> None:
    path = tmp_path / "G_9000.pth"
    shutil.copyfile(fixture("truncated.pth"), path)
    r = run_cli("inspect", path)
    assert r.code == 3 and r.stderr.count("\n") == 1
    assert "cut short (crash or full disk)" in r.stderr
    assert "it may still be being written: wait for the save to finish" in r.stderr
    old = time.time() - 3600
    os.utime(path, (old, old))
    r = run_cli("inspect", path)
    assert r.code == 3 and "cut short (crash or full disk)" in r.stderr
    assert "still being written" not in r.stderr


# (g) ----------------------------------------------------------------------------------------------------------
def test_pack_with_nothing_valid_is_a_finding_not_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("pack", empty, "-o", tmp_path / "a.tar")
    assert r.code == 1 and "no complete, readable checkpoint to pack" in r.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copyfile(fixture("truncated.pth"), broken / "G_100.pth")
    r = run_cli("pack", broken, "-o", tmp_path / "b.tar")
    assert r.code == 1 and "no complete, readable checkpoint to pack" in r.stderr
    folder = _gsv_run(tmp_path, {2000: 1, 4000: 2})
    r = run_cli(
        "pack",
        folder,
        "-o",
        tmp_path / "c.tar",
        "--file",
        folder / "G_2000.pth",
        "--file",
        folder / "D_4000.pth",
    )
    assert r.code == 1 and r.stderr.count("\n") == 1
    assert "nothing valid to pack: G_2000.pth has no D file with the same name" in r.stderr
    assert not (tmp_path / "c.tar").exists()
    r = run_cli(
        "pack",
        folder,
        "-o",
        tmp_path / "d.tar",
        "--file",
        folder / "G_2000.pth",
        "--file",
        folder / "D_2000.pth",
    )
    assert r.code == 0, r.stderr


# (h) ----------------------------------------------------------------------------------------------------------
def test_ctrl_c_exits_130_with_one_line() -> None:
    """A real SIGINT while ``inspect`` runs (the child gets the default SIGINT handling even where this
    test runs with SIGINT ignored); it used to become click's Abort and exit 2."""
    code = (
        "import os, signal\n"
        "import ckpttool.cli.inspect_cmd as cmd\n"
        "def interrupted(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    signal.pause()\n"
        "cmd.inspect_path = interrupted\n"
        "from ckpttool.cli import main\n"
        f"main(['inspect', {str(fixture(G_TRAIN))!r}])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    # click ends the terminal's "^C" line first; then the one line
    assert proc.stderr.strip("\n") == "ckpttool: interrupted (Ctrl-C)"


# (i) ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["seed_bundle.pth", "vits/G_2000.pth"])
def test_the_tiny_gan_recipe_on_a_file_it_does_not_fit_is_one_clear_line(name: str) -> None:
    r = run_cli(
        "verify-resume", fixture(name), "--recipe", "ckpttool.recipes.tiny_gan:recipe", "--steps", "2"
    )
    assert r.code == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "internal error" not in r.stderr
    assert f"recipe ckpttool.recipes.tiny_gan does not fit {Path(name).name}: " in r.stderr


def test_the_tiny_gan_recipe_still_runs_on_its_own_checkpoint(tmp_path: Path) -> None:
    from ckpttool.recipes.tiny_gan import make_checkpoint

    g, d = make_checkpoint(tmp_path, steps=2)
    r = run_cli(
        "verify-resume", g, d, "--recipe", "ckpttool.recipes.tiny_gan:recipe", "--steps", "2", "--json"
    )
    assert r.code == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["level"] == "model-run" and doc["recipe_run"]["identical"] is True
