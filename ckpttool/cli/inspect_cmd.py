"""``ckpttool inspect PATH``."""

from __future__ import annotations

import click

from ckpttool.cli.common import emit, json_option
from ckpttool.cli.progress import stderr_progress
from ckpttool.configs import ConfigOptions
from ckpttool.errors import EXIT_OK, EXIT_PROBLEMS
from ckpttool.ops.inspect import InspectOptions, inspect_path, parse_require


@click.command("inspect")
@click.argument("path", type=click.Path(dir_okay=True, path_type=str))
@json_option
@click.option("--tensors", is_flag=True, help="Also list every tensor, grouped by module prefix.")
@click.option(
    "--require",
    metavar="PIECES",
    help="Comma-separated pieces that must be present (e.g. optimizer,scheduler,step); exit 1 if not.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="Run config (JSON or YAML, e.g. s2.json) to check every tensor shape against; exit 1 on a mismatch. "
    "Without it, a config embedded in the checkpoint is used.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value (repeatable); the key must be one a spec or the config knows "
    "(a typo is refused with a did-you-mean).",
)
@click.option(
    "--deep", is_flag=True, help="Also read every tensor byte: zip CRC-32s checked (torch does not)."
)
def inspect_cmd(
    path: str,
    as_json: bool,
    tensors: bool,
    require: str | None,
    config_path: str | None,
    sets: tuple[str, ...],
    deep: bool,
) -> int:
    """Show which training-state pieces PATH holds and whether training can resume from it.

    Reads only the pickle and archive directory: no code from the file runs, no tensor data is loaded (with
    --deep, every tensor byte is read and zip CRC-32s are checked).
    """
    options = InspectOptions(
        parse_require(require), tensors, ConfigOptions.from_cli(config_path, sets), deep,
        progress=stderr_progress() if deep else None,
    )  # fmt: skip
    report = inspect_path(path, options)
    if as_json:
        from ckpttool.render import to_json

        emit(to_json(report.to_json()))
    else:
        from ckpttool.render.inspect_table import render_inspect  # only for the table

        emit(render_inspect(report))
    return EXIT_OK if report.ok else EXIT_PROBLEMS
