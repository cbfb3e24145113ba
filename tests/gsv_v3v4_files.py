"""GPT-SoVITS v3/v4 training files, written at test time from the gpt-sovits-s2-g3 spec.

What upstream writes, rebuilt without upstream code (RVC-Boss/GPT-SoVITS@48b1a01; research notes
/work/research/gsv_v3v4.md):

- ``s2_train_v3_lora.py``: ``net_g.cfm`` wrapped by PEFT (``cfm.base_model.model.…``, targeted Linears as
  ``base_layer`` + ``lora_A.default`` ``[r, in]`` + ``lora_B.default`` ``[out, r]``), AdamW over the
  ``requires_grad`` parameters only (ref_enc, bridge, wns1, linear_mel, the adapters), saved by
  ``utils.save_checkpoint`` as ``logs/<exp>/logs_s2_<version>_lora_<rank>/G_<step>.pth`` (no D file); the export
  keeps every key that is not a frozen parameter, in fp16, with a ``03``/``04`` header tag;
- ``s2_train_v3.py``: the same model without PEFT, AdamW over everything but enc_p/ssl_proj (the quantizer
  holds buffers only), saved in ``logs_s2_<version>/``; its export is a plain zip of every key in fp16.

ref_enc and linear_mel are in the optimizer but never get a gradient upstream, so they get no Adam state here
either. Values are random and seeded; nothing here asserts on them.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ckpttool.specs import get_spec

FAMILY = "gpt-sovits-s2-g3"
TARGETS = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0")  # LoraConfig target_modules (lora.py:146)
FROZEN = ("enc_p.", "ssl_proj.", "quantizer.")  # set_no_grad with freeze_quantizer (models.py:1296-1299)
NO_GRADIENT = ("ref_enc.", "linear_mel.")  # never reached by a gradient (models.py:391-392, 1301-1329)

# Every dimension small: for tests that only need the structure.
TINY: dict[str, Any] = {
    "inter_channels": 4, "hidden_channels": 4, "filter_channels": 8, "n_heads": 2, "n_layers": 2,
    "kernel_size": 3, "gin_channels": 8, "ssl_dim": 8, "text_vocab": 10, "mrte_hidden": 8, "mrte_channels": 4,
    "ref_in": 8, "ref_hidden": 4, "codebook_bins": 4, "model_dim": 8, "wns1_hidden": 4, "wns1_layers": 2,
    "mel_dim": 4, "dit_dim": 16, "dit_depth": 2, "dit_heads": 2, "dit_dim_head": 8, "dit_ff_mult": 2,
    "dit_conv_layers": 1, "dit_time_freq": 4,
}  # fmt: skip
# The size ../shared/cases/gsv_v4_lora was written at (research notes 4.5): the DiT at width 64, depth 2, two
# heads of 32; wns1 hidden 32; filter_channels 64 in its config; everything the export keeps at the published
# width. The frozen parts the export drops are smaller here (n_layers 2, one ConvNeXt block) to keep files small.
CASE: dict[str, Any] = {
    "filter_channels": 64, "n_layers": 2, "wns1_hidden": 32, "dit_dim": 64, "dit_depth": 2, "dit_heads": 2,
    "dit_dim_head": 32, "dit_conv_layers": 1,
}  # fmt: skip
CONFIG_KEYS = ("inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers", "kernel_size",
               "gin_channels")  # fmt: skip


def spec_values(version: str, sizes: dict[str, Any]) -> dict[str, Any]:
    """The spec's defaults for ``version`` with ``sizes`` applied."""
    values = get_spec(FAMILY).defaults(version)
    values.update(sizes)
    return values


def peft_key(name: str) -> str:
    """The key PEFT gives plain ``name`` once ``cfm`` is wrapped (``cfm.base_model.model.…``, targeted
    Linears' weight and bias under ``base_layer``)."""
    if not name.startswith("cfm."):
        return name
    module, leaf = name.rsplit(".", 1)
    inner = "cfm.base_model.model." + module[len("cfm.") :]
    if module.endswith(TARGETS):
        return f"{inner}.base_layer.{leaf}"
    return f"{inner}.{leaf}"


def state_layout(values: dict[str, Any], rank: int | None) -> list[tuple[str, tuple[int, ...], bool]]:
    """(key, shape, is a parameter) for every state-dict entry of the model at ``values``, in upstream order;
    with ``rank``, as PEFT names them after wrapping cfm (adapters right after their base layer's bias)."""
    out: list[tuple[str, tuple[int, ...], bool]] = []
    for t in get_spec(FAMILY).expand(values):
        key = peft_key(t.name) if rank else t.name
        out.append((key, t.shape, not t.buffer))
        if rank and t.name.endswith(".bias") and t.name[: -len(".bias")].endswith(TARGETS):
            out_f, in_f = next(s for k, s, _ in out if k == key.replace(".bias", ".weight"))
            module = key[: -len(".base_layer.bias")]
            out.append((f"{module}.lora_A.default.weight", (rank, in_f), True))
            out.append((f"{module}.lora_B.default.weight", (out_f, rank), True))
    return out


def trainable(params: list[str]) -> list[str]:
    """The parameters with requires_grad, in parameters() order (what AdamW is given): not frozen by the
    model, and inside PEFT's wrapping only the adapters."""
    return [
        n for n in params if not n.startswith(FROZEN) and not ("base_model.model." in n and "lora_" not in n)
    ]


class Model:
    """A SynthesizerTrnV3 look-alike: the state dict in upstream order (PEFT-wrapped when ``rank``), which keys
    are parameters, which of those require grad, in ``parameters()`` order."""

    def __init__(self, version: str, sizes: dict[str, Any], rank: int | None, seed: int) -> None:
        self.version, self.rank, self.values = version, rank, spec_values(version, sizes)
        gen = torch.Generator().manual_seed(seed)
        self.state: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        self.params: list[str] = []
        for key, shape, is_param in state_layout(self.values, rank):
            self.state[key] = (torch.rand(shape, generator=gen) - 0.5) * 0.2
            if is_param:
                self.params.append(key)
        if "quantizer.vq.layers.0._codebook.inited" in self.state:
            self.state["quantizer.vq.layers.0._codebook.inited"].fill_(1.0)

    def trainable(self) -> list[str]:
        """The parameters with requires_grad, in parameters() order (what AdamW is given)."""
        return trainable(self.params)

    def frozen(self) -> set[str]:
        """s2_train_v3_lora.py's no_grad_names: the parameters without requires_grad."""
        return set(self.params) - set(self.trainable())


def train(model: Model, epoch: int, steps: int, lr: float = 1e-4, gamma: float = 0.999875) -> dict[str, Any]:
    """``optim_g.state_dict()`` after ``steps`` AdamW steps over the trainable parameters (the ones upstream
    never reaches get no gradient, hence no state) and ``epoch`` ExponentialLR steps, as upstream leaves it at
    the save of epoch ``epoch``."""
    names = model.trainable()
    params = [torch.nn.Parameter(model.state[n]) for n in names]
    opt = torch.optim.AdamW(params, lr, betas=[0.8, 0.99], eps=1e-9)  # type: ignore[arg-type]
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma, last_epoch=-1)
    with warnings.catch_warnings():  # upstream steps the scheduler before any optimizer step, as here
        warnings.simplefilter("ignore", UserWarning)
        sched.step()  # stepped epoch_str (= 1) times before training (lora.py:221-223)
    gen = torch.Generator().manual_seed(steps)
    for _ in range(steps):
        for n, p in zip(names, params, strict=True):
            p.grad = None if n.startswith(NO_GRADIENT) else torch.rand(p.shape, generator=gen) - 0.5
        opt.step()
    for _ in range(epoch - 1):  # once after each finished epoch but the one being saved
        sched.step()
    for n, p in zip(names, params, strict=True):
        model.state[n] = p.detach()
    return opt.state_dict()


def run_config(model: Model, exp: str, rank: int | None) -> dict[str, Any]:
    """The run config the WebUI writes for v3/v4 (s2.json plus webui.py:519-537), as get_hparams copies it
    to logs/<exp>/config.json."""
    version = model.version
    pretrained = {
        "v3": "GPT_SoVITS/pretrained_models/s2Gv3.pth",
        "v4": "GPT_SoVITS/pretrained_models/gsv-v4-pretrained/s2Gv4.pth",
    }[version]
    model_cfg = {k: model.values[k] for k in CONFIG_KEYS}
    model_cfg.update(
        {
            "p_dropout": 0.1, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_rates": [10, 8, 2, 2, 2],
            "upsample_initial_channel": 512, "upsample_kernel_sizes": [16, 16, 8, 2, 2], "n_layers_q": 3,
            "use_spectral_norm": False, "semantic_frame_rate": "25hz", "freeze_quantizer": True,
            "version": version,
        }
    )  # fmt: skip
    return {
        "train": {
            "log_interval": 100, "eval_interval": 500, "seed": 1234, "epochs": 100, "learning_rate": 0.0001,
            "betas": [0.8, 0.99], "eps": 1e-09, "batch_size": 2, "fp16_run": True, "lr_decay": 0.999875,
            "segment_size": 20480, "init_lr_ratio": 1, "warmup_epochs": 0, "c_mel": 45, "c_kl": 1.0,
            "text_low_lr_rate": 0.4, "grad_ckpt": False, "pretrained_s2G": pretrained,
            "pretrained_s2D": pretrained.replace("s2G", "s2D"), "if_save_latest": False,
            "if_save_every_weights": True, "save_every_epoch": 1, "gpu_numbers": "0",
            "lora_rank": str(rank or 32),
        },
        "data": {
            "max_wav_value": 32768.0, "sampling_rate": 32000, "filter_length": 2048, "hop_length": 640,
            "win_length": 2048, "n_mel_channels": 128, "mel_fmin": 0.0, "mel_fmax": None, "add_blank": True,
            "n_speakers": 300, "cleaned_text": True, "exp_dir": f"logs/{exp}",
        },
        "model": model_cfg,
        "s2_ckpt_dir": f"logs/{exp}",
        "content_module": "cnhubert",
        "save_weight_dir": f"SoVITS_weights_{version}",
        "name": exp,
        "version": version,
        "pretrain": None,
        "resume_step": None,
    }  # fmt: skip


def write_run(
    logs: Path,
    exp: str,
    version: str,
    sizes: dict[str, Any],
    rank: int | None = 32,
    epoch: int = 3,
    steps: int = 9,
    seed: int = 0,
) -> tuple[Path, Model, dict[str, Any]]:
    """``logs/<exp>/config.json`` and ``logs/<exp>/logs_s2_<version>[_lora_<rank>]/G_<steps>.pth`` as
    utils.save_checkpoint writes them (four keys; ``iteration`` is the epoch). Returns (G path, model, config)."""
    model = Model(version, sizes, rank, seed)
    optimizer = train(model, epoch, steps)
    config = run_config(model, exp, rank)
    exp_dir = logs / exp
    folder = exp_dir / (f"logs_s2_{version}_lora_{rank}" if rank else f"logs_s2_{version}")
    folder.mkdir(parents=True, exist_ok=True)
    (exp_dir / "config.json").write_text(json.dumps(config, indent=2))
    path = folder / f"G_{steps}.pth"
    obj = {"model": model.state, "iteration": epoch, "optimizer": optimizer, "learning_rate": 0.0001}
    torch.save(obj, path)
    return path, model, config


def _hparams_init(self: Any, **kwargs: Any) -> None:
    for k, v in kwargs.items():
        setattr(self, k, type(self)(**v) if type(v) is dict else v)


@contextlib.contextmanager
def _utils_hparams() -> Iterator[type]:
    """A class that pickles as ``utils.HParams`` (GPT-SoVITS runs with GPT_SoVITS/ on sys.path), present only
    while saving."""
    previous = sys.modules.get("utils")
    module = types.ModuleType("utils")
    cls = type("HParams", (), {"__init__": _hparams_init, "__module__": "utils", "__qualname__": "HParams"})
    module.HParams = cls  # type: ignore[attr-defined]
    sys.modules["utils"] = module
    try:
        yield cls
    finally:
        if previous is None:
            del sys.modules["utils"]
        else:
            sys.modules["utils"] = previous


def write_export(path: Path, model: Model, config: dict[str, Any], epoch: int = 3, steps: int = 9) -> Path:
    """process_ckpt.savee as the v3/v4 trainers call it: a LoRA model's export keeps every key but the frozen
    parameters and is written with the 03/04 tag (my_save2); a full one keeps every key as a plain zip."""
    if model.rank:
        frozen = model.frozen()
        weight = {k: v.half() for k, v in model.state.items() if k not in frozen}
    else:
        weight = {k: v.half() for k, v in model.state.items() if "enc_q" not in k}
    path.parent.mkdir(parents=True, exist_ok=True)
    with _utils_hparams() as hparams:
        opt: dict[str, Any] = {
            "weight": weight,
            "config": hparams(**config),
            "info": f"{epoch}epoch_{steps}iteration",
        }
        if model.rank:
            opt["lora_rank"] = model.rank
        buf = io.BytesIO()
        torch.save(opt, buf)
    data = buf.getvalue()
    if model.rank:
        data = {"v3": b"03", "v4": b"04"}[model.version] + data[2:]
    path.write_bytes(data)
    return path
