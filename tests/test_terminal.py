"""Terminal output: width, CJK alignment, short paths, grouping, -q, summary line, colour, streaming, progress.

The run folder is the GPT-SoVITS fixture copied under a Chinese path (``logs/我的声音/logs_s2_v2``), as users
of the Chinese GPT-SoVITS packages have it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, run_cli
from wcwidth import wcswidth

from ckpttool.cli import cli
from ckpttool.ops.check import CheckReport, check_targets
from ckpttool.ops.verify import VerifyOptions, verify_paths
from ckpttool.render import term
from ckpttool.render.width import NARROW
from ckpttool.resume.live import NotRebuildable
from ckpttool.resume.static import Check

MARKS = ("ok", "warn", "FAIL", "skip")
CHECK_LINE = re.compile(r"^  (ok  |warn|FAIL|skip)  (\S+)\s+(.*)$")
ESC = "\x1b["


@pytest.fixture
def zh_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The GPT-SoVITS s2 fixture run folder under tmp_path/logs/我的声音/logs_s2_v2, tmp_path the cwd, an
    80-column terminal."""
    run = tmp_path / "logs" / "我的声音" / "logs_s2_v2"
    shutil.copytree(FIXTURES / "gpt_sovits" / "logs_s2_v2", run)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    return run


def _width(line: str) -> int:
    return wcswidth(line)


def _check_lines(text: str) -> list[re.Match[str]]:
    return [m for line in text.splitlines() if (m := CHECK_LINE.match(line))]


@pytest.mark.parametrize("as_given", ["relative", "absolute"])
def test_check_fits_80_columns_and_shows_short_paths(zh_run: Path, as_given: str) -> None:
    target = "logs/我的声音/logs_s2_v2" if as_given == "relative" else str(zh_run)
    r = run_cli("check", target)
    assert r.code == 1  # the fixture's run config has train.epochs 8 and the files are at epoch 8
    lines = r.stdout.splitlines()
    assert lines[0] == "check logs/我的声音/logs_s2_v2"  # relative to the cwd even when given absolute
    assert all(_width(line) <= 80 for line in lines), max(lines, key=_width)
    assert str(zh_run.parent) not in r.stdout  # no absolute path repeated on the lines
    # files are named relative to the run folder
    assert "G_233333333333.pth" in r.stdout and "logs_s2_v2/G_233333333333.pth" not in r.stdout
    # the JSON keeps the paths as given
    doc = run_cli("check", target, "--json").json()
    assert all(f.startswith(target) for f in doc["files"])


def test_long_messages_wrap_with_a_hanging_indent(zh_run: Path) -> None:
    """A message longer than the line continues under where the message began, never cut: the words of each
    check, joined again, are the JSON message's words (paths shortened, G and D grouped)."""
    text = run_cli("check", "logs/我的声音/logs_s2_v2").stdout.splitlines()
    starts = [i for i, line in enumerate(text) if CHECK_LINE.match(line)]
    assert starts
    indent = 2 + 4 + 2 + 16 + 1
    for i in starts:
        block = [text[i]]
        for line in text[i + 1 :]:
            if not line.startswith(" " * indent):
                break
            block.append(line)
        first = CHECK_LINE.match(block[0])
        assert first is not None and _width(block[0][: block[0].index(first.group(3))]) == indent
        assert all(line[indent] != " " for line in block[1:])  # continuation text starts at the same column
    scaler = next(i for i in starts if " scaler " in text[i])
    words = " ".join(line.strip() for line in text[scaler : scaler + 6]).split()
    assert "re-calibrates" in words and "effect)" in words  # the whole message, not cut mid-word


def test_tables_align_by_display_width(zh_run: Path) -> None:
    """``latest --table``: the run folder (with its Chinese name) once above the table, the files relative to
    it; the columns start at the same terminal column on every line."""
    lines = run_cli("latest", "logs/我的声音/logs_s2_v2", "--table").stdout.splitlines()
    assert lines[0] == "run folder logs/我的声音/logs_s2_v2"
    head = next(line for line in lines if line.startswith("file"))
    col = _width(head[: head.index("role")])
    rows = [line for line in lines if line.startswith(("*G_", "*D_", "G_", "D_"))]
    assert len(rows) == 2
    for row in rows:
        role = row.split()[1]
        assert _width(row[: row.index(f" {role} ") + 1]) == col
    assert all(_width(line) <= 80 for line in lines)


def test_fit_table_wraps_the_detail_column_measured_by_display_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    rows = [["logs/我的声音/G_1.pth", "ok", "很长的说明 " * 12], ["D_1.pth", "warn", "short"]]
    table = term.fit_table(rows, ["file", "status", "detail"])
    lines = table.splitlines()
    assert len(lines) > 4 and all(_width(line) <= 80 for line in lines)  # wrapped, not cut
    status_col = _width(lines[0][: lines[0].index("status")])
    for line in lines[2:]:
        for mark in ("ok", "warn"):
            if f" {mark} " in line:
                assert _width(line[: line.index(f" {mark} ") + 1]) == status_col
    assert "".join(lines).count("很长的说明") == 12


def test_narrow_symbols_measure_as_wcwidth_does() -> None:
    """The fast path (no wcwidth import) counts NARROW symbols one column each: wcwidth agrees, and mixed text
    (CJK, ANSI styles, control characters) still goes through wcwidth."""
    assert all(wcswidth(ch) == 1 for ch in NARROW)
    for text in ["G × D — ‖B−A‖/‖A‖ ≤ 1e-6 …", "我的声音/G_1.pth", "\x1b[32mok\x1b[0m  ×", "a\tb", "e\u0301"]:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
        expected = wcswidth(plain)
        if expected < 0:  # a control character: wcwidth gives -1 for the string, 0 for the character
            expected = sum(max(0, wcswidth(ch)) for ch in plain)
        assert term.display_width(text) == expected, text


def test_grid_aligns_columns_and_numbers() -> None:
    """Header, a rule of dashes per column, two spaces between columns, numbers right-aligned, strings shown
    as given (no re-parsing of "1.000" as a number), multi-line and wrapped cells padded, no trailing spaces."""
    from ckpttool.render.grid import grid

    text = grid([["我的", 5, "1.000"], ["G_1.pth", 12345, "a\nb"]], ["file", "step", "note"])
    assert text.splitlines() == [
        "file      step  note",
        "-------  -----  -----",
        "我的         5  1.000",
        "G_1.pth  12345  a",
        "                b",
    ]
    wrapped = grid([["x", "one two three four five six"]], ["k", "detail"], maxcolwidths=[None, 12])
    assert wrapped.splitlines()[2:] == ["x  one two", "   three four", "   five six"]
    assert grid([["a", 1.5], ["bb", None]], colalign=["right", "left"]).splitlines() == [" a  1.5", "bb"]


def test_wrap_measures_cjk_as_two_columns() -> None:
    text = "我的声音 " * 30 + "logs/我的声音/logs_s2_v2/G_233333333333.pth"
    lines = term.wrap(text, 20)
    assert all(_width(line) <= 20 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_g_and_d_findings_are_printed_once(zh_run: Path) -> None:
    out = run_cli("check", "logs/我的声音/logs_s2_v2").stdout
    checks = _check_lines(out)
    scaler = [m for m in checks if m.group(2) == "scaler"]
    assert len(scaler) == 1 and scaler[0].group(3).startswith("G and D: ")
    # the JSON still has one entry per file
    doc = run_cli("check", "logs/我的声音/logs_s2_v2", "--json").json()
    assert sum(1 for c in doc["checks"] if c["name"] == "scaler") == 2


def test_group_findings_names_the_files() -> None:
    items = [
        ("warn", "scaler", "run/G_1.pth: no scaler", "run/G_1.pth"),
        ("pass", "optimizer", "optimizer: 3 entries", "run/G_1.pth"),
        ("warn", "scaler", "run/D_1.pth: no scaler", "run/D_1.pth"),
        ("pass", "optimizer", "optimizer: 2 entries", "run/D_1.pth"),
        ("warn", "lr", "same text", "a.ckpt"),
        ("warn", "lr", "same text", "b.ckpt"),
        ("warn", "lr", "same text", "c.ckpt"),
    ]
    got = term.group_findings(items, term.PathShortener("run", cwd="/nowhere"))
    assert got == [
        ("warn", "scaler", "G and D: no scaler"),
        ("pass", "optimizer", "G_1.pth: optimizer: 3 entries"),
        ("pass", "optimizer", "D_1.pth: optimizer: 2 entries"),
        ("warn", "lr", "3 files: same text"),
    ]


def test_quiet_shows_only_problems_verdict_and_summary(zh_run: Path) -> None:
    full = run_cli("check", "logs/我的声音/logs_s2_v2").stdout
    quiet = run_cli("-q", "check", "logs/我的声音/logs_s2_v2")
    assert quiet.code == 1
    shown = _check_lines(quiet.stdout)
    assert shown and all(m.group(1) in ("warn", "FAIL") for m in shown)
    problems = [m.group(2) for m in _check_lines(full) if m.group(1) in ("warn", "FAIL")]
    assert [m.group(2) for m in shown] == problems
    assert quiet.stdout.splitlines()[-2:] == full.splitlines()[-2:]  # the verdict and the summary
    assert len(quiet.stdout.splitlines()) < len(full.splitlines())


def test_summary_line_names_what_failed_or_warned(zh_run: Path) -> None:
    out = run_cli("check", "logs/我的声音/logs_s2_v2").stdout.splitlines()
    summary = out[-1]
    m = re.fullmatch(r"(\d+) problems?, (\d+) warnings?: (.*)", summary)
    assert m, summary
    checks = _check_lines("\n".join(out))
    fails = sum(1 for c in checks if c.group(1) == "FAIL")
    warns = sum(1 for c in checks if c.group(1) == "warn")
    assert (int(m.group(1)), int(m.group(2))) == (fails, warns)
    named = {c.group(2) for c in checks if c.group(1) in ("warn", "FAIL")}
    assert set(m.group(3).split(", ")) == named
    assert term.summary([("pass", "a"), ("skip", "b")]) == "no problems"


def test_colour_only_when_forced_and_never_with_no_color(
    zh_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = "logs/我的声音/logs_s2_v2"
    assert ESC not in run_cli("check", target).stdout  # not a terminal: plain
    monkeypatch.delenv("NO_COLOR")
    runner = CliRunner()
    forced = runner.invoke(cli, ["check", target], color=True)
    assert ESC in forced.output and "\x1b[31m\x1b[1mFAIL" in forced.output
    assert ESC in run_cli("--color", "check", target).stdout
    plain = runner.invoke(cli, ["check", target], color=False)
    assert ESC not in plain.output
    monkeypatch.setenv("NO_COLOR", "1")
    assert ESC not in runner.invoke(cli, ["check", target], color=True).output
    assert ESC not in run_cli("--no-color", "check", target).stdout
    # the JSON never holds colour
    monkeypatch.delenv("NO_COLOR")
    assert ESC not in runner.invoke(cli, ["check", target, "--json"], color=True).output


def test_check_streams_updates_in_order(zh_run: Path) -> None:
    """on_update is called as the report grows: the trainer prediction and latest check first, then the
    inspections, then the verify-resume batches; it only ever grows, and its last state is the report."""
    seen: list[tuple[int, int]] = []

    def on_update(r: CheckReport) -> None:
        seen.append((len(r.predictions), len(r.checks)))

    report = check_targets(["logs/我的声音/logs_s2_v2"], on_update=on_update)
    assert len(seen) >= 3
    assert seen[0][0] == 1 and seen[0][1] >= 1  # the prediction and the latest check come first
    counts = [n for _, n in seen]
    assert counts == sorted(counts)
    assert seen[-1] == (len(report.predictions), len(report.checks))


def test_verify_batches_are_the_report_in_order(zh_run: Path) -> None:
    run = "logs/我的声音/logs_s2_v2"
    batches: list[list[Check]] = []
    steps: list[tuple[str, int, int]] = []
    report = verify_paths(
        [f"{run}/G_233333333333.pth", f"{run}/D_233333333333.pth"],
        VerifyOptions(steps=2, device="cpu"),
        on_checks=batches.append,
        progress=lambda label, done, total: steps.append((label, done, total)),
    )
    assert [c for b in batches for c in b] == report.checks
    assert len(batches) == 3  # the static checks together, then each file's shadow run
    assert {c.name for c in batches[1]} >= {"shadow-run"} and {c.name for c in batches[2]} >= {"shadow-run"}
    assert all(c.file for c in batches[1] + batches[2])
    labels = list(dict.fromkeys(label for label, _, _ in steps))
    assert labels == ["shadow run G_233333333333.pth", "shadow run D_233333333333.pth"]
    for label in labels:
        done = [d for lab, d, _ in steps if lab == label]
        total = {t for lab, _, t in steps if lab == label}
        assert done == sorted(done) and len(total) == 1 and done[-1] == total.pop()
    assert all(c.to_json().keys() == {"name", "status", "message", "data"} for c in report.checks)


def test_verify_resume_prints_static_checks_before_the_shadow_run(
    zh_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header and the static checks are on stdout while the shadow run is still running."""
    import sys

    printed: list[str] = []

    def shadow_run(*args: object, **kwargs: object) -> None:
        printed.append(sys.stdout.getvalue())  # type: ignore[attr-defined]
        raise NotRebuildable("stopped by the test")

    monkeypatch.setattr("ckpttool.resume.shadow.shadow_run", shadow_run)
    run = "logs/我的声音/logs_s2_v2"
    r = run_cli("verify-resume", f"{run}/G_233333333333.pth", f"{run}/D_233333333333.pth", "--device", "cpu")
    assert len(printed) == 2
    assert printed[0].startswith("verify-resume G_233333333333.pth D_233333333333.pth in logs/我的声音/")
    assert " scaler " in printed[0] and "shadow-run" not in printed[0]
    assert "shadow-run" in printed[1] and "stopped by the test" in printed[1]  # G's skip line before D's run
    assert r.stdout.startswith(printed[1])
    assert r.stderr == ""  # no progress bar when stderr is not a terminal


def test_usage_error_leaves_stdout_empty(zh_run: Path) -> None:
    run = "logs/我的声音/logs_s2_v2"
    r = run_cli("verify-resume", f"{run}/G_233333333333.pth", "--steps", "3")
    assert r.code == 2 and r.stdout == "" and "--steps" in r.stderr


def test_the_fix_command_runs_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths in check lines are short (relative to the run folder), but the advice is a command to type here."""
    from test_predict import _gsv_run

    run = _gsv_run(tmp_path / "我的声音", {"233333333333": 4, "144": 8})
    monkeypatch.chdir(tmp_path)
    shown = str(run.relative_to(tmp_path))
    r = run_cli("check", shown)
    (fix,) = [ln for ln in r.stdout.splitlines() if ln.lstrip().startswith("fix ")]
    target = fix.split("ckpttool fix ", 1)[1].strip()
    assert (tmp_path / target).resolve() == (run / "logs_s2_v2").resolve()
    assert run_cli("fix", target).code == 0


def test_inspect_wraps_findings_and_verdict_under_their_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns a long finding continues under its text (column 10), not under its severity, and the
    verdict continues under the text after "verdict: "; nothing is wider than the terminal."""
    monkeypatch.setenv("COLUMNS", "80")
    g = FIXTURES / "gpt_sovits" / "logs_s2_v2" / "G_233333333333.pth"
    lines = run_cli("inspect", g, "--set", "inter_channels=256").stdout.splitlines()
    assert all(_width(line) <= 80 for line in lines), max(lines, key=_width)
    note = next(i for i, line in enumerate(lines) if line.startswith("  note    --set inter_channels=256"))
    assert lines[note + 1].startswith(" " * 10) and lines[note + 1][10] != " "
    verdict = next(i for i, line in enumerate(lines) if line.startswith("verdict: config mismatch"))
    tail = lines[verdict + 1 : -1]  # then the summary line
    assert tail and all(line.startswith(" " * 9) and line[9] != " " for line in tail)
    assert " ".join(line.strip() for line in lines[verdict:-1]).endswith(
        "cannot load it (the file alone: full)"
    )


def test_fit_table_keeps_a_third_of_the_width_for_the_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide middle column wraps too, instead of squeezing the detail prose to a dozen columns."""
    monkeypatch.setenv("COLUMNS", "80")
    where = "rng.0.python, rng.0.numpy, rng.0.cpu, rng.0.cuda, rng.0.xla, rng.1"  # 60 columns
    rows = [["rng", where, "numpy, python, torch " * 4]]
    lines = term.fit_table(rows, ["piece", "where", "detail"]).splitlines()
    assert all(_width(line) <= 80 for line in lines)
    assert 80 - lines[0].index("detail") >= 20  # before: the detail was cut to 12 columns
    assert " ".join(" ".join(lines).split()).count("numpy, python, torch") == 4
