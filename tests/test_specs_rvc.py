"""RVC architecture specs (rvc-g, rvc-d): the published figures, key-for-key equality with upstream's state
dicts, naming from shapes alone, diff explanations, config checks, exports checked against their own config,
and no confusion with GPT-SoVITS or VITS."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rvc_files
from conftest import fixture, run_cli

from ckpttool.formats import open_checkpoint
from ckpttool.specs import expr as ex
from ckpttool.specs import get_spec
from ckpttool.specs.match import fingerprint

# Facts about upstream's state dicts, not code (tests/data/rvc_state_dicts.json): for every generator class
# under every published config and both discriminators, the sha256 of the state_dict's "key<TAB>[shape]"
# listing in order, recorded by instantiating RVC's classes (research notes rvc.md §0, rvc_state_dicts/), and
# the full listing of v2 48k f0. The spec's expansion must reproduce them key for key.
UPSTREAM = json.loads((Path(__file__).parent / "data" / "rvc_state_dicts.json").read_text())["variants"]

# (label, tensors, parameters, export tensors, export parameters): research notes rvc.md §2.2, verified there by
# instantiating the upstream classes with the published configs (no buffers in any of them).
GENERATORS = [
    ("v1-32k-f0", 619, 36_294_338, 516, 27_471_170),
    ("v1-32k-nof0", 606, 36_225_600, 503, 27_402_432),
    ("v1-40k-f0", 560, 36_360_514, 457, 27_439_042),
    ("v1-40k-nof0", 549, 36_289_088, 446, 27_367_616),
    ("v1-48k-f0", 619, 36_400_834, 516, 27_479_362),
    ("v1-48k-nof0", 606, 36_323_904, 503, 27_402_432),
    ("v2-32k-f0", 560, 36_880_706, 457, 28_057_538),
    ("v2-32k-nof0", 549, 36_813_376, 446, 27_990_208),
    ("v2-40k-f0", 560, 36_458_818, 457, 27_537_346),
    ("v2-40k-nof0", 549, 36_387_392, 446, 27_465_920),
    ("v2-48k-f0", 560, 37_638_466, 457, 28_716_994),
    ("v2-48k-nof0", 549, 37_567_040, 446, 28_645_568),
]


def _figures(family: str, version: str, drop: str = "\0") -> tuple[int, int, int]:
    """(tensors, parameters, buffers) of the spec's expansion at the published values, without ``drop.*``."""
    spec = get_spec(family)
    tensors = [t for t in spec.expand(spec.defaults(version)) if not t.name.startswith(drop)]
    return len(tensors), sum(t.numel for t in tensors), sum(1 for t in tensors if t.buffer)


@pytest.mark.parametrize(("version", "tensors", "params", "export_tensors", "export_params"), GENERATORS)
def test_generator_figures(
    version: str, tensors: int, params: int, export_tensors: int, export_params: int
) -> None:
    assert _figures("rvc-g", version) == (tensors, params, 0)
    assert _figures("rvc-g", version, drop="enc_q.") == (export_tensors, export_params, 0)


@pytest.mark.parametrize(("version", "tensors", "params"), [("v1", 129, 54_968_286), ("v2", 165, 71_410_594)])
def test_discriminator_figures(version: str, tensors: int, params: int) -> None:
    assert _figures("rvc-d", version) == (tensors, params, 0)


def _listing(family: str, version: str) -> str:
    spec = get_spec(family)
    return "".join(
        f"{t.name}\t[{', '.join(map(str, t.shape))}]\n" for t in spec.expand(spec.defaults(version))
    )


@pytest.mark.parametrize("variant", sorted(UPSTREAM))
def test_expansion_is_upstreams_state_dict_key_for_key(variant: str) -> None:
    family, version = ("rvc-d", variant[2:]) if variant.startswith("D_") else ("rvc-g", variant)
    text = _listing(family, version)
    if "keys" in UPSTREAM[variant]:  # the full listing: a failure shows the first differing key
        assert text.splitlines() == [f"{k}\t[{', '.join(map(str, s))}]" for k, s in UPSTREAM[variant]["keys"]]
    assert hashlib.sha256(text.encode()).hexdigest() == UPSTREAM[variant]["sha256"]
    assert text.count("\n") == UPSTREAM[variant]["tensors"]


def test_enc_p_is_first_in_v1_and_last_in_v2() -> None:
    """v2 deletes and re-creates enc_p in the subclass (models.py:744-745), so it registers last."""
    v1 = _listing("rvc-g", "v1-40k-f0").splitlines()
    v2 = _listing("rvc-g", "v2-40k-f0").splitlines()
    assert v1[0].startswith("enc_p.emb_phone.weight\t[192, 256]") and v1[-1].startswith("emb_g.weight")
    assert v2[0].startswith("dec.m_source.l_linear.weight") and v2[-1].startswith("enc_p.proj.bias")


def _shapes(version: str, drop: str = "\0", **overrides: Any) -> dict[str, tuple[int, ...]]:
    spec = get_spec("rvc-g")
    values = rvc_files.values("rvc-g", version, **overrides)
    return {t.name: t.shape for t in spec.expand(values) if not t.name.startswith(drop)}


def test_v2_with_enc_p_first_is_recognised_too() -> None:
    """v2 files from the older infer/lib/infer_pack code register enc_p first; matching is by name."""
    shapes = _shapes("v2-40k-f0")
    old_order = {k: v for k, v in shapes.items() if k.startswith("enc_p.")}
    old_order |= {k: v for k, v in shapes.items() if not k.startswith("enc_p.")}
    assert next(iter(old_order)) == "enc_p.emb_phone.weight" != next(iter(shapes))
    fp = fingerprint(old_order)
    assert fp is not None and (fp.family, fp.version) == ("rvc-g", "v2-40k-f0") and fp.complete


@pytest.mark.parametrize("version", [g[0] for g in GENERATORS])
def test_shapes_alone_name_the_published_config(version: str) -> None:
    fp = fingerprint(_shapes(version))
    assert fp is not None and (fp.family, fp.version) == ("rvc-g", version)
    assert fp.complete and not fp.conflicts and not fp.constants
    model_version, _, f0 = version.split("-")
    assert fp.inferred["model_version"] == model_version and fp.inferred["if_f0"] == int(f0 == "f0")
    assert fp.inferred["inter_channels"] == 4 and fp.inferred["n_layers"] == 2
    assert (
        fp.inferred["upsample_kernel_sizes"] == get_spec("rvc-g").versions[version]["upsample_kernel_sizes"]
    )
    # an export has no enc_q; v1 32k and 48k without f0 then have identical shapes and get the generic label
    export = fingerprint(_shapes(version, drop="enc_q."))
    assert export is not None and export.partial == ["export without enc_q (inference weights)"]
    assert export.version == ("v1-nof0" if version in ("v1-32k-nof0", "v1-48k-nof0") else version)


def test_unpublished_upsampling_gets_the_class_label() -> None:
    fp = fingerprint(
        _shapes("v2-f0", upsample_rates=[8, 8, 2, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4, 4])
    )
    assert fp is not None and fp.version == "v2-f0" and fp.complete
    assert fp.values["upsample_rates"][1:] == [8, 2, 2, 2]  # rates[0] never shows in a shape
    fp = fingerprint(_shapes("v1-nof0", upsample_kernel_sizes=[20, 16, 4, 4]))
    assert fp is not None and fp.version == "v1-nof0"


def test_slices_of_list_variables_become_solvable_elements() -> None:
    text = ex.simplify_text("2 * prod(upsample_rates[(0) + 1:])", (("upsample_rates", 4),))
    assert text == "2 * (upsample_rates[1] * upsample_rates[2] * upsample_rates[3])"
    assert ex.atoms(ex.parse(text)) == {"upsample_rates[1]", "upsample_rates[2]", "upsample_rates[3]"}
    assert ex.simplify_text("prod(r[3:])", (("r", 3),)) == "1"


# --- generated files ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rvc")
    out = {
        f"G {v}": rvc_files.write_train(root / v / "G_400.pth", "rvc-g", v)
        for v in ("v1-48k-f0", "v2-48k-f0", "v2-32k-f0", "v2-48k-nof0")
    }
    out |= {f"D {v}": rvc_files.write_train(root / f"d{v}" / "D_400.pth", "rvc-d", v) for v in ("v1", "v2")}
    out["config v1-48k"] = rvc_files.write_config(root / "cfg" / "v1_48k.json", "v1-48k-f0")
    out["config v2-48k"] = rvc_files.write_config(root / "cfg" / "v2_48k.json", "v2-48k-f0")
    return out


def test_inspect_names_family_and_version(files: dict[str, Path]) -> None:
    for key, head in [
        ("G v2-48k-f0", "architecture  G: rvc-g v2-48k-f0"),
        ("G v2-48k-nof0", "architecture  G: rvc-g v2-48k-nof0"),
        ("G v1-48k-f0", "architecture  G: rvc-g v1-48k-f0"),
        ("D v1", "architecture  D: rvc-d v1"),
        ("D v2", "architecture  D: rvc-d v2"),
    ]:
        r = run_cli("inspect", files[key])
        assert r.code == 0, r.stdout
        assert head in r.stdout, r.stdout
        if key.startswith("G"):
            assert "profile  rvc-train" in r.stdout
    doc = run_cli("inspect", files["G v2-48k-f0"], "--json").json()
    (arch,) = doc["architectures"]
    assert (arch["family"], arch["version"], arch["matched"], arch["expected"]) == (
        "rvc-g",
        "v2-48k-f0",
        488,
        488,
    )
    assert arch["inferred_config"]["upsample_kernel_sizes"] == [24, 20, 4, 4]
    assert "the shapes say G: rvc-g v2-48k-f0" in doc["pieces"]["version"]["detail"]


# Which config key accounts for each shape change between v1 48k and v2 48k (configs/v1/48k.json: rates
# [10,6,2,2,2], kernels [16,16,4,4,4]; configs/v2/48k.json: [12,10,2,2], [24,20,4,4]; 256 vs 768 phone features).
V1_V2_48K = {
    "enc_p.emb_phone.weight": ["model_version"],
    "dec.noise_convs.0.weight": ["len(upsample_rates)", "upsample_rates[1]"],
    "dec.noise_convs.1.weight": ["len(upsample_rates)"],
    "dec.noise_convs.2.weight": ["len(upsample_rates)"],
    "dec.noise_convs.3.weight": ["len(upsample_rates)"],
    "dec.ups.0.weight_v": ["upsample_kernel_sizes[0]"],
    "dec.ups.1.weight_v": ["upsample_kernel_sizes[1]"],
    "dec.conv_post.weight": ["len(upsample_rates)"],
}


def test_diff_v1_against_v2_48k_explains_every_shape_change(files: dict[str, Path]) -> None:
    a, b = files["G v1-48k-f0"], files["G v2-48k-f0"]
    r = run_cli("diff", a, b, "--json")
    assert r.code == 0
    doc = r.json()
    (net,) = doc["networks"]
    assert {c["name"]: c["explained_by"] for c in net["shape_changes"]} == V1_V2_48K
    assert doc["unexplained"] == []
    summaries = {e["summary"] for e in doc["explanations"]}
    assert "len(upsample_rates) 5 -> 4 explains 5 of 8 shape changes" in summaries
    assert "model_version v1 -> v2 explains 1 of 8 shape changes" in summaries
    assert "upsample_rates[1] 6 -> 10 explains 1 of 8 shape changes" in summaries
    # the fifth stage exists in v1 only: every one-sided group is named, by RVC's reasons
    assert {g["prefix"] for g in net["only_a"]} == {"dec.ups", "dec.resblocks", "dec.noise_convs"}
    assert all(g["pattern"] and "upsample" in g["pattern"] for g in net["only_a"]) and not net["only_b"]
    assert any("version v1-48k-f0 -> v2-48k-f0 (rvc-g)" in n for n in doc["notes"])
    text = run_cli("diff", a, b)
    assert "unexplained" not in text.stdout and "dim 1: 256 -> 768 (model_version v1 -> v2)" in text.stdout
    assert run_cli("diff", a, b, "--exit-code").code == 1


def test_diff_of_sample_rates_is_explained(files: dict[str, Path]) -> None:
    doc = run_cli("diff", files["G v2-32k-f0"], files["G v2-48k-f0"], "--json").json()
    (net,) = doc["networks"]
    assert {c["name"]: c["explained_by"] for c in net["shape_changes"]} == {
        "dec.noise_convs.0.weight": ["upsample_rates[1]"],  # 2 * 8*2*2 -> 2 * 10*2*2
        "dec.ups.0.weight_v": ["upsample_kernel_sizes[0]"],
        "dec.ups.1.weight_v": ["upsample_kernel_sizes[1]"],
        "enc_q.pre.weight": ["filter_length"],  # 513 -> 1025 spectrogram channels
    }
    assert doc["unexplained"] == [] and not net["only_a"] and not net["only_b"]


def test_diff_of_f0_and_nof0_names_the_pitch_modules(files: dict[str, Path]) -> None:
    doc = run_cli("diff", files["G v2-48k-f0"], files["G v2-48k-nof0"], "--json").json()
    (net,) = doc["networks"]
    assert net["shape_changes"] == [] and not net["only_b"]
    reasons = {g["prefix"]: g["pattern"] for g in net["only_a"]}
    assert set(reasons) == {"enc_p.emb_pitch", "dec.m_source", "dec.noise_convs"}
    assert all("f0 models only" in why or "only f0 models" in why for why in reasons.values())


def test_diff_of_discriminators_names_the_v2_periods(files: dict[str, Path]) -> None:
    doc = run_cli("diff", files["D v1"], files["D v2"], "--json").json()
    (net,) = doc["networks"]
    assert [g["prefix"] for g in net["only_b"]] == ["discriminators.7", "discriminators.8"]
    assert all("RVC v2 (MultiPeriodDiscriminatorV2)" in g["pattern"] for g in net["only_b"])
    assert any("version v1 -> v2 (rvc-d)" in n for n in doc["notes"])


def test_inspect_config_of_the_other_version_exits_1(files: dict[str, Path]) -> None:
    r = run_cli("inspect", files["G v1-48k-f0"], "--config", files["config v2-48k"])
    assert r.code == 1
    assert "MISMATCH" in r.stdout
    assert "len(upsample_rates): config 4, checkpoint 5" in r.stdout
    assert "upsample_kernel_sizes[0]: config 24, checkpoint 16 (1 tensor(s))" in r.stdout
    text = " ".join(r.stdout.split())  # long mismatch lines wrap to fit the terminal
    assert (
        "dec.noise_convs.0.weight dim 2 is 96, but the config gives 80 (upsample_rates[1]=10, len(upsample_rates)=4)"
        in text
    )
    assert "dec.conv_post.weight dim 1 is 1, but the config gives 2 (len(upsample_rates)=4)" in text
    check = run_cli("inspect", files["G v1-48k-f0"], "--config", files["config v2-48k"], "--json").json()
    ck = check["architectures"][0]["config_check"]
    assert ck["ok"] is False and ck["keys"]["len(upsample_rates)"]["config"] == 4
    assert ck["unexpected"] and all(
        n.startswith(("dec.ups.4", "dec.resblocks.1", "dec.noise_convs.4")) for n in ck["unexpected"]
    )


def test_inspect_config_of_the_same_run_exits_0(files: dict[str, Path]) -> None:
    for g, cfg in (("G v1-48k-f0", "config v1-48k"), ("G v2-48k-f0", "config v2-48k")):
        r = run_cli("inspect", files[g], "--config", files[cfg])
        assert r.code == 0, r.stdout
        assert "every tensor shape agrees" in r.stdout


def test_inspect_config_with_another_width_names_the_key(files: dict[str, Path], tmp_path: Path) -> None:
    cfg = rvc_files.write_config(tmp_path / "config.json", "v2-48k-f0", inter_channels=8)
    r = run_cli("inspect", files["G v2-48k-f0"], "--config", cfg)
    assert r.code == 1
    assert "inter_channels: config 8, checkpoint 4" in r.stdout
    assert (
        "enc_p.proj.weight dim 0 is 8 = 2 * inter_channels with inter_channels=4, but the config gives 16"
        in r.stdout
    )


def test_run_config_beside_the_checkpoint_is_checked(tmp_path: Path) -> None:
    """RVC keeps the run config in logs/<exp>/config.json beside G_*.pth (webui.py:975-985)."""
    g = rvc_files.write_train(tmp_path / "logs" / "exp" / "G_400.pth", "rvc-g", "v1-48k-f0")
    rvc_files.write_config(g.parent / "config.json", "v2-48k-f0")
    r = run_cli("inspect", g, "--json")
    assert r.code == 1
    (arch,) = r.json()["architectures"]
    assert arch["config_source"].endswith("config.json") and arch["config_check"]["ok"] is False


def _check(path: Path) -> tuple[int, dict[str, Any], str]:
    r = run_cli("inspect", path, "--json")
    (arch,) = r.json()["architectures"]
    return r.code, arch, run_cli("inspect", path).stdout


def test_export_is_checked_against_its_own_config_list(tmp_path: Path) -> None:
    code, arch, _ = _check(rvc_files.write_export(tmp_path / "ok.pth", "v2-48k-f0"))
    assert code == 0 and arch["version"] == "v2-48k-f0" and arch["partial"]
    assert arch["config_source"] == "config (RVC list)" and arch["config_check"]["ok"] is True
    # the loader replaces config[-3] by emb_g's rows (infer/vc/modules.py:123): another count there is harmless
    spk = rvc_files.export_config("v2-48k-f0", spk_embed_dim=109)
    code, arch, _ = _check(rvc_files.write_export(tmp_path / "spk.pth", "v2-48k-f0", config=spk))
    assert code == 0 and arch["config_check"]["ok"] is True
    # kernels the weights do not have: the loader's load_state_dict raises a size mismatch
    wrong = rvc_files.export_config("v2-48k-f0", upsample_kernel_sizes=[20, 16, 4, 4])
    code, arch, text = _check(rvc_files.write_export(tmp_path / "kernels.pth", "v2-48k-f0", config=wrong))
    assert code == 1 and "upsample_kernel_sizes[0]: config 20, checkpoint 24" in text


def test_export_version_and_f0_keys_pick_the_class(tmp_path: Path) -> None:
    """The loader builds the class from the export's 'version' (default v1) and 'f0' (default 1) keys."""
    code, _, text = _check(rvc_files.write_export(tmp_path / "tag.pth", "v1-48k-f0", tags={"version": "v2"}))
    assert code == 1
    assert (
        "enc_p.emb_phone.weight dim 1 is 256 (a v1 size), but the config gives 768 (model_version='v2')"
        in text
    )
    code, _, text = _check(rvc_files.write_export(tmp_path / "none.pth", "v2-48k-f0", tags={"version": None}))
    assert code == 1 and "model_version: config v1, checkpoint v2" in text
    code, _, text = _check(rvc_files.write_export(tmp_path / "f0.pth", "v2-48k-nof0", tags={"f0": 1}))
    assert code == 1 and "if_f0: config 1, checkpoint 0 (11 tensor(s))" in text


def test_checked_in_export_fixture_is_named_and_agrees_with_its_config() -> None:
    doc = run_cli("inspect", fixture("rvc/assets/weights/demo_e20_s400.pth"), "--json").json()
    (arch,) = doc["architectures"]
    assert (arch["family"], arch["version"]) == ("rvc-g", "v2-40k-f0")
    assert arch["config_check"]["ok"] is True
    # the fixture's tiny attention window and single flow are reported, not mistaken for a config error
    assert arch["nonstandard_constants"]["rel_window"] == {"here": 4, "real": 10}


# --- no confusion with GPT-SoVITS or VITS ---------------------------------------------------------------------
def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    root = open_checkpoint(path).root
    sd = root.get("model") or root.get("weight")
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize(
    ("rel", "family"),
    [
        ("gpt_sovits/logs_s2_v2/G_233333333333.pth", "gpt-sovits-s2-g"),
        ("gpt_sovits/logs_s2_v2/D_233333333333.pth", "gpt-sovits-s2-d"),
        ("gpt_sovits/SoVITS_weights_v2Pro/demo_e8_s144.pth", "gpt-sovits-s2-g"),
        ("vits/G_2000.pth", "vits-g"),
        ("vits/D_2000.pth", "vits-d"),
    ],
)
def test_gpt_sovits_and_vits_files_are_not_rvc(rel: str, family: str) -> None:
    shapes = _file_shapes(fixture(rel))
    for hint in (None, "rvc"):  # VITS's and GPT-SoVITS v2's discriminators are identical: a tie, but not RVC
        fp = fingerprint(shapes, hint=hint)
        assert fp is not None and family in (fp.family, *fp.also), (hint, fp and fp.family)
        assert not any(f.startswith("rvc") for f in (fp.family, *fp.also))
    fp = fingerprint(shapes, hint=family.rsplit("-", 1)[0])
    assert fp is not None and fp.family == family
    doc = run_cli("inspect", fixture(rel), "--json").json()
    assert all(not a["family"].startswith("rvc") for a in doc["architectures"])


@pytest.mark.parametrize("version", ["v2", "v2Pro"])
def test_gpt_sovits_discriminators_stay_gpt_sovits(version: str) -> None:
    """Five and seven periods (GPT-SoVITS) against RVC's six and eight: the counts tell them apart."""
    spec = get_spec("gpt-sovits-s2-d")
    shapes = {t.name: t.shape for t in spec.expand(spec.defaults(version))}
    fp = fingerprint(shapes, hint="rvc")
    assert fp is not None and (fp.family, fp.version) == ("gpt-sovits-s2-d", version)


@pytest.mark.parametrize(("key", "version"), [("D v1", "v1"), ("D v2", "v2")])
def test_rvc_discriminators_are_not_gpt_sovits_or_vits(
    files: dict[str, Path], key: str, version: str
) -> None:
    shapes = _file_shapes(files[key])
    for hint in (None, "vits", "gpt-sovits-s2"):
        fp = fingerprint(shapes, hint=hint)
        assert fp is not None and (fp.family, fp.version) == ("rvc-d", version)


def test_rvc_generators_are_only_rvc(files: dict[str, Path]) -> None:
    shapes = _file_shapes(files["G v2-48k-f0"])
    for hint in (None, "vits", "gpt-sovits-s2"):
        fp = fingerprint(shapes, hint=hint)
        assert fp is not None and fp.family == "rvc-g" and not fp.also


@pytest.mark.parametrize("key", ["D v1", "D v2"])
def test_a_lone_rvc_discriminator_gets_the_rvc_record(files: dict[str, Path], key: str) -> None:
    """A D_<step>.pth with no G beside it and no latest-mode name: its count of sub-discriminators (7 or 9)
    names RVC's trainer, not the generic VITS-family record."""
    assert not list(files[key].parent.glob("G_*"))
    doc = run_cli("inspect", files[key], "--json").json()
    assert doc["profile"] == "rvc-train" and doc["description"].startswith("RVC training checkpoint (D)")


@pytest.mark.parametrize(("family", "version"), [("gpt-sovits-s2-d", "v2"), ("gpt-sovits-s2-d", "v2Pro")])
def test_six_or_eight_sub_discriminators_are_not_rvc(tmp_path: Path, family: str, version: str) -> None:
    """GPT-SoVITS's (and VITS's) 6 and GPT-SoVITS v2Pro's 8 sub-discriminators keep the files off RVC's record."""
    path = rvc_files.write_train(tmp_path / "D_400.pth", family, version)
    doc = run_cli("inspect", path, "--json").json()
    assert doc["profile"] == "vits-family-train"
