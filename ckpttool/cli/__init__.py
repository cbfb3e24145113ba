"""The ``ckpttool`` command line: thin commands over library functions, errors mapped to exit codes here.

Exit codes (docs/exit-codes.md): 0 ok; 1 the check found problems; 2 usage error; 3 an input cannot be read
(missing, truncated, corrupt, unsupported, unsafe); 130 interrupted (Ctrl-C). A CkptError becomes one line on
stderr, never a traceback; with ``--json`` the same error is also printed on stdout as a ``ckpttool.error/1``
document.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from ckpttool.cli.common import json_mode
from ckpttool.cli.lazy_group import COMMANDS, LazyGroup
from ckpttool.errors import EXIT_UNREADABLE, EXIT_USAGE, CkptError
from ckpttool.render import to_json

EXIT_INTERNAL = 4


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="ckpttool")
@click.option(
    "-q", "--quiet", is_flag=True, help="Show only problems (warnings, failures), the verdict and summary."
)
@click.option(
    "--color/--no-color",
    default=None,
    help="Colour the ok/warn/FAIL marks (default: when stdout is a terminal and NO_COLOR is not set).",
)
@click.pass_context
def cli(ctx: click.Context, quiet: bool, color: bool | None) -> None:
    """Inspect, diff, migrate and verify PyTorch training checkpoints without executing them.

    Exit codes: 0 ok, 1 problems found, 2 usage error, 3 unreadable input, 130 interrupted (Ctrl-C). Human
    output fits the terminal width (COLUMNS, at least 80); NO_COLOR turns colour off.
    """
    from ckpttool.render import term

    if color:
        ctx.color = True  # click keeps the styles even when stdout is not a terminal
    term.use(
        term.RenderOptions(color=color if color is not None else not os.environ.get("NO_COLOR"), quiet=quiet)
    )


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped with Ctrl-C


def _interrupted() -> NoReturn:
    """Ctrl-C: one line on stderr, exit 130 (docs/exit-codes.md)."""
    click.echo("ckpttool: interrupted (Ctrl-C)", err=True)
    sys.exit(EXIT_INTERRUPTED)


def _after_interrupt(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the exceptions ``exc`` was raised while handling."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point; the only place exceptions become exit codes."""
    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None, prog_name="ckpttool", standalone_mode=False
        )
    except CkptError as exc:
        if json_mode.get():
            sys.stdout.write(to_json(exc.to_json()))
        click.echo(f"ckpttool: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C (KeyboardInterrupt) into Abort; it is an interrupt, not a usage error
        if _after_interrupt(exc):
            _interrupted()
        click.echo("ckpttool: aborted", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if exc.exit_code == 2 else exc.exit_code)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as exc:
        if _after_interrupt(exc):  # e.g. an import that Ctrl-C cut short, failing again when retried
            _interrupted()
        if os.environ.get("CKPTTOOL_DEBUG"):
            raise
        click.echo(
            f"ckpttool: internal error ({type(exc).__name__}: {exc}); please report it, "
            "and set CKPTTOOL_DEBUG=1 to see the traceback",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else 0)


__all__ = ["COMMANDS", "EXIT_UNREADABLE", "cli", "main"]
