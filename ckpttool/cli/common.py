"""Options and helpers shared by commands."""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ckpttool.cli.progress import StderrBar

# Set by commands that were given --json, so main() can print errors as JSON too.
json_mode: contextvars.ContextVar[bool] = contextvars.ContextVar("json_mode", default=False)

F = TypeVar("F", bound=Callable[..., Any])


def json_option(f: F) -> F:
    """The ``--json`` flag (passed as ``as_json``). Eager, so an error met while the other options are parsed
    is already printed as a ``ckpttool.error/1`` document."""

    def set_mode(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        json_mode.set(bool(value))
        return value

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        is_eager=True,
        callback=set_mode,
        help="Print one JSON document on stdout instead of tables.",
    )(f)


def allow_global_option(f: F) -> F:
    """``--allow-global M.N`` (repeatable): trust these globals in a gate (see docs/safety.md)."""
    return click.option(
        "--allow-global",
        "allow_globals",
        multiple=True,
        metavar="MODULE.NAME",
        help="Trust a global ckpttool cannot vouch for (repeatable); unsafe ones stay refused.",
    )(f)


def emit(text: str) -> None:
    """Write ``text`` to stdout as is (a rendered table or JSON document ends with its own newline)."""
    click.echo(text, nl=False)


def emit_lines(lines: list[str], bar: StderrBar | None = None) -> None:
    """Write rendered ``lines`` to stdout at once (streamed reports), erasing a progress bar on stderr first."""
    if not lines:
        return
    if bar is not None:
        bar.clear()
    click.echo("\n".join(lines))
    sys.stdout.flush()


class LineStream:
    """Streams a report's lines to stdout: ``header`` goes out with the first lines (so a usage error found
    before any check leaves stdout empty), each later call's lines as they come."""

    def __init__(self, header: list[str], bar: StderrBar | None) -> None:
        self._header: list[str] | None = header
        self._bar = bar

    def __call__(self, lines: list[str]) -> None:
        if self._header is not None:
            lines, self._header = [*self._header, *lines], None
        emit_lines(lines, self._bar)


def _list_trainers(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value != "list" or ctx.resilient_parsing:
        return value
    from ckpttool.trainers import all_trainers

    for record in all_trainers():
        if record.loads is not None:
            click.echo(f"{record.name:<20} {record.title}")
    ctx.exit(0)
    return None


def trainer_options(f: F) -> F:
    """``--trainer NAME`` (``list`` prints the names), ``--trainer-root``, ``--torch-version`` and
    ``--lightning-version``: which trainer resumes, and the environment it resumes in (docs/trainers.md)."""
    f = click.option(
        "--lightning-version", metavar="X.Y", help="The Lightning version the resume runs with."
    )(f)
    f = click.option("--torch-version", metavar="X.Y", help="The torch version the resume runs with.")(f)
    f = click.option(
        "--trainer-root",
        type=click.Path(exists=True, file_okay=False, path_type=str),
        help="The trainer's checkout (GPT-SoVITS): its environment (runtime/, .venv) gives the torch version "
        "(and check --verify runs the model through its real code).",
    )(f)
    return click.option(
        "--trainer",
        metavar="NAME",
        callback=_list_trainers,
        help="The trainer that will resume (default: detected; 'list' prints the names).",
    )(f)
