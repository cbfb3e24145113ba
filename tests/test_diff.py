"""`ckpttool diff`: structure, spec-based and generic explanations, values, JSON and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import fixture, run_cli, sha256
from safetensors.torch import save_file

V = "gpt_sovits/variants/"


def _diff(*args: object) -> tuple[int, dict]:
    r = run_cli("diff", *map(str, args), "--json")
    assert r.code in (0, 1), r.stderr
    doc = r.json()
    assert doc["schema"] == "ckpttool.diff/1"
    return r.code, doc


def test_inter_channels_change_is_fully_attributed() -> None:
    a, b = fixture(V + "G_inter192.pth"), fixture(V + "G_inter256.pth")
    before = (sha256(a), sha256(b))
    code, doc = _diff(a, b)
    assert code == 0
    (net,) = doc["networks"]
    assert len(net["shape_changes"]) == 17
    assert all(c["explained_by"] == ["inter_channels"] for c in net["shape_changes"])
    (expl,) = doc["explanations"]
    assert expl["summary"] == "inter_channels 192 -> 256 explains 17 of 17 shape changes"
    assert doc["unexplained"] == []
    assert doc["architectures"][0]["a"]["inferred_config"]["inter_channels"] == 192
    text = run_cli("diff", a, b).stdout
    assert "explained  inter_channels 192 -> 256 explains 17 of 17 shape changes" in text
    # the "why" cell wraps to fit the terminal: read it with the line breaks undone
    assert "dim 0: 384 -> 512 = 2 * inter_channels (inter_channels 192 -> 256)" in " ".join(text.split())
    assert run_cli("diff", a, b, "--exit-code").code == 1
    assert (sha256(a), sha256(b)) == before


def test_v1_against_v2_is_a_version_difference() -> None:
    _, doc = _diff(fixture(V + "G_v1.pth"), fixture("gpt_sovits/logs_s2_v2/G_233333333333.pth"))
    changes = {c["name"]: c for c in doc["networks"][0]["shape_changes"]}
    assert set(changes) == {"enc_p.text_embedding.weight", "ref_enc.spectral.0.fc.weight"}
    assert all(c["explained_by"] == ["version"] for c in changes.values())
    assert "322 -> 732" in changes["enc_p.text_embedding.weight"]["explanation"]
    assert doc["explanations"][0]["summary"] == "version v1 -> v2 explains 2 of 2 shape changes"
    assert any("version v1 -> v2" in n for n in doc["notes"])


def test_ddp_prefix_is_one_rename_not_hundreds_of_lines() -> None:
    a, b = fixture(V + "G_inter192.pth"), fixture(V + "G_inter192_ddp.pth")
    _, doc = _diff(a, b)
    (net,) = doc["networks"]
    assert "'module.'" in net["rename"] and "strip it" in net["rename"]
    assert net["only_a"] == [] and net["only_b"] == [] and net["common"] == 368
    text = run_cli("diff", a, b).stdout
    assert text.count("module.") == 1 and len(text.splitlines()) < 15


def test_export_against_training_file_names_the_patterns() -> None:
    _, doc = _diff(fixture("gpt_sovits/logs_s2_v2/G_233333333333.pth"),
                      fixture("gpt_sovits/SoVITS_weights_v2/demo_e8_s144.pth"))  # fmt: skip
    (group,) = doc["networks"][0]["only_a"]
    assert group["prefix"] == "enc_q" and group["count"] == 103 and "exports drop it" in group["pattern"]
    assert doc["networks"][0]["dtype_changes"] == {"float32->float16": 265}
    pieces = {c["what"]: (c["a"], c["b"]) for c in doc["pieces"]}
    assert pieces["piece optimizer"] == ("present", "absent")


def test_torch_file_against_safetensors(tmp_path: Path) -> None:
    src = fixture("plain_state_dict.pth")
    sd = torch.load(src, weights_only=True)  # our own fixture, safe to load with weights_only
    st = tmp_path / "same.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    code, doc = _diff(src, st, "--values")
    assert code == 0 and doc["differs"] is False
    assert all(v["max_abs"] == 0 and v["cosine"] == pytest.approx(1.0) for v in doc["networks"][0]["values"])
    assert "no differences" in run_cli("diff", src, st).stdout
    assert run_cli("diff", src, st, "--exit-code").code == 0


def test_values_report_movement_and_nonfinite(tmp_path: Path) -> None:
    sd = torch.load(fixture("plain_state_dict.pth"), weights_only=True)
    moved = {k: v.clone() for k, v in sd.items()}
    moved["conv.weight"] = moved["conv.weight"] + 0.5
    moved["head.weight"][0, 0] = float("nan")
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save(sd, a)
    torch.save(moved, b)
    _, doc = _diff(a, b, "--values")
    vals = {v["name"]: v for v in doc["networks"][0]["values"]}
    assert vals["conv.weight"]["max_abs"] == pytest.approx(0.5)
    assert vals["conv.weight"]["rel_l2"] > 0 and vals["conv.weight"]["cosine"] < 1
    assert vals["head.weight"]["nonfinite_a"] == 0 and vals["head.weight"]["nonfinite_b"] == 1
    assert vals["bn.running_mean"]["max_abs"] == 0
    assert doc["differs"] is True
    assert run_cli("diff", a, b, "--values", "--exit-code").code == 1


def test_generic_explanation_from_config_files(tmp_path: Path) -> None:
    """Unknown family: old/new dims are matched against changed config values, multiples included."""
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save({"model": {"enc.weight": torch.zeros(8, 3), "proj.weight": torch.zeros(16, 8)}, "step": 1}, a)
    torch.save(
        {"model": {"enc.weight": torch.zeros(12, 3), "proj.weight": torch.zeros(24, 12)}, "step": 2}, b
    )
    ca, cb = tmp_path / "a.yaml", tmp_path / "b.json"
    ca.write_text("model:\n  width: 8\n  depth: 2\n")
    cb.write_text(json.dumps({"model": {"width": 12, "depth": 2}}))
    _, doc = _diff(a, b, "--config-a", ca, "--config-b", cb)
    assert {c["what"]: (c["a"], c["b"]) for c in doc["config"]} == {"model.width": (8, 12)}
    changes = {c["name"]: c for c in doc["networks"][0]["shape_changes"]}
    assert all(c["explained_by"] == ["width"] for c in changes.values())
    assert "2*width" in changes["proj.weight"]["explanation"]
    assert doc["explanations"][0]["summary"] == "width 8 -> 12 explains 2 of 2 shape changes"
    assert {c["what"]: (c["a"], c["b"]) for c in doc["state"]}["step"] == (1, 2)


def test_unexplained_changes_are_listed(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save({"w": torch.zeros(3, 5)}, a)
    torch.save({"w": torch.zeros(3, 7)}, b)
    _, doc = _diff(a, b)
    assert doc["unexplained"] == ["w"] and doc["explanations"] == []
    assert "unexplained" in run_cli("diff", a, b).stdout


def test_unreadable_input_exits_3_with_error_document(tmp_path: Path) -> None:
    good = fixture("plain_state_dict.pth")
    r = run_cli("diff", good, fixture("truncated.pth"), "--json")
    assert r.code == 3 and r.json()["kind"] == "truncated"
    r = run_cli("diff", tmp_path / "nope.pth", good)
    assert r.code == 3 and r.stderr.count("\n") == 1
    r = run_cli("diff", good, fixture("malicious.pth"), "--json")
    assert r.code == 3 and r.json()["kind"] == "unsafe"


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("[1, 2]")
    good = fixture("plain_state_dict.pth")
    r = run_cli("diff", good, good, "--config-a", bad)
    assert r.code == 2 and "must be a mapping" in r.stderr


def test_inputs_untouched_and_copies_identical(tmp_path: Path) -> None:
    src = fixture("gpt_sovits/logs_s2_v2/G_233333333333.pth")
    copy = tmp_path / "G_copy.pth"
    shutil.copyfile(src, copy)
    code, doc = _diff(src, copy, "--values")
    assert code == 0 and doc["differs"] is False
    assert sha256(copy) == sha256(src)


def test_values_progress_reports_every_tensor() -> None:
    from ckpttool.ops.diff import diff_checkpoints

    seen: list[tuple[int, int]] = []
    a = fixture("gpt_sovits/logs_s2_v2/G_233333333333.pth")
    report = diff_checkpoints(
        a, a, values=True, progress=lambda done, total, name: seen.append((done, total))
    )
    total = report.networks[0].common
    assert seen[0] == (0, total) and seen[-1] == (total, total) and len(seen) == total + 1
