"""The one entry point from a path to an interpreted checkpoint: ``load(path) -> Source``.

Opened, sniffed, read and interpreted once; every operation takes Sources, so a command that looks at a file
several ways (``check``: latest, verdict, config, resume checks) reads it once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ckpttool.errors import UnverifiedCheckpoint
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


def load(path: str | os.PathLike[str], *, gate: frozenset[str] | None = None) -> Source:
    """Open, sniff, read and interpret ``path``. Raises a CkptError subclass on bad input (never a bare
    exception); reads no tensor bytes beyond the optimizers' step counters and imports no torch.

    An unsafe file is always refused (UnsafeCheckpoint). With ``gate`` (the globals the user allowed with
    ``--allow-global``), an unverified one is refused too (UnverifiedCheckpoint): what gates use.
    """
    ckpt = open_checkpoint(path)
    if gate is not None:
        require_verified(ckpt, gate)
    return interpret_checkpoint(ckpt)


def require_verified(ckpt: Checkpoint, allowed: frozenset[str] = frozenset()) -> None:
    """Raise UnverifiedCheckpoint when ``ckpt`` names globals that are neither safe nor allowed."""
    blocking = ckpt.safety.blocking(allowed)
    if not blocking:
        return
    listed = "; ".join(f"{u.describe()} ({u.why})" for u in blocking[:4])
    more = f" and {len(blocking) - 4} more" if len(blocking) > 4 else ""
    flags = " ".join(f"--allow-global {u.name}" for u in blocking[:4])
    raise UnverifiedCheckpoint(
        f"{ckpt.path}: refused, it names globals ckpttool cannot vouch for: {listed}{more}; inspect it, and if "
        f"you trust the file, pass {flags}",
        globals_=[u.name for u in blocking],
        path=ckpt.path,
    )
