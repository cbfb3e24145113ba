"""Tiny GPT-SoVITS training runs written by GPT-SoVITS's own code, for tests/test_gsv_real.py.

Everything here needs an upstream checkout (``GPT_SOVITS_ROOT``) and the packages of ``ckpttool[gpt-sovits]``.
Each run is built from upstream's own config file with small-width overrides, trained a few steps with
upstream's classes and saved the way upstream saves:

- s1: a real ``pytorch_lightning.Trainer`` fits ``Text2SemanticLightningModule`` (5 batches per epoch, so one
  ScaledAdam step per epoch, as t2s_lightning_module.training_step steps at batch_idx 4) and its
  ``ModelCheckpoint`` writes ``epoch=<e>-step=<s>.ckpt`` — Lightning's own checkpoint file;
- s2 (v1..v2ProPlus) and v3/v4 LoRA: the built-in recipe's trainer (upstream's models, optimizers and step)
  starts fresh and trains two epochs, then upstream's ``utils.save_checkpoint`` writes ``G_/D_233333333333.pth``
  and the run config goes to ``logs/<exp>/config.json`` where ``utils.get_hparams`` puts it.

Upstream hard-codes some widths that no config reaches: s2's MRTE (192 -> 512 -> 192) and the discriminator are
built at full size. SynthesizerTrnV3 hard-codes a 22-block, 1024-wide DiT and a 512-wide ``wns1`` (382 M
parameters; module/models.py:1288-1295): :func:`small_v3_checkout` makes a copy of the checkout whose
``module/models.py`` builds them 64 wide and 2 blocks deep — the kind of edit the author of
shared/cases/gsv_v4_lora made — and the v3/v4 test runs through that copy (``CKPTTOOL_GSV_FULL=1`` uses the
unmodified checkout instead: slow).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from ckpttool.recipes.trainer_root import on_path
from ckpttool.resume.recipe import RecipeContext

# (upstream text in GPT_SoVITS/module/models.py @48b1a01, the small replacement)
V3_EDITS = [
    ("inter_channels2 = 512", "inter_channels2 = 64"),
    (
        "DiT(**dict(dim=1024, depth=22, heads=16, ff_mult=2, text_dim=inter_channels2, conv_layers=4))",
        "DiT(**dict(dim=64, depth=2, heads=2, ff_mult=2, text_dim=inter_channels2, conv_layers=1))",
    ),
]


def checkout() -> Path | None:
    """The upstream checkout named by ``GPT_SOVITS_ROOT``, or None."""
    root = os.environ.get("GPT_SOVITS_ROOT")
    return Path(root).resolve() if root else None


def small_v3_checkout(root: Path, dest: Path) -> Path:
    """A copy of ``root`` whose SynthesizerTrnV3 (and V3b) has a 2-block, 64-wide DiT and a 64-wide ``wns1``
    (every other file unchanged); each edit must apply to both classes."""
    shutil.copytree(
        root / "GPT_SoVITS", dest / "GPT_SoVITS", ignore=shutil.ignore_patterns("pretrained_models")
    )
    models = dest / "GPT_SoVITS" / "module" / "models.py"
    text = models.read_text(encoding="utf-8")
    for old, new in V3_EDITS:
        assert text.count(old) == 2, f"upstream module/models.py changed: {old!r} not in V3 and V3b"
        text = text.replace(old, new)
    models.write_text(text, encoding="utf-8")
    return dest


def _s2_config(root: Path, version: str, exp_dir: Path) -> dict[str, Any]:
    name = {"v2Pro": "s2v2Pro.json", "v2ProPlus": "s2v2ProPlus.json"}.get(version, "s2.json")
    cfg: dict[str, Any] = json.loads((root / "GPT_SoVITS" / "configs" / name).read_text(encoding="utf-8"))
    # hidden_channels (192) and gin_channels (512) stay: MRTE is hard-coded to them (module/mrte_model.py:12-14)
    cfg["model"].update(
        inter_channels=32, filter_channels=64, n_layers=2, upsample_initial_channel=32,
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]], version=version,
    )  # fmt: skip
    cfg["train"].update(segment_size=2 * cfg["data"]["hop_length"], if_save_latest=1)
    cfg["data"]["exp_dir"] = str(exp_dir)
    cfg["s2_ckpt_dir"] = str(exp_dir)
    return cfg


def _save_with_upstream(
    root: Path, trainer: Any, nets: list[tuple[str, Any, Any]], folder: Path
) -> list[Path]:
    import utils  # GPT-SoVITS's own GPT_SoVITS/utils.py (on sys.path inside on_path)

    out = []
    cwd = Path.cwd()
    os.chdir(folder)  # utils.my_save writes a temporary file in the working directory, then moves it
    try:
        for kind, net, opt in nets:
            path = folder / f"{kind}_233333333333.pth"
            lr = trainer.hps.train.learning_rate
            utils.save_checkpoint(net, opt, lr, trainer.epoch - 1, str(path))
            out.append(path)
    finally:
        os.chdir(cwd)
    return out


def write_s2_run(root: Path, logs: Path, version: str = "v2", epochs: int = 2) -> list[Path]:
    """``logs/<exp>/logs_s2_<version>/{G,D}_233333333333.pth`` after ``epochs`` epochs of one batch, and
    ``logs/<exp>/config.json``; returns [G, D]."""
    exp = logs / f"tiny_{version}"
    folder = exp / f"logs_s2_{version}"
    folder.mkdir(parents=True)
    cfg = _s2_config(root, version, exp)
    (exp / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with on_path(root):
        from ckpttool.recipes.gpt_sovits import S2Trainer

        trainer = S2Trainer(RecipeContext(torch.device("cpu"), cfg, "config.json", root))
        trainer.fresh()
        for i in range(epochs):
            trainer.train_step(1000 + i)
        return _save_with_upstream(
            root,
            trainer,
            [("G", trainer.net_g, trainer.optim_g), ("D", trainer.net_d, trainer.optim_d)],
            folder,
        )


def write_lora_run(root: Path, logs: Path, version: str = "v4", rank: int = 4, epochs: int = 2) -> Path:
    """``logs/<exp>/logs_s2_<version>_lora_<rank>/G_233333333333.pth`` and ``logs/<exp>/config.json``. The
    quantizer codebook is marked initialised, as in the pretrained s2Gv3/s2Gv4 every LoRA run starts from."""
    exp = logs / f"tiny_{version}_lora"
    folder = exp / f"logs_s2_{version}_lora_{rank}"
    folder.mkdir(parents=True)
    cfg = _s2_config(root, version, exp)
    cfg["model"]["inter_channels"] = (
        192  # bridge takes enc_p's hidden output as inter_channels wide (models.py:1289)
    )
    cfg["train"].update(lora_rank=str(rank), grad_ckpt=False)
    (exp / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with on_path(root):
        from ckpttool.recipes.gpt_sovits_lora import LoraTrainer

        trainer = LoraTrainer(RecipeContext(torch.device("cpu"), cfg, "config.json", root))
        trainer.net_g.quantizer.vq.layers[0]._codebook.inited.fill_(1)
        trainer.fresh()
        for i in range(epochs):
            trainer.train_step(1000 + i)
        (path,) = _save_with_upstream(root, trainer, [("G", trainer.net_g, trainer.optim_g)], folder)
        return path


def write_s1_run(root: Path, logs: Path, epochs: int = 2) -> Path:
    """``logs/<exp>/logs_s1_v2/ckpt/epoch=<e>-step=<s>.ckpt`` written by Lightning's ModelCheckpoint after
    ``epochs`` epochs of 5 batches (one ScaledAdam step each); returns the last one."""
    cfg: dict[str, Any] = yaml.safe_load(
        (root / "GPT_SoVITS" / "configs" / "s1longer-v2.yaml").read_text(encoding="utf-8")
    )
    cfg["model"].update(embedding_dim=16, hidden_dim=16, head=2, n_layer=2, linear_units=64)
    cfg["train"].update(precision="32", epochs=epochs, if_dpo=False, exp_name="tiny")
    output_dir = logs / "tiny_s1" / "logs_s1_v2"
    cfg.update(output_dir=str(output_dir), pretrained_s1="")
    ckpt_dir = output_dir / "ckpt"
    ckpt_dir.mkdir(parents=True)
    with on_path(root):
        from AR.models.t2s_lightning_module import Text2SemanticLightningModule
        from pytorch_lightning import Trainer, seed_everything
        from pytorch_lightning.callbacks import ModelCheckpoint

        seed_everything(cfg["train"]["seed"], verbose=False)
        module = Text2SemanticLightningModule(cfg, output_dir)
        gen = torch.Generator().manual_seed(7)
        batches = [
            {
                "phoneme_ids": torch.randint(0, 732, (2, 9), generator=gen),
                "phoneme_ids_len": torch.tensor([9, 7]),
                "semantic_ids": torch.randint(0, 1024, (2, 12), generator=gen),
                "semantic_ids_len": torch.tensor([12, 9]),
                "bert_feature": torch.randn(2, 1024, 9, generator=gen),
            }
            for _ in range(5)
        ]
        saver = ModelCheckpoint(
            dirpath=ckpt_dir, save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True
        )
        trainer = Trainer(
            max_epochs=epochs, accelerator="cpu", devices=1, logger=False, callbacks=[saver],
            limit_val_batches=0, num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False,
            precision="32",
        )  # fmt: skip
        trainer.fit(module, torch.utils.data.DataLoader(batches, batch_size=None))
    return ckpt_dir / f"epoch={epochs - 1}-step={epochs}.ckpt"
