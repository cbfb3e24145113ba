"""The CLI's public contract: exit codes, one-line errors, stdout for data and stderr for commentary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from conftest import run_cli


def _weights(tmp_path: Path) -> Path:
    torch.save({"w": torch.zeros(2, 2)}, tmp_path / "w.pth")
    return tmp_path / "w.pth"


def test_exit_0_and_single_json_document(tmp_path: Path) -> None:
    r = run_cli("inspect", str(_weights(tmp_path)), "--json")
    assert r.code == 0
    doc = json.loads(r.stdout)  # exactly one document: json.loads rejects trailing data
    assert doc["schema"] == "ckpttool.inspect/1"
    assert r.stderr == ""


def test_exit_1_when_required_piece_absent(tmp_path: Path) -> None:
    r = run_cli("inspect", str(_weights(tmp_path)), "--require", "optimizer", "--json")
    assert r.code == 1
    assert r.json()["required_missing"] == ["optimizer"]
    assert r.json()["ok"] is False


def test_exit_2_for_usage_errors(tmp_path: Path) -> None:
    assert run_cli("inspect").code == 2
    assert run_cli("inspect", str(_weights(tmp_path)), "--no-such-flag").code == 2
    assert run_cli("no-such-command").code == 2


def test_exit_3_one_line_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    r = run_cli("inspect", str(tmp_path / "junk.pth"))
    assert r.code == 3
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_console_script_entry_point(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "ckpttool"
    proc = subprocess.run(
        [str(exe), "inspect", str(tmp_path / "missing.pth")], capture_output=True, text=True
    )
    assert proc.returncode == 3
    assert proc.stderr.startswith("ckpttool: ") and "no such file" in proc.stderr


def test_help_and_version() -> None:
    r = run_cli("--help")
    assert r.code == 0 and "inspect" in r.stdout
    assert run_cli("--version").code == 0
