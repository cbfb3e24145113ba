"""Key vocabulary shared by every layer: wrapper prefixes and GPT-SoVITS header tags.

Facts, with their sources:

- ``module.`` is what ``torch.nn.parallel.DistributedDataParallel`` (and ``DataParallel``) prepend to every
  state_dict key when a wrapped model is saved without unwrapping; ``_orig_mod.`` is ``torch.compile``'s
  ``OptimizedModule``; ``model.module.`` a Lightning module holding a DDP-wrapped net.
- GPT-SoVITS ``process_ckpt.my_save2`` overwrites the ``PK`` of the zip magic with a two-digit version tag
  (GPT_SoVITS/process_ckpt.py, ``model_version2byte``; ``head2version`` for reading).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.module.")
# Buffers that hold data-normalisation statistics (not trained): ``norm_mean``, ``mel_std``, ``f0_mean``...
NORM_BUFFER = re.compile(
    r"(^|\.)((norm|mel|spec|spectrogram|f0|lf0|pitch|energy|feat|feats|features?|input|data|audio|cmvn|stats?)"
    r"_(mean|std|var|min|max|scale|stats?)|(mean|std)_(norm|mel|spec|f0|pitch|energy|feats?))$"
)
# A LightningModule that holds its network as ``self.model`` (GPT-SoVITS s1) saves every key under ``model.``;
# architecture specs describe the network itself, so matching strips it too.
MODULE_PREFIXES = ("model.",)

# first two bytes -> version, as GPT-SoVITS's head2version reads them (b"00".."02" are read, never written)
GPT_SOVITS_TAGS: dict[bytes, str] = {
    b"00": "v1",
    b"01": "v2",
    b"02": "v3",
    b"03": "v3",
    b"04": "v4",
    b"05": "v2Pro",
    b"06": "v2ProPlus",
}
# version -> the tag my_save2 writes (model_version2byte)
GPT_SOVITS_TAG_OF: dict[str, bytes] = {"v3": b"03", "v4": b"04", "v2Pro": b"05", "v2ProPlus": b"06"}


def wrapper_prefix(keys: Iterable[str], prefixes: tuple[str, ...] = WRAPPER_PREFIXES) -> str | None:
    """The wrapper prefix every key carries (``module.``...), or None."""
    names = [str(k) for k in keys]
    if not names:
        return None
    for prefix in sorted(prefixes, key=len, reverse=True):
        if all(n.startswith(prefix) for n in names):
            return prefix
    return None


def strip_wrapper(keys: Iterable[str], prefixes: tuple[str, ...] = WRAPPER_PREFIXES) -> tuple[str, list[str]]:
    """(prefix, keys without it); the prefix is ``""`` when the keys carry none."""
    names = [str(k) for k in keys]
    prefix = wrapper_prefix(names, prefixes) or ""
    return prefix, [n[len(prefix) :] for n in names]
