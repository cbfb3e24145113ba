"""``--set`` keys and values are checked against what the specs and the config know; configs in the encodings
GPT-SoVITS users have (UTF-8, UTF-8 with BOM, GBK) are read and the encoding is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import fixture, run_cli, sha256

G_TRAIN = "gpt_sovits/logs_s2_v2/G_233333333333.pth"


def _stderr_line(r: object) -> str:
    err = r.stderr  # type: ignore[attr-defined]
    assert err.count("\n") == 1, err  # one line, never a traceback
    return str(err)


@pytest.mark.parametrize("command", ["inspect", "check", "migrate"])
def test_a_typo_in_a_key_is_refused_with_did_you_mean(command: str, tmp_path: Path) -> None:
    target = fixture(G_TRAIN) if command != "check" else fixture(G_TRAIN).parent
    extra = ["-o", str(tmp_path / "o.pth")] if command == "migrate" else []
    r = run_cli(command, target, *extra, "--set", "model.inter_chanels=256")
    assert r.code == 2
    line = _stderr_line(r)
    assert "unknown config key 'model.inter_chanels'" in line
    assert "did you mean model.inter_channels?" in line
    assert not (tmp_path / "o.pth").exists()


def test_an_empty_part_between_dots_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "o.pth"
    r = run_cli("migrate", fixture(G_TRAIN), "-o", out, "--set", "model..x=8")
    assert r.code == 2 and "(an empty part between dots)" in _stderr_line(r)
    assert not out.exists()  # it used to write an unchanged copy and exit 0
    r = run_cli("inspect", fixture(G_TRAIN), "--set", "model..inter_channels=8")
    assert r.code == 2 and "did you mean model.inter_channels?" in _stderr_line(r)


def test_a_bare_key_naming_one_known_key_is_read_as_it_and_said() -> None:
    r = run_cli("inspect", fixture(G_TRAIN), "--set", "inter_channels=8")
    assert r.code == 1  # the checkpoint has inter_channels 4: the override took effect
    assert "note    --set inter_channels=8: read as model.inter_channels=8" in r.stdout
    assert "inter_channels: config 8, checkpoint 4" in r.stdout
    doc = run_cli("inspect", fixture(G_TRAIN), "--set", "inter_channels=8", "--json").json()
    assert any("read as model.inter_channels=8" in n for n in doc["notes"])
    # the same key given in full carries no note
    plain = run_cli("inspect", fixture(G_TRAIN), "--set", "model.inter_channels=8")
    assert "read as" not in plain.stdout


def test_a_bare_key_of_several_known_keys_is_ambiguous(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"inter_channels": 4}, "train": {"inter_channels": 1}}))
    r = run_cli("inspect", fixture(G_TRAIN), "--config", cfg, "--set", "inter_channels=8")
    assert r.code == 2
    assert (
        "inter_channels is ambiguous; say which: model.inter_channels, train.inter_channels"
        in _stderr_line(r)
    )


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("model.inter_channels=abc", "model.inter_channels takes an integer, not 'abc' (str)"),
        ("model.inter_channels=true", "model.inter_channels takes an integer, not True (bool)"),
        ("model.upsample_rates=8", "model.upsample_rates takes a list like [3, 7, 11], not 8 (int)"),
        ("model.version=v9", "model.version takes one of v1, v2, v2Pro, v2ProPlus, v3, v4, not 'v9' (str)"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_expected_type(assignment: str, expected: str) -> None:
    r = run_cli("inspect", fixture(G_TRAIN), "--set", assignment)
    assert r.code == 2
    line = _stderr_line(r)
    assert expected in line
    assert "abcabc" not in line


def test_values_that_fit_pass_and_strings_stay_strings() -> None:
    # s2.json holds resblock as the string "1"; --set model.resblock=1 means the same
    r = run_cli("inspect", fixture(G_TRAIN), "--set", "model.resblock=1", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["architectures"][0]["config_check"]["ok"] is True


def test_a_key_only_the_config_file_has_is_accepted(tmp_path: Path) -> None:
    cfg = json.loads(fixture("gpt_sovits/config.json").read_text())
    path = tmp_path / "s2.json"
    path.write_text(json.dumps(cfg))
    assert "lr_decay" in cfg["train"]
    r = run_cli("inspect", fixture(G_TRAIN), "--config", path, "--set", "train.lr_decay=0.99")
    assert r.code == 0, r.stderr
    r = run_cli("inspect", fixture(G_TRAIN), "--config", path, "--set", "train.lr_decay=fast")
    assert r.code == 2 and "train.lr_decay takes a number, not 'fast'" in _stderr_line(r)


def test_a_spec_dimension_that_is_not_an_integer_is_not_doubled(tmp_path: Path) -> None:
    """A config file (not --set) with a string where a size belongs reaches the spec expansion: the message
    names the expression, not the folded value twice ("dim 'abcabc' is 'abcabc'")."""
    cfg = json.loads(fixture("gpt_sovits/config.json").read_text())
    cfg["model"]["inter_channels"] = "abc"
    path = tmp_path / "s2.json"
    path.write_text(json.dumps(cfg))
    r = run_cli("inspect", fixture(G_TRAIN), "--config", path)
    line = _stderr_line(r)
    assert r.code == 2
    assert line.count("abcabc") == 1 and "not an integer; not a number: model.inter_channels='abc'" in line


# --- encodings -------------------------------------------------------------------------------------------------
def _gsv_config_bytes(encoding: str, bom: bool = False) -> bytes:
    cfg = json.loads(fixture("gpt_sovits/config.json").read_text())
    cfg["data"]["exp_dir"] = "logs/我的声音"  # what a Chinese experiment name puts in s2.json
    data = json.dumps(cfg, ensure_ascii=False, indent=2).encode(encoding)
    return (b"\xef\xbb\xbf" if bom else b"") + data


@pytest.mark.parametrize(
    ("encoding", "bom", "named"), [("gbk", False, "GBK"), ("utf-8", True, "UTF-8 with BOM")]
)
def test_configs_in_gbk_or_with_a_bom_are_read_and_the_encoding_is_named(
    tmp_path: Path, encoding: str, bom: bool, named: str
) -> None:
    path = tmp_path / "s2.json"
    path.write_bytes(_gsv_config_bytes(encoding, bom))
    r = run_cli("inspect", fixture(G_TRAIN), "--config", path)
    assert r.code == 0, r.stderr
    assert f"config check  {path} (read as {named}): every tensor shape agrees" in r.stdout
    assert f"note    config {path} read as {named}" in r.stdout


def test_a_plain_utf8_config_gets_no_encoding_note(tmp_path: Path) -> None:
    path = tmp_path / "s2.json"
    path.write_bytes(_gsv_config_bytes("utf-8"))
    r = run_cli("inspect", fixture(G_TRAIN), "--config", path)
    assert r.code == 0 and "read as" not in r.stdout


def test_a_gbk_config_beside_the_run_is_read_too(tmp_path: Path) -> None:
    """GPT-SoVITS's own logs/<exp>/config.json, written with the locale's encoding (GBK on Chinese Windows)."""
    run = tmp_path / "logs" / "exp"
    (run / "logs_s2_v2").mkdir(parents=True)
    g = run / "logs_s2_v2" / "G_233333333333.pth"
    g.write_bytes(fixture(G_TRAIN).read_bytes())
    (run / "config.json").write_bytes(_gsv_config_bytes("gbk"))
    r = run_cli("inspect", g, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["architectures"][0]["config_source"] == f"{run / 'config.json'} (read as GBK)"


def test_a_config_no_encoding_decodes_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "s2.json"
    path.write_bytes(b'{"model": {"version": "\xff\xfe\x80"}}')
    before = sha256(fixture(G_TRAIN))
    for args in (["inspect"], ["migrate", "--dry-run"]):
        r = run_cli(args[0], fixture(G_TRAIN), *args[1:], "--config", path)
        line = _stderr_line(r)
        assert r.code == 2
        assert "cannot read the config as UTF-8, UTF-8 with BOM or GBK (byte 0xff at offset 23)" in line
        assert "codec can't decode" not in line
    assert sha256(fixture(G_TRAIN)) == before
