"""Progress bars on stderr for the library's ``progress(label, done, total)`` calls (ckpttool.progress), drawn
by click's progressbar, only when stderr is a terminal: piped or captured output never holds a bar."""

from __future__ import annotations

import shutil
import sys
from typing import Any

import click

from ckpttool.render.term import display_width


class StderrBar:
    """One click progress bar at a time on stderr: a new label starts a new bar, ``done == total`` or
    :meth:`clear` erases it (so report lines printed on stdout are not mixed into it). Call the instance as a
    :data:`~ckpttool.progress.Progress`."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._label = ""

    def __call__(self, label: str, done: int, total: int) -> None:
        if self._bar is None or label != self._label:
            self.clear()
            self._label = label
            # label, bar, percentage and ETA on one line of the terminal (a wrapped bar cannot be redrawn)
            bar_width = max(10, shutil.get_terminal_size().columns - display_width(label) - 24)
            self._bar = click.progressbar(
                length=max(total, 1), label=label, file=sys.stderr, show_eta=True, width=bar_width
            )
            self._bar.__enter__()
        step = done - self._bar.pos
        if step > 0:
            self._bar.update(step)
        if done >= total:
            self.clear()

    def clear(self) -> None:
        """Erase the bar's line (the report lines that follow go to stdout)."""
        if self._bar is not None:
            self._bar = None
            click.echo("\r\x1b[2K", err=True, nl=False)


def stderr_progress() -> StderrBar | None:
    """A bar on stderr when stderr is a terminal, else None (the library then skips its progress calls)."""
    return StderrBar() if sys.stderr.isatty() else None
