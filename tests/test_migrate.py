"""`ckpttool migrate`: shapes follow the spec, optimizer state loads and steps, widening preserves the function."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, fixture, run_cli, sha256

from ckpttool.specs import get_spec
from ckpttool.specs.match import fingerprint

LOW_LR = ("enc_p.text_embedding", "enc_p.encoder_text", "enc_p.mrte")  # GPT-SoVITS optimizer groups 1..3
G_TRAIN = "gpt_sovits/logs_s2_v2/G_233333333333.pth"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "fixtures" / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_512(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-SoVITS-shaped G training file with the real inter_channels 192 and gin_channels 512."""
    exp = tmp_path_factory.mktemp("run") / "logs" / "exp"
    _, g_file, _ = _generator().write_run(exp, "v2", {"inter_channels": 192, "gin_channels": 512})
    return g_file


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)  # ckpttool's own outputs and fixtures only


def test_widening_inter_and_gin_matches_the_spec_and_the_optimizer_steps(
    run_512: Path, tmp_path: Path
) -> None:
    out = tmp_path / "G_migrated.pth"
    before = sha256(run_512)
    r = run_cli("migrate", run_512, "-o", out, "--set", "model.inter_channels=256", "--set",
                "model.gin_channels=768", "--json")  # fmt: skip
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["schema"] == "ckpttool.migrate/1" and doc["verified"] is True
    (net,) = doc["networks"]
    assert net["changes"] == {
        "inter_channels": {"from": 192, "to": 256},
        "gin_channels": {"from": 512, "to": 768},
    }
    assert net["counts"]["partial"] == 17 + 8 and net["kept"] == 1.0
    assert sha256(run_512) == before

    spec = get_spec("gpt-sovits-s2-g")
    src = _load(run_512)
    fp = fingerprint({k: tuple(v.shape) for k, v in src["model"].items()})
    assert fp is not None and fp.inferred["inter_channels"] == 192 and fp.inferred["gin_channels"] == 512
    values = {**fp.values, "inter_channels": 256, "gin_channels": 768}
    expected = {t.name: t.shape for t in spec.expand(values)}
    migrated = _load(out)
    assert {k: tuple(v.shape) for k, v in migrated["model"].items()} == expected
    assert list(migrated["model"]) == list(expected)  # state_dict order kept
    assert migrated["iteration"] == src["iteration"]

    # the optimizer loads into AdamW for the new model, built the way s2_train builds it, and steps
    params = {k: torch.nn.Parameter(v.clone()) for k, v in migrated["model"].items() if "quantizer" not in k}
    low = [[p for k, p in params.items() if k.startswith(prefix)] for prefix in LOW_LR]
    rest = [p for k, p in params.items() if not k.startswith(LOW_LR)]
    opt = torch.optim.AdamW([{"params": rest}, *({"params": g} for g in low)], lr=1e-4, betas=(0.8, 0.99))
    opt.load_state_dict(migrated["optimizer"])
    for p in params.values():
        p.grad = torch.randn_like(p)
    opt.step()
    assert all(torch.isfinite(p).all() for p in params.values())

    # moments: old entries carried in their chunk, new entries zero
    names = list(params)
    state = _load(out)["optimizer"]["state"]  # opt.step() above updated the loaded tensors in place
    index = {n: i for i, n in enumerate([*(k for k in names if not k.startswith(LOW_LR)),
                                          *(k for pre in LOW_LR for k in names if k.startswith(pre))])}  # fmt: skip
    src_index = dict(index)  # the same names, same order: only shapes changed
    new_avg = state[index["enc_p.proj.bias"]]["exp_avg"]
    old_avg = src["optimizer"]["state"][src_index["enc_p.proj.bias"]]["exp_avg"]
    assert torch.equal(new_avg[256 : 256 + 96], old_avg[192:288])  # logs.x0 lands in the new logs.x0
    assert torch.count_nonzero(new_avg[96:128]) == 0  # new m.x0 channels start with zero moments


def test_shrinking_reports_the_loss(run_512: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.pth"
    r = run_cli("migrate", run_512, "-o", out, "--set", "model.inter_channels=128", "--json")
    assert r.code == 0, r.stderr
    net = r.json()["networks"][0]
    assert net["counts"]["partial"] == 17 and net["kept"] < 1
    proj = next(t for t in net["tensors"] if t["name"] == "enc_p.proj.weight")
    assert proj["kept"] == pytest.approx(256 / 384)
    assert proj["segments"][0] == [
        [0, 64, 0, 64],
        [96, 160, 64, 128],
        [192, 256, 128, 192],
        [288, 352, 192, 256],
    ]
    text = run_cli("migrate", run_512, "-o", tmp_path / "x.pth", "--set", "model.inter_channels=128",
                   "--dry-run").stdout  # fmt: skip
    assert "of the source values kept" in text and "dry run: nothing written" in text
    assert _load(out)["model"]["enc_p.proj.weight"].shape == (256, 4, 1)


def test_dry_run_refusals_and_untouched_source(tmp_path: Path) -> None:
    src = fixture("gpt_sovits/variants/G_inter192.pth")
    before = sha256(src)
    out = tmp_path / "out.pth"
    r = run_cli("migrate", src, "-o", out, "--set", "model.inter_channels=256", "--dry-run")
    assert r.code == 0 and not out.exists() and not list(tmp_path.iterdir())
    out.write_bytes(b"keep me")
    r = run_cli("migrate", src, "-o", out, "--set", "model.inter_channels=256")
    assert r.code == 2 and "already exists; pass --force" in r.stderr and out.read_bytes() == b"keep me"
    r = run_cli("migrate", src, "-o", out, "--set", "model.inter_channels=256", "--force")
    assert r.code == 2 and "not a file of the kind" in r.stderr and out.read_bytes() == b"keep me"
    out.write_bytes(fixture("plain_state_dict.pth").read_bytes())  # a previous output: a checkpoint
    r = run_cli("migrate", src, "-o", out, "--set", "model.inter_channels=256", "--force")
    assert r.code == 0 and _load(out)["model"]["dec.conv_pre.weight"].shape[1] == 256
    r = run_cli("migrate", src, "-o", src, "--set", "model.inter_channels=256", "--force")
    assert r.code == 2 and "never modifies its inputs" in r.stderr
    r = run_cli("migrate", src, "-o", tmp_path / "y.pth")
    assert r.code == 2 and "say what to migrate to" in r.stderr
    assert sha256(src) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _wn(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch._weight_norm(v, g, 0)


def _conv(sd: dict[str, torch.Tensor], name: str, x: torch.Tensor, padding: int = 0) -> torch.Tensor:
    v = sd.get(f"{name}.weight_v")
    w = _wn(v, sd[f"{name}.weight_g"]) if v is not None else sd[f"{name}.weight"]
    return F.conv1d(x, w, sd.get(f"{name}.bias"), padding=padding)


def _wavenet(
    sd: dict[str, torch.Tensor], p: str, x: torch.Tensor, g: torch.Tensor, layers: int
) -> torch.Tensor:
    hidden = x.shape[1]
    cond = _conv(sd, f"{p}.cond_layer", g)
    output = torch.zeros_like(x)
    for i in range(layers):
        x_in = _conv(sd, f"{p}.in_layers.{i}", x, padding=2)
        g_l = cond[:, i * 2 * hidden : (i + 1) * 2 * hidden]
        acts = torch.tanh(x_in[:, :hidden] + g_l[:, :hidden]) * torch.sigmoid(
            x_in[:, hidden:] + g_l[:, hidden:]
        )
        res_skip = _conv(sd, f"{p}.res_skip_layers.{i}", acts)
        if i < layers - 1:
            x = x + res_skip[:, :hidden]
            output = output + res_skip[:, hidden:]
        else:
            output = output + res_skip
    return output


def _forward(sd: dict[str, torch.Tensor], h: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """SynthesizerTrn's inference path, written from the same spec names: the text encoder's [m; logs]
    projection, the 4-coupling flow in reverse (Flip between couplings, weight-normed WN with gin-conditioned
    cond layers, zero-initialised post), then the decoder's conv_pre + cond and a weight-normed upsampler."""
    inter = sd["enc_p.proj.weight"].shape[0] // 2
    ge = F.linear(style, sd["ref_enc.fc.fc.weight"], sd["ref_enc.fc.fc.bias"]).unsqueeze(-1)
    stats = _conv(sd, "enc_p.proj", h)
    m, logs = torch.split(stats, inter, dim=1)
    z = m + torch.exp(logs)
    for f in (6, 4, 2, 0):
        z = torch.flip(z, [1])
        x0, x1 = torch.split(z, inter // 2, dim=1)
        hid = _conv(sd, f"flow.flows.{f}.pre", x0)
        hid = _wavenet(sd, f"flow.flows.{f}.enc", hid, ge, 4)
        x1 = x1 - _conv(sd, f"flow.flows.{f}.post", hid)
        z = torch.cat([x0, x1], dim=1)
    x = _conv(sd, "dec.conv_pre", z, padding=3) + _conv(sd, "dec.cond", ge)
    w = _wn(sd["dec.ups.0.weight_v"], sd["dec.ups.0.weight_g"])
    x = F.conv_transpose1d(F.leaky_relu(x, 0.1), w, sd["dec.ups.0.bias"], stride=4, padding=2)
    return torch.tanh(F.conv1d(F.leaky_relu(x), sd["dec.conv_post.weight"], padding=3))


def test_widening_preserves_the_function(tmp_path: Path) -> None:
    """inter_channels 4 -> 8, gin_channels 8 -> 12 and hidden_channels 4 -> 6 at once: identical outputs."""
    src = fixture("gpt_sovits/logs_s2_v2/G_233333333333.pth")
    out = tmp_path / "wide.pth"
    r = run_cli("migrate", src, "-o", out, "--set", "model.inter_channels=8", "--set", "model.gin_channels=12",
                "--set", "model.hidden_channels=6")  # fmt: skip
    assert r.code == 0, r.stderr
    old = {k: v.double() for k, v in _load(src)["model"].items()}
    new = {k: v.double() for k, v in _load(out)["model"].items()}
    assert new["enc_p.proj.weight"].shape == (16, 6, 1) and new["dec.cond.weight"].shape == (8, 12, 1)
    gen = torch.Generator().manual_seed(7)
    h_old = torch.randn(3, 4, 11, generator=gen, dtype=torch.float64)
    style = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    h_new = torch.cat([h_old, torch.randn(3, 2, 11, generator=gen, dtype=torch.float64)], dim=1)
    y_old, y_new = _forward(old, h_old, style), _forward(new, h_new, style)
    assert y_old.shape == y_new.shape
    torch.testing.assert_close(y_new, y_old, rtol=1e-9, atol=1e-12)
    # the new channels are live (not all zero), so training can use them
    assert torch.count_nonzero(new["enc_p.proj.weight"][4:8]) > 0
    # a naive leading-overlap copy (no chunk awareness) would change the function
    naive = dict(new)
    w = torch.zeros_like(new["enc_p.proj.weight"])
    w[:8, :4] = old["enc_p.proj.weight"]
    naive["enc_p.proj.weight"] = w
    assert not torch.allclose(_forward(naive, h_new, style), y_old)


def test_optimizer_modes_and_safetensors(tmp_path: Path) -> None:
    src = fixture("gpt_sovits/variants/G_inter192.pth")
    r = run_cli("migrate", src, "-o", tmp_path / "reset.pth", "--set", "model.inter_channels=256", "--optimizer",
                "reset")  # fmt: skip
    assert r.code == 0, r.stderr
    opt = _load(tmp_path / "reset.pth")["optimizer"]
    assert opt["state"] == {} and len(opt["param_groups"]) == 4
    r = run_cli(
        "migrate",
        src,
        "-o",
        tmp_path / "drop.pth",
        "--set",
        "model.inter_channels=256",
        "--optimizer",
        "drop",
    )
    assert r.code == 0 and _load(tmp_path / "drop.pth")["optimizer"] is None
    r = run_cli("migrate", src, "-o", tmp_path / "w.safetensors", "--set", "model.inter_channels=256", "--to",
                "safetensors")  # fmt: skip
    assert r.code == 0, r.stderr
    from safetensors import safe_open

    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        assert f.get_slice("enc_p.proj.weight").get_shape() == [512, 4, 1]
        assert f.metadata()["G.inter_channels"] == "256"


def test_template_and_ddp_prefix(tmp_path: Path) -> None:
    src = fixture("gpt_sovits/variants/G_inter192_ddp.pth")
    tmpl = fixture("gpt_sovits/variants/G_inter256.pth")
    r = run_cli("migrate", src, "-o", tmp_path / "t.pth", "--template", tmpl, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["networks"][0]["changes"]["inter_channels"] == {"from": 192, "to": 256}
    model = _load(tmp_path / "t.pth")["model"]
    assert all(k.startswith("module.") for k in model)  # the source's wrapper prefix is kept
    want = {k: tuple(v.shape) for k, v in _load(tmpl)["model"].items()}
    assert {k[len("module.") :]: tuple(v.shape) for k, v in model.items()} == want
    r = run_cli("migrate", src, "-o", tmp_path / "u.pth", "--template", tmpl, "--init", "template")
    assert r.code == 0, r.stderr
    new = _load(tmp_path / "u.pth")["model"]["module.enc_p.proj.bias"]
    t = _load(tmpl)["model"]["enc_p.proj.bias"]
    assert torch.equal(new[96:128], t[96:128])  # new entries taken from the template


def test_export_keeps_fp16_tag_and_updates_its_config(tmp_path: Path) -> None:
    src = fixture("gpt_sovits/SoVITS_weights_v2Pro/demo_e8_s144.pth")
    out = tmp_path / "pro.pth"
    r = run_cli("migrate", src, "-o", out, "--set", "model.gin_channels=24", "--json")
    assert r.code == 0, r.stderr
    assert out.read_bytes()[:2] == b"05"  # GPT-SoVITS reads the version from the first two bytes
    doc = run_cli("inspect", out, "--json").json()
    arch = doc["architectures"][0]
    assert arch["version"] == "v2Pro" and arch["inferred_config"]["gin_channels"] == 24
    assert arch["config_check"]["ok"]  # the embedded HParams config was updated too
    assert doc["networks"][0]["dtypes"] == {"float16": doc["networks"][0]["tensors"]}


def test_no_spec_falls_back_loudly(tmp_path: Path) -> None:
    a, t = tmp_path / "a.pth", tmp_path / "t.pth"
    torch.save(
        {"enc.weight": torch.ones(4, 3), "enc.bias": torch.ones(4), "head.weight": torch.ones(2, 4)}, a
    )
    torch.save({"enc.weight": torch.zeros(6, 3), "enc.bias": torch.zeros(6), "head.weight": torch.zeros(2, 6),
                "extra.weight": torch.zeros(3, 3)}, t)  # fmt: skip
    r = run_cli("migrate", a, "-o", tmp_path / "o.pth", "--template", t, "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert any("no architecture spec" in w for w in doc["warnings"])
    out = _load(tmp_path / "o.pth")
    assert torch.equal(out["enc.weight"][:4], torch.ones(4, 3)) and out["head.weight"].shape == (2, 6)
    assert torch.count_nonzero(out["head.weight"][:, 4:]) == 0  # new inputs of the consumer are zero
    assert torch.count_nonzero(out["extra.weight"]) == 9  # a wholly new weight is initialised, trainable


def test_safetensors_input_stays_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    src = tmp_path / "w.safetensors"
    save_file({"enc.weight": torch.ones(4, 3), "head.weight": torch.ones(2, 4)}, str(src))
    tmpl = tmp_path / "t.safetensors"
    save_file({"enc.weight": torch.zeros(5, 3), "head.weight": torch.zeros(2, 5)}, str(tmpl))
    out = tmp_path / "o.safetensors"
    r = run_cli("migrate", src, "-o", out, "--template", tmpl)
    assert r.code == 0, r.stderr
    assert out.read_bytes()[8:9] == b"{"  # a safetensors header, not a torch zip
    got = load_file(str(out))
    assert got["enc.weight"].shape == (5, 3) and torch.equal(got["enc.weight"][:4], torch.ones(4, 3))


def test_template_of_another_network_is_refused(tmp_path: Path) -> None:
    r = run_cli("migrate", fixture(G_TRAIN), "-o", tmp_path / "o.pth", "--template",
                fixture("gpt_sovits/logs_s2_v2/D_233333333333.pth"))  # fmt: skip
    assert r.code == 2 and "a template must be the same model" in r.stderr
    assert not (tmp_path / "o.pth").exists()


@pytest.mark.parametrize("value", [0, -4])
def test_empty_or_negative_sizes_are_refused(tmp_path: Path, value: int) -> None:
    r = run_cli(
        "migrate", fixture(G_TRAIN), "-o", tmp_path / "o.pth", "--set", f"model.inter_channels={value}"
    )
    assert r.code == 2 and "a dimension of" in r.stderr


def test_frozen_layers_and_buffers_stay_out_of_the_optimizer(tmp_path: Path) -> None:
    """Only what the source optimizer held (plus genuinely new parameters) goes into the new groups."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    net[0] = torch.nn.Linear(3, 4, bias=False)  # its shape differs from every trainable one: a unique match
    net[0].requires_grad_(False)  # frozen, like GPT-SoVITS's ssl_proj with freeze_quantizer
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    src = tmp_path / "src.pth"
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, src)
    wide = torch.nn.Sequential(
        torch.nn.Linear(3, 4, bias=False), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 5)
    )
    tmpl = tmp_path / "tmpl.pth"
    torch.save({"model": {**wide.state_dict(), "3.weight": torch.zeros(5, 5)}, "epoch": 0}, tmpl)
    r = run_cli("migrate", src, "-o", tmp_path / "out.pth", "--template", tmpl)
    assert r.code == 0, r.stderr
    out = _load(tmp_path / "out.pth")
    (group,) = out["optimizer"]["param_groups"]
    assert len(group["params"]) == 4 + 1  # BatchNorm weight/bias, head weight/bias, the new 3.weight
    inspect_doc = run_cli("inspect", src, "--json").json()
    assert inspect_doc["optimizers"][0]["aligned"] and "1 frozen or unused skipped: 0.weight" in (
        inspect_doc["optimizers"][0]["alignment_method"])  # fmt: skip
    model = {
        k: torch.nn.Parameter(v) for k, v in out["model"].items() if k.split(".")[-1] in ("weight", "bias")
    }
    trainable = [model[k] for k in ("1.weight", "1.bias", "2.weight", "2.bias", "3.weight")]
    fresh = torch.optim.AdamW(trainable, lr=1e-3)
    fresh.load_state_dict(out["optimizer"])  # the group sizes match: frozen 0.* and BN buffers are not in it
    assert torch.equal(fresh.state[model["2.weight"]]["exp_avg"][:2], opt.state[net[2].weight]["exp_avg"])


def test_shared_tensors_and_untied_optimizers_are_written_whole(tmp_path: Path) -> None:
    w = torch.randn(4, 3)
    p = torch.nn.Parameter(torch.randn(2, 2))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(2, 2)
    opt.step()
    src = tmp_path / "shared.pth"
    torch.save({"model": {"enc.weight": w}, "extra": [w], "opt": opt.state_dict()}, src)
    # no spec knows this network: a known key changes nothing, the file is copied
    r = run_cli("migrate", src, "-o", tmp_path / "o.pth", "--set", "model.inter_channels=8")
    assert r.code == 0, r.stderr
    out = torch.load(tmp_path / "o.pth", weights_only=True)  # loads: no placeholder leaked
    assert torch.equal(out["extra"][0], w) and torch.equal(out["model"]["enc.weight"], w)


def test_new_layers_are_trainable_and_add_nothing_at_first(tmp_path: Path) -> None:
    out = tmp_path / "deep.pth"
    r = run_cli("migrate", fixture(G_TRAIN), "-o", out, "--set", "model.n_layers=4")
    assert r.code == 0, r.stderr
    model = _load(out)["model"]
    new = "enc_p.encoder_text.attn_layers.3"
    assert torch.count_nonzero(model[f"{new}.conv_q.weight"]) > 0  # not a dead zero layer
    assert torch.count_nonzero(model[f"{new}.conv_o.weight"]) == 0  # its residual output starts at zero
    assert torch.count_nonzero(model["enc_p.encoder_text.ffn_layers.3.conv_1.weight"]) > 0
    assert torch.equal(model["enc_p.encoder_text.norm_layers_1.3.gamma"], torch.ones(4))


def test_template_init_keeps_weight_norm_effective_values(tmp_path: Path) -> None:
    wide = tmp_path / "wide.pth"
    assert (
        run_cli("migrate", fixture(G_TRAIN), "-o", wide, "--set", "model.upsample_initial_channel=16").code
        == 0
    )
    out = tmp_path / "t.pth"
    r = run_cli("migrate", fixture(G_TRAIN), "-o", out, "--template", wide, "--init", "template")
    assert r.code == 0, r.stderr
    old, new = _load(fixture(G_TRAIN))["model"], _load(out)["model"]
    w_old = torch._weight_norm(old["dec.ups.0.weight_v"], old["dec.ups.0.weight_g"], 0)
    w_new = torch._weight_norm(new["dec.ups.0.weight_v"], new["dec.ups.0.weight_g"], 0)
    torch.testing.assert_close(w_new[:8, :4], w_old, rtol=1e-6, atol=1e-7)


def test_output_file_mode_follows_the_umask(tmp_path: Path) -> None:
    out = tmp_path / "m.pth"
    assert run_cli("migrate", fixture(G_TRAIN), "-o", out, "--set", "model.inter_channels=8").code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
