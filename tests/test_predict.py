"""What the trainer will do with a run folder: ``check``/``latest`` predictions and ``fix``, on run folders
built at test time the way each trainer lays them out (tiny files generated from the bundled fixtures)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import fixture, run_cli, sha256
from test_runs import D, G, _copy_with

from ckpttool.predict.environment import Environment, effective_weights_only
from ckpttool.predict.pick import digits_of_path, regex_max

NOW = time.time()


def _gsv_run(tmp_path: Path, saves: dict[str, int], epochs: int = 100) -> Path:
    """logs/exp/logs_s2_v2 with a G/D pair per tag (tag -> epoch), the run config at logs/exp/config.json."""
    folder = tmp_path / "logs" / "exp" / "logs_s2_v2"
    for i, (tag, epoch) in enumerate(saves.items()):
        for role, src in (("G", fixture(G)), ("D", fixture(D))):
            _copy_with(src, folder / f"{role}_{tag}.pth", NOW - 100 * (len(saves) - i), iteration=epoch,
                       adam_step=epoch * 2)  # fmt: skip
    config = json.loads(fixture("gpt_sovits/config.json").read_text())
    config["train"]["epochs"] = epochs
    (tmp_path / "logs" / "exp" / "config.json").write_text(json.dumps(config))
    return tmp_path / "logs" / "exp"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _prediction(run: Path, *extra: str) -> dict:
    doc = run_cli("check", run, "--json", *extra).json()
    (pred,) = doc["predictions"]
    return pred


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the pick rules --------------------------------------------------------------------------------------------
def test_digits_of_the_whole_path_include_the_folder(tmp_path: Path) -> None:
    """so-vits-svc's ./logs/32k: G_0.pth sorts as 320 and G_1000.pth as 321000; with leading zeros the folder
    digits flip the order (utils.latest_checkpoint_path)."""
    folder = tmp_path / "logs" / "32k"
    folder.mkdir(parents=True)
    for n in ("G_0.pth", "G_1000.pth", "G_800.pth"):
        (folder / n).write_bytes(b"x")
    assert digits_of_path(folder, "G_*.pth", "logs").path == folder / "G_1000.pth"
    zeros = tmp_path / "logs" / "44k"
    zeros.mkdir()
    for n in ("G_0001.pth", "G_2.pth"):
        (zeros / n).write_bytes(b"x")
    assert digits_of_path(zeros, "G_*.pth", "logs").path == zeros / "G_0001.pth"  # 440001 > 442
    plain = tmp_path / "logs" / "exp"
    plain.mkdir()
    for n in ("G_0001.pth", "G_2.pth"):
        (plain / n).write_bytes(b"x")
    assert digits_of_path(plain, "G_*.pth", "logs").path == plain / "G_2.pth"  # 1 < 2 without folder digits
    (plain / "G_latest.pth").write_bytes(b"x")
    assert "ValueError" in (digits_of_path(plain, "G_*.pth", "logs").error or "")
    assert "IndexError" in (digits_of_path(tmp_path, "D_*.pth", "logs").error or "")


def test_the_s1_regex_is_anchored_at_the_start_only(tmp_path: Path) -> None:
    """GPT_SoVITS/AR/utils get_newest_ckpt: re.match, so a .bak copy still matches; -v1 files do not."""
    for n in ("epoch=3-step=8.ckpt", "epoch=10-step=20.ckpt.bak", "epoch=11-step=22-v1.ckpt", "last.ckpt"):
        (tmp_path / n).write_bytes(b"x")
    found = regex_max(tmp_path, r"epoch=(\d+)-step=(\d+)\.ckpt")
    assert found.path == tmp_path / "epoch=10-step=20.ckpt.bak"


@pytest.mark.parametrize(
    ("setting", "torch", "lightning", "expected"),
    [
        ("disabled", "2.13.0", None, False),
        ("torch-default", "2.5.1", None, False),
        ("torch-default", "2.6.0", None, True),
        ("lightning", "2.13.0", "2.5.6", False),  # Lightning 2.4-2.5 force weights_only=False
        ("lightning", "2.13.0", "2.6.6", True),  # 2.6 leaves it to torch: True from 2.6
        ("lightning", "2.5.1", "2.6.6", False),
        ("enabled-from-2.4", "2.4.1", None, True),
    ],
)
def test_weights_only_follows_the_training_environment(setting: str, torch: str, lightning: str | None,
                                                       expected: bool) -> None:  # fmt: skip
    assert effective_weights_only(setting, Environment(torch, lightning, "test"))[0] is expected


# --- GPT-SoVITS s2 --------------------------------------------------------------------------------------------
def test_clean_run_resumes(tmp_path: Path) -> None:
    run = _gsv_run(tmp_path, {"72": 4, "144": 8})
    r = run_cli("check", run)
    assert r.code == 0, r.stdout
    pred = _prediction(run)
    # GPT-SoVITS rebuilds its ExponentialLR and steps it epoch+1 times over the saved LR: it resumes, with the
    # drift the lr-after-resume check sizes (the same number in both)
    assert pred["outcome"] == "resumes-with-drift" and pred["ok"]
    assert [Path(s["path"]).name for s in pred["loads"]] == ["D_144.pth", "G_144.pth"]
    assert pred["fix"] is None
    lr = next(c for c in run_cli("check", run, "--json").json()["checks"] if c["name"] == "lr-after-resume")
    rel = f"{lr['data']['relative_error']:+.3%}"
    assert (
        f"its rebuilt LR schedule then runs {rel} off the uninterrupted run's from epoch 9" in pred["summary"]
    )


def test_stale_latest_pair_then_fix_and_undo(tmp_path: Path) -> None:
    """G/D_233333333333 at epoch 4 beside G/D_144 at epoch 8: GPT-SoVITS resumes from epoch 4."""
    run = _gsv_run(tmp_path, {"233333333333": 4, "144": 8})
    before = _hashes(run)
    r = run_cli("check", run)
    assert r.code == 1
    text = " ".join(r.stdout.split())  # long lines wrap to fit the terminal
    assert "outcome stale" in text and "4 epochs (epoch 8 -> 4) lost" in text
    pred = _prediction(run)
    assert pred["fix"] == f"ckpttool fix {run / 'logs_s2_v2'}"
    dry = run_cli("fix", run, "--dry-run")
    assert dry.code == 0 and "dry run: nothing was changed" in dry.stdout and _hashes(run) == before
    done = run_cli("fix", run, "--json")
    assert done.code == 0, done.stdout
    doc = done.json()
    assert {Path(a["path"]).name for a in doc["actions"]} == {"G_233333333333.pth", "D_233333333333.pth"}
    assert doc["after"][0]["outcome"] == "resumes-with-drift"
    quarantine = run / "logs_s2_v2" / "ckpttool-quarantine"
    assert json.loads((quarantine / "manifest.json").read_text())["entries"]
    assert run_cli("check", run).code == 0
    assert run_cli("latest", run).stdout.splitlines()[0].endswith("G_144.pth")
    undo = run_cli("fix", run, "--undo")
    assert undo.code == 0 and undo.stdout.count("restored") == 2
    assert _hashes(run) == before  # every file back, byte-identical; the quarantine folder is gone
    assert not quarantine.exists()


def test_missing_d_falls_back_to_the_pretrained_model(tmp_path: Path) -> None:
    run = _gsv_run(tmp_path, {"144": 8})
    (run / "logs_s2_v2" / "D_144.pth").unlink()
    pred = _prediction(run)
    assert pred["outcome"] == "pretrained"
    assert "IndexError" in pred["loads"][0]["error"] and "train.pretrained_s2G" in pred["summary"]
    assert pred["fix"] is None  # nothing to move: there is no complete state
    assert run_cli("check", run).code == 1
    # latest agrees with the prediction: a G alone is no state GPT-SoVITS resumes from (it loads D first)
    doc = run_cli("latest", run, "--json").json()
    assert doc["chosen"] is None
    assert [s["reason"] for s in doc["skipped"]] == ["G_144.pth has no D file with the same name"]
    assert run_cli("latest", run).code == 1


def test_truncated_g_is_a_half_resume_then_fix_picks_the_previous_pair(tmp_path: Path) -> None:
    """D_144 loads (optimizer moments included), then G_144 fails inside the same try: GPT-SoVITS falls back
    to the pretrained weights at epoch 1 while optim_d keeps epoch-8 moments."""
    run = _gsv_run(tmp_path, {"72": 4, "144": 8})
    _truncate(run / "logs_s2_v2" / "G_144.pth")
    pred = _prediction(run)
    assert pred["outcome"] == "half-resume"
    assert pred["loads"][0]["error"] is None and "PytorchStreamReader" in pred["loads"][1]["error"]
    assert pred["newest_counters"].startswith("epoch 4")
    assert {Path(p).name for p in pred["quarantine"]} == {"G_144.pth", "D_144.pth"}
    before = _hashes(run)
    assert run_cli("fix", run).code == 0
    after = _prediction(run)
    assert after["outcome"] == "resumes-with-drift" and Path(after["loads"][1]["path"]).name == "G_72.pth"
    assert run_cli("fix", run, "--undo").code == 0 and _hashes(run) == before


def test_nothing_left_to_train(tmp_path: Path) -> None:
    run = _gsv_run(tmp_path, {"144": 8}, epochs=8)
    pred = _prediction(run)
    assert pred["outcome"] == "finished" and "train.epochs is 8" in pred["summary"]
    assert run_cli("check", run).code == 1


# --- RVC "save latest only" -----------------------------------------------------------------------------------
def test_rvc_latest_only_truncated_g(tmp_path: Path) -> None:
    """RVC rewrites G_2333333.pth in place; a full disk cuts it. D (epoch 640) is intact; RVC catches the load
    error, keeps D's resumed moments and restarts at epoch 1 from the pretrained G/D."""
    folder = tmp_path / "logs" / "exp"
    _copy_with(fixture("vits/G_2000.pth"), folder / "G_2333333.pth", NOW, iteration=640)
    _copy_with(fixture("vits/D_2000.pth"), folder / "D_2333333.pth", NOW, iteration=640)
    _truncate(folder / "G_2333333.pth")
    pred = _prediction(folder)
    assert pred["trainer"] == "rvc"
    assert pred["outcome"] == "half-resume"
    assert [Path(s["path"]).name for s in pred["loads"]] == ["D_2333333.pth", "G_2333333.pth"]
    notes = " ".join(pred["notes"])
    assert "pretrained" in pred["summary"] and "there is no complete state" in notes
    assert "intact: D_2333333.pth (epoch 640" in notes
    export = tmp_path / "assets" / "weights" / "exp_e640_s12800.pth"  # what savee wrote at epoch 640
    export.parent.mkdir(parents=True)
    shutil.copyfile(fixture("rvc/assets/weights/demo_e20_s400.pth"), export)
    assert str(export) in " ".join(_prediction(folder)["notes"])
    r = run_cli("check", folder)
    assert r.code == 1 and "use the previous checkpoint" not in r.stdout  # there is none in this mode


# --- environment and --trainer -----------------------------------------------------------------------------
def test_trainer_list_and_unknown_trainer(tmp_path: Path) -> None:
    r = run_cli("check", tmp_path, "--trainer", "list")
    assert r.code == 0 and "gpt-sovits-s2" in r.stdout and "lightning" in r.stdout


def test_trainer_root_environment_decides_weights_only(tmp_path: Path) -> None:
    """A GPT-SoVITS Windows bundle's runtime/ gives the torch the resume runs with."""
    root = tmp_path / "GPT-SoVITS"
    site = root / "runtime" / "Lib" / "site-packages"
    (site / "torch-2.5.1+cu124.dist-info").mkdir(parents=True)
    (site / "pytorch_lightning-2.6.0.dist-info").mkdir()
    run = _gsv_run(tmp_path, {"144": 8})
    pred = _prediction(run, "--trainer-root", str(root))
    assert pred["environment"] == {"torch": "2.5.1+cu124", "lightning": "2.6.0", "source": str(site)}
    pred = _prediction(run, "--torch-version", "2.6.0")
    assert pred["environment"]["torch"] == "2.6.0" and pred["weights_only"] is False  # s2 passes False


def test_quarantine_is_ignored_by_latest_prune_and_pack(tmp_path: Path) -> None:
    run = _gsv_run(tmp_path, {"233333333333": 4, "144": 8})
    assert run_cli("fix", run).code == 0
    listing = run_cli("latest", run, "--table").stdout
    assert "ckpttool-quarantine" not in listing
    plan = run_cli("prune", run, "--keep", "1", "--dry-run", "--json").json()
    assert not any("ckpttool-quarantine" in p for p in plan["delete"])


def test_fix_refuses_a_file_and_a_missing_folder(tmp_path: Path) -> None:
    r = run_cli("fix", tmp_path / "nope")
    assert r.code == 3 and r.stderr.count("\n") == 1
    f = tmp_path / "G_1.pth"
    shutil.copyfile(fixture(G), f)
    r = run_cli("fix", f)
    assert r.code == 2 and "run folder" in r.stderr


# --- so-vits-svc, coqui, tacotron2, accelerate -------------------------------------------------------------
def test_so_vits_svc_resumes_from_g_1000_although_g_0_is_newer(tmp_path: Path) -> None:
    """In ./logs/32k the digits of the whole path make G_1000.pth (321000) beat G_0.pth (320): after a resume
    that saved the newer state as G_0.pth, the next resume loads the older G_1000.pth."""
    folder = tmp_path / "logs" / "32k"
    for tag, epoch in (("1000", 1), ("0", 2)):  # G_0 was written after the resume from G_1000
        for role in "GD":
            _copy_with(fixture(f"vits/{role}_2000.pth"), folder / f"{role}_{tag}.pth", NOW - 10 * epoch,
                       iteration=epoch)  # fmt: skip
    pred = _prediction(folder)
    assert pred["trainer"] == "so-vits-svc"
    assert [Path(s["path"]).name for s in pred["loads"]] == ["G_1000.pth", "D_1000.pth"]
    assert pred["outcome"] == "stale" and pred["lost"] == "1 epoch (epoch 2 -> 1)"
    assert run_cli("latest", folder).stdout.splitlines()[0].endswith("G_0.pth")
    assert run_cli("fix", folder).code == 0
    assert [Path(s["path"]).name for s in _prediction(folder)["loads"]] == ["G_0.pth", "D_0.pth"]


def test_coqui_old_layout_and_gan_optimizers(tmp_path: Path) -> None:
    """coqui Trainer files: epoch from 'epoch' (not the config's epochs: 1000), no scheduler key in the old
    layout (the LR schedule is rebuilt), and the [disc, gen] optimizers each aligned over its part of one
    state dict."""
    from trainer_files import coqui_checkpoint

    old = coqui_checkpoint(tmp_path / "run-old" / "checkpoint_1.pth", step=1, epoch=3)
    doc = run_cli("inspect", old, "--json").json()
    pieces = doc["pieces"]
    assert doc["profile"] == "coqui-train"
    assert pieces["epoch"]["status"] == "present" and "epoch = 3" in pieces["epoch"]["detail"]
    assert pieces["scheduler"]["status"] == "rebuilt"
    optimizers = {o["path"]: o for o in doc["optimizers"]}
    assert (
        optimizers["optimizer.0"]["aligned"] and "only disc" in optimizers["optimizer.0"]["alignment_method"]
    )
    assert (
        optimizers["optimizer.1"]["aligned"]
        and "disc frozen" in optimizers["optimizer.1"]["alignment_method"]
    )
    assert doc["verdict"] == "full"
    new = coqui_checkpoint(tmp_path / "run-new" / "checkpoint_1.pth", step=1, epoch=3, with_scheduler=True)
    assert run_cli("inspect", new, "--json").json()["pieces"]["scheduler"]["status"] == "present"
    pred = _prediction(tmp_path / "run-old")
    assert pred["trainer"] == "coqui" and pred["outcome"] == "resumes"


def test_tacotron2_iteration_is_the_step(tmp_path: Path) -> None:
    from trainer_files import tacotron2_checkpoint

    ckpt = tacotron2_checkpoint(tmp_path / "out" / "checkpoint_1", iteration=1)
    doc = run_cli("inspect", ckpt, "--json").json()
    assert doc["profile"] == "tacotron2-train" and doc["verdict"] == "full"
    assert doc["pieces"]["step"]["status"] == "present" and doc["pieces"]["step"]["where"] == "iteration"
    r = run_cli("verify-resume", ckpt)
    assert r.code == 0, r.stdout
    pred = _prediction(tmp_path / "out")
    assert pred["trainer"] == "tacotron2" and pred["outcome"] == "resumes"
    assert "path you give it" in pred["loads"][0]["note"]


def test_accelerate_sorted_safetensors_keys_align(tmp_path: Path) -> None:
    """accelerate save_state: model.safetensors sorted by name, optimizer.bin in registration order. The
    order is recovered from module structure and shapes; equal shapes are reported as ambiguous, not errors;
    the Adam step is offered as the progress measure."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from torch import nn

    torch.manual_seed(0)
    layers = [nn.TransformerEncoderLayer(16, 2, 24, batch_first=True, dropout=0.0) for _ in range(11)]
    model = nn.Sequential(nn.Embedding(20, 16), *layers, nn.Linear(16, 20))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
    project = tmp_path / "proj"
    acc = Accelerator(cpu=True, project_config=ProjectConfiguration(project_dir=str(project),
                                                                    automatic_checkpoint_naming=True))  # fmt: skip
    model, opt, sched = acc.prepare(model, opt, sched)
    for _ in range(2):
        loss = model(torch.randint(0, 20, (2, 5))).pow(2).mean()
        acc.backward(loss)
        opt.step()
        sched.step()
        opt.zero_grad()
        acc.save_state()
    folder = project / "checkpoints" / "checkpoint_1"
    doc = run_cli("inspect", folder, "--json").json()
    (o,) = doc["optimizers"]
    assert o["aligned"] is True and not o["mismatches"], o
    assert (
        "module structure and shapes" in o["alignment_method"] and "order ambiguous" in o["alignment_method"]
    )
    assert doc["verdict"] == "full"
    assert "the optimizer has taken 2 steps" in doc["pieces"]["step"]["detail"]
    pred = _prediction(project)
    assert pred["trainer"] == "accelerate" and pred["outcome"] == "resumes"
    assert Path(pred["loads"][0]["path"]).name == "checkpoint_1"
    assert any("project_configuration.iteration" in n for n in pred["notes"])


def test_undo_with_nothing_in_quarantine_says_so(tmp_path: Path) -> None:
    run = _gsv_run(tmp_path, {"144": 8})
    r = run_cli("fix", run, "--undo")
    assert r.code == 0 and "nothing to undo" in r.stdout and "resumes from" not in r.stdout


def test_accelerate_without_a_prepared_scheduler_is_ready(tmp_path: Path) -> None:
    """save_state writes scheduler.bin only for prepared schedulers: none is no missing piece."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    torch.manual_seed(0)
    project = tmp_path / "proj"
    acc = Accelerator(cpu=True, project_config=ProjectConfiguration(project_dir=str(project),
                                                                    automatic_checkpoint_naming=True))  # fmt: skip
    net = torch.nn.Linear(4, 3)
    model, opt = acc.prepare(net, torch.optim.AdamW(net.parameters(), lr=1e-3))
    acc.backward(model(torch.ones(2, 4)).pow(2).mean())
    opt.step()
    acc.save_state()
    doc = run_cli("inspect", project / "checkpoints" / "checkpoint_0", "--json").json()
    assert doc["pieces"]["scheduler"]["status"] == "absent" and not doc["pieces"]["scheduler"]["required"]
    assert "scheduler.bin" in doc["pieces"]["scheduler"]["detail"]
    assert run_cli("check", project).code == 0


def test_a_loader_setting_must_be_one_ckpttool_knows() -> None:
    """A typo in a trainer record must not silently become torch's default."""
    from ckpttool.trainers.behaviour import Loader

    with pytest.raises(ValueError, match="disabled"):
        Loader(weights_only="false")
    assert Loader(weights_only="disabled").weights_only == "disabled"
