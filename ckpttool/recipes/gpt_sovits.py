"""A verify-resume recipe for real GPT-SoVITS s2 (SoVITS) training — documented, not run in CI.

Use it from a GPT-SoVITS checkout (its ``GPT_SoVITS`` folder on ``PYTHONPATH``), with the run's config::

    PYTHONPATH=GPT-SoVITS/GPT_SoVITS CKPTTOOL_S2_CONFIG=logs/exp/config.json \\
        ckpttool verify-resume logs/exp/logs_s2_v2/G_233333333333.pth logs/exp/logs_s2_v2/D_233333333333.pth \\
        --recipe ckpttool.recipes.gpt_sovits:recipe --device cuda

It builds ``SynthesizerTrn`` and ``MultiPeriodDiscriminator`` from GPT-SoVITS's own ``module.models``, the four
AdamW groups of ``s2_train.run``, and resumes exactly as ``s2_train.run`` does (D first, then G, ``epoch+1``,
``ExponentialLR`` rebuilt and stepped ``epoch+1`` times) — except that files are read with
``torch.load(weights_only=True)`` after a ckpttool safety check, never with weights_only turned off. A training
step uses a fixed synthetic batch seeded by the step index (``ssl`` features, spectrogram, text) instead of the
dataset, so straight and split runs see identical data; the losses are s2_train's (mel L1 omitted: the mel
transform needs the audio pipeline). Expect verify-resume to report the scheduler rebuild drift: that is the
real trainer's behaviour.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ckpttool.ops.inspect import inspect_checkpoint


def _hps() -> Any:
    path = os.environ.get("CKPTTOOL_S2_CONFIG")
    if not path:
        raise RuntimeError("set CKPTTOOL_S2_CONFIG to the run's config.json (logs/<exp>/config.json)")
    from utils import HParams  # GPT-SoVITS's own class

    return HParams(**json.loads(Path(path).read_text()))


class GptSovitsTrainer:
    """The recipe's trainer: GPT-SoVITS's own SynthesizerTrn and MultiPeriodDiscriminator built from the run
    config (``CKPTTOOL_S2_CONFIG``), with the optimizers of ``s2_train.run`` (G: AdamW over four groups, the
    text modules at ``text_low_lr_rate`` times the LR; D: one AdamW group)."""

    def __init__(self, device: torch.device) -> None:
        from module.models import MultiPeriodDiscriminator, SynthesizerTrn

        hps = self.hps = _hps()
        self.device = device
        torch.manual_seed(hps.train.seed)
        self.net_g = SynthesizerTrn(
            hps.data.filter_length // 2 + 1,
            hps.train.segment_size // hps.data.hop_length,
            n_speakers=hps.data.n_speakers,
            **hps.model,
        ).to(device)
        self.net_d = MultiPeriodDiscriminator(hps.model.use_spectral_norm, version=hps.model.version).to(
            device
        )
        te = list(map(id, self.net_g.enc_p.text_embedding.parameters()))
        et = list(map(id, self.net_g.enc_p.encoder_text.parameters()))
        mr = list(map(id, self.net_g.enc_p.mrte.parameters()))
        base = [p for p in self.net_g.parameters() if id(p) not in te + et + mr and p.requires_grad]
        lr, low = hps.train.learning_rate, hps.train.learning_rate * hps.train.text_low_lr_rate
        self.optim_g = torch.optim.AdamW(
            [
                {"params": base, "lr": lr},
                {"params": self.net_g.enc_p.text_embedding.parameters(), "lr": low},
                {"params": self.net_g.enc_p.encoder_text.parameters(), "lr": low},
                {"params": self.net_g.enc_p.mrte.parameters(), "lr": low},
            ],
            lr,
            betas=hps.train.betas,
            eps=hps.train.eps,
        )
        self.optim_d = torch.optim.AdamW(
            self.net_d.parameters(), lr, betas=hps.train.betas, eps=hps.train.eps
        )
        self.epoch = 1

    def load(self, paths: list[Path]) -> None:
        """Resume as ``s2_train.run`` does: D then G, after ckpttool's safety check and with
        ``weights_only=True``; ``epoch = iteration + 1``; each ExponentialLR rebuilt with ``last_epoch=-1``
        and stepped ``epoch`` times."""
        by_kind = {Path(p).name[0]: Path(p) for p in paths}
        for kind, net, opt in (("D", self.net_d, self.optim_d), ("G", self.net_g, self.optim_g)):
            inspect_checkpoint(by_kind[kind])  # refuses unsafe pickles before torch sees the file
            ckpt = torch.load(by_kind[kind], map_location="cpu", weights_only=True)
            opt.load_state_dict(ckpt["optimizer"])
            net.load_state_dict(ckpt["model"], strict=False)
            self.epoch = int(ckpt["iteration"]) + 1
        gamma = self.hps.train.lr_decay
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma, last_epoch=-1)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma, last_epoch=-1)
        for _ in range(self.epoch):
            self.sched_g.step()
            self.sched_d.step()

    def train_step(self, index: int) -> None:
        """One D step and one G step on a synthetic batch seeded by ``index`` (ssl features, spectrogram,
        text, audio), with s2_train's discriminator, adversarial and feature-matching losses only; then both
        schedulers step and the epoch advances."""
        gen = torch.Generator().manual_seed(index)
        hps, dev = self.hps, self.device
        ssl = torch.randn(1, 768, 50, generator=gen).to(dev)
        spec = torch.randn(1, hps.data.filter_length // 2 + 1, 100, generator=gen).abs().to(dev)
        text = torch.randint(0, 300, (1, 40), generator=gen).to(dev)
        wav = torch.randn(1, 1, 100 * hps.data.hop_length, generator=gen).to(dev) * 0.1
        lengths = torch.tensor([100], device=dev)
        out = self.net_g(ssl, spec, lengths, text, torch.tensor([40], device=dev))
        y_hat, ids_slice = out[0], out[2]
        y = torch.stack(
            [
                wav[
                    0,
                    :,
                    s * hps.data.hop_length : (s + y_hat.shape[-1] // hps.data.hop_length)
                    * hps.data.hop_length,
                ]
                for s in ids_slice.tolist()
            ]
        )
        from module.losses import discriminator_loss, feature_loss, generator_loss

        y_d_r, y_d_g, _, _ = self.net_d(y, y_hat.detach())
        loss_d, _, _ = discriminator_loss(y_d_r, y_d_g)
        self.optim_d.zero_grad()
        loss_d.backward()
        self.optim_d.step()
        y_d_r, y_d_g, fmap_r, fmap_g = self.net_d(y, y_hat)
        loss_g = generator_loss(y_d_g)[0] + feature_loss(fmap_r, fmap_g)
        self.optim_g.zero_grad()
        loss_g.backward()
        self.optim_g.step()
        self.sched_g.step()
        self.sched_d.step()
        self.epoch += 1

    def save(self, folder: Path) -> list[Path]:
        """Write ``G_233333333333.pth`` and ``D_233333333333.pth`` to ``folder`` with the keys GPT-SoVITS's
        ``utils.save_checkpoint`` writes (model, iteration, optimizer, learning_rate)."""
        paths = []
        for kind, net, opt in (("G", self.net_g, self.optim_g), ("D", self.net_d, self.optim_d)):
            path = folder / f"{kind}_233333333333.pth"
            torch.save(
                {
                    "model": net.state_dict(),
                    "iteration": self.epoch - 1,
                    "optimizer": opt.state_dict(),
                    "learning_rate": self.hps.train.learning_rate,
                },
                path,
            )
            paths.append(path)
        return paths

    def state(self) -> dict[str, torch.Tensor]:
        """Both networks' tensors (``G.``/``D.`` prefixed), each optimizer's group LRs and the epoch, on the
        CPU."""
        out = {f"G.{k}": v.detach().cpu() for k, v in self.net_g.state_dict().items()}
        out.update({f"D.{k}": v.detach().cpu() for k, v in self.net_d.state_dict().items()})
        out["G.lr"] = torch.tensor([g["lr"] for g in self.optim_g.param_groups], dtype=torch.float64)
        out["D.lr"] = torch.tensor([g["lr"] for g in self.optim_d.param_groups], dtype=torch.float64)
        out["epoch"] = torch.tensor(self.epoch)
        return out


def recipe(device: torch.device) -> GptSovitsTrainer:
    """The ``--recipe ckpttool.recipes.gpt_sovits:recipe`` factory."""
    return GptSovitsTrainer(device)
