"""Shared test helpers: fixture paths, a CLI runner that goes through the real entry point, file hashing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
# Real files written by upstream code (../shared/cases, read in place, never copied or rewritten). A clone
# without that folder beside it skips the tests that need them; $CKPTTOOL_CASES points elsewhere.
CASES = Path(os.environ.get("CKPTTOOL_CASES") or ROOT.parent / "shared" / "cases")


def case(relpath: str) -> Path:
    """A file of ../shared/cases, or a skip naming what is missing."""
    path = CASES / relpath
    if not path.is_file():
        pytest.skip(f"{path} is not here (set CKPTTOOL_CASES to the shared cases folder)")
    return path


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


# What the caller's shell may set and output may depend on: terminal width, language, colour, time zone. Every
# test sees the same values (a test that is about one of them sets its own), so results are the same in an
# 80-column tmux on a Chinese locale and in CI.
PINNED_ENV = {"COLUMNS": "400", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "NO_COLOR": "1", "TZ": "UTC"}
UNSET_ENV = ("LANGUAGE", "LC_MESSAGES", "CKPTTOOL_DEBUG")


@pytest.fixture(scope="session")
def _data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the suite's parsed-YAML cache goes (ckpttool/datacache.py): per test session, never the user's."""
    return tmp_path_factory.mktemp("ckpttool-cache")


@pytest.fixture(autouse=True)
def _pinned_environment(monkeypatch: pytest.MonkeyPatch, _data_cache: Path) -> None:
    for key, value in PINNED_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CKPTTOOL_CACHE_DIR", str(_data_cache))
    for key in UNSET_ENV:
        monkeypatch.delenv(key, raising=False)
