"""What a format reader returns for one file (or one directory of files)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ckpttool.model.leaves import TensorInfo
from ckpttool.model.safety import Safety


@dataclass
class Checkpoint:
    """The tree of one checkpoint plus what its reader learned about the container.

        ``root`` is the unpickled object with tensors as :class:`TensorInfo` and foreign objects as stubs;
        ``tensors`` lists every distinct tensor once, in the order the tree reaches them; ``size`` is in bytes (the
        sum over member files for a directory); ``format`` is a :class:`ckpttool.vocab.Format` value;
        ``foreign_globals`` names the classes kept as inert stubs; ``meta`` holds format details (archive folder,
        header tag, safetensors metadata...) and ``notes`` what a user should know about the container; ``safety`` is the
    verdict over every global its pickles name (what ``torch.load`` with ``weights_only`` off would import and call).
    """

    path: str
    format: str
    root: Any
    tensors: list[TensorInfo]
    size: int
    meta: dict[str, Any] = field(default_factory=dict)
    foreign_globals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    safety: Safety = field(default_factory=Safety)

    def tensor_map(self) -> dict[str, TensorInfo]:
        return {t.path: t for t in self.tensors}

    def iter_tensors(self, prefix: str) -> Iterator[TensorInfo]:
        dotted = prefix + "."
        for t in self.tensors:
            if t.path.startswith(dotted):
                yield t
