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
from ckpttool.errors import EXIT_UNREADABLE, EXIT_USAGE, CkptError
from ckpttool.render import to_json

EXIT_INTERNAL = 4


# Commands are imported when used: `ckpttool inspect` should not pay for importing migrate, verify or convert.
COMMANDS = {
    "inspect": "ckpttool.cli.inspect_cmd:inspect_cmd",
    "diff": "ckpttool.cli.diff_cmd:diff_cmd",
    "migrate": "ckpttool.cli.migrate_cmd:migrate_cmd",
    "verify-resume": "ckpttool.cli.verify_cmd:verify_cmd",
    "latest": "ckpttool.cli.run_cmds:latest_cmd",
    "check": "ckpttool.cli.run_cmds:check_cmd",
    "fix": "ckpttool.cli.run_cmds:fix_cmd",
    "prune": "ckpttool.cli.run_cmds:prune_cmd",
    "pack": "ckpttool.cli.run_cmds:pack_cmd",
    "unpack": "ckpttool.cli.run_cmds:unpack_cmd",
    "convert": "ckpttool.cli.convert_cmd:convert_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        import importlib

        module, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


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

    Exit codes: 0 ok, 1 problems found, 2 usage error, 3 unreadable input. Human output fits the terminal
    width (COLUMNS, at least 80); NO_COLOR turns colour off.
    """
    from ckpttool.render import term

    if color:
        ctx.color = True  # click keeps the styles even when stdout is not a terminal
    term.use(
        term.RenderOptions(color=color if color is not None else not os.environ.get("NO_COLOR"), quiet=quiet)
    )


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


__all__ = ["EXIT_UNREADABLE", "cli", "main"]
