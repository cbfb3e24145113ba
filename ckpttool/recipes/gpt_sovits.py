"""The built-in model-run recipe for GPT-SoVITS s2 (SoVITS) training, v1, v2, v2Pro and v2ProPlus.

Chosen automatically for a G/D pair of ``utils.save_checkpoint`` files when ``verify-resume`` has a GPT-SoVITS
checkout (``--trainer-root``, or run from inside one); by hand::

    ckpttool verify-resume logs/exp/logs_s2_v2/G_233333333333.pth logs/exp/logs_s2_v2/D_233333333333.pth \\
        --trainer-root ~/GPT-SoVITS [--config logs/exp/config.json] [--device cuda]

It builds GPT-SoVITS's own ``SynthesizerTrn`` and ``MultiPeriodDiscriminator`` from the run config, the
optimizers of ``s2_train.run`` and resumes as it does — with the tensors ckpttool read, never upstream's loader
on the file. Facts from RVC-Boss/GPT-SoVITS@48b1a01, ``GPT_SoVITS/s2_train.py`` unless named:

- a one-process ``gloo`` group, as ``dist.init_process_group`` (80-85) gives a one-GPU run;
- models: ``SynthesizerTrn(filter_length//2+1, segment_size//hop_length, n_speakers=..., **hps.model)`` and
  ``MultiPeriodDiscriminator(use_spectral_norm, version=...)`` (135-155), after ``torch.manual_seed(seed)`` (86);
- optimizers: G AdamW over four groups, the text embedding, text encoder and MRTE at ``learning_rate *
  text_low_lr_rate`` (160-192); D one AdamW group (193-198);
- resume: D then G through ``utils.load_checkpoint`` semantics (206-220; utils.py:23-60), ``epoch_str =
  iteration + 1``; ``ExponentialLR(lr_decay, last_epoch=-1)`` rebuilt for each and stepped ``epoch_str`` times
  (268-280); a fresh ``GradScaler(enabled=fp16_run)`` (282);
- one step = one epoch of one batch (326-513): D step, G step with s2_train's losses (mel L1 × c_mel, KL ×
  c_kl, feature matching, adversarial, ``kl_ssl``), then both schedulers step (313-314, done before the next
  epoch so that a save sees the epoch's own LR, as upstream's does at 514-556);
- save: ``G_<n>.pth`` and ``D_<n>.pth`` with the four keys of ``utils.save_checkpoint`` (514-556; utils.py:75-90).

The batch is synthetic (SSL features, linear spectrogram, audio, phoneme ids, and the speaker-verification
embedding for v2Pro*), seeded by the step index together with every RNG the step draws from, so straight and split
runs see identical data. fp16_run means autocast + GradScaler on CUDA only: on the CPU upstream's
``torch.cuda.amp`` is inert, so the run is fp32 there, as s2_train's would be.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from ckpttool.recipes.gsv_common import (
    amp_note,
    apply_saved,
    by_role,
    exponential_lr,
    module_state,
    optimizer_state,
    run_config,
    save_like_upstream,
    scaled_step,
    seed_step,
    single_process_group,
)
from ckpttool.resume.recipe import LoadedFile, RecipeContext

# what a run imports (checked before it starts; ckpttool.recipes.requirements says why each)
REQUIRES = ("module", "einops", "x_transformers", "librosa", "tqdm")
NAME = "gpt-sovits-s2"
PRO = {"v2Pro", "v2ProPlus"}  # module/models.py v2pro_set
SV_DIM = 20480  # SynthesizerTrn.sv_emb = nn.Linear(20480, gin_channels) (module/models.py:930)
SSL_DIM = 768  # module/models.py:917
BATCH, FRAMES, TEXT = 2, 12, 10  # synthetic batch: 2 utterances, 12 and 10 spectrogram frames


class S2Trainer:
    """The recipe's trainer: GPT-SoVITS's own G and D, optimizers, schedulers and training step."""

    def __init__(self, context: RecipeContext) -> None:
        from module.models import MultiPeriodDiscriminator, SynthesizerTrn

        hps = self.hps = run_config(context, NAME)
        self.device = dev = context.device
        self.version = hps.model.get("version", "v2")
        single_process_group()
        torch.manual_seed(hps.train.seed)
        self.net_g = SynthesizerTrn(
            hps.data.filter_length // 2 + 1,
            hps.train.segment_size // hps.data.hop_length,
            n_speakers=hps.data.n_speakers,
            **hps.model,
        ).to(dev)
        self.net_d = MultiPeriodDiscriminator(hps.model.use_spectral_norm, version=self.version).to(dev)
        enc = self.net_g.enc_p
        low = {id(p) for m in (enc.text_embedding, enc.encoder_text, enc.mrte) for p in m.parameters()}
        base = [p for p in self.net_g.parameters() if id(p) not in low and p.requires_grad]
        lr = hps.train.learning_rate
        low_lr = lr * hps.train.text_low_lr_rate
        self.optim_g = torch.optim.AdamW(
            [
                {"params": base, "lr": lr},
                {"params": enc.text_embedding.parameters(), "lr": low_lr},
                {"params": enc.encoder_text.parameters(), "lr": low_lr},
                {"params": enc.mrte.parameters(), "lr": low_lr},
            ],
            lr,
            betas=hps.train.betas,
            eps=hps.train.eps,
        )
        self.optim_d = torch.optim.AdamW(
            self.net_d.parameters(), lr, betas=hps.train.betas, eps=hps.train.eps
        )
        self.amp = bool(hps.train.fp16_run) and dev.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.sched_g: Any = None
        self.sched_d: Any = None
        self.epoch = 1  # the epoch the next train_step trains
        self.pending_step = False  # the schedulers step at the start of the next epoch
        self.notes = [f"{NAME}: synthetic batches (2 utterances); {amp_note(self.amp)}"]

    def load(self, files: list[LoadedFile], exact: bool = False) -> None:
        """Resume as s2_train.run does (206-220, 268-282): D then G, optimizer first, then every key the model
        has, ``epoch_str = iteration + 1``; schedulers rebuilt and stepped ``epoch_str`` times, or with
        ``exact`` continued over the loaded LR as the uninterrupted run would."""
        d_file, g_file = by_role(files, "D", NAME), by_role(files, "G", NAME)
        apply_saved(self.net_d, self.optim_d, d_file.root, self.notes, d_file.path.name)
        iteration = apply_saved(self.net_g, self.optim_g, g_file.root, self.notes, g_file.path.name)
        self.epoch = iteration + 1
        gamma = float(self.hps.train.lr_decay)
        self.sched_g = exponential_lr(self.optim_g, gamma, self.epoch, exact)
        self.sched_d = exponential_lr(self.optim_d, gamma, self.epoch, exact)
        self.pending_step = exact

    def fresh(self) -> None:
        """Start as s2_train does without a checkpoint to resume (226-227, 268-280): epoch 1, both schedulers
        built and stepped once. Not part of the recipe protocol; for making a first checkpoint."""
        gamma = float(self.hps.train.lr_decay)
        self.epoch = 1
        self.sched_g = exponential_lr(self.optim_g, gamma, self.epoch, exact=False)
        self.sched_d = exponential_lr(self.optim_d, gamma, self.epoch, exact=False)
        self.pending_step = False

    def _batch(self, index: int) -> dict[str, torch.Tensor]:
        hps = self.hps
        gen = seed_step(index)
        bins = hps.data.filter_length // 2 + 1
        hop = hps.data.hop_length
        lengths = torch.tensor([FRAMES, FRAMES - 2])
        batch = {
            "ssl": torch.randn(BATCH, SSL_DIM, FRAMES, generator=gen),
            "spec": torch.randn(BATCH, bins, FRAMES, generator=gen).abs(),
            "spec_lengths": lengths,
            "y": torch.tanh(torch.randn(BATCH, 1, FRAMES * hop, generator=gen)) * 0.5,
            "text": torch.randint(1, 100, (BATCH, TEXT), generator=gen),
            "text_lengths": torch.tensor([TEXT, TEXT - 3]),
        }
        if self.version in PRO:
            batch["sv_emb"] = torch.randn(BATCH, SV_DIM, generator=gen)
        return {k: v.to(self.device) for k, v in batch.items()}

    def _autocast(self) -> Any:
        return torch.autocast("cuda", enabled=True) if self.amp else contextlib.nullcontext()

    def _no_autocast(self) -> Any:
        return torch.autocast("cuda", enabled=False) if self.amp else contextlib.nullcontext()

    def train_step(self, index: int) -> None:
        """One epoch of one batch, as s2_train.train_and_evaluate (329-449), then the epoch advances."""
        from module import commons
        from module.losses import discriminator_loss, feature_loss, generator_loss, kl_loss
        from module.mel_processing import mel_spectrogram_torch, spec_to_mel_torch

        if self.pending_step:
            self.sched_g.step()
            self.sched_d.step()
        hps, b = self.hps, self._batch(index)
        self.net_g.train()
        self.net_d.train()
        extra = (b["sv_emb"],) if self.version in PRO else ()
        with self._autocast():
            y_hat, kl_ssl, ids_slice, _, z_mask, (_, z_p, m_p, logs_p, _, logs_q), _ = self.net_g(
                b["ssl"], b["spec"], b["spec_lengths"], b["text"], b["text_lengths"], *extra
            )
            data = hps.data
            mel = spec_to_mel_torch(
                b["spec"],
                data.filter_length,
                data.n_mel_channels,
                data.sampling_rate,
                data.mel_fmin,
                data.mel_fmax,
            )
            y_mel = commons.slice_segments(mel, ids_slice, hps.train.segment_size // data.hop_length)
            y_hat_mel = mel_spectrogram_torch(
                y_hat.squeeze(1), data.filter_length, data.n_mel_channels, data.sampling_rate,
                data.hop_length, data.win_length, data.mel_fmin, data.mel_fmax,
            )  # fmt: skip
            y = commons.slice_segments(b["y"], ids_slice * data.hop_length, hps.train.segment_size)
            y_d_hat_r, y_d_hat_g, _, _ = self.net_d(y, y_hat.detach())
            with self._no_autocast():
                loss_disc, _, _ = discriminator_loss(y_d_hat_r, y_d_hat_g)
        scaled_step(self.scaler, self.optim_d, self.net_d, loss_disc, commons.clip_grad_value_)
        with self._autocast():
            y_d_hat_r, y_d_hat_g, fmap_r, fmap_g = self.net_d(y, y_hat)
            with self._no_autocast():
                loss_mel = torch.nn.functional.l1_loss(y_mel, y_hat_mel) * hps.train.c_mel
                loss_kl = kl_loss(z_p, logs_q, m_p, logs_p, z_mask) * hps.train.c_kl
                loss_fm = feature_loss(fmap_r, fmap_g)
                loss_gen, _ = generator_loss(y_d_hat_g)
                loss_gen_all = loss_gen + loss_fm + loss_mel + kl_ssl * 1 + loss_kl
        scaled_step(self.scaler, self.optim_g, self.net_g, loss_gen_all, commons.clip_grad_value_)
        self.scaler.update()
        self.epoch += 1
        self.pending_step = True

    def save(self, folder: Path) -> list[Path]:
        """``G_<n>.pth`` and ``D_<n>.pth`` as s2_train saves them at the end of an epoch (514-556): ``n`` is
        233333333333 with ``train.if_save_latest`` (the WebUI's default), else the step count."""
        latest = self.hps.train.get("if_save_latest", 1)
        number = 233333333333 if latest else self.epoch - 1
        lr = self.hps.train.learning_rate
        return [
            save_like_upstream(folder / f"G_{number}.pth", self.net_g, self.optim_g, lr, self.epoch - 1),
            save_like_upstream(folder / f"D_{number}.pth", self.net_d, self.optim_d, lr, self.epoch - 1),
        ]

    def state(self) -> dict[str, torch.Tensor]:
        """Both networks' tensors, both optimizers' moments and group LRs, the epoch (and the AMP scale)."""
        out = module_state("G", self.net_g)
        out.update(module_state("D", self.net_d))
        out.update(optimizer_state("G.optimizer", self.optim_g))
        out.update(optimizer_state("D.optimizer", self.optim_d))
        out["epoch"] = torch.tensor(self.epoch)
        if self.amp:
            out["scaler.scale"] = torch.tensor(float(self.scaler.get_scale()))
        return out


def recipe(context: RecipeContext) -> S2Trainer:
    """The ``--recipe ckpttool.recipes.gpt_sovits:recipe`` factory."""
    return S2Trainer(context)
