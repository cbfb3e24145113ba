"""The trainer callbacks in the real libraries: a Lightning ``Trainer.fit(ckpt_path=...)`` and a transformers
``Trainer.train(resume_from_checkpoint=...)`` on the CPU with tiny models, refusing broken and stale
checkpoints before the trainer uses them, letting a good one through, and reading back every save."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ckpttool.errors import CorruptCheckpoint, ResumeRefused

# ---------------------------------------------------------------------------------------------- Lightning


def _pl() -> Any:
    return pytest.importorskip("lightning.pytorch")


def _tiny_module(pl: Any) -> Any:
    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    return Tiny()


def _loader() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def _fit(pl: Any, root: Path, callback: Any, max_steps: int, ckpt_path: Path | None = None, **kw: Any) -> Any:
    saver = pl.callbacks.ModelCheckpoint(
        dirpath=root / "ckpts", save_top_k=-1, every_n_train_steps=1, save_last=True
    )
    trainer = pl.Trainer(
        default_root_dir=root, max_steps=max_steps, callbacks=[callback, saver], logger=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1, **kw,
    )  # fmt: skip
    model = _tiny_module(pl)
    before = model.layer.weight.detach().clone()
    try:
        trainer.fit(model, _loader(), ckpt_path=None if ckpt_path is None else str(ckpt_path))
    finally:
        trainer.model_after = model.layer.weight.detach().clone()
        trainer.model_before = before
    return trainer


@pytest.fixture(scope="module")
def lightning_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A fit of 2 steps with the callback: ckpts/epoch=0-step=1.ckpt, ...step=2.ckpt, last.ckpt."""
    from ckpttool.integrations.lightning import CkptToolCallback

    pl = _pl()
    root = tmp_path_factory.mktemp("pl")
    callback = CkptToolCallback()
    trainer = _fit(pl, root, callback, max_steps=2)
    assert trainer.global_step == 2
    return root, callback.saved


def test_lightning_reads_back_every_save(lightning_run: tuple[Path, list[str]]) -> None:
    root, saved = lightning_run
    names = [Path(p).name for p in saved]
    assert set(names) == {p.name for p in (root / "ckpts").iterdir()}  # every file written was read back
    assert sorted(names) == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "last.ckpt", "last.ckpt"]


def test_lightning_refuses_a_truncated_ckpt_path(
    lightning_run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    from ckpttool.integrations.lightning import CkptToolCallback

    pl = _pl()
    good = lightning_run[0] / "ckpts" / "epoch=0-step=2.ckpt"
    (tmp_path / "elsewhere").mkdir()
    cut = tmp_path / "elsewhere" / "resume.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ResumeRefused, match=r"refuses to resume from .*resume\.ckpt: .*cut short") as info:
        _fit(pl, tmp_path / "run2", CkptToolCallback(), max_steps=4, ckpt_path=cut)
    assert info.value.kind == "resume-refused" and info.value.exit_code == 1


def test_lightning_refuses_a_stale_ckpt_path(lightning_run: tuple[Path, list[str]], tmp_path: Path) -> None:
    from ckpttool.integrations.lightning import CkptToolCallback

    pl = _pl()
    ckpts = tmp_path / "ckpts"
    shutil.copytree(lightning_run[0] / "ckpts", ckpts)
    stale = ckpts / "epoch=0-step=1.ckpt"
    with pytest.raises(ResumeRefused, match=r"it is stale: .*(step=2|last)\.ckpt beside it is newer") as info:
        _fit(pl, tmp_path, CkptToolCallback(), max_steps=4, ckpt_path=stale)
    assert len(info.value.problems) == 1
    trainer = _fit(pl, tmp_path / "again", CkptToolCallback(allow_stale=True), max_steps=4, ckpt_path=stale)
    assert trainer.global_step == 4  # resumed at step 1 when told to


def test_lightning_lets_a_good_resume_through(lightning_run: tuple[Path, list[str]], tmp_path: Path) -> None:
    from ckpttool.integrations.lightning import CkptToolCallback

    pl = _pl()
    ckpts = tmp_path / "ckpts"
    shutil.copytree(lightning_run[0] / "ckpts", ckpts)
    callback = CkptToolCallback()
    trainer = _fit(pl, tmp_path, callback, max_steps=4, ckpt_path=ckpts / "last.ckpt")
    assert trainer.global_step == 4
    assert callback.last_report is not None and callback.last_report.ok
    assert callback.last_report.files == [str(ckpts / "last.ckpt")]
    assert not torch.equal(trainer.model_after, trainer.model_before)
    assert "epoch=0-step=4.ckpt" in {Path(p).name for p in callback.saved}


def test_lightning_raises_when_a_save_does_not_read_back(tmp_path: Path) -> None:
    from ckpttool.integrations.lightning import CkptToolCallback
    from ckpttool.integrations.lightning import pl as used

    class CuttingIO(used.plugins.io.TorchCheckpointIO):
        """Writes the file, then loses its second half (a full disk)."""

        def save_checkpoint(self, checkpoint: Any, path: Any, storage_options: Any = None) -> None:
            super().save_checkpoint(checkpoint, path, storage_options)
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])

    pl = _pl()
    with pytest.raises(CorruptCheckpoint, match=r"the checkpoint just saved does not read back \(truncated"):
        _fit(pl, tmp_path, CkptToolCallback(), max_steps=2, plugins=[CuttingIO()])
    with pytest.warns(RuntimeWarning, match="does not read back"):
        _fit(
            pl,
            tmp_path / "warn",
            CkptToolCallback(raise_on_bad_save=False),
            max_steps=1,
            plugins=[CuttingIO()],
        )


def test_lightning_under_the_pytorch_lightning_name(
    lightning_run: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the module loaded as if only pytorch-lightning were installed, in a real pytorch_lightning fit."""
    ptl = pytest.importorskip("pytorch_lightning")
    import ckpttool.integrations.lightning as ours

    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)  # import lightning.pytorch -> ImportError
    spec = importlib.util.spec_from_file_location("ckpttool_lightning_as_ptl", ours.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.pl is ptl and issubclass(module.CkptToolCallback, ptl.Callback)
    monkeypatch.undo()

    good = lightning_run[0] / "ckpts" / "last.ckpt"
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:4000])
    with pytest.raises(ResumeRefused, match="cut short"):
        _fit(ptl, tmp_path, module.CkptToolCallback(), max_steps=2, ckpt_path=cut)


# ---------------------------------------------------------------------------------------------- transformers


def _tf() -> Any:
    return pytest.importorskip("transformers")


def _hf_trainer(tf: Any, out: Path, callback: Any, max_steps: int, **args: Any) -> Any:
    config = tf.BertConfig(
        vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = tf.BertForSequenceClassification(config)
    g = torch.Generator().manual_seed(2)
    data = [{"input_ids": torch.randint(0, 32, (6,), generator=g), "labels": int(i % 2)} for i in range(8)]
    targs = tf.TrainingArguments(
        output_dir=str(out), max_steps=max_steps, save_strategy="steps", save_steps=1, per_device_train_batch_size=2,
        report_to=[], use_cpu=True, logging_strategy="no", disable_tqdm=True, seed=0, **args,
    )  # fmt: skip
    return tf.Trainer(model=model, args=targs, train_dataset=data, callbacks=[callback])


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """output_dir with checkpoint-1 and checkpoint-2, saved by a Trainer with the callback."""
    from ckpttool.integrations.transformers import CkptToolCallback

    tf = _tf()
    out = tmp_path_factory.mktemp("hf")
    callback = CkptToolCallback()
    trainer = _hf_trainer(tf, out, callback, max_steps=2)
    trainer.train()
    assert [Path(r.path).name for r in callback.reports] == ["checkpoint-1", "checkpoint-2"]
    assert all(r.ok for r in callback.reports), [r.problems for r in callback.reports]
    checks = {c.name: c.status for c in callback.reports[-1].checks}
    assert checks == {
        "weights": "pass", "optimizer": "pass", "scheduler": "pass", "rng": "pass", "trainer-state": "pass"
    }  # fmt: skip
    return out


def _copy(hf_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(hf_run, out)
    return out


def test_transformers_refuses_a_folder_without_optimizer(hf_run: Path, tmp_path: Path) -> None:
    from ckpttool.integrations.transformers import CkptToolCallback, checked_resume

    tf = _tf()
    out = _copy(hf_run, tmp_path)
    (out / "checkpoint-2" / "optimizer.pt").unlink()  # transformers itself would resume with a fresh Adam
    with pytest.raises(ResumeRefused, match=r"checkpoint-2: .*no optimizer\.pt"):
        checked_resume(out / "checkpoint-2")
    trainer = _hf_trainer(tf, out, CkptToolCallback(), max_steps=4)
    with pytest.raises(
        ResumeRefused, match=r"no optimizer\.pt: transformers would resume with a fresh optimizer"
    ):
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    assert trainer.state.global_step == 2  # refused before the first step after the resume
    assert not (out / "checkpoint-3").exists()


def test_transformers_refuses_a_truncated_model_before_loading(hf_run: Path, tmp_path: Path) -> None:
    from ckpttool.integrations.transformers import CkptToolCallback, checked_resume

    tf = _tf()
    out = _copy(hf_run, tmp_path)
    weights = out / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ResumeRefused, match=r"model\.safetensors: truncated"):
        checked_resume(True, output_dir=out)  # the folder transformers' get_last_checkpoint picks
    with pytest.raises(ResumeRefused, match=r"model\.safetensors: truncated"):  # in Trainer.__init__
        _hf_trainer(
            tf, out, CkptToolCallback(), max_steps=4, resume_from_checkpoint=str(out / "checkpoint-2")
        )


def test_transformers_refuses_a_stale_folder(hf_run: Path, tmp_path: Path) -> None:
    from ckpttool.integrations.transformers import CkptToolCallback, checked_resume

    tf = _tf()
    out = _copy(hf_run, tmp_path)
    with pytest.raises(ResumeRefused, match=r"it is stale: .*checkpoint-2 beside it is newer"):
        _hf_trainer(tf, out, CkptToolCallback(), max_steps=4).train(
            resume_from_checkpoint=str(out / "checkpoint-1")
        )
    assert checked_resume(out / "checkpoint-1", allow_stale=True) == str(out / "checkpoint-1")


def test_transformers_lets_a_good_resume_through(hf_run: Path, tmp_path: Path) -> None:
    from ckpttool.integrations.transformers import CkptToolCallback, checked_resume

    tf = _tf()
    out = _copy(hf_run, tmp_path)
    callback = CkptToolCallback()
    trainer = _hf_trainer(tf, out, callback, max_steps=4)
    trainer.train(resume_from_checkpoint=checked_resume(out / "checkpoint-2"))
    assert trainer.state.global_step == 4
    assert [Path(r.path).name for r in callback.reports] == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    assert all(r.ok for r in callback.reports)
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_cli_reads_a_trainer_checkpoint_folder(hf_run: Path, tmp_path: Path) -> None:
    """``inspect checkpoint-2``: the folder as transformers resumes from it (weights, optimizer.pt,
    scheduler.pt, rng_state.pth, trainer_state.json), the optimizer state lined up with the parameters the
    real Trainer gives its optimizer (decay group, then no-decay group; the safetensors file sorted its keys)."""
    from conftest import run_cli

    import ckpttool
    from ckpttool.integrations.transformers import CkptToolCallback

    tf = _tf()
    doc = run_cli("inspect", hf_run / "checkpoint-2", "--json").json()
    assert (doc["format"], doc["profile"], doc["verdict"]) == (
        "hf-trainer-dir",
        "transformers-trainer",
        "full",
    )
    pieces = {k: v["status"] for k, v in doc["pieces"].items()}
    assert {
        k: pieces[k] for k in ("model", "optimizer", "scheduler", "step", "epoch", "rng", "config")
    } == dict.fromkeys(("model", "optimizer", "scheduler", "step", "epoch", "rng", "config"), "present")
    assert "global_step = 2" in doc["pieces"]["step"]["detail"]
    (o,) = doc["optimizers"]
    assert o["aligned"] and o["alignment_method"].startswith("transformers' decay / no-decay groups")
    # the Trainer's own optimizer: every state entry's parameter has the shape ckpttool assigned to it
    real = _hf_trainer(tf, tmp_path / "probe", CkptToolCallback(), max_steps=2)
    opt = real.create_optimizer()
    names = {id(p): n for n, p in real.model.named_parameters()}
    order = [names[id(p)] for g in opt.param_groups for p in g["params"]]
    report = ckpttool.inspect(hf_run / "checkpoint-2").optimizers[0]
    shapes = {n: tuple(p.shape) for n, p in real.model.named_parameters()}
    assigned = [report.mapping[i].removeprefix("model.") for i in range(len(order))]
    assert [shapes[n] for n in assigned] == [shapes[n] for n in order]
    assert sorted(assigned) == sorted(order)


def test_check_predicts_the_trainer_resume_and_fix_moves_a_cut_folder(hf_run: Path, tmp_path: Path) -> None:
    """``check output_dir``: transformers resumes from the largest checkpoint-N; with that folder's weights cut
    short it crashes in safetensors (the quoted error is the real one), ``fix`` moves the folder aside and
    transformers then resumes from checkpoint-1; ``fix --undo`` brings the folder back unchanged."""
    import os
    import time

    import safetensors.torch
    from conftest import run_cli

    out = _copy(hf_run, tmp_path)
    r = run_cli("check", out, "--json")
    assert r.code == 0
    checks = {c["name"]: c for c in r.json()["checks"]}
    # LambdaLR's schedule is code: what can be checked is that it last set the optimizer's LRs
    assert (
        checks["scheduler"]["status"] == "pass"
        and "the LRs to come are not checked" in checks["scheduler"]["message"]
    )
    (pred,) = r.json()["predictions"]
    assert (pred["trainer"], pred["outcome"]) == ("transformers", "resumes")
    assert Path(pred["loads"][0]["path"]).name == "checkpoint-2"
    (out / "checkpoint-10").write_text("a file, not a folder: get_last_checkpoint skips it")
    weights = out / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    old = time.time() - 3600
    os.utime(weights, (old, old))
    with pytest.raises(Exception) as real:
        safetensors.torch.load_file(weights)
    (pred,) = run_cli("check", out, "--json").json()["predictions"]
    assert pred["outcome"] == "crash" and Path(pred["loads"][0]["path"]).name == "checkpoint-2"
    assert f"model.safetensors: {type(real.value).__name__}: {real.value}" in pred["summary"]
    before = sorted((p.relative_to(out).as_posix(), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    fixed = run_cli("fix", out, "--json")
    assert fixed.code == 0, fixed.stdout
    (after,) = fixed.json()["after"]
    assert after["outcome"] == "resumes" and Path(after["loads"][0]["path"]).name == "checkpoint-1"
    assert not (out / "checkpoint-2").exists()
    assert run_cli("fix", out, "--undo").code == 0
    restored = sorted((p.relative_to(out).as_posix(), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    assert restored == before


def test_a_scheduler_from_another_save_is_flagged(hf_run: Path, tmp_path: Path) -> None:
    from conftest import run_cli

    out = _copy(hf_run, tmp_path)
    path = out / "checkpoint-2" / "scheduler.pt"
    state = torch.load(path, weights_only=True)
    state["_last_lr"] = [1.0 for _ in state["_last_lr"]]
    torch.save(state, path)
    checks = [c for c in run_cli("check", out, "--json").json()["checks"] if c["name"] == "scheduler"]
    assert [c["status"] for c in checks] == ["warn"]
    assert "last set lr 1, 1 but optimizer holds" in checks[0]["message"]


def test_a_folder_without_weights_is_the_crash_transformers_raises(hf_run: Path, tmp_path: Path) -> None:
    """checkpoint-2 without model.safetensors: ckpttool predicts the ValueError the real Trainer raises (run here),
    and takes checkpoint-1 as the newest complete state; an unsafe optimizer.pt is refused (exit 3)."""
    from conftest import FIXTURES, run_cli

    from ckpttool.integrations.transformers import CkptToolCallback

    tf = _tf()
    out = _copy(hf_run, tmp_path)
    (out / "checkpoint-2" / "model.safetensors").unlink()
    (pred,) = run_cli("check", out, "--json").json()["predictions"]
    assert pred["outcome"] == "crash" and Path(pred["loads"][0]["path"]).name == "checkpoint-2"
    with pytest.raises(ValueError) as real:
        _hf_trainer(tf, out, CkptToolCallback(), max_steps=4).train(
            resume_from_checkpoint=str(out / "checkpoint-2")
        )
    assert str(real.value).startswith("Can't find a valid checkpoint at")
    assert f"ValueError: Can't find a valid checkpoint at {out / 'checkpoint-2'}" in pred["summary"]
    assert "newest complete state is checkpoint-1" in pred["summary"]
    assert run_cli("inspect", out / "checkpoint-2").code == 3
    shutil.copyfile(FIXTURES / "malicious.pth", out / "checkpoint-1" / "optimizer.pt")
    r = run_cli("inspect", out / "checkpoint-1")
    assert r.code == 3 and "optimizer.pt: refused" in r.stderr


def test_gpt2_layer_norms_are_in_the_no_decay_group(tmp_path: Path) -> None:
    """GPT-2's LayerNorms (ln_1, ln_2, ln_f) match none of transformers' no-decay name patterns; the Trainer
    leaves them out of weight decay by type. With weight_decay on, the optimizer state still lines up with the
    real Trainer's optimizer, and the checkpoint is ready to resume."""
    from conftest import run_cli

    import ckpttool

    tf = _tf()
    cfg = tf.GPT2Config(vocab_size=32, n_positions=16, n_embd=8, n_layer=2, n_head=2)
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(cfg)
    g = torch.Generator().manual_seed(2)
    data = [
        {
            "input_ids": torch.randint(0, 32, (6,), generator=g),
            "labels": torch.randint(0, 32, (6,), generator=g),
        }
        for _ in range(8)
    ]
    targs = tf.TrainingArguments(
        output_dir=str(tmp_path / "gpt2"), max_steps=2, save_strategy="steps", save_steps=1, report_to=[],
        per_device_train_batch_size=2, use_cpu=True, logging_strategy="no", disable_tqdm=True, seed=0,
        weight_decay=0.01,
    )  # fmt: skip
    trainer = tf.Trainer(model=model, args=targs, train_dataset=data)
    trainer.train()
    r = run_cli("check", tmp_path / "gpt2")
    assert r.code == 0, r.stdout
    report = ckpttool.inspect(tmp_path / "gpt2" / "checkpoint-2").optimizers[0]
    assert report.aligned and "LayerNorm modules told by their parameters" in report.method
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    order = [names[id(p)] for grp in trainer.optimizer.param_groups for p in grp["params"]]
    shapes = {n: tuple(p.shape) for n, p in trainer.model.named_parameters()}
    assigned = [report.mapping[i].removeprefix("model.") for i in range(len(order))]
    assert [shapes[n] for n in assigned] == [shapes[n] for n in order]
    assert sorted(assigned) == sorted(order)


def _no_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def _cut_before_state(folder: Path) -> None:
    (folder / "trainer_state.json").unlink()  # _save_checkpoint writes it last


def _state_as(text: str) -> Any:
    def damage(folder: Path) -> None:
        (folder / "trainer_state.json").write_text(text)

    return damage


def _step_as_string(folder: Path) -> None:
    state = json.loads((folder / "trainer_state.json").read_text())
    state["global_step"] = str(state["global_step"])
    (folder / "trainer_state.json").write_text(json.dumps(state))


@pytest.mark.parametrize(
    "damage",
    [
        _no_weights,
        _cut_before_state,
        _state_as("[1, 2]"),
        _step_as_string,
        _state_as('{"global_step": '),
    ],
    ids=["no-weights", "no-trainer-state", "state-a-list", "step-a-string", "state-not-json"],
)
def test_the_predicted_crash_is_the_one_transformers_raises(
    hf_run: Path, tmp_path: Path, damage: Any
) -> None:
    """The newest checkpoint-N damaged the ways real runs leave them: ckpttool predicts a crash quoting the
    exception the real ``Trainer.train(resume_from_checkpoint=True)`` raises on the same folder (run here)."""
    import time

    from conftest import run_cli

    tf = _tf()
    out = _copy(hf_run, tmp_path)
    damage(out / "checkpoint-2")
    old = time.time() - 3600
    for p in (out / "checkpoint-2").iterdir():
        os.utime(p, (old, old))
    (pred,) = run_cli("check", out, "--json").json()["predictions"]
    assert pred["outcome"] == "crash" and Path(pred["loads"][0]["path"]).name == "checkpoint-2"
    with pytest.raises(Exception) as real:
        _hf_trainer(tf, out, tf.TrainerCallback(), max_steps=4).train(resume_from_checkpoint=True)
    assert f"{type(real.value).__name__}: {real.value}".startswith(
        pred["loads"][0]["error"].split(" (")[0][:60]
    )
    assert "newest complete state is checkpoint-1" in pred["summary"]


def test_trainer_folder_edge_cases(hf_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """optimizer.pt without scheduler.pt (transformers loads neither), a trainer_state.json past the JSON limit
    (not read, never called corrupt), torch older than transformers accepts, pack of a folder, undo of a link."""
    from conftest import run_cli

    import ckpttool.formats.hf_trainer as hf

    out = _copy(hf_run, tmp_path)
    (out / "checkpoint-2" / "scheduler.pt").unlink()
    doc = run_cli("inspect", out / "checkpoint-2", "--json").json()
    assert doc["pieces"]["optimizer"]["status"] == "absent" and doc["verdict"] == "weights-only"
    assert any("optimizer.pt without scheduler.pt: transformers loads neither" in n for n in doc["notes"])
    shutil.rmtree(out)
    out = _copy(hf_run, tmp_path)
    monkeypatch.setattr(hf, "MAX_JSON", 100)
    doc = run_cli("inspect", out / "checkpoint-2", "--json").json()
    assert doc["verdict"] == "full" and "global_step = 2" in doc["pieces"]["step"]["detail"]
    assert any("limit for JSON: not read; the step is taken from the folder name" in n for n in doc["notes"])
    monkeypatch.undo()
    (pred,) = run_cli("check", out, "--json", "--torch-version", "2.4").json()["predictions"]
    assert pred["outcome"] == "crash" and "upgrade torch to at least v2.6" in pred["summary"]
    rng = out / "checkpoint-2" / "rng_state.pth"
    rng.rename(rng.with_name("rng_state_0.pth"))
    shutil.copyfile(rng.with_name("rng_state_0.pth"), rng.with_name("rng_state_1.pth"))
    notes = run_cli("inspect", out / "checkpoint-2", "--json").json()["notes"]
    assert any(
        "2 per-process RNG file(s) (rng_state_0.pth, rng_state_1.pth) and no rng_state.pth" in n
        for n in notes
    )
    r = run_cli("pack", out, "-o", tmp_path / "p.tar")
    assert r.code == 2 and "a checkpoint folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # a checkpoint folder that is a link: fix moves the link, --undo puts it back
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(out / "checkpoint-2", elsewhere)
    (elsewhere / "model.safetensors").write_bytes(b"")
    (out / "checkpoint-9").symlink_to(elsewhere, target_is_directory=True)
    assert run_cli("fix", out).code == 0 and not (out / "checkpoint-9").exists()
    assert run_cli("fix", out, "--undo").code == 0 and (out / "checkpoint-9").is_symlink()


def test_prune_deletes_trainer_folders_whole_but_never_a_user_file(hf_run: Path, tmp_path: Path) -> None:
    """A checkpoint-N folder holds only what the Trainer writes: prune removes it whole, as transformers'
    own rotation does; a folder holding anything else is kept and said so."""
    from conftest import run_cli

    out = _copy(hf_run, tmp_path)
    plan = run_cli("prune", out, "--keep", "1", "--dry-run", "--json").json()
    assert [Path(p).name for p in plan["delete"]] == ["checkpoint-1"]
    (out / "checkpoint-1" / "notes.txt").write_text("mine")
    plan = run_cli("prune", out, "--keep", "1", "--dry-run", "--json").json()
    assert plan["delete"] == []
    assert any("remove it yourself" in k["why"] for k in plan["keep"])
    (out / "checkpoint-1" / "notes.txt").unlink()
    assert run_cli("prune", out, "--keep", "1").code == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2"]


def test_importing_ckpttool_imports_no_framework() -> None:
    code = (
        "import sys, ckpttool, ckpttool.integrations, ckpttool.integrations.gate, "
        "ckpttool.integrations.hf_trainer_folder\n"
        "print([m for m in ('lightning', 'pytorch_lightning', 'transformers', 'torch') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
