"""GPT-SoVITS v3/v4 (SynthesizerTrnV3, full and PEFT LoRA): the spec's published figures, the run folders the
trainers write (generated here from the spec at tiny size, torch.save at test time), their exports, and the real
v4 LoRA export in ../shared/cases."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import case, fixture, run_cli
from gsv_v3v4_files import CASE, TINY, Model, spec_values, state_layout, train, write_export, write_run

from ckpttool.formats import open_checkpoint
from ckpttool.interpret.trainable import trainable_names
from ckpttool.specs import get_spec
from ckpttool.specs.match import fingerprint
from ckpttool.specs.peft import peft_view
from ckpttool.trainers import get_trainer

FAMILY = "gpt-sovits-s2-g3"
REAL_EXPORT = "gsv_v4_lora/v4lora_e3_s9_l32.pth"


# --- the spec at the published size ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v3", "v4"])
def test_published_size_counts(version: str) -> None:
    """models.py:1215-1299 at s2.json's config, counted by instantiating upstream (research notes 2.2)."""
    tensors = get_spec(FAMILY).expand(spec_values(version, {}))
    params = [t for t in tensors if not t.buffer]
    buffers = [t for t in tensors if t.buffer]
    assert (len(params), sum(t.numel for t in params)) == (680, 382_821_064)
    assert (len(buffers), sum(t.numel for t in buffers)) == (5, 1_573_921)
    assert (len(tensors), sum(t.numel for t in tensors)) == (685, 384_394_985)


def test_v3_and_v4_have_identical_tensors() -> None:
    spec = get_spec(FAMILY)
    v3 = [(t.name, t.shape) for t in spec.expand(spec.defaults("v3"))]
    v4 = [(t.name, t.shape) for t in spec.expand(spec.defaults("v4"))]
    assert v3 == v4
    fp = fingerprint(dict(v4))
    assert fp is not None and fp.family == FAMILY and fp.complete
    assert fp.version is None  # the shapes cannot tell v3 from v4


@pytest.mark.parametrize(
    ("record", "rank", "tensors", "params"),
    [
        ("gpt-sovits-s2-v3", None, 443, 367_494_600),  # everything but enc_p and ssl_proj
        ("gpt-sovits-s2-v3-lora", 32, 253, 36_155_748),  # ref_enc, bridge, wns1, linear_mel, 176 adapters
    ],
)
def test_trainable_subset_at_published_size(record: str, rank: int | None, tensors: int, params: int) -> None:
    """What the records say the optimizer covers, applied to the published model (research notes 1.5, 2.3)."""
    layout = state_layout(spec_values("v4", {}), rank)
    shapes = {k: s for k, s, _ in layout}
    rule = get_trainer(record).files[0].trainable["G"]  # type: ignore[union-attr]
    names = trainable_names([k for k, _, is_param in layout if is_param], rule)
    assert (len(names), sum(math.prod(shapes[n]) for n in names)) == (tensors, params)
    if rank:  # PEFT: 861 entries, 856 parameters; only the adapters of cfm train
        assert len(layout) == 861 and sum(1 for _, _, p in layout if p) == 856
        assert sum(1 for n in names if ".lora_" in n) == 176


# --- PEFT key mapping -------------------------------------------------------------------------------------------
def test_peft_view_maps_keys_and_checks_ranks() -> None:
    shapes = {
        "cfm.base_model.model.estimator.transformer_blocks.0.attn.to_q.base_layer.weight": (16, 8),
        "cfm.base_model.model.estimator.transformer_blocks.0.attn.to_q.base_layer.bias": (16,),
        "cfm.base_model.model.estimator.transformer_blocks.0.attn.to_q.lora_A.default.weight": (4, 8),
        "cfm.base_model.model.estimator.transformer_blocks.0.attn.to_q.lora_B.default.weight": (16, 4),
        "cfm.base_model.model.estimator.transformer_blocks.0.attn.to_k.lora_A.default.weight": (2, 8),
        "cfm.base_model.model.estimator.transformer_blocks.0.attn.to_k.lora_B.default.weight": (16, 2),
        "bridge.0.weight": (8, 4, 1),
    }
    view = peft_view(shapes)
    assert view is not None and view.wrapped == ["cfm"]
    assert set(view.plain) == {
        "cfm.estimator.transformer_blocks.0.attn.to_q.weight",
        "cfm.estimator.transformer_blocks.0.attn.to_q.bias",
        "bridge.0.weight",
    }
    assert view.ranks == [2, 4] and view.rank is None
    assert view.base_shapes() == {"cfm.estimator.transformer_blocks.0.attn.to_k.weight": (16, 8)}
    assert any("different ranks" in p for p in view.problems())
    # an adapter that does not fit its base layer: lora_A's width must be the layer's input width
    bad = dict(shapes)
    bad["cfm.base_model.model.estimator.transformer_blocks.0.attn.to_q.lora_A.default.weight"] = (4, 6)
    problems = peft_view(bad).problems()  # type: ignore[union-attr]
    assert any("to_q" in p and "do not" in p for p in problems)
    assert peft_view({"bridge.0.weight": (8, 4, 1)}) is None


# --- a generated v4 LoRA run folder ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """logs/exp4 (v4 LoRA), logs/exp3 (v3 LoRA), logs/expf (v3 full fine-tune) and the exports, at TINY size."""
    root = tmp_path_factory.mktemp("gsv34")
    logs = root / "logs"
    out: dict[str, Any] = {"root": root}
    out["v4"], out["m4"], out["c4"] = write_run(logs, "exp4", "v4", TINY, rank=32, seed=4)
    out["v3"], out["m3"], out["c3"] = write_run(logs, "exp3", "v3", TINY, rank=32, seed=3)
    out["full"], out["mf"], out["cf"] = write_run(logs, "expf", "v3", TINY, rank=None, seed=3)
    out["full_export"] = write_export(root / "SoVITS_weights_v3" / "expf_e3_s9.pth", out["mf"], out["cf"])
    out["v4_export"] = write_export(root / "SoVITS_weights_v4" / "exp4_e3_s9_l32.pth", out["m4"], out["c4"])
    return out


def test_v4_lora_training_g_resumes_fully(runs: dict[str, Any]) -> None:
    path, model = runs["v4"], runs["m4"]
    assert path.parent.name == "logs_s2_v4_lora_32" and not list(path.parent.glob("D_*"))
    r = run_cli("inspect", path, "--json")
    assert r.code == 0, r.stdout
    doc = r.json()
    assert (doc["profile"], doc["verdict"]) == ("gpt-sovits-train", "full")
    (arch,) = doc["architectures"]
    assert (arch["family"], arch["version"]) == (FAMILY, "v4")
    assert arch["version_from"] == "the run folder logs_s2_v4_lora_32"
    assert arch["missing"] == arch["unexpected"] == 0 and not arch["partial"]
    assert arch["lora"]["rank"] == 32 and arch["lora"]["adapters"] == 4 * TINY["dit_depth"]
    assert arch["lora"]["base_layers"] == arch["lora"]["adapters"] and not arch["lora"]["problems"]
    assert arch["config_check"]["ok"] and arch["config_source"].endswith("exp4/config.json")
    (opt,) = doc["optimizers"]
    trainable = model.trainable()
    with_grad = [n for n in trainable if not n.startswith(("ref_enc.", "linear_mel."))]
    assert len(opt["groups"]) == 1
    assert (opt["params"], opt["state_entries"]) == (len(trainable), len(with_grad))
    assert opt["aligned"] is True and opt["alignment_method"].startswith(
        "the trainer's requires_grad parameters"
    )
    assert not any("another model" in f["message"] for f in doc["findings"])
    partial = next(f for f in doc["findings"] if f["code"] == "optimizer-partial")
    assert partial["severity"] == "info" and "ref_enc, linear_mel" in partial["message"]
    assert (
        doc["pieces"]["version"]["detail"]
        == "not stored, but the run folder logs_s2_v4_lora_32 says G: gpt-sovits-s2-g3 v4"
    )


def test_check_on_the_run_folder_passes(runs: dict[str, Any]) -> None:
    exp = runs["v4"].parent.parent
    r = run_cli("check", exp, "--json")
    assert r.code == 0, r.stdout
    doc = r.json()
    assert doc["files"] == [str(runs["v4"])]
    failed = [c for c in doc["checks"] if c["status"] == "fail"]
    assert not failed
    assert {c["name"] for c in doc["checks"] if c["status"] == "pass"} >= {
        "latest",
        "verdict",
        "config",
        "optimizer",
    }


def test_shadow_run_rebuilds_the_trainable_subset(runs: dict[str, Any]) -> None:
    """verify-resume rebuilds AdamW over the requires_grad parameters only, as the trainer does."""
    doc = run_cli("verify-resume", runs["v4"], "--steps", "2", "--json").json()
    shadow = next(c for c in doc["checks"] if c["name"] == "shadow-run")
    assert shadow["status"] == "pass" and "bit-identical" in shadow["message"]


def test_migrate_refuses_a_peft_file(runs: dict[str, Any], tmp_path: Path) -> None:
    r = run_cli(
        "migrate", runs["v4"], "-o", tmp_path / "out.pth", "--set", "model.inter_channels=8", "--dry-run"
    )
    assert r.code == 2 and "PEFT-wrapped" in r.stderr and r.stderr.count("\n") == 1


def test_an_optimizer_of_another_rank_is_caught(tmp_path: Path) -> None:
    """Same parameter count, other adapter shapes: Optimizer.load_state_dict accepts it, the first step fails."""
    path, _, _ = write_run(tmp_path / "logs", "exp", "v4", TINY, rank=32)
    other = Model("v4", TINY, 16, seed=1)
    obj = torch.load(path, weights_only=True)
    obj["optimizer"] = train(other, 3, 9)
    torch.save(obj, path)
    doc = run_cli("inspect", path, "--json").json()
    (opt,) = doc["optimizers"]
    assert opt["aligned"] is False and opt["mismatches"]
    assert {m["param"].rsplit(".", 3)[-3] for m in opt["mismatches"]} == {"lora_A", "lora_B"}
    assert doc["verdict"] == "weights-only"


def test_config_and_folder_rank_disagreeing_with_the_adapters(tmp_path: Path) -> None:
    path, _, config = write_run(tmp_path / "logs", "exp", "v4", TINY, rank=32)
    config["train"]["lora_rank"] = "16"
    (tmp_path / "logs" / "exp" / "config.json").write_text(json.dumps(config))
    moved = path.parent.with_name("logs_s2_v4_lora_16")
    path.parent.rename(moved)
    r = run_cli("inspect", moved / path.name)
    assert r.code == 1
    assert "lora_rank: config 16, checkpoint 32" in r.stdout
    text = " ".join(r.stdout.split())  # long warnings wrap to fit the terminal
    assert "the run folder logs_s2_v4_lora_16 is for rank 16, but the adapters are rank 32" in text


def test_diff_v3_lora_against_v4_lora_names_the_version(runs: dict[str, Any]) -> None:
    r = run_cli("diff", runs["v3"], runs["v4"], "--json", "--exit-code")
    assert r.code == 1
    doc = r.json()
    assert doc["differs"] is True
    assert {"what": "G version", "a": "v3", "b": "v4"} in doc["state"]
    (net,) = doc["networks"]
    assert not net["only_a"] and not net["only_b"] and not net["shape_changes"]
    assert any("version v3 -> v4" in n and "logs_s2_v3_lora_32" in n for n in doc["notes"])
    same = run_cli("diff", runs["v4"], runs["v4"], "--exit-code")
    assert same.code == 0 and "no differences" in same.stdout


def test_diff_full_v3_against_lora_maps_the_peft_keys(runs: dict[str, Any]) -> None:
    r = run_cli("diff", runs["full"], runs["v3"], "--json", "--values")
    assert r.code == 0
    (net,) = r.json()["networks"]
    n_plain = len(runs["mf"].state)
    assert net["common"] == n_plain and not net["only_a"] and not net["shape_changes"]
    assert (
        "B is PEFT-wrapped" in net["peft"]
        and "as cfm.estimator.transformer_blocks.0.attn.to_q.weight" in net["peft"]
    )
    (adapters,) = net["only_b"]
    assert adapters["count"] == 2 * 4 * TINY["dit_depth"] and "LoRA adapters" in adapters["pattern"]
    assert adapters["prefix"] == "cfm.base_model.model"
    compared = {v["name"] for v in net["values"]}
    assert "cfm.estimator.transformer_blocks.0.attn.to_q.weight" in compared and len(compared) == n_plain


def test_full_v3_export_inspects_with_the_version_guess(runs: dict[str, Any]) -> None:
    r = run_cli("inspect", runs["full_export"], "--json")
    assert r.code == 0
    doc = r.json()
    assert (doc["profile"], doc["version"], doc["verdict"]) == ("gpt-sovits-export", "v3", "weights-only")
    (arch,) = doc["architectures"]
    assert (arch["family"], arch["version"], arch["missing"]) == (FAMILY, "v3", 0)
    guess = next(n for n in doc["notes"] if "guesses the version" in n)
    # a tiny file is under process_ckpt's first size threshold, so GPT-SoVITS inference takes it for v1
    assert "its size" in guess and ": v1 (" in guess and "a guess" in guess and "The file says v3" in guess


def test_generated_lora_export_is_a_legitimate_partial_file(runs: dict[str, Any]) -> None:
    doc = run_cli("inspect", runs["v4_export"], "--json").json()
    assert (doc["format"], doc["version"], doc["verdict"]) == ("gpt-sovits-tagged-zip", "v4", "weights-only")
    (arch,) = doc["architectures"]
    assert arch["partial"] == ["LoRA export (trainable adapters and buffers only)"] and arch["missing"] == 0
    assert arch["lora"]["base_layers"] == 0 and arch["lora"]["rank"] == 32


# --- the real v4 LoRA export (../shared/cases) -----------------------------------------------------------------
def test_real_v4_lora_export() -> None:
    path = case(REAL_EXPORT)
    r = run_cli("inspect", path, "--json")
    assert r.code == 0
    doc = r.json()
    assert (doc["profile"], doc["version"], doc["verdict"]) == ("gpt-sovits-export", "v4", "weights-only")
    (arch,) = doc["architectures"]
    assert (arch["family"], arch["version"]) == (FAMILY, "v4")
    assert arch["version_from"] == "the file header (GPT-SoVITS tag 04)"
    assert arch["lora"] == {
        "wrapped": ["cfm"], "adapters": 8, "rank": 32, "ranks": [32], "base_layers": 0, "problems": [],
    }  # fmt: skip
    assert arch["partial"] == ["LoRA export (trainable adapters and buffers only)"]
    assert arch["missing"] == arch["unexpected"] == 0 and not arch["conflicts"]
    # written at a shrunken DiT (research notes 4.5): read from its tensors, not taken for corruption
    here = {k: v["here"] for k, v in arch["nonstandard_constants"].items()}
    assert here == {"wns1_hidden": 32, "dit_dim": 64, "dit_depth": 2, "dit_heads": 2, "dit_dim_head": 32}


@pytest.fixture(scope="module")
def case_size_g(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A v4 LoRA training G at the size the real export was written at."""
    path, _, _ = write_run(tmp_path_factory.mktemp("case") / "logs", "v4lora", "v4", CASE, rank=32)
    return path


def test_real_export_against_a_v4_lora_training_g(case_size_g: Path) -> None:
    path = case(REAL_EXPORT)
    r = run_cli("diff", path, case_size_g, "--json")
    assert r.code == 0
    doc = r.json()
    (net,) = doc["networks"]
    exported = open_checkpoint(path).root["weight"]
    assert net["common"] == len(exported) and not net["only_a"] and not net["shape_changes"]
    assert net["dtype_changes"] == {"float16->float32": len(exported)}
    groups = {g["prefix"]: g for g in net["only_b"]}
    assert set(groups) == {"enc_p", "ssl_proj", "cfm.estimator"}
    assert all("frozen" in g["pattern"] for g in groups.values())
    assert any("fp16 copies" in n for n in doc["notes"])
    assert "both are PEFT-wrapped" in net["peft"]
    text = run_cli("diff", path, case_size_g).stdout
    assert "dtype    float16->float32 on 98 tensors" in text


# --- what must not change -----------------------------------------------------------------------------------
def test_v2_files_are_still_sovits_v2() -> None:
    for rel in ("gpt_sovits/logs_s2_v2/G_233333333333.pth", "gpt_sovits/SoVITS_weights_v2/demo_e8_s144.pth"):
        doc = run_cli("inspect", fixture(rel), "--json").json()
        (arch,) = doc["architectures"]
        assert (arch["family"], arch["version"], arch["version_from"], arch["lora"]) == (
            "gpt-sovits-s2-g", "v2", "shapes", None)  # fmt: skip
    doc = run_cli("inspect", fixture("gpt_sovits/logs_s2_v2/G_233333333333.pth"), "--json").json()
    (opt,) = doc["optimizers"]
    assert opt["aligned"] and opt["alignment_method"] == "the trainer's known param-group layout"
