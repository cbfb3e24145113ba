"""What a model run needs to import, and the one-line usage error when something is missing.

The built-in GPT-SoVITS recipes import GPT-SoVITS's own modules from the trainer checkout and these third-party
packages (found by running them against RVC-Boss/GPT-SoVITS@48b1a01; each is also in its requirements.txt):

- every GPT-SoVITS model: ``module/models.py`` imports ``f5_tts`` (DiT) which imports ``x_transformers``
  (f5_tts/model/modules.py:17, backbones/dit.py:16); ``module/core_vq.py:36,44`` imports ``einops`` and ``tqdm``;
- s2 training step: ``module/mel_processing.py:3`` imports ``librosa`` (mel filter bank for the mel loss);
- s1: ``pytorch_lightning`` (AR/models/t2s_lightning_module.py:11), ``torchmetrics`` (t2s_model.py:9),
  ``matplotlib`` (AR/modules/lr_schedulers.py:6);
- v3/v4 LoRA: ``peft`` (s2_train_v3_lora.py:38), which needs ``transformers``.

``pip install 'ckpttool[gpt-sovits]'`` installs them (pyproject.toml); torchaudio is not needed by any of them.
"""

from __future__ import annotations

from pathlib import Path

from ckpttool.errors import UsageError

# import name -> what to pip install (the pins GPT-SoVITS's requirements.txt sets)
PIP_NAMES = {
    "pytorch_lightning": "pytorch-lightning>=2.4",
    "lightning_fabric": "pytorch-lightning>=2.4",
    "torchmetrics": "torchmetrics<=1.5",
    "matplotlib": "matplotlib",
    "einops": "einops",
    "x_transformers": "x-transformers",
    "peft": "peft<0.18.0",
    "transformers": "transformers>=4.51,<5",
    "librosa": "librosa",
    "tqdm": "tqdm",
    "numba": "librosa (numba)",
    "scipy": "scipy",
    "sklearn": "scikit-learn",
    "soundfile": "soundfile",
}
# top-level names that come from the GPT-SoVITS checkout itself, not from pip
UPSTREAM = {
    "module",
    "AR",
    "f5_tts",
    "text",
    "utils",
    "process_ckpt",
    "GPT_SoVITS",
    "BigVGAN",
    "feature_extractor",
}


def missing_dependency(exc: ImportError, recipe: str, trainer_root: Path | None) -> UsageError:
    """The usage error (exit 2, one line) for an import that failed while running ``recipe``: which module,
    and what to install or which flag to set."""
    name = exc.name or ""
    top = name.split(".")[0]
    if not isinstance(exc, ModuleNotFoundError):
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return UsageError(
            f"the model run ({recipe}) cannot import what it needs: {first}; the installed version of "
            f"{top or 'a dependency'} may not match the one the trainer expects"
        )
    gsv = recipe.startswith("ckpttool.recipes.gpt_sovits")
    if top in UPSTREAM and (gsv or trainer_root is not None):
        where = (
            f"{trainer_root} has no {top}" if trainer_root is not None else "no GPT-SoVITS checkout was given"
        )
        return UsageError(
            f"the model run ({recipe}) needs GPT-SoVITS's module '{name}' ({where}); pass --trainer-root PATH "
            "with the folder that holds GPT_SoVITS/s2_train.py"
        )
    pip = PIP_NAMES.get(top, top)
    extra = " (all of them: pip install 'ckpttool[gpt-sovits]')" if gsv else ""
    return UsageError(
        f"the model run ({recipe}) needs the Python module '{top}', which is not installed; install it into "
        f"this environment: pip install '{pip}'{extra}"
    )
