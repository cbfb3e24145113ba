"""The command table: every command's name, where it lives and its one-line help, without importing it.

``ckpttool inspect`` should pay for ``inspect`` only, and ``ckpttool --help`` or a shell completing a command
name should pay for no command at all. So the group lists the commands and their short help from
:data:`COMMANDS` and imports a command's module the first time the command itself is needed (run, its own
``--help``, completing its options). ``tests/test_startup.py`` checks that each short help here is the one
click would derive from the command's docstring, so the table cannot drift.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


class CommandEntry(NamedTuple):
    target: str  # "module:attribute" of the click command
    short_help: str  # the first sentence of the command's docstring, as click shortens it


COMMANDS: dict[str, CommandEntry] = {
    "inspect": CommandEntry(
        "ckpttool.cli.inspect_cmd:inspect_cmd",
        "Show which training-state pieces PATH holds and whether training can resume from it.",
    ),
    "diff": CommandEntry(
        "ckpttool.cli.diff_cmd:diff_cmd",
        "Compare two checkpoints and explain each shape change by the config change that caused it.",
    ),
    "migrate": CommandEntry(
        "ckpttool.cli.migrate_cmd:migrate_cmd",
        "Carry weights and optimizer state of SRC over to a changed architecture (inter_channels, gin_channels, "
        "version ...), chunk-aware and function-preserving where the architecture spec allows.",
    ),
    "verify-resume": CommandEntry(
        "ckpttool.cli.verify_cmd:verify_cmd",
        "Prove that training resumed from PATHS continues as if it had never stopped.",
    ),
    "latest": CommandEntry(
        "ckpttool.cli.run_cmds:latest_cmd",
        "Print the newest complete, readable checkpoint (G and D as an aligned pair) in RUN_DIR.",
    ),
    "check": CommandEntry(
        "ckpttool.cli.run_cmds:check_cmd",
        "The CI gate before a resume: what the trainer will load and do, the latest valid pair, verdict, config "
        "compatibility, resume checks.",
    ),
    "fix": CommandEntry(
        "ckpttool.cli.run_cmds:fix_cmd",
        "Make the trainer resume from the newest complete state in RUN_DIR, deleting nothing.",
    ),
    "prune": CommandEntry(
        "ckpttool.cli.run_cmds:prune_cmd",
        "Delete old checkpoints, never the newest valid pair, the trainer's latest file or a pinned one.",
    ),
    "pack": CommandEntry(
        "ckpttool.cli.run_cmds:pack_cmd",
        "Pack the latest valid checkpoint(s), the config and a manifest (sizes, sha256, inspect summary).",
    ),
    "unpack": CommandEntry(
        "ckpttool.cli.run_cmds:unpack_cmd",
        "Unpack a package made by ``ckpttool pack`` and verify it arrived intact (exit 1 if not).",
    ),
    "convert": CommandEntry(
        "ckpttool.cli.convert_cmd:convert_cmd",
        "Convert between torch files, safetensors and DCP directories, keeping the whole training state.",
    ),
}


def short_help(name: str, limit: int = 45) -> str:
    """Command ``name``'s help shortened to ``limit`` characters the way click shortens a docstring."""
    return click.Command(name, help=COMMANDS[name].short_help).get_short_help_str(limit)


def load_command(name: str) -> click.Command | None:
    """The click command ``name`` (importing its module now), or None for an unknown name."""
    entry = COMMANDS.get(name)
    if entry is None:
        return None
    module, attr = entry.target.split(":")
    command: click.Command = getattr(importlib.import_module(module), attr)
    return command


class LazyGroup(click.Group):
    """A click group over :data:`COMMANDS`: help and command-name completion read the table, and a command's
    module is imported only when that command is resolved."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands" section of ``--help`` from the table (click's own layout, no command imported)."""
        if not COMMANDS:
            return
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, short_help(name, limit)) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Completion of a command name (with its short help, as click shortens it) from the table; options as
        click does."""
        from click.shell_completion import CompletionItem

        items = [
            CompletionItem(name, help=short_help(name)) for name in COMMANDS if name.startswith(incomplete)
        ]
        return items + click.Command.shell_complete(self, ctx, incomplete)
