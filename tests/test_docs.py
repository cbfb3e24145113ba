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
    for name in cli.list_commands(None):  # type: ignore[arg-type,attr-defined]
        command = cli.get_command(None, name)  # type: ignore[arg-type,attr-defined]
        assert command is not None, name
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


def _documented_keys(schema: str) -> set[str]:
    """Top-level keys of the example document under a schema's heading in docs/json-schema.md."""
    import json
    import re

    text = (ROOT / "docs" / "json-schema.md").read_text()
    section = text.split(f"## `{schema}`", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block, schema
    return set(re.findall(r'^  "(\w+)":', block.group(1), re.M)) or set(json.loads(block.group(1)))


def test_json_schemas_match_the_output() -> None:
    """Every top-level field the commands emit is documented, and nothing documented is missing."""
    from conftest import fixture, run_cli

    inspect_doc = run_cli("inspect", fixture("gpt_sovits/logs_s2_v2/G_233333333333.pth"), "--json").json()
    assert set(inspect_doc) == _documented_keys("ckpttool.inspect/1")
    diff_doc = run_cli(
        "diff",
        fixture("gpt_sovits/variants/G_inter192.pth"),
        fixture("gpt_sovits/variants/G_inter256.pth"),
        "--json",
    ).json()
    assert set(diff_doc) == _documented_keys("ckpttool.diff/1")
    migrate_doc = run_cli(
        "migrate",
        fixture("gpt_sovits/variants/G_inter192.pth"),
        "--set",
        "model.inter_channels=256",
        "--dry-run",
        "--json",
    ).json()
    assert set(migrate_doc) == _documented_keys("ckpttool.migrate/1")
    verify_doc = run_cli("verify-resume", fixture("seed_bundle.pth"), "--json").json()
    assert set(verify_doc) == _documented_keys("ckpttool.verify-resume/1")
    error_doc = run_cli("inspect", fixture("malicious.pth"), "--json").json()
    assert set(error_doc) == _documented_keys("ckpttool.error/1")
