"""GPT-SoVITS's GPT stage (s1): the real files upstream wrote (../shared/cases/gsv_s1) and tiny files generated
from the gpt-sovits-s1 spec. Every verdict is the one upstream's code implies (facts cited in the spec, the
trainer record and the modules under test)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import case, run_cli
from s1_files import BATCHES_MERGED, export_file, s1_config, training_file

from ckpttool.formats.torch_zip import torch_save_to
from ckpttool.formats.values import StorageReader
from ckpttool.interpret.source import load
from ckpttool.specs import get_spec
from ckpttool.specs.match import config_values

TRAIN = "gsv_s1/epoch=3-step=8.ckpt"
EXPORT = "gsv_s1/s1fp16-e4.ckpt"


def _inspect(path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    r = run_cli("inspect", path, "--json", *args)
    return r.code, r.json()


# --- the spec: exact parameter counts of the published configs ------------------------------------------------
# Model sections of GPT_SoVITS/configs/*.yaml (RVC-Boss/GPT-SoVITS@48b1a01); the counts were obtained by building
# upstream's Text2SemanticDecoder on the meta device (/work/research/gsv_s1.md §2).
PUBLISHED = {  # name: (phoneme_vocab_size, embedding_dim = hidden_dim, n_layer), tensors, parameters
    "s1longer.yaml": ((512, 512, 24), 295, 77_493_762),
    "s1longer-v2.yaml": ((732, 512, 24), 295, 77_606_402),
    "s1.yaml": ((512, 512, 12), 151, 39_665_154),
    "s1big.yaml": ((512, 1024, 16), 199, 205_212_674),
    "s1big2.yaml": ((512, 1024, 6), 79, 79_250_434),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_config_counts(name: str) -> None:
    (phonemes, width, layers), tensors, params = PUBLISHED[name]
    spec = get_spec("gpt-sovits-s1")
    model = {"phoneme_vocab_size": phonemes, "embedding_dim": width, "hidden_dim": width, "n_layer": layers}
    config = {
        "model": {"vocab_size": 1025, "head": 16, "linear_units": 2048, "dropout": 0, "EOS": 1024, **model}
    }
    values = config_values(spec, config)
    expanded = spec.expand(values)
    assert (len(expanded), sum(t.numel for t in expanded)) == (tensors, params)
    assert not any(t.buffer for t in expanded)  # no buffers: the sinusoid table is a plain attribute
    assert spec.check_constraints(values) == []


def test_feed_forward_width_is_four_hidden_not_linear_units() -> None:
    """t2s_model.py:304: dim_feedforward = hidden_dim * 4; linear_units is never read."""
    spec = get_spec("gpt-sovits-s1")
    values = config_values(spec, {"model": {"hidden_dim": 16, "embedding_dim": 16, "linear_units": 32}})
    shapes = {t.name: t.shape for t in spec.expand(values)}
    assert shapes["h.layers.0.linear1.weight"] == (64, 16)


# --- the real files ------------------------------------------------------------------------------------------
def test_real_training_file_is_a_gpt_sovits_s1_checkpoint() -> None:
    code, doc = _inspect(case(TRAIN))
    assert code == 0
    assert doc["profile"] == "gpt-sovits-s1-train"
    assert doc["version"] == "v2"
    assert "2.6.6" in doc["description"]  # Lightning's version is kept, not shown as the file's version
    (arch,) = doc["architectures"]
    assert (arch["family"], arch["version"], arch["matched"], arch["expected"]) == (
        "gpt-sovits-s1",
        "v2",
        31,
        31,
    )
    assert arch["config_source"] == "hyper_parameters.config" and arch["config_check"]["ok"]
    version = doc["pieces"]["version"]
    assert version["status"] == "present" and "logs_s1_v2" in version["detail"]
    assert doc["verdict"] == "full"


def test_real_training_file_scaled_adam_state_is_aligned_batch_by_batch() -> None:
    _, doc = _inspect(case(TRAIN))
    (opt,) = doc["optimizers"]
    assert opt["kind"].startswith("ScaledAdam")
    assert (opt["aligned"], opt["batches"], opt["covered_params"], opt["state_entries"]) == (True, 11, 31, 11)
    codes = {f["code"] for f in doc["findings"]}
    assert "optimizer-partial" not in codes  # "the rest never received a gradient" was false
    assert not any("never received a gradient" in f["message"] for f in doc["findings"])
    assert any("state for 11 batches covering 31 of 31 parameters" in f["message"] for f in doc["findings"])
    # the batch owners, in the order ScaledAdam created them, are exactly the file's state keys
    src = load(case(TRAIN))
    state = src.ckpt.root["optimizer_states"][0]["state"]
    assert list(src.interp.optimizers[0].mapping) == list(state) == [3, 1, 8, 12, 0, 7, 6, 11, 10, 2, 4]


def test_real_training_file_skipped_amp_steps_are_explained() -> None:
    _, doc = _inspect(case(TRAIN))
    messages = [f["message"] for f in doc["findings"]]
    assert not any(f["code"] == "adam-step" and f["severity"] == "warning" for f in doc["findings"])
    assert not any("gradient accumulation" in m for m in messages)
    (skip,) = [f for f in doc["findings"] if f["code"] == "amp-skipped-steps"]
    assert "4 optimizer steps were skipped by the GradScaler (scale 65536 -> 4096)" in skip["message"]
    assert "Lightning's global_step counts them" in skip["message"] and "inferred" in skip["message"]


def test_real_export_is_named_v2() -> None:
    code, doc = _inspect(case(EXPORT))
    assert code == 0
    assert (doc["profile"], doc["version"], doc["verdict"]) == ("gpt-sovits-gpt-export", "v2", "weights-only")
    assert doc["architectures"][0]["family"] == "gpt-sovits-s1"
    assert "GPT_weights_v2" in doc["pieces"]["version"]["detail"]


def test_real_training_file_verify_resume_is_static_only() -> None:
    r = run_cli("verify-resume", case(TRAIN))
    assert r.code == 0, r.stdout
    assert "static checks passed; not verified by a run" in r.stdout
    assert "resume verified" not in r.stdout
    assert "not recognised" not in r.stdout
    doc = run_cli("verify-resume", case(TRAIN), "--json").json()
    assert doc["verified"] is True and doc["verified_by_run"] is False
    checks = {(c["name"], c["status"]): c["message"] for c in doc["checks"]}
    assert "ScaledAdam" in checks[("shadow-run", "skip")]
    sched = checks[("scheduler", "pass")]
    assert "WarmupCosineLRSchedule" in sched and "0.002" in sched and "lr_schedulers.py:58" in sched
    assert "have no effect" in sched
    # train.epochs is 4 and four epochs are done: Lightning's fit loop stops before training anything
    assert "trains nothing" in checks[("max-epochs", "warn")]
    passed = [c["message"] for c in doc["checks"] if c["status"] == "pass"]
    assert any("4 optimizer steps were skipped by the GradScaler" in m for m in passed)
    assert any("ScaledAdam state for 11 batches covering 31 of 31 parameters" in m for m in passed)


def test_real_files_diff() -> None:
    r = run_cli("diff", case(TRAIN), case(EXPORT), "--json")
    assert r.code == 0
    doc = r.json()
    (net,) = doc["networks"]
    assert net["common"] == 31 and net["dtype_changes"] == {"float32->float16": 31}
    assert not net["shape_changes"] and not net["only_a"] and not net["only_b"]
    assert {"what": "piece optimizer", "a": "present", "b": "absent"} in doc["pieces"]
    assert doc["unexplained"] == []
    # Lightning's 0-based epoch 3 and the export's 'GPT-e4' are one save (s1_train.py:69): not a difference
    assert not any(c["what"] == "epoch" for c in doc["state"])
    assert any("the same point (4 finished)" in n for n in doc["notes"])


def _run_folder(tmp_path: Path) -> Path:
    """logs/<exp>/logs_s1_v2/ckpt/ as s1_train.py lays it out, with a copy of the real training file."""
    ckpt_dir = tmp_path / "logs" / "s1fp16" / "logs_s1_v2" / "ckpt"
    ckpt_dir.mkdir(parents=True)
    shutil.copyfile(case(TRAIN), ckpt_dir / "epoch=3-step=8.ckpt")
    return ckpt_dir


def _prediction(run: Path, *extra: str) -> dict[str, Any]:
    (pred,) = run_cli("check", run, "--json", *extra).json()["predictions"]
    return pred


def _config_with_epochs(tmp_path: Path, epochs: int) -> Path:
    """The real file's embedded run config with another train.epochs, as a YAML file for --config."""
    import yaml

    from ckpttool.configs import embedded_config
    from ckpttool.formats import open_checkpoint

    found = embedded_config(open_checkpoint(case(TRAIN)))
    assert found is not None
    config = found[1]
    config["train"]["epochs"] = epochs
    path = tmp_path / f"s1-{epochs}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_s1_resume_prediction_depends_on_the_training_environment(tmp_path: Path) -> None:
    """Lightning 2.6 passes no weights_only: on torch >= 2.6 torch.load refuses the pathlib.PosixPath that s1
    saves in hyper_parameters, so the resume crashes; Lightning 2.4-2.5 load with weights_only=False."""
    ckpt_dir = _run_folder(tmp_path)
    run = tmp_path / "logs" / "s1fp16"
    r = run_cli("latest", run)
    assert r.code == 0 and r.stdout.strip() == str(ckpt_dir / "epoch=3-step=8.ckpt")
    pred = _prediction(run, "--torch-version", "2.13.0", "--lightning-version", "2.6.6")
    assert pred["trainer"] == "gpt-sovits-s1" and pred["weights_only"] is True
    assert pred["outcome"] == "crash" and "GLOBAL pathlib.PosixPath" in pred["summary"]
    assert pred["rewrite"] == [str(ckpt_dir / "epoch=3-step=8.ckpt")] and pred["fix"]
    # an older torch, or Lightning 2.5: it loads; the real file has done 4 of train.epochs 4
    for versions in (
        ("--torch-version", "2.5.1", "--lightning-version", "2.6.6"),
        ("--lightning-version", "2.5.6"),
    ):
        pred = _prediction(run, *versions)
        assert pred["weights_only"] is False and pred["outcome"] == "finished", versions
        assert "max_epochs=4" in pred["summary"]
    more = _config_with_epochs(tmp_path, 10)
    pred = _prediction(run, "--lightning-version", "2.5.6", "--config", str(more))
    assert pred["outcome"] == "resumes"
    assert run_cli("check", run, "--lightning-version", "2.5.6", "--config", more).code == 0


def test_s1_picks_by_name(tmp_path: Path) -> None:
    """get_newest_ckpt's regex never matches Lightning's versioned names (-v1); an unreadable file with the
    highest numbers makes Lightning raise, and fix moves it away."""
    ckpt_dir = _run_folder(tmp_path)
    run = tmp_path / "logs" / "s1fp16"
    shutil.copyfile(case(TRAIN), ckpt_dir / "epoch=3-step=8-v1.ckpt")
    os.utime(ckpt_dir / "epoch=3-step=8-v1.ckpt", (time.time() + 60, time.time() + 60))
    pred = _prediction(run, "--lightning-version", "2.5.6")
    assert Path(pred["loads"][0]["path"]).name == "epoch=3-step=8.ckpt"
    (ckpt_dir / "epoch=4-step=10.ckpt").write_bytes(b"")
    pred = _prediction(run, "--lightning-version", "2.5.6")
    assert Path(pred["loads"][0]["path"]).name == "epoch=4-step=10.ckpt"
    assert pred["outcome"] == "crash" and "PytorchStreamReader" in pred["summary"]
    assert pred["quarantine"] == [str(ckpt_dir / "epoch=4-step=10.ckpt")]
    assert run_cli("check", run, "--lightning-version", "2.5.6").code == 1
    assert run_cli("fix", run, "--lightning-version", "2.5.6").code == 1  # fixed, but train.epochs is reached
    pred = _prediction(run, "--lightning-version", "2.5.6")
    assert Path(pred["loads"][0]["path"]).name == "epoch=3-step=8.ckpt" and pred["outcome"] == "finished"
    assert (ckpt_dir / "ckpttool-quarantine" / "epoch=4-step=10.ckpt").is_file()


def test_s1_ties_follow_the_listing_order(tmp_path: Path) -> None:
    """re.match is anchored at the start only: a .bak copy matches and ties with the original."""
    ckpt_dir = _run_folder(tmp_path)
    shutil.copyfile(case(TRAIN), ckpt_dir / "epoch=3-step=8.ckpt.bak")
    pred = _prediction(ckpt_dir, "--lightning-version", "2.5.6")
    assert "tie" in pred["loads"][0]["note"] and "epoch=3-step=8.ckpt.bak" in pred["loads"][0]["note"]


def test_s1_without_a_matching_name_starts_from_scratch(tmp_path: Path) -> None:
    ckpt_dir = tmp_path / "logs" / "x" / "logs_s1_v2" / "ckpt"
    training_file(ckpt_dir / "last.ckpt", 732)
    pred = _prediction(ckpt_dir)
    assert pred["trainer"] == "gpt-sovits-s1" and pred["outcome"] in ("scratch", "pretrained")
    assert "IndexError" in pred["loads"][0]["error"]


def _rewrite(src: Path, dst: Path, change: Any) -> Path:
    """A copy of a real file with ``change(root)`` applied (the source is never modified)."""
    with StorageReader() as reader:
        root = reader.materialise(load(src).ckpt.root, shared=True)
    change(root)
    with open(dst, "wb") as fh:
        torch_save_to(fh, root)
    return dst


def test_scaled_adam_state_of_the_wrong_shape_is_an_error(tmp_path: Path) -> None:
    def shrink(root: dict[str, Any]) -> None:  # out_proj's batch holds 2 x [16, 16]: give it one
        root["optimizer_states"][0]["state"][8]["delta"] = torch.zeros(1, 16, 16)

    code, doc = _inspect(_rewrite(case(TRAIN), tmp_path / "epoch=3-step=8.ckpt", shrink))
    assert code == 1 and doc["verdict"] == "weights-only"
    (m,) = doc["optimizers"][0]["mismatches"]
    assert (m["index"], m["state_key"], m["state_shape"], m["param_shape"]) == (
        8,
        "delta",
        [1, 16, 16],
        [2, 16, 16],
    )


def test_scaled_adam_state_on_the_wrong_parameter(tmp_path: Path) -> None:
    def move(root: dict[str, Any]) -> None:  # the alphas' state moved to the second alpha (index 5)
        state = root["optimizer_states"][0]["state"]
        state[5] = state.pop(3)

    _, doc = _inspect(_rewrite(case(TRAIN), tmp_path / "moved.ckpt", move))
    (opt,) = doc["optimizers"]
    assert opt["covered_params"] == 29 and "own no batch" in (opt["problem"] or "")
    assert any(f["code"] == "optimizer-partial" for f in doc["findings"])


def test_unexplained_step_gap_still_warns(tmp_path: Path) -> None:
    def rescale(root: dict[str, Any]) -> None:  # 3 backoffs cannot explain a gap of 4 steps
        root["MixedPrecision"]["scale"] = 8192.0

    _, doc = _inspect(_rewrite(case(TRAIN), tmp_path / "rescaled.ckpt", rescale))
    assert not any(f["code"] == "amp-skipped-steps" for f in doc["findings"])
    assert any(f["code"] == "adam-step" and f["severity"] == "warning" for f in doc["findings"])


def test_lr_the_pin_cannot_produce_warns(tmp_path: Path) -> None:
    def unpin(root: dict[str, Any]) -> None:
        root["optimizer_states"][0]["param_groups"][0]["lr"] = 0.01

    path = _rewrite(case(TRAIN), tmp_path / "unpinned.ckpt", unpin)
    doc = run_cli("verify-resume", path, "--json").json()
    (sched,) = [c for c in doc["checks"] if c["name"] == "scheduler"]
    assert sched["status"] == "warn" and "param group 0 holds lr 0.01" in sched["message"]


# --- tiny files generated from the spec ---------------------------------------------------------------------
def test_generated_v1_and_v2_training_files(tmp_path: Path) -> None:
    v1_config = s1_config(512, output_dir="logs/t/logs_s1_v1", weights="GPT_weights")
    v1 = training_file(tmp_path / "a" / "epoch=1-step=6.ckpt", 512, config=v1_config)
    v2 = training_file(tmp_path / "b" / "epoch=1-step=6.ckpt", 732)
    for path, version in ((v1, "v1"), (v2, "v2")):
        code, doc = _inspect(path)
        assert code == 0, doc["findings"]
        assert (doc["profile"], doc["version"]) == ("gpt-sovits-s1-train", version)  # by its keys: no logs_s1
        assert doc["architectures"][0]["version"] == version
        (opt,) = doc["optimizers"]
        assert (opt["aligned"], opt["batches"], opt["covered_params"]) == (True, 11, 19)


def test_generated_merged_batch_is_aligned(tmp_path: Path) -> None:
    """An 8-row phoneme vocabulary shares out_proj's [8, 8] batch, which the text embedding (index 2) owns."""
    path = training_file(tmp_path / "m.ckpt", 8, batches=BATCHES_MERGED, config=s1_config(8))
    _, doc = _inspect(path)
    (opt,) = doc["optimizers"]
    assert (opt["aligned"], opt["batches"], opt["covered_params"]) == (True, 10, 19)


def test_version_from_the_folder_and_its_contradictions(tmp_path: Path) -> None:
    pro = export_file(tmp_path / "GPT_weights_v2Pro" / "tiny-e2.ckpt", 732, config={"model": {}})
    assert _inspect(pro)[1]["version"] == "v2Pro"  # the folder names the member of the v2 family
    old = export_file(tmp_path / "GPT_weights" / "tiny-e2.ckpt", 512, config={"model": {}})
    assert _inspect(old)[1]["version"] == "v1"
    wrong = export_file(tmp_path / "GPT_weights_v2" / "tiny-e2.ckpt", 512, config={"model": {}})
    _, doc = _inspect(wrong)
    assert doc["version"] == "v1"  # 512 phoneme rows cannot be v2's GPT
    assert any("names v2" in n and "rule it out" in n for n in doc["notes"])


def test_config_yaml_mismatch_exits_1(tmp_path: Path) -> None:
    import yaml

    v1 = training_file(tmp_path / "epoch=1-step=6.ckpt", 512, config=s1_config(512))
    yaml_v2 = tmp_path / "s1longer-v2.yaml"
    yaml_v2.write_text(yaml.safe_dump(s1_config(732)))
    r = run_cli("inspect", v1, "--config", yaml_v2)
    assert r.code == 1 and "MISMATCH" in r.stdout
    assert "phoneme_vocab_size: config 732, checkpoint 512" in r.stdout
    yaml_v1 = tmp_path / "s1longer.yaml"
    yaml_v1.write_text(yaml.safe_dump(s1_config(512)))
    assert run_cli("inspect", v1, "--config", yaml_v1).code == 0
    # the embedded config (hyper_parameters.config) is checked by default
    bad = training_file(tmp_path / "bad.ckpt", 512, config=s1_config(512, n_layer=2))
    code, doc = _inspect(bad)
    assert code == 1 and doc["architectures"][0]["config_source"] == "hyper_parameters.config"
    assert run_cli("check", bad).code == 1


def test_diff_v1_against_v2_names_the_vocabulary(tmp_path: Path) -> None:
    v1 = training_file(tmp_path / "v1.ckpt", 512, config=s1_config(512))
    v2 = training_file(tmp_path / "v2.ckpt", 732)
    doc = run_cli("diff", v1, v2, "--json").json()
    (change,) = doc["networks"][0]["shape_changes"]
    assert change["name"] == "model.ar_text_embedding.word_embeddings.weight"
    assert change["explained_by"] and doc["unexplained"] == []


def test_real_training_file_against_the_published_yaml(tmp_path: Path) -> None:
    """The case's model was shrunk from s1longer-v2.yaml (widths 16, 2 layers): the published YAML contradicts it."""
    import yaml

    published = s1_config(
        732, embedding_dim=512, hidden_dim=512, n_layer=24, head=16, vocab_size=1025, EOS=1024
    )
    config = tmp_path / "s1longer-v2.yaml"
    config.write_text(yaml.safe_dump(published))
    r = run_cli("inspect", case(TRAIN), "--config", config)
    assert r.code == 1
    assert "hidden_dim: config 512, checkpoint 16" in r.stdout
    assert "tensor(s) the config implies are missing" in r.stdout  # 24 layers configured, 2 in the file
