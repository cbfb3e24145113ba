"""``ckpttool diff A B``."""

from __future__ import annotations

import click
from click.core import ParameterSource

from ckpttool.cli.common import allow_global_option, emit, json_option
from ckpttool.cli.progress import stderr_progress
from ckpttool.configs import load_config_file
from ckpttool.errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from ckpttool.ops.diff import DiffOptions, Progress, diff_paths
from ckpttool.render import to_json
from ckpttool.render.diff_plot import check_plot_target, write_plot
from ckpttool.render.diff_table import render_diff
from ckpttool.render.diff_values_table import DEFAULT_TOP, By


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
@click.option(
    "--top",
    type=click.IntRange(min=0),
    metavar="N",
    default=DEFAULT_TOP,
    show_default=True,
    help="With --values: show the N modules (or tensors) that moved most; 0 shows all.",
)
@click.option(
    "--by",
    type=click.Choice(["module", "tensor"]),
    default="module",
    show_default=True,
    help="With --values: rank modules (parameters concatenated) or single tensors.",
)
@click.option(
    "--plot",
    "plot",
    type=click.Path(dir_okay=False, path_type=str),
    help="Draw the per-module relative change to FILE (.html self-contained, .png needs ckpttool[plot]); "
    "implies --values.",
)
@click.option("--force", is_flag=True, help="Replace the --plot file if it exists.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when anything differs (like git diff --exit-code).")
@allow_global_option
@json_option
def diff_cmd(
    a: str,
    b: str,
    config_a: str | None,
    config_b: str | None,
    values: bool,
    top: int,
    by: By,
    plot: str | None,
    force: bool,
    exit_code: bool,
    allow_globals: tuple[str, ...],
    as_json: bool,
) -> int:
    """Compare two checkpoints and explain each shape change by the config change that caused it.

    A and B may be any formats ckpttool reads (a .pth against a .safetensors works). Configs come from
    --config-a/--config-b, else from the checkpoints themselves when they embed one. With --values, the
    modules that moved most come first: relative change ||B-A||/||A|| of each module's parameters concatenated.
    """
    ctx = click.get_current_context()
    given = {n for n in ("top", "by", "force") if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE}
    if "force" in given and not plot:
        raise UsageError("--force applies to --plot FILE (diff writes nothing else)")
    for name in sorted(given - {"force"}):
        if not (values or plot):
            raise UsageError(f"--{name} applies to --values or --plot; add --values")
    if plot:
        values = True
        check_plot_target(plot, [a, b], force)
    options = DiffOptions(
        load_config_file(config_a) if config_a else None,
        load_config_file(config_b) if config_b else None,
        values,
        _progress(),
        frozenset(allow_globals),
    )
    report = diff_paths(a, b, options)
    written = write_plot(report, plot, top=top, force=force, inputs=[a, b]) if plot else None
    emit(to_json(report.to_json()) if as_json else render_diff(report, top=top, by=by))
    if written:
        click.echo(f"plot: {written}", err=True)
    return EXIT_PROBLEMS if exit_code and report.differs else EXIT_OK
