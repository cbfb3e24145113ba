"""``ckpttool latest``, ``check``, ``prune``, ``pack``, ``unpack``: the run-directory workflow around a resume."""

from __future__ import annotations

import click

from ckpttool.cli.common import LineStream, allow_global_option, emit, json_option, trainer_options
from ckpttool.cli.progress import stderr_progress
from ckpttool.configs import ConfigOptions
from ckpttool.errors import EXIT_OK, EXIT_PROBLEMS
from ckpttool.ops.check import CheckOptions, check_targets
from ckpttool.ops.fix import fix_run, undo_fix
from ckpttool.ops.inspect import parse_require
from ckpttool.ops.latest import latest_run
from ckpttool.ops.pack import pack_run, unpack_package
from ckpttool.render import to_json
from ckpttool.render.runs_table import (
    CheckStream,
    latest_notes,
    render_fix,
    render_latest_paths,
    render_latest_table,
    render_pack,
    render_prune,
)
from ckpttool.saving import prune_checkpoints


@click.command("latest")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--table", is_flag=True, help="Show every checkpoint found and why any was skipped.")
@trainer_options
@allow_global_option
@json_option
def latest_cmd(
    run_dir: str,
    table: bool,
    trainer: str | None,
    trainer_root: str | None,
    torch_version: str | None,
    lightning_version: str | None,
    allow_globals: tuple[str, ...],
    as_json: bool,
) -> int:
    """Print the newest complete, readable checkpoint (G and D as an aligned pair) in RUN_DIR.

    Ordered by what is inside (epoch, step, Adam step) and file times, not by the digits in the names; skipped
    files, and the file the trainer's own rule would pick instead, are reported on stderr. Exit 1 when there
    is none.
    """
    report = latest_run(
        run_dir, frozenset(allow_globals), trainer=trainer, trainer_root=trainer_root,
        torch_version=torch_version, lightning_version=lightning_version,
    )  # fmt: skip
    r = report.result
    if as_json:
        emit(to_json(report.to_json()))
    elif table:
        emit(render_latest_table(r))
    else:
        emit(render_latest_paths(r))
        for note in latest_notes(r, report.predictions):
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
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value (repeatable); the key must be one a spec or the config knows "
    "(a typo is refused with a did-you-mean).",
)
@click.option("--require", metavar="PIECES", help="Pieces that must be present, e.g. optimizer,scheduler.")
@click.option("--verify", is_flag=True, help="Also run the shadow run of verify-resume.")
@click.option("--steps", type=int, default=4, show_default=True, help="Shadow-run steps with --verify.")
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Device for --verify: auto (CUDA when present), cpu or cuda[:N].",
)
@trainer_options
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
    trainer: str | None,
    trainer_root: str | None,
    torch_version: str | None,
    lightning_version: str | None,
    allow_globals: tuple[str, ...],
    as_json: bool,
) -> int:
    """The CI gate before a resume: what the trainer will load and do, the latest valid pair, verdict, config
    compatibility, resume checks.

    TARGETS: a run directory (its latest valid checkpoint is used) or checkpoint files. Exit 0 ready, 1 when
    the trainer will not resume from the newest complete state, will crash, or a check failed.
    """
    options = CheckOptions(
        parse_require(require), ConfigOptions.from_cli(config_path, sets), verify, steps, device,
        frozenset(allow_globals), trainer, trainer_root, torch_version, lightning_version,
    )  # fmt: skip
    bar = stderr_progress()
    if as_json:
        r = check_targets(targets, options, progress=bar)
        emit(to_json(r.to_json()))
        return EXIT_OK if r.ok else EXIT_PROBLEMS
    stream = CheckStream(list(targets))
    out = LineStream(stream.header(list(targets)), bar)
    r = check_targets(targets, options, on_update=lambda rep: out(stream.new_lines(rep)), progress=bar)
    out(stream.footer(r))
    return EXIT_OK if r.ok else EXIT_PROBLEMS


@click.command("prune")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--keep", type=int, default=5, show_default=True, help="Newest valid checkpoints to keep.")
@click.option(
    "--every",
    type=int,
    help="Also keep checkpoints whose number is a multiple of this, in the unit the file names use (G_4000.pth: "
    "the number in the name; else the stored step, else the epoch).",
)
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
    r = pack_run(
        run_dir, out, files=files, config=config_path, force=force, allow=frozenset(allow_globals),
        progress=stderr_progress(),
    )  # fmt: skip
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


@click.command("fix")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--dry-run", is_flag=True, help="Only say what would be moved or rewritten.")
@click.option("--undo", is_flag=True, help="Move everything fix put in quarantine back.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="The run config the resume will use (default: the one beside the checkpoints).",
)
@trainer_options
@allow_global_option
@json_option
def fix_cmd(
    run_dir: str,
    dry_run: bool,
    undo: bool,
    config_path: str | None,
    trainer: str | None,
    trainer_root: str | None,
    torch_version: str | None,
    lightning_version: str | None,
    allow_globals: tuple[str, ...],
    as_json: bool,
) -> int:
    """Make the trainer resume from the newest complete state in RUN_DIR, deleting nothing.

    Files the trainer would pick instead (stale "latest" files, truncated newer saves) move into a
    ckpttool-quarantine folder with a manifest; files its loader refuses for harmless values are rewritten
    (the original kept there). --undo puts everything back. Exit 0 when the trainer will then resume from the
    newest complete state, 1 when fix cannot make it.
    """
    if undo:
        r = undo_fix(run_dir, dry_run=dry_run)
    else:
        options = CheckOptions(
            config=ConfigOptions.from_cli(config_path, ()), allow_globals=frozenset(allow_globals),
            trainer=trainer, trainer_root=trainer_root, torch_version=torch_version,
            lightning_version=lightning_version,
        )  # fmt: skip
        r = fix_run(run_dir, options, dry_run=dry_run)
    emit(to_json(r.to_json()) if as_json else render_fix(r))
    return EXIT_OK if r.ok else EXIT_PROBLEMS
