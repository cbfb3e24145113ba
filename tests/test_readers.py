"""Readers agree with torch about every tensor, without importing torch or reading tensor bytes."""

from __future__ import annotations

import argparse
import pathlib
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_subprocess

from ckpttool.formats import open_checkpoint
from ckpttool.formats.values import StorageReader
from ckpttool.interpret.structure import rng_kind, to_plain


def _training_bundle() -> dict[str, object]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 6, 3), torch.nn.BatchNorm1d(6), torch.nn.Linear(2, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.8, 0.99))
    for _ in range(2):
        model(torch.randn(2, 4, 4)).pow(2).mean().backward()
        opt.step()
    sd = model.state_dict()
    return {
        "model": sd,
        "optimizer": opt.state_dict(),
        "view": sd["0.weight"][1:3],  # a view into another tensor's storage
        "strided": torch.arange(12.0).reshape(3, 4).t(),
        "half": torch.ones(5, dtype=torch.float16),
        "bf16": torch.ones(2, 2, dtype=torch.bfloat16),
        "step": 2,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "path": pathlib.PurePosixPath("logs", "demo"),
        "args": argparse.Namespace(lr=2e-4, name="demo"),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("readers")
    bundle = _training_bundle()
    torch.save(bundle, d / "bundle.pth")
    torch.save(bundle, d / "legacy.pth", _use_new_zipfile_serialization=False)
    return {"zip": d / "bundle.pth", "legacy": d / "legacy.pth"}


def _flatten(obj: object, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_tensor_metadata_and_values_match_torch(files: dict[str, Path], kind: str) -> None:
    path = files[kind]
    truth = _flatten(_training_bundle())  # deterministic: the same objects that were saved
    ckpt = open_checkpoint(path)
    ours = ckpt.tensor_map()
    assert set(truth) == set(ours)
    with StorageReader() as reader:
        for name, t in truth.items():
            info = ours[name]
            assert info.shape == tuple(t.shape), name
            assert info.dtype == str(t.dtype).removeprefix("torch."), name
            assert info.stride == t.stride(), name
            assert torch.equal(reader.tensor(info), t), name
            if t.numel() == 1:
                assert reader.scalar(info) == pytest.approx(t.item()), name


def test_stubs_keep_state(files: dict[str, Path]) -> None:
    root = open_checkpoint(files["zip"]).root
    assert to_plain(root["path"]) == "logs/demo"
    assert to_plain(root["args"]) == {"lr": 2e-4, "name": "demo"}
    assert {k: rng_kind(v) for k, v in root["rng"].items()} == {
        "torch": "torch",
        "numpy": "numpy",
        "python": "python",
    }
    assert root["rng"]["numpy"][1].shape == (624,)


def test_reading_metadata_does_not_import_torch(files: dict[str, Path]) -> None:
    # torch is poisoned in sys.modules: any import of it inside ckpttool raises ImportError.
    pre = "import sys; sys.modules['torch'] = None"
    for path in files.values():
        r = run_subprocess("inspect", str(path), "--json", pre=pre)
        assert r.code == 0, r.stderr
        assert r.json()["schema"] == "ckpttool.inspect/1"


def test_torch_not_in_sys_modules_after_open(files: dict[str, Path]) -> None:
    code = (
        "import sys; from ckpttool.ops.inspect import inspect_checkpoint; "
        f"inspect_checkpoint({str(files['zip'])!r}); print('torch' in sys.modules)"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_gpt_sovits_header_tag_reads(tmp_path: Path) -> None:
    torch.save({"weight": {"a": torch.zeros(2)}, "info": "1epoch_2iteration"}, tmp_path / "x.pth")
    data = bytearray((tmp_path / "x.pth").read_bytes())
    data[:2] = b"06"
    (tmp_path / "tagged.pth").write_bytes(bytes(data))
    ckpt = open_checkpoint(tmp_path / "tagged.pth")
    assert ckpt.format == "gpt-sovits-tagged-zip"
    assert ckpt.meta["gpt_sovits_tag"] == "v2ProPlus"
    with StorageReader() as reader:
        assert torch.equal(reader.tensor(ckpt.tensor_map()["weight.a"]), torch.zeros(2))


def test_set_path_mirrors_get_path_with_dotted_keys() -> None:
    from ckpttool.model import get_path, set_path

    root = {
        "callbacks": {"ModelCheckpoint{'monitor': 'a.b'}": {"x": 1}},
        "opt": [{"s": {0: "a"}}],
        "a.b": {"c": 2},
    }
    for path, value in (
        ("callbacks.ModelCheckpoint{'monitor': 'a.b'}.x", 5),
        ("opt.0.s.0", "z"),
        ("a.b.c", 3),
    ):
        root = set_path(root, path, value)
        assert get_path(root, path) == value
    assert set_path(root, "", 7) == 7
