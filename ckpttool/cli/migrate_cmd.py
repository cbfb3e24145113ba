"""``ckpttool migrate SRC -o OUT``."""

from __future__ import annotations

import click

from ckpttool.cli.common import allow_global_option, emit, json_option
from ckpttool.cli.progress import stderr_progress
from ckpttool.configs import ConfigOptions
from ckpttool.errors import EXIT_OK
from ckpttool.ops.migrate import FORMATS, INIT_MODES, OPTIMIZER_MODES, MigrateOptions, migrate_path
from ckpttool.render import to_json
from ckpttool.render.migrate_table import render_migrate


@click.command("migrate")
@click.argument("src", type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--out", type=click.Path(path_type=str), help="Output file (never an input).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="The new run config (JSON or YAML); only the keys it sets change.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change one config value, e.g. model.inter_channels=256 (repeatable); unknown keys and values of "
    "the wrong type are refused.",
)
@click.option(
    "--template",
    type=click.Path(dir_okay=False, path_type=str),
    help="A checkpoint of the new architecture: take the target shapes from it.",
)
@click.option("--dry-run", is_flag=True, help="Show the plan and write nothing.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option(
    "--optimizer",
    type=click.Choice(OPTIMIZER_MODES),
    default="migrate",
    show_default=True,
    help="migrate: cut/pad Adam moments like their parameters; reset: keep hyper-parameters only; "
    "drop: no optimizer state.",
)
@click.option(
    "--init",
    type=click.Choice(INIT_MODES),
    default="normal",
    show_default=True,
    help="New entries: normal = function-preserving (zeros on new inputs, small normal on new outputs); "
    "zeros; template = values from --template.",
)
@click.option(
    "--to",
    "to",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format; default: the input's (safetensors holds network weights only).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the new entries' init.")
@click.option(
    "--flatten-unverified",
    is_flag=True,
    help="Write objects of globals ckpttool cannot vouch for as plain data (listed) instead of refusing.",
)
@allow_global_option
@json_option
def migrate_cmd(
    src: str,
    out: str | None,
    config_path: str | None,
    sets: tuple[str, ...],
    template: str | None,
    dry_run: bool,
    force: bool,
    optimizer: str,
    init: str,
    to: str | None,
    seed: int,
    flatten_unverified: bool,
    allow_globals: tuple[str, ...],
    as_json: bool,
) -> int:
    """Carry weights and optimizer state of SRC over to a changed architecture (inter_channels, gin_channels,
    version ...), chunk-aware and function-preserving where the architecture spec allows.

    The plan (one action per tensor: copy, partial copy, init, drop) is shown first; with --dry-run nothing is
    written. SRC is never modified; OUT is written atomically, re-read and checked against the target shapes.
    """
    options = MigrateOptions(
        ConfigOptions.from_cli(config_path, sets), template, dry_run, force, optimizer, init, to, seed,
        frozenset(allow_globals), flatten_unverified,
    )  # fmt: skip
    report = migrate_path(src, out, options, progress=stderr_progress())
    emit(to_json(report.to_json()) if as_json else render_migrate(report))
    return EXIT_OK
