"""``check`` and ``fix`` speak the user's language (gettext's LANGUAGE / LC_ALL / LC_MESSAGES / LANG order) on
the terminal and English in JSON; the committed catalogue is what scripts/compile_translations.py makes from the
.po, and covers every message the code marks."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest
from conftest import ROOT, run_cli
from test_predict import _gsv_run

from ckpttool import i18n

PO = ROOT / "ckpttool" / "locale" / "zh_CN" / "LC_MESSAGES" / "ckpttool.po"
MO = PO.with_suffix(".mo")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "compile_translations", ROOT / "scripts" / "compile_translations.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("compile_translations", module)
    spec.loader.exec_module(module)
    return module


def _lang(monkeypatch: pytest.MonkeyPatch, lang: str, **others: str) -> None:
    """Only LANG set (and ``others``), the way a shell with ``LANG=...`` and nothing else runs ckpttool."""
    for var in i18n.LANGUAGE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANG", lang)
    for var, value in others.items():
        monkeypatch.setenv(var, value)


def _cjk(text: str) -> bool:
    return any(unicodedata.east_asian_width(c) in "WF" for c in text)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


@pytest.fixture
def stale_run(tmp_path: Path) -> Path:
    """GPT-SoVITS's "save latest only" pair G/D_233333333333 at epoch 4 beside G/D_144 at epoch 8."""
    return _gsv_run(tmp_path, {"233333333333": 4, "144": 8})


def test_check_outcome_and_advice_in_chinese(stale_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _lang(monkeypatch, "zh_CN.UTF-8")
    r = run_cli("check", stale_run)
    assert r.code == 1
    lines = r.stdout.splitlines()
    (outcome,) = [ln for ln in lines if ln.startswith("        结果 ")]
    assert outcome.split()[1] == "stale"  # the outcome keyword stays the one JSON and the docs use
    assert "会从 D_233333333333.pth, G_233333333333.pth（epoch 4, Adam step 8）继续训练" in outcome
    assert "而不是从最新的完整检查点 G_144.pth, D_144.pth（epoch 8, Adam step 16）继续" in outcome
    assert outcome.endswith("：会丢掉 4 轮（epoch 8 -> 4）")
    (advice,) = [ln for ln in lines if ln.lstrip().startswith("修复 ")]
    assert advice.split()[-1] == str(stale_run / "logs_s2_v2")  # a command to type here: not shortened
    assert sum(1 for ln in lines if ln.lstrip().startswith("加载 ")) == 2
    assert lines[-2] == "还不能继续训练"  # then the one-line summary
    # labels are padded by display width: the advice starts in the same terminal column as in English
    _lang(monkeypatch, "C")
    english = run_cli("check", stale_run).stdout.splitlines()
    (en_advice,) = [ln for ln in english if ln.lstrip().startswith("fix ")]
    assert _width(advice[: advice.index("ckpttool fix")]) == en_advice.index("ckpttool fix")


@pytest.mark.parametrize("lang", ["zh_CN.UTF-8", "C"])
@pytest.mark.parametrize("no_d", [False, True], ids=["stale", "pretrained"])
def test_check_text_column_holds_at_80_columns(
    stale_run: Path, monkeypatch: pytest.MonkeyPatch, lang: str, no_d: bool
) -> None:
    """In an 80-column terminal every line of the check block, wrapped or not, has its text at column 25,
    Chinese labels (two columns a character), the Chinese outcome and a long outcome keyword included."""
    _lang(monkeypatch, lang)
    monkeypatch.setenv("COLUMNS", "80")
    if no_d:  # GPT-SoVITS finds no D: the outcome is 'pretrained', longer than the keyword column
        for d in stale_run.glob("D_*.pth"):
            d.unlink()
    lines = run_cli("check", stale_run).stdout.splitlines()
    start = lines.index("") + 1  # after the header (one or more lines)
    block = lines[start : lines.index("", start)]
    assert len(block) > 12 and any(ln.startswith(("        结果 ", "        outcome ")) for ln in block)
    for line in block:
        assert _width(line) <= 80, line
        column, i = 0, 0
        while column < 25:
            column += _width(line[i])
            i += 1
        assert column == 25 and line[i - 1] == " " and line[i] != " ", line


@pytest.mark.parametrize("lang", ["C", "en_US.UTF-8", "POSIX"])
def test_check_stays_english_elsewhere(stale_run: Path, monkeypatch: pytest.MonkeyPatch, lang: str) -> None:
    _lang(monkeypatch, lang)
    r = run_cli("check", stale_run)
    assert r.code == 1 and not _cjk(r.stdout)
    assert "outcome stale" in r.stdout and "4 epochs (epoch 8 -> 4) lost" in r.stdout
    assert r.stdout.splitlines()[-2] == "NOT ready to resume"


def test_json_is_english_under_every_language(stale_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _lang(monkeypatch, "zh_CN.UTF-8")
    zh_check = run_cli("check", stale_run, "--json").stdout
    zh_fix = run_cli("fix", stale_run, "--dry-run", "--json").stdout
    _lang(monkeypatch, "C")
    assert run_cli("check", stale_run, "--json").stdout == zh_check
    assert run_cli("fix", stale_run, "--dry-run", "--json").stdout == zh_fix
    doc = json.loads(zh_check)
    assert not _cjk(zh_check) and "4 epochs (epoch 8 -> 4) lost" in doc["predictions"][0]["summary"]


def test_fix_speaks_chinese(stale_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _lang(monkeypatch, "zh_CN.UTF-8")
    dry = run_cli("fix", stale_run, "--dry-run")
    assert dry.code == 0
    lines = dry.stdout.splitlines()
    assert [ln.split()[0] for ln in lines if ln.startswith("  移走")] == ["移走", "移走"]
    assert "原因：训练程序的选取规则把它排在最新的完整检查点（epoch 8, Adam step 16）之前" in dry.stdout
    assert lines[-2] == "演练（--dry-run）：没有改动任何文件"
    done = run_cli("fix", stale_run)
    assert done.code == 0
    assert done.stdout.count("  已移走 ") == 2
    (after,) = [ln for ln in done.stdout.splitlines() if ln.startswith("  修复后")]
    assert (
        "resumes-with-drift — " in after
        and "之后重建的学习率调度从第 9 轮起与不中断训练相差 -0.100%" in after
        and "会从 D_144.pth, G_144.pth（epoch 8, Adam step 16）继续训练" in after
    )
    again = run_cli("fix", stale_run)
    assert "无需处理：训练程序已经会从最新的完整检查点继续训练" in again.stdout
    undo = run_cli("fix", stale_run, "--undo")
    assert undo.code == 0 and undo.stdout.count("  已恢复 ") == 2 and "原因：ckpttool fix 于 " in undo.stdout


@pytest.mark.parametrize(
    ("env", "chinese"),
    [
        ({"LANG": "zh_CN.UTF-8"}, True),
        ({"LANG": "zh_CN.UTF-8", "LC_ALL": "C.UTF-8"}, False),  # LC_ALL wins over LANG
        ({"LANG": "C.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, True),
        ({"LANG": "zh_CN.UTF-8", "LC_MESSAGES": "en_US.UTF-8"}, False),
        ({"LANG": "en_US.UTF-8", "LANGUAGE": "zh_CN:en"}, True),  # LANGUAGE first, as in GNU gettext
        ({"LANG": "zh_TW.UTF-8"}, True),  # any zh_* gets the one (Simplified) catalogue there is
        ({"LANG": "zh"}, True),
        ({"LANG": "fr_FR.UTF-8"}, False),
    ],
)
def test_language_follows_the_gettext_order(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                            chinese: bool) -> None:  # fmt: skip
    for var in i18n.LANGUAGE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert (i18n._("NOT ready to resume") == "还不能继续训练") is chinese


def test_windows_display_language_when_no_variable_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in i18n.LANGUAGE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(i18n, "_windows_language", lambda: "zh_CN")
    assert i18n._("ready to resume") == "可以继续训练"
    monkeypatch.setattr(i18n, "_windows_language", lambda: None)
    assert i18n._("ready to resume") == "ready to resume"


def test_text_is_english_and_renders_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    lost = i18n.say_n(
        "{n} epoch (epoch {new} -> {old})", "{n} epochs (epoch {new} -> {old})", 3, new=7, old=4
    )
    line = i18n.cat(i18n.say("{name} will crash: {failure}", name="X", failure=lost), " (raw)")
    assert line == "X will crash: 3 epochs (epoch 7 -> 4) (raw)" and json.dumps(line) == json.dumps(str(line))
    _lang(monkeypatch, "zh_CN.UTF-8")
    assert i18n.tr(line) == "X 会崩溃：3 轮（epoch 7 -> 4） (raw)"
    assert i18n.tr("plain") == "plain"


# --- the catalogue --------------------------------------------------------------------------------------------
def test_committed_mo_is_what_the_script_compiles() -> None:
    script = _script()
    assert MO.read_bytes() == script.compile_mo(script.parse_po(PO.read_text(encoding="utf-8")))
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "compile_translations.py"), "--check"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_every_message_in_the_code_is_in_the_catalogue() -> None:
    script = _script()
    code, problems = script.extract()
    assert not problems
    # the scan finds the markers of each place that builds check/fix text
    assert "NOT ready to resume" in code and "dry run: nothing was changed" in code
    assert code["{n} epoch (epoch {new} -> {old})"] == "{n} epochs (epoch {new} -> {old})"
    assert "the trainer's loader refuses it ({error})" in code
    assert script.check_catalogue(PO) == []


def test_the_catalogue_check_catches_mistakes(tmp_path: Path) -> None:
    """A catalogue with a wrong field, a missing message and an unused one is reported, each once."""
    script = _script()
    text = PO.read_text(encoding="utf-8")
    text = text.replace('msgstr "{name} 会崩溃：{failure}"', 'msgstr "{name} 会崩溃：{error}"')
    text = text.replace(
        'msgid "moved by ckpttool fix at {when}: {why}"\nmsgstr "ckpttool fix 于 {when} 移走它，原因：{why}"',
        'msgid "gone"\nmsgstr "没了"',
    )
    broken = tmp_path / "ckpttool.po"
    broken.write_text(text, encoding="utf-8")
    problems = script.check_catalogue(broken)
    assert len(problems) == 3, problems
    assert any("{name} will crash" in p and "fields" in p for p in problems)
    assert any("missing 'moved by ckpttool fix at {when}: {why}'" in p for p in problems)
    assert any("not used in the code: 'gone'" in p for p in problems)


def test_the_mo_ships_with_the_package() -> None:
    line = re.search(r"^ckpttool = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert line, "pyproject.toml lost [tool.setuptools.package-data]"
    patterns = re.findall(r'"([^"]+)"', line.group(1))
    rel = MO.relative_to(ROOT / "ckpttool").as_posix()
    assert any(fnmatch.fnmatch(rel, p) for p in patterns)
    assert MO.parent.parent.parent == i18n.LOCALEDIR
