"""``ckpttool latest``, ``check``, ``prune``, ``pack``, ``unpack``: the run-directory workflow around a resume."""

from __future__ import annotations

import click

from ckpttool.cli.common import allow_global_option, emit, json_option
from ckpttool.configs import ConfigOptions
from ckpttool.errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from ckpttool.ops.check import CheckOptions, check_targets
from ckpttool.ops.inspect import parse_require
from ckpttool.ops.pack import pack_run, unpack_package
from ckpttool.render import to_json
from ckpttool.render.runs_table import (
    latest_notes,
    render_check,
    render_latest_paths,
    render_latest_table,
    render_pack,
    render_prune,
)
from ckpttool.runs import latest
from ckpttool.saving import prune_checkpoints


@click.command("latest")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--table", is_flag=True, help="Show every checkpoint found and why any was skipped.")
@allow_global_option
@json_option
def latest_cmd(run_dir: str, table: bool, allow_globals: tuple[str, ...], as_json: bool) -> int:
    """Print the newest complete, readable checkpoint (G and D as an aligned pair) in RUN_DIR.

    Ordered by what is inside (epoch, step, Adam step) and file times, not by the digits in the names; skipped
    files and stale "latest" files are reported on stderr. Exit 1 when there is none.
    """
    r = latest(run_dir, frozenset(allow_globals))
    if as_json:
        emit(to_json(r.to_json()))
    elif table:
        emit(render_latest_table(r))
    else:
        emit(render_latest_paths(r))
        for note in latest_notes(r):
            click.echo(f"ckpttool: {note}", err=True)
    return EXIT_OK if r.chosen else EXIT_PROBLEMS


@click.command("check")
@click.argument("targets", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="The run config the resume will use (checked against the tensor shapes).",
)
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config value (repeatable)."
)
@click.option("--require", metavar="PIECES", help="Pieces that must be present, e.g. optimizer,scheduler.")
@click.option("--verify", is_flag=True, help="Also run the shadow run of verify-resume.")
@click.option("--steps", type=int, default=4, show_default=True, help="Shadow-run steps with --verify.")
@click.option("--device", default="cpu", show_default=True, help="Device for --verify: auto, cpu or cuda.")
@click.option(
    "--trainer-root",
    type=click.Path(path_type=str),
    help="With --verify: your GPT-SoVITS checkout, for a model run through its real model (default: the "
    "checkout the working directory is in, if any).",
)
@allow_global_option
@json_option
def check_cmd(
    targets: tuple[str, ...],
    config_path: str | None,
    sets: tuple[str, ...],
    require: str | None,
    verify: bool,
    steps: int,
    device: str,
    trainer_root: str | None,
    allow_globals: tuple[str, ...],
    as_json: bool,
) -> int:
    """The CI gate before a resume: latest valid pair, verdict, config compatibility, resume checks.

    TARGETS: a run directory (its latest valid checkpoint is used) or checkpoint files. Exit 0 ready, 1 not.
    """
    if trainer_root and not verify:
        raise UsageError("--trainer-root is for the model run of --verify; add --verify")
    options = CheckOptions(
        parse_require(require), ConfigOptions.from_cli(config_path, sets), verify, steps, device,
        frozenset(allow_globals), trainer_root,
    )  # fmt: skip
    r = check_targets(targets, options)
    emit(to_json(r.to_json()) if as_json else render_check(r))
    return EXIT_OK if r.ok else EXIT_PROBLEMS


@click.command("prune")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--keep", type=int, default=5, show_default=True, help="Newest valid checkpoints to keep.")
@click.option("--every", type=int, help="Also keep checkpoints whose step (or epoch) is a multiple of this.")
@click.option("--pin", "pins", multiple=True, type=click.Path(path_type=str), help="A file never to delete.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@allow_global_option
@json_option
def prune_cmd(
    run_dir: str,
    keep: int,
    every: int | None,
    pins: tuple[str, ...],
    dry_run: bool,
    allow_globals: tuple[str, ...],
    as_json: bool,
) -> int:
    """Delete old checkpoints, never the newest valid pair, the trainer's latest file or a pinned one.

    Unreadable files are left alone (they may be saves in progress).
    """
    plan = prune_checkpoints(
        run_dir, keep=keep, every=every, pinned=pins, dry_run=dry_run, allow=frozenset(allow_globals)
    )
    emit(to_json({**plan.to_json(), "dry_run": dry_run}) if as_json else render_prune(plan, not dry_run))
    return EXIT_OK


@click.command("pack")
@click.argument("run_dir", type=click.Path(exists=True, path_type=str))
@click.option("-o", "--out", required=True, type=click.Path(path_type=str), help="The package file to write.")
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=str),
    help="Pack these checkpoints instead of the latest valid ones (repeatable).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=str),
    help="The run config to include (default: config.json beside the checkpoints).",
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@allow_global_option
@json_option
def pack_cmd(
    run_dir: str,
    out: str,
    files: tuple[str, ...],
    config_path: str | None,
    force: bool,
    allow_globals: tuple[str, ...],
    as_json: bool,
) -> int:
    """Pack the latest valid checkpoint(s), the config and a manifest (sizes, sha256, inspect summary)."""
    r = pack_run(run_dir, out, files=files, config=config_path, force=force, allow=frozenset(allow_globals))
    emit(to_json(r.to_json()) if as_json else render_pack(r))
    return EXIT_OK


@click.command("unpack")
@click.argument("package", type=click.Path(path_type=str))
@click.option(
    "-o",
    "--out",
    "out_dir",
    default=".",
    show_default=True,
    type=click.Path(path_type=str),
    help="Folder to unpack into.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Check sizes, sha256 and the inspect summaries against the manifest.",
)
@click.option("--force", is_flag=True, help="Replace files that exist.")
@json_option
def unpack_cmd(package: str, out_dir: str, verify: bool, force: bool, as_json: bool) -> int:
    """Unpack a package made by ``ckpttool pack`` and verify it arrived intact (exit 1 if not)."""
    r = unpack_package(package, out_dir, verify=verify, force=force)
    emit(to_json(r.to_json()) if as_json else render_pack(r))
    return EXIT_OK if r.verified is not False else EXIT_PROBLEMS
