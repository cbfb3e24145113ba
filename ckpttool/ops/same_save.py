"""Counters that differ in value but name the same save, because the two files count differently.

GPT-SoVITS s1 writes the Lightning checkpoint with Lightning's 0-based ``epoch`` (the epoch just trained) and its
export with ``info = "GPT-e%s" % (current_epoch + 1)`` (s1_train.py:69): ``epoch=3`` and ``GPT-e4`` are one save.
The trainer records say how each counter relates to the number of finished epochs (``Counter.finished_offset``).
"""

from __future__ import annotations

from ckpttool.interpret.profiles import Layout, counter_value
from ckpttool.model import Checkpoint


def same_save_counter(ca: Checkpoint, cb: Checkpoint, la: Layout, lb: Layout, piece: str) -> str | None:
    """A note when counter ``piece`` ("step" or "epoch") differs as written but both files' records say it
    counts the same finished epochs (steps); None otherwise (also when either record does not say)."""
    if piece not in la.counter_offsets or piece not in lb.counter_offsets:
        return None
    va, vb = counter_value(ca, la, piece), counter_value(cb, lb, piece)
    if va is None or vb is None:
        return None
    done_a, done_b = va + la.counter_offsets[piece], vb + lb.counter_offsets[piece]
    if done_a != done_b or va == vb:
        return None
    return (
        f"{piece}: A's {va} and B's {vb} are the same point ({done_a} finished), counted differently "
        f"({la.meaning.get(piece) or la.profile}; {lb.meaning.get(piece) or lb.profile})"
    )
