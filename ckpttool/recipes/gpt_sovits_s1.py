"""The built-in model-run recipe for GPT-SoVITS s1 (GPT, ``Text2SemanticLightningModule``) training.

Chosen automatically for a Lightning ``.ckpt`` from ``GPT_SoVITS/s1_train.py`` when ``verify-resume`` has a
GPT-SoVITS checkout (``--trainer-root``, or run from inside one). Facts from RVC-Boss/GPT-SoVITS@48b1a01
(``GPT_SoVITS/AR/models/t2s_lightning_module.py`` = t2s, ``GPT_SoVITS/s1_train.py`` = s1) and
Lightning-AI/pytorch-lightning@7f0c343 (``src/lightning/pytorch/...``):

- model: ``Text2SemanticLightningModule(config, output_dir, is_train=False)`` (t2s:19-40) built from the
  checkpoint's ``hyper_parameters.config`` (the config s1_train ran with; else ``--config``), after
  ``seed_everything(train.seed)`` (s1:94). ``is_train=False`` builds the same model; it skips loading
  ``pretrained_s1`` (the resume replaces those weights with a strict load anyway) and creating the eval folder;
- optimizer and scheduler: the module's own ``configure_optimizers`` (t2s:120-145): ``ScaledAdam`` and
  ``WarmupCosineLRSchedule``;
- resume as Lightning's ``fit(ckpt_path=...)``: ``load_state_dict(checkpoint["state_dict"], strict=True)``
  (trainer/connectors/checkpoint_connector.py:272-289, strategies/strategy.py:370-372), each optimizer's
  ``load_state_dict`` (strategy.py:374-378), each scheduler's (checkpoint_connector.py:396-404), the AMP scaler
  from ``MixedPrecision`` (checkpoint_connector.py:311-320), ``epoch``/``global_step`` (the saved counters);
- one step = one epoch of five batches: ``training_step`` (t2s:42-57) with manual optimisation back-propagates
  every batch and steps ScaledAdam, zeroes the gradients and steps the scheduler at ``batch_idx`` 4, so an epoch
  of five batches ends with no gradient left over (upstream loses a partial accumulation at a save: not
  exercised); ``forward_old`` unless ``train.if_dpo`` (t2s:45);
- save: Lightning's checkpoint layout (checkpoint_connector.py:415-480) — ``epoch``, ``global_step``,
  ``pytorch-lightning_version``, ``state_dict``, ``optimizer_states``, ``lr_schedulers``, ``MixedPrecision``
  with AMP, ``hparams_name``, ``hyper_parameters``.

Simplified: no Lightning ``Trainer`` (no loops, callbacks or logging; Lightning's loop progress is not
replayed); ``train.precision`` "16-mixed" means fp16 autocast + GradScaler on CUDA (Lightning's MixedPrecision
plugin, plugins/precision/amp.py) and fp32 on the CPU, where Lightning refuses 16-mixed; "bf16-mixed" autocasts
to bfloat16. Batches are synthetic (phoneme ids, BERT features, semantic tokens), seeded by the step index with
every RNG (dropout), so straight and split runs see identical data.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import torch

from ckpttool.errors import UsageError
from ckpttool.recipes.gsv_common import module_state, optimizer_state, seed_step
from ckpttool.resume.recipe import LoadedFile, RecipeContext

# what a run imports (checked before it starts; ckpttool.recipes.requirements says why each)
REQUIRES = ("AR", "pytorch_lightning", "torchmetrics", "matplotlib", "tqdm")
NAME = "gpt-sovits-s1"
BATCHES_PER_EPOCH = 5  # optimizer step at batch_idx 4 (t2s:54)
BATCH, PHONES, TOKENS, BERT_DIM = 2, 9, 12, 1024  # BERT features: Linear(1024, E) (t2s_model.py:276)


class S1Trainer:
    """The recipe's trainer: the Lightning module, ScaledAdam and WarmupCosineLRSchedule of s1_train."""

    def __init__(self, context: RecipeContext) -> None:
        self.context = context
        self.device = context.device
        self.module: Any = None
        self.notes: list[str] = []
        self.epoch = 0  # the epoch the next train_step runs
        self.global_step = 0
        self.amp_dtype: torch.dtype | None = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=False)
        self.carried: dict[str, Any] = {}

    def _build(self, config: dict[str, Any]) -> None:
        from AR.models.t2s_lightning_module import Text2SemanticLightningModule

        self.config = config
        torch.manual_seed(int(config.get("train", {}).get("seed", 1234)))
        with tempfile.TemporaryDirectory(prefix="ckpttool-s1-") as tmp:
            self.module = Text2SemanticLightningModule(config, Path(tmp), is_train=False).to(self.device)
        opt_config = self.module.configure_optimizers()
        self.optimizer = opt_config["optimizer"]
        self.scheduler = opt_config["lr_scheduler"]["scheduler"]
        precision = str(config.get("train", {}).get("precision", "32"))
        if precision.startswith("bf16"):
            self.amp_dtype = torch.bfloat16
        elif precision.startswith("16") and self.device.type == "cuda":
            self.amp_dtype = torch.float16
            self.scaler = torch.amp.GradScaler("cuda")
        how = {torch.float16: "fp16 autocast + GradScaler", torch.bfloat16: "bf16 autocast", None: "fp32"}
        note = f"{NAME}: precision {precision} runs as {how[self.amp_dtype]}"
        if precision.startswith("16") and self.device.type != "cuda":
            note += " (Lightning refuses 16-mixed on the CPU)"
        self.notes.append(
            note + f"; synthetic batches, {BATCHES_PER_EPOCH} per epoch, one optimizer step each"
        )

    def load(self, files: list[LoadedFile]) -> None:
        """Build the module from the file's ``hyper_parameters.config`` (else ``--config``) and restore it as
        Lightning's resume does: weights strictly, ScaledAdam, the scheduler, the AMP scaler, the counters."""
        if len(files) != 1:
            raise UsageError(f"the {NAME} model run takes one Lightning .ckpt, got {len(files)} files")
        root = files[0].root
        hyper = root.get("hyper_parameters") if isinstance(root, dict) else None
        config = hyper.get("config") if isinstance(hyper, dict) else None
        if not isinstance(config, dict):
            config = self.context.config
        if not isinstance(config, dict):
            raise UsageError(
                f"{files[0].path}: no hyper_parameters.config to build the model from; pass --config"
            )
        self._build(config)
        self.module.load_state_dict(root["state_dict"], strict=True)
        self.optimizer.load_state_dict(root["optimizer_states"][0])
        self.scheduler.load_state_dict(root["lr_schedulers"][0])
        if self.scaler.is_enabled() and isinstance(root.get("MixedPrecision"), dict):
            self.scaler.load_state_dict(root["MixedPrecision"])
        self.epoch = int(root.get("epoch", 0)) + 1  # saved at the end of that epoch; the next one runs
        self.global_step = int(root.get("global_step", 0))
        self.carried = {k: root[k] for k in ("hparams_name",) if k in root}

    def _batch(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        model_cfg = self.config["model"]
        batch = {
            "phoneme_ids": torch.randint(
                0, int(model_cfg["phoneme_vocab_size"]), (BATCH, PHONES), generator=gen
            ),
            "phoneme_ids_len": torch.tensor([PHONES, PHONES - 2]),
            "semantic_ids": torch.randint(0, int(model_cfg["EOS"]), (BATCH, TOKENS), generator=gen),
            "semantic_ids_len": torch.tensor([TOKENS, TOKENS - 3]),
            "bert_feature": torch.randn(BATCH, BERT_DIM, PHONES, generator=gen),
        }
        return {k: v.to(self.device) for k, v in batch.items()}

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, index: int) -> None:
        """One epoch: ``training_step`` for batch_idx 0..4, the optimizer and scheduler stepping at 4."""
        model = self.module.model
        forward = model.forward if self.config["train"].get("if_dpo", False) else model.forward_old
        self.module.train()
        gen = seed_step(index)
        for batch_idx in range(BATCHES_PER_EPOCH):
            b = self._batch(gen)
            with self._autocast():
                loss, _ = forward(
                    b["phoneme_ids"], b["phoneme_ids_len"], b["semantic_ids"], b["semantic_ids_len"],
                    b["bert_feature"],
                )  # fmt: skip
            self.scaler.scale(loss).backward()
            if batch_idx > 0 and batch_idx % 4 == 0:
                if self.scaler.is_enabled():
                    self.scaler.unscale_(self.optimizer)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad()
                self.scheduler.step()
                self.global_step += 1
        self.epoch += 1

    def save(self, folder: Path) -> list[Path]:
        """``epoch=<e>-step=<s>.ckpt`` (the ModelCheckpoint name s1_train's callback writes) in Lightning's
        layout."""
        import pytorch_lightning

        checkpoint: dict[str, Any] = {
            "epoch": self.epoch - 1,
            "global_step": self.global_step,
            "pytorch-lightning_version": pytorch_lightning.__version__,
            "state_dict": self.module.state_dict(),
            "optimizer_states": [self.optimizer.state_dict()],
            "lr_schedulers": [self.scheduler.state_dict()],
        }
        if self.scaler.is_enabled():
            checkpoint["MixedPrecision"] = self.scaler.state_dict()
        checkpoint["hparams_name"] = self.carried.get("hparams_name", "kwargs")
        checkpoint["hyper_parameters"] = {"config": self.config, "is_train": True}
        path = folder / f"epoch={self.epoch - 1}-step={self.global_step}.ckpt"
        torch.save(checkpoint, path)
        return [path]

    def state(self) -> dict[str, torch.Tensor]:
        """The weights, ScaledAdam's batched state and LR, the scheduler's step and LR, the counters."""
        out = module_state("model", self.module)
        out.update(optimizer_state("optimizer", self.optimizer))
        sched = self.scheduler.state_dict()
        out["scheduler.step"] = torch.tensor(int(sched.get("_current_step", 0)))
        out["scheduler.lr"] = torch.tensor([float(x) for x in sched.get("_last_lr", [])], dtype=torch.float64)
        out["global_step"] = torch.tensor(self.global_step)
        out["epoch"] = torch.tensor(self.epoch)
        if self.scaler.is_enabled():
            out["scaler.scale"] = torch.tensor(float(self.scaler.get_scale()))
        return out


def recipe(context: RecipeContext) -> S1Trainer:
    """The ``--recipe ckpttool.recipes.gpt_sovits_s1:recipe`` factory."""
    return S1Trainer(context)
