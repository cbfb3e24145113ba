"""Start-up: each command imports what it needs and no more, the data cache gives back what YAML gives, the
command table matches the commands, shell completion scripts are generated, ``check --device`` is ``auto``.

Import checks run the CLI in a fresh interpreter and read its ``sys.modules``; nothing here measures time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, fixture

from ckpttool.cli.lazy_group import COMMANDS, load_command, short_help
from ckpttool.datacache import yaml_files

GSV_G = "gpt_sovits/logs_s2_v2/G_233333333333.pth"

# Never needed to read one file's structure: torch and numpy (tensor libraries), deepdiff (diff), pickle (the
# writer's pickler), tarfile (pre-0.4 files only), yaml (the shipped specs and records come from the cache)
# and the modules of the other commands.
NEVER_FOR_INSPECT = (
    "torch",
    "numpy",
    "deepdiff",
    "pickle",
    "tarfile",
    "yaml",
    "ckpttool.ops.diff",
    "ckpttool.ops.migrate",
    "ckpttool.ops.verify",
    "ckpttool.ops.check",
    "ckpttool.cli.diff_cmd",
    "ckpttool.cli.migrate_cmd",
    "ckpttool.cli.verify_cmd",
    "ckpttool.cli.run_cmds",
    "ckpttool.cli.convert_cmd",
)


def _run(
    args: list[str], cache: Path | None, env: dict[str, str] | None = None
) -> tuple[int, str, list[str]]:
    """Run ``ckpttool ARGS`` in a fresh interpreter; returns (exit code, stdout, modules imported by then)."""
    code = (
        "import sys, json\n"
        "from ckpttool.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n')\n"
        "sys.exit(code)\n"
    )
    full_env = {**os.environ, **(env or {})}
    if cache is not None:
        full_env["CKPTTOOL_CACHE_DIR"] = str(cache)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=300, cwd=ROOT
    )
    assert "MODULES " in proc.stderr, proc.stderr
    modules = json.loads(proc.stderr.rsplit("MODULES ", 1)[1])
    return proc.returncode, proc.stdout, modules


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_inspect_imports_no_heavy_module(tmp_path: Path, as_json: bool) -> None:
    args = ["inspect", str(fixture(GSV_G))] + (["--json"] if as_json else [])
    code, cold_out, cold = _run(args, tmp_path)  # the first run parses the YAML and fills the cache
    assert code == 0 and "yaml" in cold
    code, out, modules = _run(args, tmp_path)
    assert code == 0
    assert out == cold_out  # the cache changes nothing in the answer
    assert sorted(set(NEVER_FOR_INSPECT) & set(modules)) == []
    # no importlib.metadata (tabulate imported it just to know its own version), and wcwidth only for text that
    # is not printable ASCII (this fixture's report is all ASCII)
    assert sorted({"tabulate", "importlib.metadata", "wcwidth"} & set(modules)) == []


def test_inspect_same_answer_without_cache(tmp_path: Path) -> None:
    args = ["inspect", str(fixture("seed_bundle.pth")), "--json"]
    _, warm1, _ = _run(args, tmp_path)
    _, warm2, _ = _run(args, tmp_path)
    _, uncached, modules = _run(args, None, {"CKPTTOOL_NO_CACHE": "1"})
    assert "yaml" in modules  # without the cache every spec and record is parsed again
    assert json.loads(warm2) == json.loads(uncached) == json.loads(warm1)


def test_help_lists_every_command_without_importing_any(tmp_path: Path) -> None:
    code, out, modules = _run(["--help"], tmp_path, {"COLUMNS": "200"})
    assert code == 0
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines() if line.startswith("  ")}
    for name, entry in COMMANDS.items():
        shown = lines[name]  # the short help, cut to the help width with "..." as click does
        assert len(shown) > 30 and entry.short_help.startswith(shown.removesuffix("..."))
    commands = sorted(m for m in modules if m.startswith("ckpttool.cli.") and m.endswith("_cmd"))
    assert commands == [] and "ckpttool.ops.inspect" not in modules


def test_command_table_matches_the_commands() -> None:
    """The short help in the table is what click derives from each command's docstring (edit both)."""
    for name, entry in COMMANDS.items():
        command = load_command(name)
        assert command is not None and command.name == name, entry.target
        assert entry.short_help == command.get_short_help_str(limit=10_000), name
        for limit in (45, 74):
            assert short_help(name, limit) == command.get_short_help_str(limit), (name, limit)
    assert load_command("no-such-command") is None


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_is_generated(shell: str) -> None:
    env = {**os.environ, "_CKPTTOOL_COMPLETE": f"{shell}_source"}
    proc = subprocess.run(
        [sys.executable, "-m", "ckpttool"], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert "_ckpttool_completion" in proc.stdout
    assert "_CKPTTOOL_COMPLETE" in proc.stdout  # the script calls back into ckpttool for each completion


def test_completion_of_command_names_and_options(tmp_path: Path) -> None:
    env = {"_CKPTTOOL_COMPLETE": "bash_complete", "COMP_WORDS": "ckpttool ch", "COMP_CWORD": "1"}
    code, out, modules = _run([], tmp_path, env)
    assert code == 0
    assert out.split() == ["plain,check"]
    assert not [m for m in modules if m.endswith("_cmd")]  # names come from the table
    env = {"_CKPTTOOL_COMPLETE": "bash_complete", "COMP_WORDS": "ckpttool check --dev", "COMP_CWORD": "2"}
    code, out, _ = _run([], tmp_path, env)
    assert code == 0 and out.split() == ["plain,--device"]


# --- the data cache ---------------------------------------------------------------------------------------------
@pytest.fixture
def data_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway data package ``ckpttool_test_data`` with two YAML files, importable for this test."""
    folder = tmp_path / "pkg" / "ckpttool_test_data"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "a.yaml").write_text("name: a\nsizes: [1, 2]\n")
    (folder / "b.yaml").write_text("name: b\nnested: {x: 1.5, y: null}\n")
    (folder / "notes.txt").write_text("not yaml\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setenv("CKPTTOOL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CKPTTOOL_NO_CACHE", raising=False)
    yield folder
    sys.modules.pop("ckpttool_test_data", None)


class CountingParse:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, text: str, where: str) -> Any:
        import yaml

        self.calls.append(where)
        return yaml.safe_load(text)


def test_cache_is_used_until_a_file_changes(data_package: Path) -> None:
    parse = CountingParse()
    first = yaml_files("ckpttool_test_data", parse)
    assert first == {
        "a.yaml": {"name": "a", "sizes": [1, 2]},
        "b.yaml": {"name": "b", "nested": {"x": 1.5, "y": None}},
    }
    assert parse.calls == ["a.yaml", "b.yaml"]
    assert yaml_files("ckpttool_test_data", parse) == first
    assert parse.calls == ["a.yaml", "b.yaml"]  # the second read came from the cache
    (data_package / "a.yaml").write_text("name: a\nsizes: [1, 2, 3]\n")
    changed = yaml_files("ckpttool_test_data", parse)
    assert changed["a.yaml"]["sizes"] == [1, 2, 3] and len(parse.calls) == 4
    (data_package / "c.yaml").write_text("name: c\n")
    assert set(yaml_files("ckpttool_test_data", parse)) == {"a.yaml", "b.yaml", "c.yaml"}


def test_damaged_or_unwritable_cache_falls_back_to_yaml(
    data_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parse = CountingParse()
    expected = yaml_files("ckpttool_test_data", parse)
    (entry,) = (data_package.parent.parent / "cache").glob("ckpttool_test_data-*.json")
    entry.write_text('{"key": [')  # cut short
    assert yaml_files("ckpttool_test_data", parse) == expected and len(parse.calls) == 4
    blocker = data_package.parent.parent / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CKPTTOOL_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    assert yaml_files("ckpttool_test_data", parse) == expected


def test_data_json_cannot_hold_is_not_cached(data_package: Path) -> None:
    (data_package / "b.yaml").write_text("1: integer key\n")  # JSON would turn the key into "1"
    parse = CountingParse()
    assert yaml_files("ckpttool_test_data", parse)["b.yaml"] == {1: "integer key"}
    assert yaml_files("ckpttool_test_data", parse)["b.yaml"] == {1: "integer key"}
    assert len(parse.calls) == 4
    assert not list((data_package.parent.parent / "cache").glob("*.json"))


@pytest.mark.parametrize("package", ["ckpttool.specs.data", "ckpttool.trainers.data"])
def test_shipped_data_round_trips_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str
) -> None:
    monkeypatch.setenv("CKPTTOOL_CACHE_DIR", str(tmp_path))
    parse = CountingParse()
    parsed = yaml_files(package, parse)
    assert len(parse.calls) == len(parsed) > 5
    assert list(tmp_path.glob(f"{package}-*.json")), "the shipped YAML must be plain data JSON keeps"
    assert yaml_files(package, parse) == parsed and len(parse.calls) == len(parsed)


# --- check --device -------------------------------------------------------------------------------------------
def test_check_device_defaults_to_auto() -> None:
    import torch

    from ckpttool.ops.check import CheckOptions, check_targets

    report = check_targets([str(fixture("seed_bundle.pth"))], CheckOptions(verify=True, steps=2))
    shadow = [c.message for c in report.checks if "save/reload" in c.message]
    assert len(shadow) == 1, [c.message for c in report.checks]
    expected = "cuda" if torch.cuda.is_available() else "cpu"  # auto: CUDA when there is one
    assert f"on {expected}" in shadow[0]
    check = load_command("check")
    assert check is not None
    device = next(p for p in check.params if p.name == "device")
    assert device.default == "auto"
