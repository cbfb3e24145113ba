"""Terminal layout for the human reports: the width to fit, display width (CJK characters take two columns),
wrapping with a hanging indent, paths shown short, coloured status marks, the problems-only view (``-q``),
findings grouped across files and the one-line summary every command ends with.

One :class:`RenderOptions` decides all of it; the CLI sets it once (:func:`use`) from ``-q``,
``--color/--no-color``, ``COLUMNS`` and ``NO_COLOR``, and the renderers read it with :func:`current`. JSON
output never goes through here.
"""

from __future__ import annotations

import contextvars
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from ckpttool.render.width import display_width, wrap

MIN_WIDTH = 80
STATUS_MARK = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}
_COLOURS = {"pass": "green", "fail": "red", "warn": "yellow", "skip": "bright_black"}


def terminal_width() -> int:
    """The columns to fit: ``COLUMNS`` when set, else the terminal's, never below :data:`MIN_WIDTH`."""
    return max(MIN_WIDTH, shutil.get_terminal_size((MIN_WIDTH, 24)).columns)


@dataclass(frozen=True)
class RenderOptions:
    """How human output is laid out: ``width`` in terminal columns; ``color`` adds ANSI styles to status marks
    (click strips them again when stdout is not a terminal, unless colour is forced); ``quiet`` keeps only
    problems (warn/fail), the verdict and the summary; paths under ``cwd`` are shown relative to it."""

    width: int = field(default_factory=terminal_width)
    color: bool = field(default_factory=lambda: not os.environ.get("NO_COLOR"))
    quiet: bool = False
    cwd: str = field(default_factory=os.getcwd)


_current: contextvars.ContextVar[RenderOptions | None] = contextvars.ContextVar(
    "render_options", default=None
)


def use(options: RenderOptions) -> None:
    """Make ``options`` the ones :func:`current` returns (the CLI calls this once per command)."""
    _current.set(options)


def current() -> RenderOptions:
    """The options set by :func:`use`, else the defaults read from the environment now."""
    return _current.get() or RenderOptions()


def hang(prefix: str, text: str, width: int | None = None) -> list[str]:
    """``prefix`` followed by ``text`` wrapped to ``width`` (default: the current one), continuation lines
    indented to where the text began (a hanging indent)."""
    width = width or current().width
    indent = display_width(prefix)
    body = wrap(text, width - indent)
    return [prefix + body[0], *(" " * indent + line for line in body[1:])]


def mark(status: str, options: RenderOptions | None = None) -> str:
    """The four-column status mark (``ok``, ``warn``, ``FAIL``, ``skip``), coloured when colour is on."""
    text = STATUS_MARK.get(status, status)
    options = options or current()
    if not options.color or status not in _COLOURS:
        return text
    return click.style(text, fg=_COLOURS[status], bold=status == "fail")


def emphasis(text: str, status: str, options: RenderOptions | None = None) -> str:
    """``text`` (a verdict line) coloured as ``status`` when colour is on."""
    options = options or current()
    return click.style(text, fg=_COLOURS[status], bold=True) if options.color and status in _COLOURS else text


class PathShortener:
    """Shows paths in message text short: inside the run folder ``run`` relative to it, else relative to the
    current directory when they lie under it; other text is left alone. Built from the folders and files a
    report names, as the user gave them and as absolute paths."""

    def __init__(self, run: str | None = None, cwd: str | None = None) -> None:
        cwd = cwd or current().cwd
        pairs: list[tuple[str, str]] = []
        if run is not None:
            shown = _relative(run, cwd)
            for form in {run.rstrip("/"), os.path.abspath(run), shown}:
                pairs += [(form + "/", ""), (form, shown)]
        pairs.append((cwd.rstrip("/") + "/", ""))
        self._pairs = sorted({p for p in pairs if p[0] not in ("", "/")}, key=lambda p: -len(p[0]))

    def __call__(self, text: str) -> str:
        """``text`` with each known path prefix replaced (longest first, each place once)."""
        if not self._pairs:
            return text
        pattern = re.compile("|".join(re.escape(a) for a, _ in self._pairs))
        table = dict(self._pairs)
        return pattern.sub(lambda m: table[m.group(0)], text)


def _relative(path: str, cwd: str) -> str:
    """``path`` relative to ``cwd`` when it lies under it, else as given."""
    full = os.path.abspath(path)
    try:
        rel = os.path.relpath(full, cwd)
    except ValueError:  # another drive (Windows)
        return path
    return rel if not rel.startswith("..") else path


def relpath(path: str, cwd: str | None = None) -> str:
    """``path`` relative to the current directory when it lies under it, else as given."""
    return _relative(str(path), cwd or current().cwd)


Finding = tuple[str, str, str, "str | None"]
"""``(status, name, message, file)``: one check line; ``file`` the checkpoint it is about, or None."""


def group_findings(
    items: Sequence[Finding], shorten: PathShortener | None = None
) -> list[tuple[str, str, str]]:
    """Findings about different files with the same status, name and text (after a leading ``FILE: ``) merged
    into one whose message starts ``G and D: `` (a GPT-SoVITS/VITS G and D file) or ``N files: ``; order kept,
    each group where its first finding was. Returns ``(status, name, message)`` with paths shortened."""
    shorten = shorten or PathShortener()
    groups: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    order: list[tuple[str, str, str]] = []
    for i, (status, name, message, file) in enumerate(items):
        if file is None:
            key = (status, name, f"\0{i}")  # never merged
        else:
            key = (status, name, message[len(file) + 2 :] if message.startswith(f"{file}: ") else message)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((file or "", message))
    several = len({f for _, _, _, f in items if f}) > 1
    out: list[tuple[str, str, str]] = []
    for key in order:
        members = groups[key]
        if len(members) == 1:
            file, message = members[0]
            if several and file and file not in message:  # say which file, as the others do
                message = f"{file}: {message}"
            out.append((key[0], key[1], shorten(message)))
        else:
            label = _files_label([f for f, _ in members])
            out.append((key[0], key[1], f"{label}: {shorten(key[2])}"))
    return out


def _files_label(files: list[str]) -> str:
    bases = [os.path.basename(f) for f in files]
    if len(bases) == 2 and {b[:2] for b in bases} == {"G_", "D_"}:
        return "G and D"
    return f"{len(files)} files"


def check_lines(items: Iterable[tuple[str, str, str]], options: RenderOptions | None = None) -> list[str]:
    """One ``  MARK  NAME  message`` line group per finding, the message wrapped with a hanging indent; with
    ``quiet`` only warnings and failures."""
    options = options or current()
    out = []
    for status, name, message in items:
        if options.quiet and status not in ("warn", "fail"):
            continue
        plain = f"  {STATUS_MARK.get(status, status)}  {name:<16} "
        lines = hang(plain, message, options.width)
        coloured = f"  {mark(status, options)}  {name:<16} "
        out += [coloured + lines[0][len(plain) :], *lines[1:]]
    return out


def summary(statuses: Iterable[tuple[str, str]], *, named: bool = True) -> str:
    """The closing line from ``(status, name)`` pairs: ``2 problems, 3 warnings: optimizer, scheduler`` (the
    names of what failed or warned, each once; left out when not ``named``), or ``no problems``."""
    fails, warns, names = 0, 0, []
    for status, name in statuses:
        if status not in ("fail", "warn"):
            continue
        fails += status == "fail"
        warns += status == "warn"
        if name not in names:
            names.append(name)
    if not fails and not warns:
        return "no problems"
    parts = []
    if fails:
        parts.append(f"{fails} problem{'s' if fails != 1 else ''}")
    if warns:
        parts.append(f"{warns} warning{'s' if warns != 1 else ''}")
    return ", ".join(parts) + (": " + ", ".join(names) if named else "")


def fit_table(
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    wrap_column: int = -1,
    colalign: Sequence[str] | None = None,
) -> str:
    """A table (:func:`ckpttool.render.grid.grid`) no wider than the current width when it can be: too wide,
    column ``wrap_column`` (the detail column; default the last) wraps inside its cell, measured in display
    columns, down to a third of the width, then, if still too wide, the widest other columns; no column below
    12."""
    from ckpttool.render.grid import cell_text, grid  # a table's layout, only when one is printed

    width = current().width
    ncol = len(headers)
    limits: list[int | None] = [None] * ncol
    table = grid(rows, headers, colalign=colalign)
    for _ in range(ncol):
        widest = max((display_width(line) for line in table.splitlines()), default=0)
        if widest <= width or not rows:
            break
        widths = [
            max(
                [display_width(part) for r in rows for part in cell_text(r[i]).split("\n")]
                + [display_width(headers[i])]
            )
            for i in range(ncol)
        ]
        free = [i for i in range(ncol) if limits[i] is None and widths[i] > 12]
        if not free:
            break
        detail = wrap_column % ncol
        col = detail if detail in free else max(free, key=lambda i: widths[i])
        # the detail column gives way first, but keeps a third of the width: prose squeezed to a dozen columns
        # reads worse than a wrapped path in another column
        floor = max(12, width // 3) if col == detail else 12
        limits[col] = max(min(floor, widths[col]), widths[col] - (widest - width))
        table = grid(rows, headers, colalign=colalign, maxcolwidths=limits)
    return table


_LABELLED = re.compile(r"^(.{6,30}?\S\s{2,})\S")


def rewrap(line: str, width: int | None = None, indent: int | None = None) -> list[str]:
    """A rendered ``  label   text`` line wrapped to ``width`` (default: the current one) with a hanging indent
    where its text begins: at column ``indent`` when the line has a space just before it, else after the first
    run of two or more spaces past the label, else under the label. Lines that fit are returned as they are."""
    width = width or current().width
    if display_width(line) <= width:
        return [line]
    m = _LABELLED.match(line)
    cut = None if indent is None else _index_at_column(line, indent)
    if cut is not None and line[:cut].endswith(" ") and line[cut : cut + 1].strip():
        return hang(line[:cut], line[cut:], width)
    if m and display_width(m.group(1)) < width // 2:
        prefix = m.group(1)
    else:
        prefix = " " * min(len(line) - len(line.lstrip(" ")), width // 2)
    return hang(prefix, line[len(prefix) :], width)


def _index_at_column(line: str, column: int) -> int | None:
    """The index of the character that starts at display column ``column`` of ``line`` (a CJK label before it
    takes two columns per character); None when ``column`` falls inside a wide character or past the end."""
    if line[:column].isascii():
        return column if column <= len(line) else None
    at = 0
    for i, ch in enumerate(line):
        if at == column:
            return i
        if at > column:
            return None
        at += display_width(ch)
    return len(line) if at == column else None


def rewrap_all(lines: Iterable[str], width: int | None = None, indent: int | None = None) -> list[str]:
    """:func:`rewrap` of each line (a line holding newlines is split first)."""
    out: list[str] = []
    for text in lines:
        for line in text.split("\n"):
            out += rewrap(line, width, indent)
    return out
