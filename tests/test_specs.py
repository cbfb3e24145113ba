"""Architecture specs reproduce the published figures, recognise real layouts and explain config mismatches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import ROOT, fixture, run_cli

from ckpttool.errors import ConfigError
from ckpttool.formats import open_checkpoint
from ckpttool.specs import expr as ex
from ckpttool.specs import get_spec, load_spec_file
from ckpttool.specs.match import check_config, fingerprint


def _figures(family: str, version: str | None = None, **overrides: object) -> tuple[int, int, int, int]:
    spec = get_spec(family)
    values = spec.defaults(version)
    values.update(overrides)
    tensors = spec.expand(values)
    params = [t for t in tensors if not t.buffer]
    buffers = [t for t in tensors if t.buffer]
    return len(params), sum(t.numel for t in params), len(buffers), sum(t.numel for t in buffers)


@pytest.mark.parametrize(
    ("version", "tensors", "params"),
    [
        ("v1", 772, 51_272_448),
        ("v2", 772, 51_310_080),
        ("v2Pro", 777, 79_428_096),
        ("v2ProPlus", 777, 98_338_432),
    ],
)
def test_gpt_sovits_generator_figures(version: str, tensors: int, params: int) -> None:
    assert _figures("gpt-sovits-s2-g", version) == (tensors, params, 4, 1_573_889)


@pytest.mark.parametrize(
    ("version", "tensors", "params"),
    [
        ("v1", 111, 46_747_132),
        ("v2", 111, 46_747_132),
        ("v2Pro", 147, 63_189_440),
        ("v2ProPlus", 147, 63_189_440),
    ],
)
def test_gpt_sovits_discriminator_figures(version: str, tensors: int, params: int) -> None:
    assert _figures("gpt-sovits-s2-d", version) == (tensors, params, 0, 0)


def test_vits_figures() -> None:
    assert _figures("vits-g") == (838, 36_321_072, 0, 0)  # ljs_base
    assert _figures("vits-g", gin_channels=256, n_speakers=109) == (858, 39_700_208, 0, 0)  # vctk_base
    assert _figures("vits-g", use_sdp=False) == (564, 35_349_761, 0, 0)  # ljs_nosdp
    assert _figures("vits-d") == (111, 46_747_132, 0, 0)


def _dependent(version: str, key: str) -> list[str]:
    spec = get_spec("gpt-sovits-s2-g")
    return [
        t.name
        for t in spec.expand(spec.defaults(version))
        if any(key in t.atoms(d) for d in range(len(t.shape)))
    ]


def test_config_dependence_counts() -> None:
    inter = _dependent("v2", "inter_channels")
    assert len(inter) == 17
    assert {"enc_p.proj.weight", "enc_q.proj.bias", "dec.conv_pre.weight", "flow.flows.6.post.bias"} <= set(
        inter
    )
    gin = _dependent("v2", "gin_channels")
    assert len(gin) == 8
    assert set(gin) == {
        "dec.cond.weight", "enc_q.enc.cond_layer.weight_v", "ref_enc.fc.fc.weight", "ref_enc.fc.fc.bias",
        *(f"flow.flows.{i}.enc.cond_layer.weight_v" for i in (0, 2, 4, 6)),
    }  # fmt: skip
    # Pro adds sv_emb.weight/.bias, ge_to512.weight and prelu.weight (ge_to512.bias is [512] whatever gin is)
    assert len(_dependent("v2Pro", "gin_channels")) == 12


def test_migration_facts_are_in_the_spec() -> None:
    spec = get_spec("gpt-sovits-s2-g")
    by_name = {t.name: t for t in spec.expand(spec.defaults("v2"))}
    assert by_name["enc_p.proj.weight"].chunks == (0, ("m.x0", "m.x1", "logs.x0", "logs.x1"))
    assert by_name["enc_q.proj.bias"].chunks == (0, ("m.x0", "m.x1", "logs.x0", "logs.x1"))
    assert by_name["dec.conv_pre.weight"].chunks == (1, ("x0", "x1"))
    assert by_name["enc_q.enc.cond_layer.weight_v"].chunks == (0, tuple(str(i) for i in range(32)))
    assert by_name["enc_q.enc.in_layers.0.weight_v"].chunks == (0, ("tanh", "sigmoid"))
    # a Flip reverses the channels between couplings: old channels end up at the end of each half in 2 and 6
    assert by_name["flow.flows.2.pre.weight"].align == ((1, "end"),)
    assert by_name["flow.flows.4.post.bias"].align == ((0, "start"),)
    assert by_name["dec.ups.0.weight_v"].axes == ("in", "out", "kernel")
    assert by_name["dec.ups.0.weight_g"].shape == (512, 1, 1)  # transposed conv: g follows the input side
    assert by_name["dec.ups.0.weight_g"].follows == "dec.ups.0.weight_v"
    assert by_name["flow.flows.2.post.weight"].zero_init and not by_name["flow.flows.2.pre.weight"].zero_init
    assert by_name["quantizer.vq.layers.0._codebook.embed"].buffer
    assert by_name["enc_p.proj.weight"].exprs == ("2 * inter_channels", "hidden_channels", "1")


@pytest.mark.parametrize("version", ["v1", "v2", "v2Pro", "v2ProPlus"])
@pytest.mark.parametrize("inter", [192, 256])
def test_fingerprint_round_trip(version: str, inter: int) -> None:
    spec = get_spec("gpt-sovits-s2-g")
    values = {**spec.defaults(version), "inter_channels": inter}
    shapes = {t.name: t.shape for t in spec.expand(values)}
    fp = fingerprint(shapes)
    assert fp is not None and (fp.family, fp.version) == ("gpt-sovits-s2-g", version)
    assert fp.complete and not fp.conflicts and not fp.constants
    assert fp.inferred["inter_channels"] == inter
    assert fp.inferred["gin_channels"] == (1024 if "Pro" in version else 512)
    assert fp.inferred["hidden_channels"] == 192 and fp.inferred["n_layers"] == 6
    assert fp.inferred["upsample_kernel_sizes"] == values["upsample_kernel_sizes"]


def test_export_without_enc_q_is_partial_not_broken() -> None:
    spec = get_spec("gpt-sovits-s2-g")
    shapes = {t.name: t.shape for t in spec.expand(spec.defaults("v2")) if not t.name.startswith("enc_q.")}
    fp = fingerprint(shapes)
    assert fp is not None and fp.partial == ["export without enc_q (inference weights)"]
    assert not fp.missing


def _model_shapes(rel: str) -> dict[str, tuple[int, ...]]:
    root = open_checkpoint(fixture(rel)).root
    sd = root.get("model") or root.get("weight")
    return {k: tuple(v.shape) for k, v in sd.items()}


TINY = {"inter_channels": 4, "hidden_channels": 4, "filter_channels": 8, "gin_channels": 8, "n_layers": 2}


@pytest.mark.parametrize(
    ("rel", "family", "version", "expect"),
    [
        ("gpt_sovits/logs_s2_v2/G_233333333333.pth", "gpt-sovits-s2-g", "v2", TINY),
        ("gpt_sovits/variants/G_v1.pth", "gpt-sovits-s2-g", "v1", TINY),
        ("gpt_sovits/variants/G_inter256.pth", "gpt-sovits-s2-g", "v2", {**TINY, "inter_channels": 256}),
        ("gpt_sovits/variants/G_inter192_ddp.pth", "gpt-sovits-s2-g", "v2", {**TINY, "inter_channels": 192}),
        ("gpt_sovits/SoVITS_weights_v2/demo_e8_s144.pth", "gpt-sovits-s2-g", "v2", TINY),
        ("gpt_sovits/SoVITS_weights_v2Pro/demo_e8_s144.pth", "gpt-sovits-s2-g", "v2Pro", {**TINY, "gin_channels": 16}),
        ("gpt_sovits/logs_s2_v2/D_233333333333.pth", "gpt-sovits-s2-d", "v2", {}),
        ("vits/D_2000.pth", "vits-d", None, {}),
    ],
)  # fmt: skip
def test_fingerprint_of_fixtures(rel: str, family: str, version: str | None, expect: dict[str, int]) -> None:
    hint = "vits" if rel.startswith("vits/") else "gpt-sovits-s2"
    fp = fingerprint(_model_shapes(rel), hint=hint)
    assert fp is not None
    assert (fp.family, fp.version) == (family, version)
    assert not fp.missing and not fp.unexpected and not fp.conflicts
    for key, value in expect.items():
        assert fp.inferred[key] == value, key
    assert fp.prefix == ("module." if "ddp" in rel else "")


def test_inspect_reports_family_and_implied_config() -> None:
    r = run_cli("inspect", fixture("gpt_sovits/variants/G_inter256.pth"), "--json")
    assert r.code == 0, r.stderr
    (arch,) = r.json()["architectures"]
    assert arch["family"] == "gpt-sovits-s2-g" and arch["version"] == "v2" and arch["network"] == "G"
    assert arch["inferred_config"]["inter_channels"] == 256
    text = run_cli("inspect", fixture("gpt_sovits/variants/G_inter256.pth")).stdout
    assert "architecture  G: gpt-sovits-s2-g v2" in text and "inter_channels=256" in text


def _config(tmp_path: Path, **model: object) -> Path:
    cfg = json.loads(fixture("gpt_sovits/config.json").read_text())
    cfg["model"].update(model)
    path = tmp_path / "s2.json"
    path.write_text(json.dumps(cfg))
    return path


G_FILE = "gpt_sovits/logs_s2_v2/G_233333333333.pth"


def test_matching_config_exits_0() -> None:
    r = run_cli("inspect", fixture(G_FILE), "--config", fixture("gpt_sovits/config.json"))
    assert r.code == 0, r.stdout
    assert "every tensor shape agrees" in r.stdout


def test_config_beside_the_run_is_found_automatically() -> None:
    doc = run_cli("inspect", fixture(G_FILE), "--json").json()
    assert doc["architectures"][0]["config_source"].endswith("gpt_sovits/config.json")
    assert doc["architectures"][0]["config_check"]["ok"] is True


@pytest.mark.parametrize(("key", "value", "count"), [("inter_channels", 6, 17), ("gin_channels", 16, 8)])
def test_mismatching_config_exits_1_and_names_the_key(
    tmp_path: Path, key: str, value: int, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one mismatch a line: wide enough that none wraps
    r = run_cli("inspect", fixture(G_FILE), "--config", _config(tmp_path, **{key: value}))
    assert r.code == 1
    lines = [ln for ln in r.stdout.splitlines() if " dim " in ln and "but the config gives" in ln]
    assert len({ln.split()[0] for ln in lines}) == count
    assert all(key in ln for ln in lines)
    assert f"{key}: config {value}, checkpoint" in r.stdout
    doc = run_cli("inspect", fixture(G_FILE), "--config", _config(tmp_path, **{key: value}), "--json").json()
    check = doc["architectures"][0]["config_check"]
    assert check["ok"] is False and check["keys"][key]["tensors"] == count
    assert all(m["config_keys"] == [key] for m in check["mismatches"])


def test_set_override_and_embedded_config() -> None:
    r = run_cli("inspect", fixture(G_FILE), "--set", "model.inter_channels=8")
    assert r.code == 1 and "inter_channels: config 8, checkpoint 4" in r.stdout
    # the export carries its own HParams config, which matches its weights
    doc = run_cli("inspect", fixture("gpt_sovits/SoVITS_weights_v2/demo_e8_s144.pth"), "--json").json()
    assert doc["architectures"][0]["config_source"] == "config"
    assert doc["architectures"][0]["config_check"]["ok"] is True


def test_yaml_config_and_bad_config_errors(tmp_path: Path) -> None:
    cfg = json.loads(fixture("gpt_sovits/config.json").read_text())
    yml = tmp_path / "s2.yaml"
    yml.write_text("model:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in cfg["model"].items()) +
                   "data:\n  filter_length: 16\n")  # fmt: skip
    assert run_cli("inspect", fixture(G_FILE), "--config", yml).code == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{model: [")
    r = run_cli("inspect", fixture(G_FILE), "--config", bad)
    assert r.code == 2 and r.stderr.count("\n") == 1 and "not a valid JSON or YAML config" in r.stderr
    r = run_cli("inspect", fixture(G_FILE), "--set", "inter_channels")
    assert r.code == 2 and "expected KEY=VALUE" in r.stderr
    r = run_cli("inspect", fixture(G_FILE), "--config", tmp_path / "missing.json")
    assert r.code == 2 and "config file not found" in r.stderr


@pytest.mark.parametrize(
    "text",
    ["__import__('os').system('x')", "().__class__", "open('f')", "[x for x in range(3)]", "lambda: 1"],
)
def test_expressions_cannot_reach_python(text: str) -> None:
    with pytest.raises(ex.ExprError):
        ex.evaluate(text, {})


def test_docs_worked_example_adds_a_family(tmp_path: Path) -> None:
    """The YAML in docs/specs.md's worked example is a working spec: adding a family is adding data."""
    doc = (ROOT / "docs" / "specs.md").read_text()
    match = re.search(r"```yaml\n(family: tiny-tts-g.*?)```", doc, re.S)
    assert match, "docs/specs.md lost its worked example"
    path = tmp_path / "tiny.yaml"
    path.write_text(match.group(1))
    spec = load_spec_file(path)
    tensors = spec.expand(spec.defaults())
    shapes = {t.name: t.shape for t in tensors}
    fp = fingerprint(shapes, specs={spec.family: spec})
    assert fp is not None and fp.family == "tiny-tts-g" and fp.inferred["hidden"] == 64
    wrong = check_config(spec, shapes, {"model": {"hidden": 32}}, fp)
    assert not wrong.ok and {m.keys[0] for m in wrong.mismatches} == {"hidden"}


def test_malformed_spec_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("family: x\n")
    with pytest.raises(ConfigError, match="malformed spec"):
        load_spec_file(path)


def test_generator_writes_a_run_for_any_config(tmp_path: Path) -> None:
    """fixtures/make_fixtures.py --run: spec-driven G/D with 4-group AdamW in logs/<exp>/logs_s2_<v>/."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "fixtures" / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    exp = tmp_path / "logs" / "exp"
    config, g_file, d_file = gen.write_run(exp, "v2Pro", {"inter_channels": 8, "n_layers": 4})
    assert g_file == exp / "logs_s2_v2Pro" / "G_8.pth" and config == exp / "config.json"
    doc = run_cli("inspect", g_file, "--json").json()
    (arch,) = doc["architectures"]
    assert (arch["version"], arch["inferred_config"]["inter_channels"], arch["inferred_config"]["n_layers"]) == (
        "v2Pro", 8, 4)  # fmt: skip
    assert arch["config_check"]["ok"] and arch["config_source"] == str(config.resolve())
    (opt,) = doc["optimizers"]
    assert len(opt["groups"]) == 4 and opt["aligned"]
    assert "the shapes say G: gpt-sovits-s2-g v2Pro" in doc["pieces"]["version"]["detail"]
    d_doc = run_cli("inspect", d_file, "--json").json()
    assert d_doc["architectures"][0]["family"] == "gpt-sovits-s2-d"
    assert d_doc["architectures"][0]["expected"] == 147


def test_version_mismatch_is_named_as_such() -> None:
    r = run_cli(
        "inspect", fixture("gpt_sovits/variants/G_v1.pth"), "--config", fixture("gpt_sovits/config.json")
    )
    assert r.code == 1
    assert "version: config v2, checkpoint v1 (2 tensor(s))" in r.stdout
    assert (
        "enc_p.text_embedding.weight dim 0 is 322 (a v1 size), but the config gives 732 (version='v2')"
        in r.stdout
    )
