"""Write docs/cli-reference.md from the commands' own --help, so the reference cannot drift.

`python scripts/gen_cli_reference.py` rewrites the file; `--check` exits 1 if it is stale (a test runs this).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

from ckpttool.cli import cli

OUT = Path(__file__).resolve().parent.parent / "docs" / "cli-reference.md"


def render() -> str:
    runner = CliRunner()
    parts = [
        "# CLI reference",
        "",
        "Generated from `--help` by `scripts/gen_cli_reference.py`; do not edit by hand.",
        "",
    ]
    commands: list[tuple[str, list[str]]] = [("ckpttool", ["--help"])]
    assert isinstance(cli, click.Group)
    for name in sorted(cli.list_commands(None)):  # type: ignore[arg-type]
        commands.append((f"ckpttool {name}", [name, "--help"]))
    for title, args in commands:
        result = runner.invoke(cli, args, prog_name="ckpttool", terminal_width=100)
        parts += [f"## `{title}`", "", "```text", result.output.rstrip(), "```", ""]
    return "\n".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/cli-reference.md is stale: run python scripts/gen_cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
