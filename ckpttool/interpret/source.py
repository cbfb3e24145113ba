"""The one entry point from a path to an interpreted checkpoint: ``load(path) -> Source``.

Opened, sniffed, read and interpreted once; every operation takes Sources, so a command that looks at a file
several ways (``check``: latest, verdict, config, resume checks) reads it once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ckpttool.formats import open_checkpoint
from ckpttool.formats.values import StorageReader
from ckpttool.interpret.pieces import Interpretation, interpret
from ckpttool.interpret.profiles import Layout, detect_layout
from ckpttool.model import Checkpoint


@dataclass
class Source:
    """One input, read (``ckpt``), laid out (``layout``: which key holds which piece, which trainer wrote it)
    and interpreted (``interp``: pieces, optimizer alignment, verdict)."""

    ckpt: Checkpoint
    layout: Layout
    interp: Interpretation

    @property
    def name(self) -> str:
        """The input's path, as given."""
        return self.ckpt.path


def interpret_checkpoint(ckpt: Checkpoint, layout: Layout | None = None) -> Source:
    """Interpret a checkpoint already read; the optimizers' ``step`` scalars are read here (a few bytes each)."""
    layout = layout or detect_layout(ckpt)
    with StorageReader() as reader:
        interp = interpret(ckpt, layout, lambda ts: [reader.scalar(t) for t in ts])
    return Source(ckpt, layout, interp)


def load(path: str | os.PathLike[str]) -> Source:
    """Open, sniff, read and interpret ``path``. Raises a CkptError subclass on bad input (never a bare
    exception); reads no tensor bytes beyond the optimizers' step counters and imports no torch."""
    return interpret_checkpoint(open_checkpoint(path))
