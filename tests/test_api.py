"""The typed library API (ckpttool.inspect/check/diff/verify_resume): what it returns on real files, what it
raises, that the deprecated alias warns, that `import ckpttool` stays cheap, and that every example of
docs/api.md runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, fixture

import ckpttool
from ckpttool.errors import (
    ConfigError,
    TruncatedCheckpoint,
    UnsafeCheckpoint,
    UnverifiedCheckpoint,
    UsageError,
)


def _run_folder(root: Path, steps: tuple[int, ...] = (1, 2)) -> Path:
    """A run folder of training bundles (model, Adam, StepLR, step) saved after each of ``steps``."""
    run = root / "run"
    run.mkdir()
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5)
    for step in range(1, max(steps) + 1):
        net(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        if step in steps:
            state = {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
            }
            torch.save({**state, "step": step, "epoch": 0}, run / f"ckpt_{step}.pth")
    return run


def test_import_is_cheap_and_inspect_reads_without_torch(tmp_path: Path) -> None:
    path = _run_folder(tmp_path) / "ckpt_2.pth"
    code = (
        "import sys, ckpttool\n"
        "heavy = [m for m in ('torch', 'lightning', 'pytorch_lightning', 'transformers', 'ckpttool.ops.check', "
        "'ckpttool.api') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        f"r = ckpttool.inspect({str(path)!r})\n"
        "print(type(r).__name__, r.verdict, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["InspectReport", "full", "False"]


def test_reports_are_the_typed_dataclasses(tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    r = ckpttool.inspect(run / "ckpt_2.pth", require=["optimizer", "scheduler"])
    assert isinstance(r, ckpttool.InspectReport) and r.ok and r.required_missing == []
    c = ckpttool.check(run, device="cpu")
    assert isinstance(c, ckpttool.CheckReport) and c.ok
    assert c.files == [str(run / "ckpt_2.pth")]  # the newest complete save, by content
    d = ckpttool.diff(run / "ckpt_1.pth", run / "ckpt_2.pth")
    assert isinstance(d, ckpttool.DiffReport) and d.differs
    assert ("step", 1, 2) in [(x.what, x.a, x.b) for x in d.state]
    v = ckpttool.verify_resume(run / "ckpt_2.pth", steps=2, device="cpu", model_run=False)
    assert isinstance(v, ckpttool.VerifyReport) and v.ok and v.level == "shadow-run"


def test_require_reports_an_absent_piece(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save({"model": torch.nn.Linear(3, 2).state_dict(), "step": 4}, path)
    r = ckpttool.inspect(path, require=["optimizer"])
    assert not r.ok and r.required_missing == ["optimizer"]
    c = ckpttool.check([path], require=("optimizer",), device="cpu")
    assert not c.ok
    assert any(x.status == "fail" and "optimizer" in x.message for x in c.checks)


def test_config_mapping_and_overrides_reach_the_shape_check() -> None:
    g = fixture("gpt_sovits/logs_s2_v2/G_233333333333.pth")
    agrees = ckpttool.inspect(g, config=fixture("gpt_sovits/config.json"))
    assert agrees.ok and agrees.architectures and all(a.check and a.check.ok for a in agrees.architectures)
    wrong = ckpttool.inspect(
        g, config=fixture("gpt_sovits/config.json"), overrides={"model.inter_channels": 256}
    )
    assert not wrong.ok
    assert any("inter_channels" in a.check.key_summary for a in wrong.architectures if a.check)
    as_mapping = ckpttool.inspect(g, config={"model": {"inter_channels": 256}})
    assert not as_mapping.ok and "the config mapping" in (as_mapping.architectures[0].config_source or "")


def test_diff_takes_configs_as_mappings() -> None:
    a = fixture("gpt_sovits/variants/G_inter192.pth")
    b = fixture("gpt_sovits/variants/G_inter256.pth")
    d = ckpttool.diff(
        a, b, config_a={"model": {"inter_channels": 192}}, config_b={"model": {"inter_channels": 256}}
    )
    assert [(c.what, c.a, c.b) for c in d.config] == [("model.inter_channels", 192, 256)]
    assert [(e.key, e.old, e.new) for e in d.explanations] == [("inter_channels", 192, 256)]
    assert ckpttool.diff(a, b).config == []  # the configs came from the mappings, not from the files


def test_errors_are_the_ckpttool_hierarchy(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pth"
    cut.write_bytes(fixture("seed_bundle.pth").read_bytes()[:500])
    with pytest.raises(TruncatedCheckpoint):
        ckpttool.inspect(cut)
    with pytest.raises(ckpttool.CkptError) as info:
        ckpttool.check(tmp_path / "nowhere", device="cpu")
    assert info.value.kind == "not-found"
    with pytest.raises(UsageError, match="list of names"):
        ckpttool.inspect(fixture("seed_bundle.pth"), require="optimizer")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown piece"):
        ckpttool.inspect(fixture("seed_bundle.pth"), require=["optimiser"])
    with pytest.raises(ConfigError, match="dotted config key"):
        ckpttool.inspect(fixture("seed_bundle.pth"), overrides={"model..x": 8})
    with pytest.raises(UsageError, match="even"):
        ckpttool.verify_resume(fixture("seed_bundle.pth"), steps=3, device="cpu")
    with pytest.raises(UsageError, match="model_run=False"):
        ckpttool.verify_resume(fixture("seed_bundle.pth"), model_run=False, recipe="x:y")


def test_unverified_globals_are_refused_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mytrainer.py").write_text("class Cfg:\n    def __init__(self):\n        self.lr = 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import mytrainer  # type: ignore[import-not-found]

    path = tmp_path / "with_cfg.pth"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "cfg": mytrainer.Cfg()}, path)
    monkeypatch.delitem(sys.modules, "mytrainer")
    assert ckpttool.inspect(path).safety.verdict == "unverified"  # reported, like the CLI's inspect
    with pytest.raises(UnverifiedCheckpoint, match=r"mytrainer\.Cfg"):
        ckpttool.inspect(path, allow_globals=[])
    with pytest.raises(UnverifiedCheckpoint):
        ckpttool.check(path, device="cpu")
    assert ckpttool.inspect(path, allow_globals=["mytrainer.Cfg"]).verdict == "weights-only"
    with pytest.raises(UnsafeCheckpoint):  # never executed, whatever allow_globals says
        ckpttool.inspect(fixture("malicious.pth"), allow_globals=["os.system", "builtins.eval"])


def test_inspect_checkpoint_is_a_deprecated_alias(tmp_path: Path) -> None:
    path = _run_folder(tmp_path) / "ckpt_2.pth"
    with pytest.warns(DeprecationWarning, match=r"ckpttool\.inspect\("):
        old = ckpttool.inspect_checkpoint(path, require="optimizer,scheduler")
    new = ckpttool.inspect(path, require=["optimizer", "scheduler"])
    assert old.to_json() == new.to_json()


def test_every_example_of_docs_api_md_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 6, "docs/api.md lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs_api"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md python block {i + 1}", "exec"), namespace)
    assert sorted(os.listdir(tmp_path / "run")) == ["ckpt_1.pth", "ckpt_2.pth", "ckpt_3.pth"]
