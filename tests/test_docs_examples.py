"""The worked examples of docs/formats.md (a new format) and docs/architecture.md (a new trainer record) work as
written: the code is taken from the docs, not copied into the test."""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli

from ckpttool import trainers
from ckpttool.formats import open_checkpoint, registry
from ckpttool.formats.values import StorageReader


def _block(doc: str, lang: str, marker: str) -> str:
    text = (ROOT / "docs" / doc).read_text()
    for block in re.findall(rf"```{lang}\n(.*?)```", text, re.S):
        if marker in block:
            return str(block)
    raise AssertionError(f"docs/{doc} lost its worked example ({marker})")


def test_format_example_adds_a_readable_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _block("formats.md", "python", "class Toy(Format)")
    module_path = tmp_path / "toy_format.py"
    module_path.write_text(source)
    spec = importlib.util.spec_from_file_location("toy_format", module_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "toy_format", module)
    spec.loader.exec_module(module)
    assert "Toy()" in _block("formats.md", "python", "FORMATS: tuple")
    monkeypatch.setattr(registry, "FORMATS", (*registry.FORMATS, module.Toy()))  # the one registry line

    values = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    header = json.dumps({"w": {"dtype": "float32", "shape": [2, 3], "offset": 0}}).encode()
    path = tmp_path / "model.toy"
    path.write_bytes(module.MAGIC + struct.pack("<I", len(header)) + header + values.numpy().tobytes())

    ckpt = open_checkpoint(path)
    assert ckpt.format == "toy" and [t.shape for t in ckpt.tensors] == [(2, 3)]
    with StorageReader() as reader:
        assert torch.equal(reader.tensor(ckpt.tensors[0]), values)
    doc = run_cli("inspect", str(path), "--json").json()
    assert doc["format"] == "toy" and doc["profile"] == "state-dict" and doc["verdict"] == "weights-only"
    out = tmp_path / "model.safetensors"
    assert run_cli("convert", str(path), "-o", str(out), "--to", "safetensors").code == 0
    (path.parent / "truncated.toy").write_bytes(path.read_bytes()[:-4])
    assert run_cli("inspect", str(path.parent / "truncated.toy")).code == 3


def test_trainer_example_adds_a_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "toytrainer.yaml").write_text(_block("architecture.md", "yaml", "name: toytrainer"))
    monkeypatch.setenv("CKPTTOOL_TRAINERS", str(folder))
    trainers.reload()
    try:
        net = torch.nn.Linear(3, 2)
        opt = torch.optim.Adam(net.parameters())
        net(torch.ones(1, 3)).sum().backward()
        opt.step()
        path = tmp_path / "ckpt_3.pt"
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "epoch": 3, "cfg": {"lr": 0.001}}, path)
        doc = run_cli("inspect", str(path), "--json").json()
        assert doc["profile"] == "toy-train"
        pieces = doc["pieces"]
        assert pieces["scheduler"]["status"] == "rebuilt" and "cosine" in pieces["scheduler"]["detail"]
        assert pieces["epoch"]["status"] == "present" and pieces["config"]["where"] == "cfg"
        assert doc["verdict"] == "full"
        assert trainers.get_trainer("toytrainer") is not None
    finally:
        monkeypatch.delenv("CKPTTOOL_TRAINERS")
        trainers.reload()


def test_a_typo_in_a_record_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "records"
    folder.mkdir()
    text = _block("architecture.md", "yaml", "name: toytrainer").replace("networks:", "netwroks:")
    (folder / "toytrainer.yaml").write_text(text)
    monkeypatch.setenv("CKPTTOOL_TRAINERS", str(folder))
    trainers.reload()
    try:
        with pytest.raises(Exception, match="netwroks"):
            trainers.all_trainers()
    finally:
        monkeypatch.delenv("CKPTTOOL_TRAINERS")
        trainers.reload()
