"""The committed fixtures are exactly what fixtures/make_fixtures.py writes, so anyone can regenerate them.

Other tests trust these files to stand for real GPT-SoVITS, VITS, RVC and Lightning checkpoints; a file
edited by hand, or left stale after a generator change, would quietly test something else.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pathlib
import random
import subprocess
import sys
from types import ModuleType
from typing import Any

import numpy as np
import torch
from conftest import FIXTURES

MANIFEST = FIXTURES / "MANIFEST.json"
NOT_FIXTURES = {"MANIFEST.json", "make_fixtures.py"}


def _manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())


def _committed_files() -> set[str]:
    return {
        p.relative_to(FIXTURES).as_posix()
        for p in FIXTURES.rglob("*")
        if p.is_file() and p.name not in NOT_FIXTURES and "__pycache__" not in p.parts
    }


def _load_generator() -> ModuleType:
    """Load the script by path (fixtures/ is not a package), without leaving bytecode next to the fixtures."""
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    previous, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = previous
    return module


def test_manifest_hashes_match_committed_files() -> None:
    manifest = _manifest()
    assert manifest["generator"] == "fixtures/make_fixtures.py"
    assert _committed_files() == set(manifest["files"]), "fixtures/ and MANIFEST.json list different files"
    for rel, entry in manifest["files"].items():
        data = (FIXTURES / rel).read_bytes()
        assert len(data) == entry["size"], rel
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{rel} differs from MANIFEST.json"
        assert entry["description"] and entry["covers"], rel
    assert MANIFEST.read_text() == json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _environment_differences(manifest: dict[str, Any]) -> list[str]:
    """torch and numpy decide the pickle layout and the RNG streams, so the manifest pins both (the dev extras
    pin numpy, the Makefile pins torch). The CPU, its vector capability and the thread count must not matter."""
    return [
        f"{name}: manifest {manifest.get(name)}, here {have}"
        for name, have in (("torch", torch.__version__), ("numpy", np.__version__))
        if manifest.get(name) != have
    ]


def test_environment_matches_manifest() -> None:
    """Never a skip: a different torch or numpy is a broken dev environment (`make clean test` rebuilds it)."""
    assert not _environment_differences(_manifest()), "; ".join(_environment_differences(_manifest()))


def _regenerate(out: pathlib.Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, str(FIXTURES / "make_fixtures.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.strip()


def _assert_same_as_committed(out: pathlib.Path) -> None:
    manifest = _manifest()
    assert (out / "MANIFEST.json").read_bytes() == MANIFEST.read_bytes()
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written - {"MANIFEST.json"} == set(manifest["files"])
    for rel in manifest["files"]:
        assert (out / rel).read_bytes() == (FIXTURES / rel).read_bytes(), f"{rel}: run `make fixtures`"


def test_regeneration_is_byte_identical(tmp_path: pathlib.Path) -> None:
    """Run the generator as `make fixtures` does (a fresh process), on the scalar kernels and one thread, and
    compare every byte: the committed files were written with the machine's vector kernels and its threads
    (see the in-process test below, which compares too), so the two settings must agree."""
    assert not _environment_differences(_manifest()), "; ".join(_environment_differences(_manifest()))
    printed = _regenerate(tmp_path, {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"})
    assert "CPU capability DEFAULT, 1 thread(s)" in printed, printed
    _assert_same_as_committed(tmp_path)


def test_generation_in_process_is_identical_and_leaves_global_state_alone(tmp_path: pathlib.Path) -> None:
    """With this process's own kernels (AVX2, AVX-512 or NEON, whatever the CPU has) and threads, the bytes are
    the committed ones; and the stand-in classes used while pickling and the reseeding do not outlive it."""
    assert not _environment_differences(_manifest()), "; ".join(_environment_differences(_manifest()))
    generator = _load_generator()
    windows_path, had_utils = pathlib.WindowsPath, "utils" in sys.modules
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    threads = torch.get_num_threads()

    fresh = generator.generate(tmp_path)

    _assert_same_as_committed(tmp_path)
    assert set(fresh["files"]) == set(_manifest()["files"])
    assert pathlib.WindowsPath is windows_path
    assert ("utils" in sys.modules) == had_utils
    assert torch.equal(torch.get_rng_state(), rng[0])
    assert np.array_equal(np.random.get_state()[1], rng[1])
    assert random.getstate() == rng[2]
    assert torch.get_num_threads() == threads
