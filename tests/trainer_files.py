"""Tiny checkpoint files laid out the way other trainers write them (coqui TTS Trainer, tacotron2-style loops,
accelerate save_state), built at test time with torch and the trainers' own key layouts (their records cite the
upstream save code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class _CoquiVits(nn.Module):
    """A GAN model in one state dict, as coqui's Vits: generator modules, then ``disc`` (vits.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.text_encoder = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8))
        self.waveform_decoder = nn.Conv1d(8, 4, 3)
        self.disc = nn.Sequential(nn.Conv1d(1, 4, 3), nn.Conv1d(4, 1, 3))


def _step(opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
    loss = sum((p.float() ** 2).sum() for p in params)
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    opt.step()
    opt.zero_grad()


def coqui_checkpoint(path: Path, *, step: int = 99, epoch: int = 3, with_scheduler: bool = False) -> Path:
    """A coqui Trainer ``checkpoint_<step>.pth`` of a GAN model: optimizer = [disc, gen] (vits.py:1652-1665),
    the config as a dict holding ``epochs`` and ``lr_scheduler_*_params`` (settings, not state), no
    ``scheduler`` key in the old layout (coqui-ai/Trainer io.py:121-130)."""
    torch.manual_seed(0)
    model = _CoquiVits()
    disc = list(model.disc.parameters())
    gen = [p for n, p in model.named_parameters() if not n.startswith("disc.")]
    opt_d = torch.optim.AdamW(disc, lr=2e-4, betas=(0.8, 0.99), eps=1e-9, weight_decay=0.01)
    opt_g = torch.optim.AdamW(gen, lr=2e-4, betas=(0.8, 0.99), eps=1e-9, weight_decay=0.01)
    sched = [torch.optim.lr_scheduler.ExponentialLR(o, 0.999875) for o in (opt_d, opt_g)]
    for _ in range(2):
        _step(opt_d, disc)
        _step(opt_g, gen)
    config: dict[str, Any] = {
        "model": "vits", "epochs": 1000, "batch_size": 2, "lr_gen": 2e-4, "lr_disc": 2e-4,
        "lr_scheduler_gen": "ExponentialLR", "lr_scheduler_gen_params": {"gamma": 0.999875, "last_epoch": -1},
        "lr_scheduler_disc": "ExponentialLR", "lr_scheduler_disc_params": {"gamma": 0.999875, "last_epoch": -1},
        "scheduler_after_epoch": True, "output_path": "runs",
    }  # fmt: skip
    state: dict[str, Any] = {
        "config": config,
        "model": model.state_dict(),
        "optimizer": [opt_d.state_dict(), opt_g.state_dict()],
        "scaler": None,
        "step": step,
        "epoch": epoch,
        "date": "November 29, 2026",
        "model_loss": {"train_loss": 1.5, "eval_loss": None},
    }
    if with_scheduler:  # idiap coqui-ai-Trainer >= 0.3.0
        state["scheduler"] = [s.state_dict() for s in sched]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def tacotron2_checkpoint(path: Path, iteration: int = 5000) -> Path:
    """``checkpoint_<iteration>`` (no extension) as NVIDIA/tacotron2 train.py:113-118 writes it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(20, 8), nn.LSTM(8, 8), nn.Linear(8, 4))
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-6)
    loss = sum((p**2).sum() for p in params)
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    opt.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"iteration": iteration, "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
         "learning_rate": 1e-3},
        path,
    )  # fmt: skip
    return path
