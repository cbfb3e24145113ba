"""`ckpttool diff --values`: modules ranked by relative change, --top N, --by tensor, JSON fields and --plot.

The two checkpoints are built here with dyadic values (exact in float32), so the expected relative changes are
computed independently with Fractions: ‖b−a‖/‖a‖ = √(Σ(b−a)² / Σa²).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from conftest import fixture, run_cli

from ckpttool.ops.value_change import module_of, part_of

# (key, shape) of the A side; values are (i - n/2) / 8 for element i (exact in float32)
LAYOUT = [
    ("enc.layers.0.conv.weight", (4, 4)),
    ("enc.layers.0.conv.bias", (4,)),
    ("enc.layers.1.conv.weight", (4, 4)),
    ("enc.layers.1.conv.bias", (4,)),
    ("dec.proj.weight", (3, 4)),
    ("dec.proj.bias", (3,)),
    ("emb.weight", (5, 2)),
    ("gate.bias", (3,)),
    ("odd<&>.weight", (2,)),
]


def _a() -> dict[str, torch.Tensor]:
    out = {}
    for name, shape in LAYOUT:
        n = math.prod(shape)
        out[name] = ((torch.arange(n, dtype=torch.float32) - n // 2 + 0.5) / 8).reshape(shape)
    out["gate.bias"] = torch.zeros(3)
    return out


def _b(a: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    b = {k: v.clone() for k, v in a.items()}
    b["enc.layers.1.conv.weight"] *= 1.5  # the whole layer scaled by 1.5: relative change 0.5
    b["enc.layers.1.conv.bias"] *= 1.5
    b["dec.proj.weight"] *= 1.01  # about 0.01 (1.01 is not exact in float32; the test computes it exactly)
    b["dec.proj.bias"] *= 1.01
    b["enc.layers.0.conv.weight"][0, 0] += 0.25  # one value of one tensor
    b["gate.bias"] += 1.0  # zeros in A: moved "from 0"
    b["odd<&>.weight"] *= 1.25  # a key with characters HTML must escape; relative change 0.25
    return b  # emb.weight unchanged


def _exact_rel(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], names: list[str]) -> float:
    num = sum(
        (Fraction(float(y)) - Fraction(float(x))) ** 2
        for n in names
        for x, y in zip(a[n].flatten(), b[n].flatten(), strict=True)
    )
    den = sum(Fraction(float(x)) ** 2 for n in names for x in a[n].flatten())
    return math.sqrt(num / den)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    a = _a()
    b = _b(a)
    pa, pb = tmp_path / "A.pth", tmp_path / "B.pth"
    torch.save({"model": a, "iteration": 1}, pa)
    torch.save({"model": b, "iteration": 2}, pb)
    return pa, pb, a, b


ORDER = ["gate", "enc.layers.1", "odd<&>", "enc.layers.0", "dec.proj"]


def test_module_and_part_of_a_key() -> None:
    assert module_of("enc_p.encoder.attn_layers.0.conv_q.weight") == "enc_p.encoder.attn_layers.0"
    assert module_of("dec.resblocks.3.convs1.0.weight_v") == "dec.resblocks.3"
    assert module_of("flow.flows.2.enc.in_layers.1.bias") == "flow.flows.2"
    assert module_of("enc_p.proj.weight") == "enc_p.proj"
    assert module_of("ssl_proj.bias") == "ssl_proj"
    assert module_of("weight") == ""
    assert module_of("emb.0") == "emb"  # a numeric last component is the parameter, not a layer
    assert (
        part_of("enc_p.encoder_text.attn_layers.0.conv_q.weight") == "enc_p" and part_of("weight") == "weight"
    )


def test_json_modules_ranked_with_exact_relative_changes(pair: tuple) -> None:
    pa, pb, a, b = pair
    r = run_cli("diff", pa, pb, "--values", "--json", "--top", "1")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["schema"] == "ckpttool.diff/1"
    (net,) = doc["networks"]
    mods = net["modules"]
    assert [m["module"] for m in mods] == [*ORDER, "emb"]  # --top never cuts the JSON
    by = {m["module"]: m for m in mods}
    assert by["gate"]["rel_change"] is None and by["gate"]["from_zero"] is True
    assert by["gate"]["norm_a"] == 0 and by["gate"]["norm_diff"] == pytest.approx(math.sqrt(3))
    assert by["enc.layers.1"]["rel_change"] == pytest.approx(0.5, rel=1e-12)
    assert by["odd<&>"]["rel_change"] == pytest.approx(0.25, rel=1e-12)
    for name in ("enc.layers.0", "dec.proj"):
        keys = [k for k, _ in LAYOUT if module_of(k) == name]
        assert by[name]["rel_change"] == pytest.approx(_exact_rel(a, b, keys), rel=1e-12)
        assert by[name]["tensors"] == 2 and by[name]["numel"] == sum(a[k].numel() for k in keys)
    assert by["dec.proj"]["rel_change"] == pytest.approx(0.01, rel=1e-5)  # float32 rounding of 1.01x
    assert by["enc.layers.0"]["top_tensor"] == "enc.layers.0.conv.weight"
    assert by["enc.layers.0"]["top_tensor_rel"] == pytest.approx(
        _exact_rel(a, b, ["enc.layers.0.conv.weight"]), rel=1e-12
    )
    assert by["enc.layers.0"]["max_abs"] == 0.25
    assert by["emb"]["rel_change"] == 0 and by["emb"]["from_zero"] is False
    parts = {m["module"]: m for m in net["parts"]}
    assert list(parts) == ["gate", "enc", "odd<&>", "dec", "emb"]
    enc = [k for k, _ in LAYOUT if k.startswith("enc.")]
    assert parts["enc"]["rel_change"] == pytest.approx(_exact_rel(a, b, enc), rel=1e-12)
    assert parts["enc"]["tensors"] == 4 and parts["enc"]["top_tensor"].startswith("enc.layers.1.")
    vals = {v["name"]: v for v in net["values"]}
    assert [v["name"] for v in net["values"]] == [k for k, _ in LAYOUT]  # values keep the file's order
    w = vals["enc.layers.1.conv.weight"]
    assert w["numel"] == 16 and w["rel_l2"] == pytest.approx(0.5, rel=1e-12)
    assert w["norm_diff"] == pytest.approx(0.5 * w["norm_a"], rel=1e-12)
    assert vals["gate.bias"]["rel_l2"] is None and vals["gate.bias"]["norm_a"] == 0


def test_text_top_n_rows_and_what_was_left_out(pair: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("LANG", "C.UTF-8")
    pa, pb, *_ = pair
    r = run_cli("diff", pa, pb, "--values", "--top", "2")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("module"))
    rows = [line.split()[0] for line in lines[head + 2 : head + 4]]
    assert rows == ORDER[:2]
    assert lines[head + 2].split()[3] == "from" and lines[head + 3].split()[3] == "0.5"
    assert "5 of 6 modules moved" in r.stdout
    assert "  by part  gate from 0 · enc 0.362 · odd<&> 0.25 · dec 0.01 · unchanged: emb\n" in r.stdout
    assert "… 3 more modules moved, each 0.25 or less; 1 module unchanged (--top 0 shows all)" in r.stdout
    everything = run_cli("diff", pa, pb, "--values", "--top", "0").stdout
    assert all(m in everything for m in ORDER) and "more modules moved" not in everything
    assert "1 module unchanged" in everything


def test_by_tensor_ranks_single_tensors(pair: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    pa, pb, *_ = pair
    r = run_cli("diff", pa, pb, "--values", "--by", "tensor", "--top", "3")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("tensor "))
    names = [line.split()[0] for line in lines[head + 2 : head + 5]]
    # gate.bias from 0, then the two 1.5x tensors (0.5 each, by name), the 1.25x one is the 4th
    assert names == ["gate.bias", "enc.layers.1.conv.bias", "enc.layers.1.conv.weight"]
    assert "… 4 more tensors moved, each 0.25 or less; 2 tensors unchanged (--top 0 shows all)" in r.stdout


def test_top_and_by_need_values(pair: tuple) -> None:
    pa, pb, *_ = pair
    r = run_cli("diff", pa, pb, "--top", "3")
    assert r.code == 2 and "--top applies to --values" in r.stderr and r.stderr.count("\n") == 1
    assert run_cli("diff", pa, pb, "--by", "tensor").code == 2
    r = run_cli("diff", pa, pb, "--values", "--force")
    assert r.code == 2 and "--force applies to --plot" in r.stderr


def test_html_plot_is_self_contained_and_escaped(pair: tuple, tmp_path: Path) -> None:
    pa, pb, *_ = pair
    out = tmp_path / "change.html"
    r = run_cli("diff", pa, pb, "--plot", out, "--json")  # --plot implies --values
    assert r.code == 0, r.stderr
    assert r.json()["networks"][0]["modules"] is not None
    text = out.read_text(encoding="utf-8")
    for module in ORDER:
        if module != "odd<&>":
            assert f">{module}</text>" in text
    assert "odd&lt;&amp;&gt;" in text and "odd<&>" not in text
    assert ">emb</text>" not in text  # only modules that moved are drawn
    low = text.lower()
    for ref in ("http://", "https://", "src=", "<script", "<link", "url("):
        assert ref not in low
    bars = [text.index(f">{m}</text>") for m in ("gate", "enc.layers.1", "enc.layers.0", "dec.proj")]
    assert bars == sorted(bars)  # largest change first


def test_plot_top_limits_the_chart_and_says_so(pair: tuple, tmp_path: Path) -> None:
    pa, pb, *_ = pair
    out = tmp_path / "top.html"
    assert run_cli("diff", pa, pb, "--plot", out, "--top", "2").code == 0
    text = out.read_text(encoding="utf-8")
    assert ">gate</text>" in text and ">enc.layers.1</text>" in text and ">dec.proj</text>" not in text
    assert "3 more modules moved less (not shown)" in text


def test_png_plot_is_a_png(pair: tuple, tmp_path: Path) -> None:
    import matplotlib  # in the dev extras on purpose: CI draws the PNG (never skipped)

    assert matplotlib.__version__
    pa, pb, *_ = pair
    out = tmp_path / "change.png"
    r = run_cli("diff", pa, pb, "--values", "--plot", out)
    assert r.code == 0, r.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 500 and height > 150


def test_png_without_matplotlib_is_one_line_exit_2(
    pair: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec and import both fail
    pa, pb, *_ = pair
    out = tmp_path / "change.png"
    r = run_cli("diff", pa, pb, "--values", "--plot", out)
    assert r.code == 2 and r.stderr.count("\n") == 1
    assert "pip install 'ckpttool[plot]'" in r.stderr
    assert not out.exists()


def test_plot_refuses_to_overwrite_without_force(pair: tuple, tmp_path: Path) -> None:
    pa, pb, *_ = pair
    out = tmp_path / "change.html"
    assert run_cli("diff", pa, pb, "--plot", out).code == 0
    first = out.read_text(encoding="utf-8")
    r = run_cli("diff", pa, pb, "--plot", out, "--top", "1")
    assert r.code == 2 and "already exists; pass --force" in r.stderr
    assert out.read_text(encoding="utf-8") == first
    assert run_cli("diff", pa, pb, "--plot", out, "--top", "1", "--force").code == 0
    assert out.read_text(encoding="utf-8") != first
    other = tmp_path / "notes.html"
    other.write_text("<p>my notes</p>")
    r = run_cli("diff", pa, pb, "--plot", other, "--force")
    assert r.code == 2 and other.read_text() == "<p>my notes</p>"
    r = run_cli("diff", pa, pb, "--plot", tmp_path / "chart.svg")
    assert r.code == 2 and ".html or .png" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.pth", "B.pth", "change.html", "notes.html"]


def test_gpt_sovits_g_with_one_scaled_layer(tmp_path: Path) -> None:
    """A real GPT-SoVITS G against a copy whose one layer is doubled: that layer alone, at exactly 1."""
    src = fixture("gpt_sovits/logs_s2_v2/G_233333333333.pth")
    ckpt = torch.load(src, weights_only=True)  # our own fixture
    layer = "enc_p.encoder_text.attn_layers.1."
    scaled = [k for k in ckpt["model"] if k.startswith(layer)]
    assert len(scaled) == 10  # emb_rel_k/v and conv_q/k/v/o weight and bias
    for k in scaled:
        ckpt["model"][k].mul_(2.0)  # exact in float32: ‖2a − a‖ = ‖a‖
    moved = tmp_path / "G_moved.pth"
    torch.save(ckpt, moved)
    doc = run_cli("diff", src, moved, "--values", "--json").json()
    (net,) = doc["networks"]
    top, *rest = net["modules"]
    assert top["module"] == "enc_p.encoder_text.attn_layers.1" and top["tensors"] == 10
    assert top["rel_change"] == pytest.approx(1.0, rel=1e-12)
    assert all(m["rel_change"] == 0 for m in rest)
