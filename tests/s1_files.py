"""Tiny GPT-SoVITS GPT-stage (s1) files, generated at test time from ckpttool's gpt-sovits-s1 spec.

The tensors come from the spec (names in state_dict order, shapes for the given config), under the Lightning
module's ``model.`` prefix; the containers are the ones upstream writes (Lightning's ``dump_checkpoint`` keys for
a training file, ``my_model_ckpt``'s ``weight``/``config``/``info`` for an export: ../shared/cases/README.md).
The ScaledAdam state is written out by hand from upstream's rules (GPT_SoVITS/AR/modules/optim.py:73-99,
236-277), batch by batch, not computed by ckpttool, so the tests check ckpttool against an independent layout.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ckpttool.specs import get_spec

# A tiny s1longer-v2-style model: widths 8, one layer, 17 semantic tokens (EOS 16).
TINY = {"embedding_dim": 8, "hidden_dim": 8, "head": 2, "n_layer": 1, "vocab_size": 17, "EOS": 16}


def s1_config(phonemes: int, *, output_dir: str = "logs/tiny/logs_s1_v2", weights: str = "GPT_weights_v2",
              epochs: int = 8, **model: Any) -> dict[str, Any]:  # fmt: skip
    """An s1longer*.yaml-style config with the WebUI's additions (webui.py:613-627), at TINY widths."""
    return {
        "train": {"seed": 1234, "epochs": epochs, "batch_size": 2, "save_every_n_epoch": 1,
                  "precision": "16-mixed", "gradient_clip": 1.0, "if_save_every_weights": True,
                  "if_save_latest": True, "if_dpo": False, "half_weights_save_dir": weights, "exp_name": "tiny"},
        "optimizer": {"lr": 0.01, "lr_init": 1e-05, "lr_end": 0.0001, "warmup_steps": 2000, "decay_steps": 40000},
        "data": {"max_eval_sample": 8, "max_sec": 54, "num_workers": 0, "pad_val": 1024},
        "model": {**TINY, "phoneme_vocab_size": phonemes, "linear_units": 32, "dropout": 0, "random_bert": 0,
                  **model},
        "inference": {"top_k": 15},
        "pretrained_s1": "",
        "output_dir": output_dir,
    }  # fmt: skip


def spec_weights(phonemes: int, seed: int = 0, **overrides: Any) -> OrderedDict[str, torch.Tensor]:
    """The Lightning module's state_dict for a TINY config: every tensor the spec expands, ``model.``-prefixed."""
    spec = get_spec("gpt-sovits-s1")
    values = spec.defaults("v1" if phonemes == 512 else "v2")
    values.update(TINY, phoneme_vocab_size=phonemes, **overrides)
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (f"model.{t.name}", torch.randn(t.shape, generator=gen) * 0.1) for t in spec.expand(values)
    )


def batch_state(members: list[torch.Tensor], step: int, first: bool) -> dict[str, Any]:
    """One ScaledAdam batch's state (optim.py:_init_state L250-277): ``delta``/``exp_avg_sq`` stacked ``(B,
    *shape)``, the size-update tensors when the stacked batch has more than one element, ``model_norms``
    (clipping_update_period 1000) on the first batch."""
    stacked = torch.stack(members)
    state: dict[str, Any] = {"step": step, "delta": torch.zeros_like(stacked)}
    if stacked.numel() > 1:
        rms = (stacked**2).mean(dim=list(range(1, stacked.ndim)), keepdim=True).sqrt()
        state |= {"param_rms": rms, "scale_exp_avg_sq": torch.zeros_like(rms),
                  "scale_grads": torch.zeros(4, *rms.shape)}  # fmt: skip
    state["exp_avg_sq"] = torch.zeros_like(stacked)
    if first:
        state["model_norms"] = torch.zeros(1000)
    return state


# ScaledAdam's batches for the TINY config, by hand: parameter index i is the i-th tensor of the state_dict
# (0 bert_proj.weight [8,1024], 1 bert_proj.bias, 2 text embedding [P,8], 3/5 the alphas, 4 audio embedding
# [17,8], 6-17 layer 0, 18 ar_predict_layer [17,8]); sorted by (dtype, *shape): (1,) < (8,) < (8,8) < (8,32) <
# (8,1024) < (17,8) < (24,) < (24,8) < (32,) < (32,8) < (P,8); the first member owns the state.
BATCHES_V2 = [[3, 5], [1, 9, 13, 14, 15, 16, 17], [8], [12], [0], [4, 18], [7], [6], [11], [10], [2]]
# With an 8-row phoneme vocabulary the text embedding [8,8] joins out_proj's batch and owns it (index 2 < 8):
BATCHES_MERGED = [[3, 5], [1, 9, 13, 14, 15, 16, 17], [2, 8], [12], [0], [4, 18], [7], [6], [11], [10]]


def scaled_adam(
    weights: OrderedDict[str, torch.Tensor], batches: list[list[int]], step: int
) -> dict[str, Any]:
    """ScaledAdam.state_dict() for these weights and batches (t2s_lightning_module.py:124-132 arguments)."""
    tensors = list(weights.values())
    state = {b[0]: batch_state([tensors[i] for i in b], step, n == 0) for n, b in enumerate(batches)}
    group = {"lr": 0.002, "clipping_scale": 2.0, "betas": (0.9, 0.95), "scalar_lr_scale": 0.1, "eps": 1e-08,
             "param_min_rms": 1e-05, "param_max_rms": 3.0, "scalar_max": 10.0, "size_update_period": 4,
             "clipping_update_period": 1000, "params": list(range(len(tensors)))}  # fmt: skip
    return {"state": state, "param_groups": [group]}


def warmup_cosine(step: int) -> dict[str, Any]:
    """WarmupCosineLRSchedule.state_dict() after ``step`` steps (lr_schedulers.py:26-62): pinned at 0.002."""
    return {"init_lr": 1e-05, "peak_lr": 0.01, "end_lr": 0.002, "_warmup_rate": (0.01 - 1e-05) / 2000,
            "_decay_rate": (0.0001 - 0.01) / (40000 - 2000), "_current_step": step, "lr": 0.002,
            "warmup_steps": 2000, "total_steps": 40000, "_last_lr": [0.002]}  # fmt: skip


def training_file(path: Path, phonemes: int, *, batches: list[list[int]] | None = None, epoch: int = 1,
                  global_step: int = 6, adam_step: int = 6, scale: float = 65536.0,
                  config: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """A Lightning checkpoint as s1_train.py's ModelCheckpoint writes it (keys of the real case)."""
    weights = spec_weights(phonemes)
    batches = batches if batches is not None else BATCHES_V2
    config = config if config is not None else s1_config(phonemes)
    obj = {
        "epoch": epoch,
        "global_step": global_step,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": weights,
        "loops": {"fit_loop": {"epoch_progress": {"current": {"ready": epoch + 1, "completed": epoch,
                                                              "started": epoch + 1, "processed": epoch + 1}}}},
        "callbacks": {},
        "optimizer_states": [scaled_adam(weights, batches, adam_step)],
        "lr_schedulers": [warmup_cosine(global_step)],
        "MixedPrecision": {"scale": scale, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                           "_growth_tracker": adam_step},
        "hparams_name": "kwargs",
        "hyper_parameters": {"config": config, "output_dir": config["output_dir"], "is_train": True},
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def export_file(path: Path, phonemes: int, *, config: dict[str, Any] | None = None, epoch: int = 2) -> Path:
    """my_model_ckpt's export: fp16 weights, the config, ``GPT-e<N>`` (s1_train.py:62-81)."""
    obj = OrderedDict()
    obj["weight"] = OrderedDict((k, v.half()) for k, v in spec_weights(phonemes).items())
    obj["config"] = config if config is not None else s1_config(phonemes)
    obj["info"] = f"GPT-e{epoch}"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path
