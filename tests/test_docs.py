"""The docs tell the truth about the CLI: the reference is regenerated and compared, every command is covered."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

from ckpttool.cli import cli


def test_cli_reference_is_current() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


def test_every_command_has_help_and_a_docs_mention() -> None:
    docs = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    for name, command in cli.commands.items():  # type: ignore[attr-defined]
        assert command.help, name
        assert f"ckpttool {name}" in docs, f"{name} is not documented"


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "make demo" in head and "make test" in head
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_exit_codes_documented() -> None:
    text = (ROOT / "docs" / "exit-codes.md").read_text()
    for code in ("0", "1", "2", "3"):
        assert f"| {code} " in text
