"""No code from a checkpoint ever runs; dangerous pickles are refused, naming every global."""

from __future__ import annotations

import io
import os
import pickle
import re
import sys
import types
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, fixture, run_cli, run_subprocess

from ckpttool.errors import UnsafeCheckpoint
from ckpttool.formats import open_checkpoint

MARKER = "ckpttool_pwned_marker"


def test_malicious_fixture_is_refused_and_never_runs(tmp_path: Path) -> None:
    path = fixture("malicious.pth")
    before = path.read_bytes()
    r = run_subprocess("inspect", str(path), "--json", cwd=tmp_path)
    assert r.code == 3, r.stderr
    doc = r.json()
    assert doc["schema"] == "ckpttool.error/1"
    assert doc["kind"] == "unsafe"
    assert any(g in doc["globals"] for g in ("posix.system", "os.system"))
    assert "builtins.eval" in doc["globals"]
    assert "refused" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / MARKER).exists()
    assert not Path(MARKER).exists()
    assert path.read_bytes() == before


def _zip_with_pickle(tmp_path: Path, payload: bytes, name: str = "evil") -> Path:
    out = tmp_path / f"{name}.pth"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(f"{name}/data.pkl", payload)
        zf.writestr(f"{name}/version", "3\n")
    return out


class _Reduce:
    def __init__(self, fn: object, args: tuple[object, ...]) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.fn, self.args


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_every_protocol_and_stack_global_is_caught(tmp_path: Path, protocol: int) -> None:
    import subprocess

    payload = pickle.dumps(
        {"w": [_Reduce(subprocess.Popen, (["touch", MARKER],)), _Reduce(exec, ("1",))]}, protocol=protocol
    )
    path = _zip_with_pickle(tmp_path, payload)
    with pytest.raises(UnsafeCheckpoint) as info:
        open_checkpoint(path)
    assert "subprocess.Popen" in info.value.globals
    assert "builtins.exec" in info.value.globals
    assert not (tmp_path / MARKER).exists()


def test_unsafe_global_hidden_after_damage_is_still_named(tmp_path: Path) -> None:
    # A payload followed by garbage: unpickling fails, the static scan still names the global.
    payload = pickle.dumps(_Reduce(os.system, ("true",)), protocol=2)[:-1] + b"\xff\xff"
    with pytest.raises(UnsafeCheckpoint) as info:
        open_checkpoint(_zip_with_pickle(tmp_path, payload))
    assert info.value.globals == [f"{os.system.__module__}.system"]


def test_harmless_foreign_classes_are_stubbed_not_imported(tmp_path: Path) -> None:
    # A class from a module that does not exist at read time must come back as a stub keeping its state.
    module = types.ModuleType("not_a_real_module")
    cls = type("SecretConfig", (), {"__module__": "not_a_real_module"})
    module.SecretConfig = cls  # type: ignore[attr-defined]
    sys.modules["not_a_real_module"] = module
    try:
        obj = cls()
        obj.lr = 1e-4
        payload = pickle.dumps(obj, protocol=2)
    finally:
        del sys.modules["not_a_real_module"]
    ckpt = open_checkpoint(_zip_with_pickle(tmp_path, payload, "cfg"))
    assert ckpt.root.qualname == "not_a_real_module.SecretConfig"
    assert ckpt.root.attributes() == {"lr": 1e-4}
    assert ckpt.foreign_globals == ["not_a_real_module.SecretConfig"]


def test_no_unsafe_deserialisation_in_the_package() -> None:
    """No unpickling call and no weights_only turned off, in code or in the data (trainer records describe a
    trainer that turns the check off as ``weights_only: disabled``, never as a value that reads like a call)."""
    pattern = re.compile(
        r"pickle\.loads?\(|weights_only\s*[=:]\s*['\"]?false|cPickle|dill\.load|joblib\.load", re.IGNORECASE
    )
    files = [*(ROOT / "ckpttool").rglob("*.py"), *(ROOT / "ckpttool").rglob("*.yaml")]
    hits = [
        f"{p}:{i}"
        for p in files
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_bytes_pickle_with_codecs_and_sets_reads(tmp_path: Path) -> None:
    payload = pickle.dumps({"b": b"\x00\xff", "s": {1, 2}, "c": 1 + 2j, "f": frozenset([3])}, protocol=2)
    ckpt = open_checkpoint(_zip_with_pickle(tmp_path, payload, "plain"))
    assert ckpt.root == {"b": b"\x00\xff", "s": {1, 2}, "c": 1 + 2j, "f": frozenset([3])}


def test_memory_bomb_builders_are_unverified(tmp_path: Path) -> None:
    # bytearray(10**12) would allocate a terabyte under plain pickle; the restricted builder refuses to build it,
    # and the call is no longer called safe: inspect shows it, a gate refuses the file.
    payload = b"\x80\x02c__builtin__\nbytearray\n\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85R."
    path = _zip_with_pickle(tmp_path, payload, "bomb")
    r = run_cli("inspect", str(path), "--json")
    assert r.code == 0
    safety = r.json()["safety"]
    assert safety["verdict"] == "unverified"
    assert [g["name"] for g in safety["globals"]] == ["builtins.bytearray"]
    gate = run_cli("check", str(path))
    assert gate.code == 3 and "--allow-global builtins.bytearray" in gate.stderr


def test_marker_absent_after_in_process_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = run_cli("inspect", str(fixture("malicious.pth")))
    assert r.code == 3
    assert not (tmp_path / MARKER).exists()
    assert io.StringIO(r.stdout).read() == ""
