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
import platform
import random
import subprocess
import sys
from types import ModuleType
from typing import Any

import numpy as np
import pytest
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


def _skip_if_environment_differs(manifest: dict[str, Any]) -> None:
    for name, have in (
        ("torch", torch.__version__),
        ("numpy", np.__version__),
        ("machine", platform.machine()),
    ):
        want = manifest.get(name)
        if want is not None and want != have:
            pytest.skip(
                f"fixtures were generated with {name} {want} but this is {name} {have}; torch.save, pickle "
                "and kernel rounding depend on it, so a byte-for-byte comparison would fail through no fault "
                "of the committed files"
            )


def test_regeneration_is_byte_identical(tmp_path: pathlib.Path) -> None:
    """Run the generator exactly as `make fixtures` does (a fresh process) and compare every byte."""
    manifest = _manifest()
    _skip_if_environment_differs(manifest)
    proc = subprocess.run(
        [sys.executable, str(FIXTURES / "make_fixtures.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "MANIFEST.json").read_bytes() == MANIFEST.read_bytes()
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written - {"MANIFEST.json"} == set(manifest["files"])
    for rel in manifest["files"]:
        assert (tmp_path / rel).read_bytes() == (FIXTURES / rel).read_bytes(), f"{rel}: run `make fixtures`"


def test_generate_refuses_vectorised_kernels(tmp_path: pathlib.Path) -> None:
    """In-process generation under AVX kernels would silently write CPU-dependent bytes; it must refuse."""
    generator = _load_generator()
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this process already runs the default kernels")
    with pytest.raises(RuntimeError, match="ATEN_CPU_CAPABILITY=default"):
        generator.generate(tmp_path)
    assert not any(tmp_path.iterdir())


def test_generation_leaves_global_state_alone(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in classes used while pickling and the reseeding must not outlive generation."""
    generator = _load_generator()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    windows_path, had_utils = pathlib.WindowsPath, "utils" in sys.modules
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    threads = torch.get_num_threads()

    fresh = generator.generate(tmp_path)

    assert set(fresh["files"]) == set(_manifest()["files"])
    assert pathlib.WindowsPath is windows_path
    assert ("utils" in sys.modules) == had_utils
    assert torch.equal(torch.get_rng_state(), rng[0])
    assert np.array_equal(np.random.get_state()[1], rng[1])
    assert random.getstate() == rng[2]
    assert torch.get_num_threads() == threads
