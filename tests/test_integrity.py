"""Damaged files: truncated at many offsets or with flipped bytes, they fail with one clear line, fast."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import fixture, run_cli, sha256

from ckpttool.errors import CkptError, CorruptCheckpoint, TruncatedCheckpoint
from ckpttool.formats import open_checkpoint


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def boom(*_: object) -> None:
        raise TimeoutError("reader hung")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _bundle() -> dict[str, object]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.LayerNorm(6))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 8)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 1, "epoch": 0}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("src")
    out = {}
    torch.save(_bundle(), d / "zip.pth")
    torch.save(_bundle(), d / "legacy.pth", _use_new_zipfile_serialization=False)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in _bundle()["model"].items()}, d / "w.safetensors")  # type: ignore[attr-defined]
    for name in ("zip.pth", "legacy.pth", "w.safetensors"):
        out[name] = (d / name).read_bytes()
    return out


def _check(path: Path) -> str:
    """Open the file; return 'ok' or the CkptError kind. Anything else escapes and fails the test."""
    with deadline(10):
        try:
            open_checkpoint(path)
        except CkptError as exc:
            assert "\n" not in exc.message
            return exc.kind
    return "ok"


@pytest.mark.parametrize("name", ["zip.pth", "legacy.pth", "w.safetensors"])
def test_truncation_at_many_offsets(sources: dict[str, bytes], tmp_path: Path, name: str) -> None:
    data = sources[name]
    offsets = sorted(
        {0, 1, 2, 3, 4, 8, 9, 16, 100, len(data) - 1, *range(0, len(data), max(1, len(data) // 150))}
    )
    kinds: dict[str, int] = {}
    for n in offsets:
        if n >= len(data):
            continue
        p = tmp_path / f"cut{name}"
        p.write_bytes(data[:n])
        kind = _check(p)
        assert kind != "ok", f"{name} cut at {n} of {len(data)} bytes was accepted"
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds.get("truncated", 0) >= len(offsets) // 2, kinds


@pytest.mark.parametrize("name", ["zip.pth", "legacy.pth", "w.safetensors"])
def test_flipped_bytes_never_escape(sources: dict[str, bytes], tmp_path: Path, name: str) -> None:
    data = sources[name]
    rng = random.Random(1234)
    positions = sorted({*range(0, min(64, len(data))), *(rng.randrange(len(data)) for _ in range(250))})
    for pos in positions:
        buf = bytearray(data)
        buf[pos] ^= 0xFF if pos % 2 else 0x01
        p = tmp_path / f"flip{name}"
        p.write_bytes(bytes(buf))
        _check(p)  # either reads or raises a CkptError: no traceback, no hang


def test_truncated_fixture_cli_line(tmp_path: Path) -> None:
    path = fixture("truncated.pth")
    before = sha256(path)
    r = run_cli("inspect", str(path))
    assert r.code == 3
    assert r.stdout == ""
    assert r.stderr.startswith("ckpttool: ") and r.stderr.count("\n") == 1
    assert "cut short" in r.stderr and "previous checkpoint" in r.stderr
    r = run_cli("inspect", str(path), "--json")
    assert r.code == 3 and r.json()["kind"] == "truncated"
    assert sha256(path) == before


def test_short_storage_record_is_truncation(tmp_path: Path) -> None:
    # A zip whose storage record is shorter than the tensor needs (directory intact): caught without reading data.
    import zipfile

    torch.save({"w": torch.zeros(64)}, tmp_path / "ok.pth")
    with zipfile.ZipFile(tmp_path / "ok.pth") as src, zipfile.ZipFile(tmp_path / "short.pth", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data[:16] if info.filename.endswith("data/0") else data)
    with pytest.raises(TruncatedCheckpoint, match="holds 16 bytes but w needs 256"):
        open_checkpoint(tmp_path / "short.pth")


def test_empty_and_missing_and_directory(tmp_path: Path) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    r = run_cli("inspect", str(tmp_path / "empty.pth"), "--json")
    assert r.code == 3 and r.json()["kind"] == "truncated"
    r = run_cli("inspect", str(tmp_path / "nope.pth"), "--json")
    assert r.code == 3 and r.json()["kind"] == "not-found"
    (tmp_path / "notes.txt").write_text("hello world, not a checkpoint\n")
    r = run_cli("inspect", str(tmp_path / "notes.txt"), "--json")
    assert r.code == 3 and r.json()["kind"] == "unsupported"


def test_safetensors_gap_is_corrupt(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(4)}, tmp_path / "a.safetensors")
    (tmp_path / "pad.safetensors").write_bytes((tmp_path / "a.safetensors").read_bytes() + b"\0" * 8)
    with pytest.raises(CorruptCheckpoint, match="unexpected bytes"):
        open_checkpoint(tmp_path / "pad.safetensors")
