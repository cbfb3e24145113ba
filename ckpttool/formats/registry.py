"""The format registry: every format ckpttool reads, in the order their ``sniff`` is tried.

Adding a format is a module defining a :class:`~ckpttool.formats.base.Format` subclass plus one line here.
"""

from __future__ import annotations

from ckpttool.formats.accelerate import Accelerate
from ckpttool.formats.base import Format
from ckpttool.formats.dcp import Dcp
from ckpttool.formats.hf_pretrained import HfPretrained
from ckpttool.formats.hf_sharded import HfSharded
from ckpttool.formats.hf_trainer import HfTrainer
from ckpttool.formats.legacy import Legacy
from ckpttool.formats.not_checkpoints import GitLfsPointer, HtmlPage
from ckpttool.formats.raw_pickle import RawPickle
from ckpttool.formats.safetensors import Safetensors
from ckpttool.formats.tar_legacy import TorchTar
from ckpttool.formats.torch_zip import TaggedZip, TorchScript, TorchZip
from ckpttool.model import StorageRef

# In torch.load's own order where it matters (torch/serialization.py load / _legacy_load): zip first, then the
# pre-0.4 tar (only for real files, which is what ckpttool reads), then the legacy pickle stream, then any other
# pickle (torch unpickles it before it checks the magic number).
FORMATS: tuple[Format, ...] = (
    TorchZip(),
    TaggedZip(),
    TorchScript(),
    Safetensors(),
    TorchTar(),
    Legacy(),
    RawPickle(),
    Dcp(),
    HfTrainer(),  # before the two below: a Trainer checkpoint also holds a save_pretrained model
    HfSharded(),
    Accelerate(),
    HfPretrained(),
    GitLfsPointer(),
    HtmlPage(),
)


def get_format(name: str) -> Format:
    for f in FORMATS:
        if f.name == name:
            return f
    raise KeyError(name)


def for_storage(ref: StorageRef) -> Format:
    """The format that serves this kind of storage reference (the first one registered for it)."""
    kind = type(ref)
    for f in FORMATS:
        if f.storage is kind:
            return f
    raise KeyError(kind.__name__)


def writers() -> dict[str, Format]:
    """``convert --to`` name -> the format that writes it."""
    return {f.target: f for f in FORMATS if f.target is not None}


def file_suffixes() -> tuple[str, ...]:
    """File-name endings worth reading when scanning a run folder (a hint only: content decides the format)."""
    return tuple(sorted({s for f in FORMATS for s in f.suffixes}))
