"""The format registry: every format ckpttool reads, in the order their ``sniff`` is tried.

Adding a format is a module defining a :class:`~ckpttool.formats.base.Format` subclass plus one line here.
"""

from __future__ import annotations

from ckpttool.formats.accelerate import Accelerate
from ckpttool.formats.base import Format
from ckpttool.formats.dcp import Dcp
from ckpttool.formats.hf_sharded import HfSharded
from ckpttool.formats.legacy import Legacy
from ckpttool.formats.safetensors import Safetensors
from ckpttool.formats.torch_zip import TaggedZip, TorchScript, TorchZip
from ckpttool.model import StorageRef

FORMATS: tuple[Format, ...] = (
    TorchZip(),
    TaggedZip(),
    TorchScript(),
    Legacy(),
    Safetensors(),
    Dcp(),
    HfSharded(),
    Accelerate(),
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
