"""``ckpttool verify-resume PATH [PATH ...]``."""

from __future__ import annotations

import click

from ckpttool.cli.common import LineStream, allow_global_option, emit, json_option
from ckpttool.cli.progress import stderr_progress
from ckpttool.configs import ConfigOptions
from ckpttool.errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from ckpttool.ops.verify import DEFAULT_STEPS, VerifyOptions, verify_paths
from ckpttool.render import to_json
from ckpttool.render.term import PathShortener
from ckpttool.render.verify_table import common_folder, render_checks, verify_footer, verify_header


@click.command("verify-resume")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="Run config (for train.lr_decay and fp16_run); default: config.json beside the files.",
)
@click.option("--steps", type=int, default=DEFAULT_STEPS, show_default=True, help="Shadow-run steps (even).")
@click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda[:N]."
)
@click.option(
    "--recipe", metavar="MODULE:FUNCTION", help="Also run your own model through a recipe (see docs)."
)
@click.option(
    "--trainer-root",
    type=click.Path(path_type=str),
    help="Your GPT-SoVITS checkout: run the model run through its real model with the built-in recipe for "
    "the files (default: the checkout the working directory is in, if any).",
)
@click.option("--no-model-run", is_flag=True, help="No model run, even inside a GPT-SoVITS checkout.")
@click.option(
    "--strict", is_flag=True, help="Known trainer drifts (LR rebuild, re-run epoch) fail instead of warn."
)
@click.option("--no-shadow", is_flag=True, help="Static checks only.")
@click.option(
    "--optimizer-class", help="Rebuild the optimizer as this torch.optim class (default: inferred)."
)
@click.option(
    "--scheduler-class", help="The scheduler class the trainer builds; a saved state of another fails."
)
@allow_global_option
@json_option
def verify_cmd(
    paths: tuple[str, ...],
    config_path: str | None,
    steps: int,
    device: str,
    recipe: str | None,
    trainer_root: str | None,
    no_model_run: bool,
    strict: bool,
    no_shadow: bool,
    optimizer_class: str | None,
    scheduler_class: str | None,
    allow_globals: tuple[str, ...],
    as_json: bool,
) -> int:
    """Prove that training resumed from PATHS continues as if it had never stopped.

    PATHS: a bundle, a Lightning checkpoint, or a G file and its D file. Static checks first (pieces, optimizer
    alignment, Adam steps, G/D stage, scheduler state, the LR after resume), then a shadow run without model code:
    N steps straight against N/2, save, reload, N/2, which must end bit-identical on the CPU; then, with a
    GPT-SoVITS checkout (--trainer-root) or --recipe, the same through the real model. Exit 0 when no check
    failed, 1 with every failed check listed.
    """
    if no_model_run and (recipe or trainer_root):
        raise UsageError("--no-model-run cannot be combined with --recipe or --trainer-root")
    config = ConfigOptions.from_cli(config_path).file
    options = VerifyOptions(
        config, steps, device, recipe, strict, not no_shadow, optimizer_class, scheduler_class,
        frozenset(allow_globals), trainer_root=trainer_root, detect_trainer_root=not no_model_run,
    )  # fmt: skip
    bar = stderr_progress()
    if as_json:
        report = verify_paths(paths, options, progress=bar)
        emit(to_json(report.to_json()))
        return EXIT_OK if report.ok else EXIT_PROBLEMS
    shorten = PathShortener(common_folder(paths))
    out = LineStream(verify_header(paths, device, strict), bar)
    report = verify_paths(
        paths, options, on_checks=lambda checks: out(render_checks(checks, shorten)), progress=bar
    )
    out(verify_footer(report))
    return EXIT_OK if report.ok else EXIT_PROBLEMS
