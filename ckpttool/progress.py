"""The progress protocol of long-running library functions: they call ``progress(label, done, total)`` as work
finishes (``done`` of ``total`` units under ``label``; ``done == total`` ends that label) and never print. The
CLI draws the calls as a progress bar on stderr (ckpttool.cli.progress); other callers may log them or pass
None."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""``progress(label, done, total)``: ``done`` of ``total`` units of the work named ``label`` are finished."""


def report(progress: Progress | None, label: str, done: int, total: int) -> None:
    """Call ``progress`` when one is given (the one-liner every long-running function uses)."""
    if progress is not None:
        progress(label, done, total)
