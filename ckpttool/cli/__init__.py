"""The ``ckpttool`` command line: thin commands over library functions, errors mapped to exit codes here.

Exit codes (docs/exit-codes.md): 0 ok; 1 the check found problems; 2 usage error; 3 an input cannot be read
(missing, truncated, corrupt, unsupported, unsafe). A CkptError becomes one line on stderr, never a traceback;
with ``--json`` the same error is also printed on stdout as a ``ckpttool.error/1`` document.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

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
def cli() -> None:
    """Inspect, diff, migrate and verify PyTorch training checkpoints without executing them.

    Exit codes: 0 ok, 1 problems found, 2 usage error, 3 unreadable input.
    """


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
    except click.exceptions.Abort:
        click.echo("ckpttool: aborted", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if exc.exit_code == 2 else exc.exit_code)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        click.echo("ckpttool: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
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
