"""Shared test helpers: fixture paths, a CLI runner that goes through the real entry point, file hashing."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str) -> Run:
    """Run ckpttool.cli.main in-process, capturing stdout, stderr and the exit code."""
    from ckpttool.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Run(code, out.getvalue(), err.getvalue())


def run_subprocess(*args: str, cwd: Path | None = None, pre: str = "") -> Run:
    """Run the CLI in a fresh interpreter (for import-isolation and side-effect tests)."""
    code = f"{pre}\nfrom ckpttool.cli import main\nmain({[str(a) for a in args]!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.fail(f"fixture {name} missing: run `make fixtures`")
    return path


@pytest.fixture
def cli() -> Any:
    return run_cli
