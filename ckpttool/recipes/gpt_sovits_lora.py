"""The built-in model-run recipe for GPT-SoVITS v3/v4 LoRA training (``GPT_SoVITS/s2_train_v3_lora.py``).

Chosen automatically for a ``G_*.pth`` of that trainer (``cfm.`` + ``bridge.`` keys with PEFT ``lora_A``
adapters) when ``verify-resume`` has a GPT-SoVITS checkout. Facts from RVC-Boss/GPT-SoVITS@48b1a01,
``GPT_SoVITS/s2_train_v3_lora.py`` unless named:

- model: ``SynthesizerTrnV3(filter_length//2+1, segment_size//hop_length, n_speakers=..., **hps.model)``
  (152-158) after ``torch.manual_seed(seed)`` (92), then ``net_g.cfm = get_peft_model(net_g.cfm,
  LoraConfig(target_modules=["to_k", "to_q", "to_v", "to_out.0"], r=lora_rank, lora_alpha=lora_rank,
  init_lora_weights=True))`` (144-150, 178-179);
- optimizer: one AdamW group over the parameters that require grad only (160-166, 181);
- resume: ``utils.load_checkpoint`` semantics (183-187; utils.py:23-60), ``epoch_str = iteration + 1`` (188),
  ``ExponentialLR(lr_decay, last_epoch=-1)`` stepped ``epoch_str`` times (221-223), a fresh GradScaler (225);
- one step = one epoch of one batch (274-327): ``cfm_loss = net_g(ssl, spec, mel, ssl_lengths, spec_lengths,
  text, text_lengths, mel_lengths, use_grad_ckpt=train.grad_ckpt)``, scaled backward, AdamW step; the
  scheduler steps per epoch (257);
- save: ``G_<n>.pth`` with the four keys of ``utils.save_checkpoint`` (344-360; utils.py:75-90).

The batch is synthetic (SSL features, linear spectrogram, 100-bin mel at twice the frame rate for v4 and 1.875
times for v3 — the interpolation of SynthesizerTrnV3.forward, module/models.py:1318 — and phoneme ids), seeded
by the step index with every RNG the step draws from (CFM's noise, its ``random.random()``, the prompt lengths).
"""

from __future__ import annotations

import contextlib
import math
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
)
from ckpttool.resume.recipe import LoadedFile, RecipeContext

# what a run imports (checked before it starts; ckpttool.recipes.requirements says why each)
REQUIRES = ("module", "einops", "x_transformers", "peft", "transformers", "tqdm")
NAME = "gpt-sovits-v3v4-lora"
TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]  # s2_train_v3_lora.py:146
SSL_DIM, MEL_BINS = 768, 100
BATCH, FRAMES, TEXT = 2, 16, 10


class LoraTrainer:
    """The recipe's trainer: SynthesizerTrnV3 with PEFT LoRA on its CFM, AdamW and ExponentialLR."""

    def __init__(self, context: RecipeContext) -> None:
        from module.models import SynthesizerTrnV3
        from peft import LoraConfig, get_peft_model

        hps = self.hps = run_config(context, NAME)
        self.device = dev = context.device
        self.version = hps.model.get("version", "v3")
        rank = int(hps.train.lora_rank)
        torch.manual_seed(hps.train.seed)
        self.net_g = SynthesizerTrnV3(
            hps.data.filter_length // 2 + 1,
            hps.train.segment_size // hps.data.hop_length,
            n_speakers=hps.data.n_speakers,
            **hps.model,
        )
        lora = LoraConfig(target_modules=TARGETS, r=rank, lora_alpha=rank, init_lora_weights=True)
        self.net_g.cfm = get_peft_model(self.net_g.cfm, lora)
        self.net_g = self.net_g.to(dev)
        self.optim_g = torch.optim.AdamW(
            [p for p in self.net_g.parameters() if p.requires_grad],
            hps.train.learning_rate,
            betas=hps.train.betas,
            eps=hps.train.eps,
        )
        self.amp = bool(hps.train.fp16_run) and dev.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.sched_g: Any = None
        self.epoch = 1
        self.pending_step = False
        self.notes = [
            f"{NAME}: {self.version}, LoRA rank {rank}; synthetic batches (2 utterances); {amp_note(self.amp)}"
        ]

    def load(self, files: list[LoadedFile], exact: bool = False) -> None:
        """Resume as s2_train_v3_lora.run does (177-189, 221-225): the G file's optimizer, then every key the
        PEFT-wrapped model has, ``epoch_str = iteration + 1``, the scheduler rebuilt and stepped ``epoch_str``
        times (or, with ``exact``, continued over the loaded LR as the uninterrupted run would)."""
        g_file = by_role(files, "G", NAME)
        iteration = apply_saved(self.net_g, self.optim_g, g_file.root, self.notes, g_file.path.name)
        self.epoch = iteration + 1
        self.sched_g = exponential_lr(self.optim_g, float(self.hps.train.lr_decay), self.epoch, exact)
        self.pending_step = exact

    def fresh(self) -> None:
        """Start as s2_train_v3_lora does without a checkpoint (190-193, 221-223): epoch 1, the scheduler built
        and stepped once. Not part of the recipe protocol; for making a first checkpoint."""
        self.epoch = 1
        self.sched_g = exponential_lr(self.optim_g, float(self.hps.train.lr_decay), self.epoch, exact=False)
        self.pending_step = False

    def _batch(self, index: int) -> dict[str, torch.Tensor]:
        gen = seed_step(index)
        bins = self.hps.data.filter_length // 2 + 1
        ratio = 1.875 if self.version == "v3" else 2.0  # module/models.py:1318
        mel_frames = math.ceil(FRAMES * ratio)
        batch = {
            "ssl": torch.randn(BATCH, SSL_DIM, FRAMES, generator=gen),
            "spec": torch.randn(BATCH, bins, FRAMES, generator=gen).abs(),
            "mel": torch.randn(BATCH, MEL_BINS, mel_frames, generator=gen),
            "ssl_lengths": torch.tensor([FRAMES, FRAMES - 2]),
            "spec_lengths": torch.tensor([FRAMES, FRAMES - 2]),
            "text": torch.randint(1, 100, (BATCH, TEXT), generator=gen),
            "text_lengths": torch.tensor([TEXT, TEXT - 3]),
            "mel_lengths": torch.tensor([mel_frames, mel_frames - 4]),
        }
        return {k: v.to(self.device) for k, v in batch.items()}

    def train_step(self, index: int) -> None:
        """One epoch of one batch, as s2_train_v3_lora.train_and_evaluate (274-327)."""
        from module import commons

        if self.pending_step:
            self.sched_g.step()
        b = self._batch(index)
        self.net_g.train()
        autocast = torch.autocast("cuda", enabled=True) if self.amp else contextlib.nullcontext()
        with autocast:
            cfm_loss = self.net_g(
                b["ssl"], b["spec"], b["mel"], b["ssl_lengths"], b["spec_lengths"], b["text"],
                b["text_lengths"], b["mel_lengths"], use_grad_ckpt=bool(self.hps.train.get("grad_ckpt", False)),
            )  # fmt: skip
        scaled_step(self.scaler, self.optim_g, self.net_g, cfm_loss, commons.clip_grad_value_)
        self.scaler.update()
        self.epoch += 1
        self.pending_step = True

    def save(self, folder: Path) -> list[Path]:
        """``G_<n>.pth`` as the LoRA trainer saves it at the end of an epoch (344-360)."""
        number = 233333333333 if self.hps.train.get("if_save_latest", 1) else self.epoch - 1
        path = folder / f"G_{number}.pth"
        return [
            save_like_upstream(path, self.net_g, self.optim_g, self.hps.train.learning_rate, self.epoch - 1)
        ]

    def state(self) -> dict[str, torch.Tensor]:
        """The wrapped model's tensors (frozen ones included), AdamW's moments and LR, the epoch."""
        out = module_state("G", self.net_g)
        out.update(optimizer_state("G.optimizer", self.optim_g))
        out["epoch"] = torch.tensor(self.epoch)
        if self.amp:
            out["scaler.scale"] = torch.tensor(float(self.scaler.get_scale()))
        return out


def recipe(context: RecipeContext) -> LoraTrainer:
    """The ``--recipe ckpttool.recipes.gpt_sovits_lora:recipe`` factory."""
    return LoraTrainer(context)
