"""``ckpttool convert SRC -o OUT --to pth|safetensors|dcp``."""

from __future__ import annotations

import click

from ckpttool.cli.common import allow_global_option, emit, json_option
from ckpttool.cli.progress import stderr_progress
from ckpttool.errors import EXIT_OK
from ckpttool.ops.convert import convert_checkpoint, targets
from ckpttool.render import to_json
from ckpttool.render.term import relpath, rewrap_all


@click.command("convert")
@click.argument("src", type=click.Path(path_type=str))
@click.option(
    "-o", "--out", required=True, type=click.Path(path_type=str), help="Output file (or DCP folder)."
)
@click.option("--to", "to", required=True, type=click.Choice(targets()), help="Output format.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--no-verify", is_flag=True, help="Skip reading OUT back and comparing it with SRC.")
@click.option(
    "--flatten-unverified",
    is_flag=True,
    help="Write objects of globals ckpttool cannot vouch for as plain data (listed) instead of refusing.",
)
@click.option(
    "--expand-views",
    is_flag=True,
    help="Write tensors that view their storage with zero or overlapping strides in full.",
)
@allow_global_option
@json_option
def convert_cmd(src: str, out: str, to: str, force: bool, no_verify: bool, flatten_unverified: bool,
                expand_views: bool, allow_globals: tuple[str, ...], as_json: bool) -> int:  # fmt: skip
    """Convert between torch files, safetensors and DCP directories, keeping the whole training state.

    safetensors keeps optimizer hyper-parameters, counters and configs as typed JSON metadata; DCP is written by
    torch.distributed.checkpoint itself. OUT is read back and compared with SRC tensor by tensor (exit 1 if not
    equal).
    """
    r = convert_checkpoint(src, out, to=to, force=force, verify=not no_verify, allow_globals=frozenset(allow_globals),
                           flatten=flatten_unverified, expand_views=expand_views,
                           progress=stderr_progress())  # fmt: skip
    if as_json:
        emit(to_json(r.to_json()))
    else:
        verdict = "verified: every tensor and value equal" if r.verified else "not verified (--no-verify)"
        head = f"{relpath(r.src)} -> {relpath(r.out)} ({r.to}, {r.tensors} tensors); {verdict}"
        emit("\n".join([*rewrap_all([head, *(f"  note  {n}" for n in r.notes)]), "no problems"]) + "\n")
    return EXIT_OK
