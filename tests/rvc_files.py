"""Tiny RVC files written at test time from the rvc-g / rvc-d specs: training checkpoints in the layout of
RVC's utils.save_checkpoint, exports in the layout of process_ckpt.savee, and run configs shaped like
configs/v2/48k.json. Widths shrink through the config variables (and the discriminator's constants), so the
files are a few hundred KB while keeping every key, every kernel size and every stage of the real models.

Upstream facts used here (RVC-Project/Retrieval-based-Voice-Conversion-WebUI@4338f12):
- train/utils.py:145-163 save_checkpoint: {"model", "iteration" (the epoch), "optimizer", "learning_rate"};
- train/train.py:203-214, 273-278: AdamW(lr=1e-4, betas=(0.8, 0.99), eps=1e-9), ExponentialLR(gamma=0.999875);
- train/process_ckpt.py:13-48 savee: fp16 "weight" without enc_q, an 18-value "config" list, "info", "sr",
  "f0", "version";
- configs/v1/*.json, configs/v2/*.json: train/data/model sections (only what the checks read is written).
"""

from __future__ import annotations

import collections
import json
import zlib
from pathlib import Path
from typing import Any

import torch

from ckpttool.specs import get_spec

# Small widths for every config variable that sets one; kernels, stage counts and layer counts stay real.
TINY: dict[str, Any] = {
    "inter_channels": 4,
    "hidden_channels": 4,
    "filter_channels": 8,
    "n_heads": 2,
    "n_layers": 2,
    "upsample_initial_channel": 32,  # five stages halve it five times: 16, 8, 4, 2, 1 channels
    "gin_channels": 4,
    "spk_embed_dim": 3,
}
# DiscriminatorS / DiscriminatorP widths (architecture constants) shrunk the same way
TINY_D: dict[str, Any] = {"ds_channels": [4] * 6, "ds_in": [1, 1, 1, 1, 1, 4], "dp_channels": [2] * 5}
SAMPLE_RATE = {"32k": 32000, "40k": 40000, "48k": 48000}
HOP = {"32k": 320, "40k": 400, "48k": 480}  # data.hop_length of each published config


def values(family: str, version: str, **overrides: Any) -> dict[str, Any]:
    """The spec's variable values for ``version`` at tiny widths, with ``overrides``."""
    spec = get_spec(family)
    vals = spec.defaults(version)
    vals.update(TINY if family == "rvc-g" else TINY_D)
    vals.update(overrides)
    return vals


def state_dict(family: str, version: str, **overrides: Any) -> dict[str, torch.Tensor]:
    """Every tensor of the spec's expansion, in state_dict order, with seeded values (zero where the model
    zero-initialises)."""
    spec = get_spec(family)
    gen = torch.Generator().manual_seed(
        zlib.crc32(f"{family}:{version}:{sorted(overrides.items())}".encode())
    )
    out: dict[str, torch.Tensor] = {}
    for t in spec.expand(values(family, version, **overrides)):
        out[t.name] = torch.zeros(t.shape) if t.zero_init else torch.randn(t.shape, generator=gen) * 0.05
    return out


def write_train(path: Path, family: str, version: str, epoch: int = 20, **overrides: Any) -> Path:
    """A training checkpoint (G_<step>.pth / D_<step>.pth) after one AdamW step, as RVC saves it."""
    sd = state_dict(family, version, **overrides)
    params = [torch.nn.Parameter(v.clone()) for v in sd.values()]
    opt = torch.optim.AdamW(params, 1e-4, betas=(0.8, 0.99), eps=1e-9)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.999875)
    gen = torch.Generator().manual_seed(7)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    opt.step()
    sched.step()
    model = {k: p.detach().clone() for k, p in zip(sd, params, strict=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": model, "iteration": epoch, "optimizer": opt.state_dict(), "learning_rate": 1e-4}, path
    )
    return path


def export_config(version: str, **overrides: Any) -> list[Any]:
    """savee's 18-value config list for the tiny model of ``version`` (e.g. ``v2-48k-f0``)."""
    v = values("rvc-g", version, **overrides)
    rate = version.split("-")[1]
    return [
        v["filter_length"] // 2 + 1, 32, v["inter_channels"], v["hidden_channels"], v["filter_channels"],
        v["n_heads"], v["n_layers"], v["kernel_size"], 0, v["resblock"], v["resblock_kernel_sizes"],
        [[1, 3, 5]] * len(v["resblock_kernel_sizes"]), v["upsample_rates"], v["upsample_initial_channel"],
        v["upsample_kernel_sizes"], v["spk_embed_dim"], v["gin_channels"], SAMPLE_RATE[rate],
    ]  # fmt: skip


def write_export(
    path: Path,
    version: str,
    *,
    config: list[Any] | None = None,
    tags: dict[str, Any] | None = None,
    **overrides: Any,
) -> Path:
    """An exported model (assets/weights/<name>.pth): fp16 weights without enc_q, the config list, info, sr,
    f0 and version (``tags`` replaces or, with a None value, drops any of the last four)."""
    sd = state_dict("rvc-g", version, **overrides)
    model_version, rate, f0 = version.split("-")
    opt: collections.OrderedDict[str, Any] = collections.OrderedDict()
    opt["weight"] = {k: t.half() for k, t in sd.items() if "enc_q" not in k}
    opt["config"] = config if config is not None else export_config(version, **overrides)
    opt.update({"info": "20epoch", "sr": rate, "f0": int(f0 == "f0"), "version": model_version})
    for key, value in (tags or {}).items():
        if value is None:
            opt.pop(key, None)
        else:
            opt[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(opt, path)
    return path


def run_config(version: str, **model: Any) -> dict[str, Any]:
    """A run config laid out like configs/v2/48k.json (train, data, model) for the tiny model of ``version``,
    with ``model`` entries replaced."""
    v = values("rvc-g", version)
    rate = version.split("-")[1]
    keys = ("inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers", "kernel_size",
            "resblock", "resblock_kernel_sizes", "upsample_rates", "upsample_initial_channel",
            "upsample_kernel_sizes", "gin_channels", "spk_embed_dim")  # fmt: skip
    section = {k: v[k] for k in keys}
    section.update(p_dropout=0, resblock_dilation_sizes=[[1, 3, 5]] * 3, use_spectral_norm=False)
    section.update(model)
    return {
        "train": {"learning_rate": 1e-4, "betas": [0.8, 0.99], "eps": 1e-9, "lr_decay": 0.999875,
                  "segment_size": 17280 if version.startswith("v2-48k") else 12800},
        "data": {"sampling_rate": SAMPLE_RATE[rate], "filter_length": v["filter_length"],
                 "hop_length": HOP[rate], "win_length": v["filter_length"]},
        "model": section,
    }  # fmt: skip


def write_config(path: Path, version: str, **model: Any) -> Path:
    """:func:`run_config` as JSON at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run_config(version, **model), indent=4, sort_keys=True) + "\n")
    return path
