"""``ckpttool diff A B``."""

from __future__ import annotations

import click

from ckpttool.cli.common import allow_global_option, emit, json_option
from ckpttool.cli.progress import stderr_progress
from ckpttool.configs import load_config_file
from ckpttool.errors import EXIT_OK, EXIT_PROBLEMS
from ckpttool.ops.diff import DiffOptions, Progress, diff_paths
from ckpttool.render import to_json
from ckpttool.render.diff_table import render_diff


def _progress() -> Progress | None:
    """The value comparison's progress as a bar on stderr (when it is a terminal)."""
    bar = stderr_progress()
    if bar is None:
        return None
    return lambda done, total, name: bar("values", done, total)


@click.command("diff")
@click.argument("a", type=click.Path(path_type=str))
@click.argument("b", type=click.Path(path_type=str))
@click.option(
    "--config-a", type=click.Path(exists=True, dir_okay=False), help="Config file A was trained with."
)
@click.option(
    "--config-b", type=click.Path(exists=True, dir_okay=False), help="Config file B was trained with."
)
@click.option(
    "--values", is_flag=True, help="Also compare tensor values (streams one tensor pair at a time)."
)
@click.option("--exit-code", is_flag=True, help="Exit 1 when anything differs (like git diff --exit-code).")
@allow_global_option
@json_option
def diff_cmd(
    a: str,
    b: str,
    config_a: str | None,
    config_b: str | None,
    values: bool,
    exit_code: bool,
    allow_globals: tuple[str, ...],
    as_json: bool,
) -> int:
    """Compare two checkpoints and explain each shape change by the config change that caused it.

    A and B may be any formats ckpttool reads (a .pth against a .safetensors works). Configs come from
    --config-a/--config-b, else from the checkpoints themselves when they embed one.
    """
    options = DiffOptions(
        load_config_file(config_a) if config_a else None,
        load_config_file(config_b) if config_b else None,
        values,
        _progress(),
        frozenset(allow_globals),
    )
    report = diff_paths(a, b, options)
    emit(to_json(report.to_json()) if as_json else render_diff(report))
    return EXIT_PROBLEMS if exit_code and report.differs else EXIT_OK
