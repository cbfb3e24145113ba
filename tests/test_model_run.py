"""The model run's plumbing without GPT-SoVITS: trainer-root detection, recipe choice, the protocol (ckpttool
hands recipes the state it read), one-line errors for what is missing, and the summary when nothing ran."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import fixture, run_cli

from ckpttool.interpret.source import load
from ckpttool.recipes import gpt_sovits, tiny_gan
from ckpttool.recipes.requirements import PIP_NAMES
from ckpttool.recipes.select import LORA, S1, S2, choose_recipe
from ckpttool.recipes.trainer_root import check_trainer_root, find_trainer_root, on_path
from ckpttool.resume.recipe import LoadedFile, RecipeContext, read_files

G = "gpt_sovits/logs_s2_v2/G_233333333333.pth"
D = "gpt_sovits/logs_s2_v2/D_233333333333.pth"


def fake_checkout(base: Path, modules: dict[str, str] | None = None) -> Path:
    """A folder that looks like a GPT-SoVITS checkout (GPT_SoVITS/s2_train.py) holding only ``modules``
    (relative path under GPT_SoVITS/ -> source)."""
    root = base / "GPT-SoVITS"
    (root / "GPT_SoVITS").mkdir(parents=True)
    (root / "GPT_SoVITS" / "s2_train.py").write_text("# stand-in\n")
    for rel, text in (modules or {}).items():
        path = root / "GPT_SoVITS" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_trainer_root_is_found_from_inside_and_checked(tmp_path: Path) -> None:
    root = fake_checkout(tmp_path)
    deep = root / "logs" / "exp" / "logs_s2_v2"
    deep.mkdir(parents=True)
    assert find_trainer_root(deep) == root.resolve()
    assert find_trainer_root(tmp_path) is None
    assert check_trainer_root(root / "GPT_SoVITS") == root.resolve()  # the package folder means its parent
    r = run_cli("verify-resume", str(fixture(G)), str(fixture(D)), "--trainer-root", str(tmp_path))
    assert r.code == 2 and "not a GPT-SoVITS checkout" in r.stderr and r.stderr.count("\n") == 1


def test_on_path_is_for_the_run_only(tmp_path: Path) -> None:
    root = fake_checkout(tmp_path, {"module/__init__.py": "", "module/models.py": "VALUE = 42\n"})
    before = list(sys.path)
    with on_path(root):
        import module.models  # type: ignore[import-not-found]

        assert module.models.VALUE == 42
    assert sys.path == before and "module.models" not in sys.modules and "module" not in sys.modules


def test_recipe_is_chosen_from_the_files() -> None:
    assert choose_recipe([load(fixture(G)), load(fixture(D))]) == S2
    # the fixture's Lightning file holds a Text2SemanticDecoder (model.ar_*) and its config
    assert choose_recipe([load(fixture("lightning/epoch=3-step=120.ckpt"))]) == S1
    assert choose_recipe([load(fixture(G))]) == S2  # a G alone still names the s2 recipe (which then wants D)
    none = choose_recipe([load(fixture("seed_bundle.pth"))])
    assert none.spec is None and "no built-in recipe" in none.reason
    assert LORA.spec  # chosen in tests/test_gsv_real.py on a file upstream's LoRA trainer wrote


def test_missing_gpt_sovits_module_is_one_line_exit_2(tmp_path: Path) -> None:
    root = fake_checkout(tmp_path)  # has s2_train.py but no module/ package
    r = run_cli("verify-resume", str(fixture(G)), str(fixture(D)), "--trainer-root", str(root), "--no-shadow")
    assert r.code == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "needs GPT-SoVITS's module 'module'" in r.stderr and "--trainer-root" in r.stderr


def test_missing_third_party_package_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # upstream module/models.py imports f5_tts, which imports x_transformers; here it is "not installed"
    models = "import x_transformers\n"
    root = fake_checkout(tmp_path, {"module/__init__.py": "", "module/models.py": models})
    monkeypatch.setitem(sys.modules, "x_transformers", None)  # import raises ModuleNotFoundError
    # the recipe's REQUIRES are checked before anything runs: the first one missing here is named
    missing = next(n for n in gpt_sovits.REQUIRES if n != "module" and importlib.util.find_spec(n) is None)
    r = run_cli("verify-resume", str(fixture(G)), str(fixture(D)), "--trainer-root", str(root), "--json")
    assert r.code == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"needs the Python module '{missing}', which is not installed" in r.stderr
    assert f"pip install '{PIP_NAMES[missing]}'" in r.stderr and "ckpttool[gpt-sovits]" in r.stderr
    assert r.json()["kind"] == "usage"


def test_checkout_is_detected_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_checkout(tmp_path)
    monkeypatch.chdir(root / "GPT_SoVITS")
    r = run_cli("verify-resume", str(fixture(G)), str(fixture(D)))
    assert r.code == 2 and "needs GPT-SoVITS's module 'module'" in r.stderr  # it tried the model run
    r = run_cli("verify-resume", str(fixture(G)), str(fixture(D)), "--no-model-run")
    assert r.code == 0 and "recipe-run" not in r.stdout
    r = run_cli("check", str(fixture(G)), str(fixture(D)))  # without --verify nothing runs
    assert r.code == 0, r.stderr


def test_trainer_root_without_a_fitting_recipe_is_a_usage_error(tmp_path: Path) -> None:
    root = fake_checkout(tmp_path)
    r = run_cli("verify-resume", str(fixture("seed_bundle.pth")), "--trainer-root", str(root))
    assert r.code == 2 and "no built-in recipe for these files" in r.stderr and "--recipe" in r.stderr


def test_recipes_get_ckpttools_reading_not_the_file() -> None:
    """``load`` receives the tree ckpttool read, with real tensors equal to what torch.load gives, and the
    roles ckpttool found."""
    import torch

    files = read_files([load(fixture(G)), load(fixture(D))])
    assert [f.roles for f in files] == [("G",), ("D",)] and files[0].profile == "gpt-sovits-train"
    for f in files:
        ref = torch.load(fixture(G if f.roles == ("G",) else D), map_location="cpu", weights_only=True)
        assert list(f.root) == list(ref) and f.root["iteration"] == ref["iteration"]
        for name, t in ref["model"].items():
            assert torch.equal(f.root["model"][name], t)
        for i, entry in ref["optimizer"]["state"].items():
            assert all(torch.equal(f.root["optimizer"]["state"][i][k], v) for k, v in entry.items())
        assert f.root["optimizer"]["param_groups"] == ref["optimizer"]["param_groups"]


class _Recorder:
    """A recipe trainer that records what it was given (and resumes trivially)."""

    seen: ClassVar[list[list[LoadedFile]]] = []

    def __init__(self, context: RecipeContext) -> None:
        self.context = context
        self.inner = tiny_gan.TinyGAN(context.device)

    def load(self, files: list[LoadedFile]) -> None:
        _Recorder.seen.append(files)
        self.inner.load(files)

    def train_step(self, index: int) -> None:
        self.inner.train_step(index)

    def save(self, folder: Path) -> list[Path]:
        return self.inner.save(folder)

    def state(self) -> dict[str, Any]:
        return self.inner.state()


def recorder(context: RecipeContext) -> _Recorder:
    return _Recorder(context)


def test_each_trainer_gets_its_own_reading(tmp_path: Path) -> None:
    """Optimizer.load_state_dict keeps the given tensors and steps them in place: trainers must not share."""
    files = tiny_gan.make_checkpoint(tmp_path)
    _Recorder.seen.clear()
    r = run_cli(
        "verify-resume", *map(str, files), "--recipe", "test_model_run:recorder", "--no-shadow", "--json"
    )
    assert r.code == 0, r.stdout + r.stderr
    first, second, resumed = _Recorder.seen
    assert [f.path for f in first] == [Path(p) for p in files] == [f.path for f in second]
    assert first[0].root["model"] is not second[0].root["model"]
    assert all(f.path.parent.name == "recipe_split" for f in resumed)  # what the recipe saved, read back


def test_summary_when_nothing_ran(tmp_path: Path) -> None:
    # the verdict is the line above the closing summary line
    r = run_cli("verify-resume", str(fixture("seed_bundle.pth")), "--no-shadow")
    assert r.code == 0 and r.stdout.splitlines()[-2] == "static checks passed; not verified by a run"
    assert "resume verified" not in r.stdout
    r = run_cli("verify-resume", str(fixture("seed_bundle.pth")), "--no-shadow", "--json")
    doc = r.json()
    assert doc["verified"] is True and doc["verified_by_run"] is False and doc["level"] == "static"
    r = run_cli("verify-resume", str(fixture("seed_bundle.pth")))
    assert r.code == 0 and "resume verified by the shadow run" in r.stdout
    r = run_cli("check", str(fixture("seed_bundle.pth")), "--verify")
    assert r.code == 0 and "ready to resume (verified by the shadow run)" in r.stdout


def test_summary_when_the_shadow_run_cannot_drive_the_optimizer(tmp_path: Path) -> None:
    """ScaledAdam (GPT-SoVITS s1): static checks pass, the shadow run stands aside, nothing else ran."""
    import torch

    net = torch.nn.Linear(3, 2)
    ones = {i: (1,) * p.dim() for i, p in enumerate(net.parameters())}  # ScaledAdam's real state shapes
    state = {i: {"step": 30, "delta": torch.zeros(1, *p.shape), "exp_avg_sq": torch.zeros(1, *p.shape),
                 "param_rms": torch.ones(1, *ones[i]), "scale_exp_avg_sq": torch.zeros(1, *ones[i]),
                 "scale_grads": torch.zeros(4, 1, *ones[i])}
             for i, p in enumerate(net.parameters())}  # fmt: skip
    opt = {"state": state, "param_groups": [{"lr": 0.002, "clipping_scale": 2.0, "params": [0, 1]}]}
    sched = {"init_lr": 1e-5, "peak_lr": 0.01, "end_lr": 0.002, "_current_step": 30, "lr": 0.002,
             "warmup_steps": 2000, "total_steps": 40000, "_last_lr": [0.002]}  # fmt: skip
    path = tmp_path / "s1.ckpt"
    torch.save({"epoch": 3, "global_step": 30, "pytorch-lightning_version": "2.6.0", "state_dict": net.state_dict(),
                "optimizer_states": [opt], "lr_schedulers": [sched]}, path)  # fmt: skip
    r = run_cli("verify-resume", str(path))
    assert r.code == 0 and "skip  shadow-run" in r.stdout and "--trainer-root" in r.stdout
    assert r.stdout.splitlines()[-2] == "static checks passed; not verified by a run (1 warning(s))"
    r = run_cli("check", str(path), "--verify", "--json")
    assert r.code == 0 and r.json()["level"] == "static"
    r = run_cli("check", str(path), "--verify")
    assert r.stdout.splitlines()[-2] == "ready to resume (static checks passed; not verified by a run)"


def test_tiny_gan_recipe_is_the_model_run_level(tmp_path: Path) -> None:
    files = tiny_gan.make_checkpoint(tmp_path)
    r = run_cli(
        "verify-resume", *map(str, files), "--recipe", "ckpttool.recipes.tiny_gan:recipe", "--no-shadow"
    )
    assert r.code == 0 and r.stdout.splitlines()[-2] == "resume verified by the model run"
