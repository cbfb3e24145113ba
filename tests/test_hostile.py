"""Hostile inputs (tests/hostile_inputs.py): every class gets its outcome — exit code, one line on stderr, no
traceback, the globals named, inputs untouched, no payload run — within a generous wall-clock guard.

The CLI runs in a pre-warmed fork server (one forked child per command, 20 s alarm, 3 GiB address-space
limit), so a hang, a crash or a memory blow-up fails one test instead of the session. No timing is asserted
beyond that guard.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import hostile_inputs as H
import pytest
from conftest import PINNED_ENV, run_cli, sha256
from hostile_inputs import Case, CliWorker, Result

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the CLI worker forks a child per run")
GUARD_S = 20
HEAVY_GUARD_S = 40  # the million-deep tuple and the 100,000-member zip take a few seconds of pure Python
HEAVY = ("deep_tuple_key", "many_members")
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s:'\"]*")


@pytest.fixture(scope="module")
def cli() -> CliWorker:
    H.shared_torch_cli(PINNED_ENV)  # starts importing torch in the background for the tests that convert
    return H.shared_cli(PINNED_ENV)


@pytest.fixture(scope="module")
def torch_cli() -> CliWorker:
    return H.shared_torch_cli(PINNED_ENV)


def digest(path: Path) -> str:
    """sha256 of a file, or of every file (names and bytes) under a folder."""
    if path.is_file():
        return sha256(path)
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def one_line_error(r: Result, *says: str) -> None:
    """Exit 3-style failure: exactly one stderr line, `ckpttool: ...`, no traceback, every phrase present."""
    assert r.signal is None, f"killed by signal {r.signal} (wall-clock guard {GUARD_S} s or a crash)"
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert len(r.lines) == 1 and r.lines[0].startswith("ckpttool: "), r.stderr
    assert "internal error" not in r.stderr, r.stderr
    text = ABSOLUTE_PATH.sub("<path>", r.stderr)  # test folder names must not satisfy a phrase
    for phrase in says:
        assert phrase in text, (phrase, r.stderr)


def clean_exit(r: Result, codes: tuple[int, ...] = (0, 1)) -> None:
    assert r.signal is None, f"killed by signal {r.signal} (wall-clock guard {GUARD_S} s or a crash)"
    assert r.code in codes, (r.code, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr


def codes_of(case: Case) -> tuple[int, ...]:
    return case.code if isinstance(case.code, tuple) else (case.code,)


# --- code-running payloads ----------------------------------------------------------------------------------------
REFUSED = [gen for gen in H.PAYLOADS if gen not in (H.sole_upper_data_pkl, H.safetensors_stub_cprofile)]


@pytest.mark.parametrize("gen", REFUSED, ids=lambda gen: gen.__name__)
def test_payload_refused_naming_its_globals(
    cli: CliWorker, tmp_path: Path, gen: Callable[[Path], Case]
) -> None:
    case = gen(tmp_path)
    before = digest(case.path)
    doc = cli.run("inspect", case.path, "--json", cwd=tmp_path, timeout=GUARD_S)
    assert doc.code == 3, (doc.code, doc.stderr)
    one_line_error(doc, "refused", *case.globals)  # the same line as without --json
    err = doc.json()
    assert err["schema"] == "ckpttool.error/1" and err["kind"] == "unsafe", err
    for name in case.globals:
        assert name in err["globals"], (name, err["globals"])
    gate = cli.run("check", case.path, cwd=tmp_path, timeout=GUARD_S)
    assert gate.code == 3, gate.stderr
    one_line_error(gate, "refused")
    assert case.marker is not None and not case.marker.exists()
    assert digest(case.path) == before


def test_sole_upper_case_data_pkl_loads_like_torch(cli: CliWorker, tmp_path: Path) -> None:
    # torch's zip reader finds records case-insensitively: archive/DATA.PKL is data.pkl to torch.load
    case = H.sole_upper_data_pkl(tmp_path)
    r = cli.run("inspect", case.path, "--json", "--tensors", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, codes_of(case))
    doc = r.json()
    assert doc["safety"]["verdict"] == "safe"
    assert {t["path"]: t["shape"] for t in doc["tensors"]} == case.extra["tensors"]


def test_safetensors_state_stub_of_cprofile_run(cli: CliWorker, torch_cli: CliWorker, tmp_path: Path) -> None:
    """ckpttool.state metadata naming cProfile.run: convert --to pth would write it back as a GLOBAL, so it is
    never written, not even with --allow-global."""
    case = H.safetensors_stub_cprofile(tmp_path)
    before = digest(case.path)
    out = tmp_path / "out.pth"
    r = cli.run("convert", case.path, "-o", out, "--to", "pth", cwd=tmp_path, timeout=GUARD_S)
    assert r.code == 3, r.stderr
    one_line_error(r, "cProfile.run")
    r = torch_cli.run(
        "convert",
        case.path,
        "-o",
        out,
        "--to",
        "pth",
        "--allow-global",
        "cProfile.run",
        cwd=tmp_path,
        timeout=GUARD_S,
    )
    assert r.code == 3, r.stderr
    one_line_error(r, "cProfile.run")
    assert not out.exists() and not list(tmp_path.glob(".out.pth.*"))
    assert digest(case.path) == before


def test_safetensors_state_stub_of_cprofile_run_loads_inertly(cli: CliWorker, tmp_path: Path) -> None:
    """The same file through inspect: safetensors holds no pickle, so loading it runs nothing (the verdict is
    about loading); the stub stays JSON until a writer would name it, and the writers refuse (above)."""
    case = H.safetensors_stub_cprofile(tmp_path)
    r = cli.run("inspect", case.path, "--json", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, (0,))
    doc = r.json()
    assert doc["format"] == "safetensors" and doc["safety"]["verdict"] == "safe", doc["safety"]
    assert case.marker is not None and not case.marker.exists()


# --- resource bombs -----------------------------------------------------------------------------------------------
REFUSED_BOMBS = [
    H.deep_tuple_key,
    H.deep_list_value,
    H.deflate_bomb,
    H.huge_record_claim,
    H.colliding_int_keys,
]
READ_BOMBS = [H.long_binput_huge, H.stride0_view, H.many_members, H.vits_huge_iteration, H.huge_counters]


@pytest.mark.parametrize("gen", REFUSED_BOMBS, ids=lambda gen: gen.__name__)
def test_resource_bomb_refused_in_bounded_time(
    cli: CliWorker, tmp_path: Path, gen: Callable[[Path], Case]
) -> None:
    case = gen(tmp_path)
    assert case.path.stat().st_size < 2 << 20  # the bombs are small files
    guard = HEAVY_GUARD_S if gen.__name__ in HEAVY else GUARD_S
    r = cli.run("inspect", case.path, "--json", cwd=tmp_path, timeout=guard)
    assert r.code == 3, (r.code, r.signal, r.stderr[-500:])
    one_line_error(r, *case.says)
    assert r.json()["kind"] == case.kind


@pytest.mark.parametrize("gen", READ_BOMBS, ids=lambda gen: gen.__name__)
def test_resource_bomb_read_in_bounded_time(
    cli: CliWorker, tmp_path: Path, gen: Callable[[Path], Case]
) -> None:
    case = gen(tmp_path)
    guard = HEAVY_GUARD_S if gen.__name__ in HEAVY else GUARD_S
    r = cli.run("inspect", case.path, "--json", cwd=tmp_path, timeout=guard)
    clean_exit(r, codes_of(case))
    doc = r.json()
    if r.code != 3 and case.kind:
        assert doc["safety"]["verdict"] == case.kind
    if gen in (H.long_binput_huge, H.stride0_view, H.huge_counters):  # the text report too (cheap ones)
        text = cli.run("inspect", case.path, cwd=tmp_path, timeout=GUARD_S)
        clean_exit(text, codes_of(case))


def test_stride0_view_never_expanded(cli: CliWorker, torch_cli: CliWorker, tmp_path: Path) -> None:
    """float32[2**30] with stride 0 over 4 bytes: convert to a format without views is refused without
    --expand-views; convert --to pth keeps the view (a small file) and its verification must not expand it
    either (4 GiB would exceed the worker's 3 GiB address-space limit)."""
    case = H.stride0_view(tmp_path)
    before = digest(case.path)
    out = tmp_path / "w.safetensors"
    r = cli.run("convert", case.path, "-o", out, "--to", "safetensors", cwd=tmp_path, timeout=GUARD_S)
    assert r.code == 2, r.stderr
    one_line_error(r, "--expand-views")
    assert not out.exists()
    dcp = tmp_path / "w_dcp"
    r = cli.run("convert", case.path, "-o", dcp, "--to", "dcp", cwd=tmp_path, timeout=GUARD_S)
    assert r.code == 2 and not dcp.exists(), r.stderr
    pth = tmp_path / "w.pth"
    r = torch_cli.run("convert", case.path, "-o", pth, "--to", "pth", "--json", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, (0,))
    assert r.json()["verified"] is True  # compared view against view, never expanded
    assert pth.stat().st_size < 1 << 20
    back = cli.run("inspect", pth, "--json", "--tensors", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(back)
    (w,) = back.json()["tensors"]
    assert w["shape"] == [2**30], w  # the 4 GiB view, kept as a view: the file is under 1 MiB
    assert digest(case.path) == before


def test_cyclic_containers_never_hang(cli: CliWorker, torch_cli: CliWorker, tmp_path: Path) -> None:
    """torch.load and torch.save keep self-referencing containers; every command finishes on them (a result or
    a one-line refusal) instead of walking the cycle forever."""
    case = H.cyclic_containers(tmp_path)
    r = cli.run("inspect", case.path, "--json", "--tensors", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, codes_of(case))
    r = cli.run("diff", case.path, case.path, cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, (0, 1))
    # torch.save keeps the cycles (pth, verified against the source); JSON metadata and DCP cannot hold them
    for to, out, codes in (
        ("pth", "c.pth", (0,)),
        ("safetensors", "c.safetensors", (2, 3)),
        ("dcp", "c_dcp", (2, 3)),
    ):
        # a tiny file: 10 s is generous (torch is already imported in the worker)
        r = torch_cli.run("convert", case.path, "-o", tmp_path / out, "--to", to, cwd=tmp_path, timeout=10)
        assert r.signal is None, f"convert --to {to} of a self-referencing dict/list did not finish in 10 s"
        clean_exit(r, codes)
        if r.code:
            one_line_error(r)
            assert not (tmp_path / out).exists()
    assert (tmp_path / "c.pth").is_file()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"temporary outputs left behind: {leftovers}"


def test_huge_iteration_resume_checks_finish(cli: CliWorker, tmp_path: Path) -> None:
    case = H.vits_huge_iteration(tmp_path)
    for args in (("check", case.path), ("verify-resume", case.path, "--no-shadow")):
        r = cli.run(*args, cwd=tmp_path, timeout=GUARD_S)
        clean_exit(r)
    for value in (1e9, float("inf")):  # a float iteration, as a JSON-minded saver might write it
        r = cli.run("check", H.vits_huge_iteration(tmp_path, value).path, cwd=tmp_path, timeout=GUARD_S)
        clean_exit(r)


def test_huge_integers_in_counters(cli: CliWorker, tmp_path: Path) -> None:
    """step/epoch/lr integers beyond Python's 4,300-digit str() limit: read, reported, never printed raw."""
    case = H.huge_counters(tmp_path)
    for args in (
        ("inspect", case.path, "--json"),
        ("check", case.path, "--json"),
        ("latest", tmp_path, "--json"),
    ):
        r = cli.run(*args, cwd=tmp_path, timeout=GUARD_S)
        clean_exit(r)
        json.loads(r.stdout)
    big = H.vits_huge_iteration(tmp_path, 10**5000)
    for args in (("check", big.path), ("verify-resume", big.path, "--no-shadow")):
        r = cli.run(*args, cwd=tmp_path, timeout=GUARD_S)
        clean_exit(r)


def test_sparse_member_in_package_never_written(cli: CliWorker, tmp_path: Path) -> None:
    case = H.sparse_package(tmp_path)
    out = tmp_path / "out"
    r = cli.run("unpack", case.path, "-o", out, "--json", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, (1,))
    doc = r.json()
    assert doc["written"] is False and any("sparse" in p for p in doc["problems"]), doc
    assert not (out / "G_1.pth").exists()
    assert not out.exists() or list(out.iterdir()) == []  # no staging folder left behind


def test_member_longer_than_declared_never_written(cli: CliWorker, tmp_path: Path) -> None:
    case = H.oversized_package(tmp_path)
    out = tmp_path / "out"
    r = cli.run("unpack", case.path, "-o", out, "--json", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, (1,))
    doc = r.json()
    assert doc["written"] is False and doc["problems"], doc
    assert not (out / "G_1.pth").exists()
    assert not out.exists() or list(out.iterdir()) == []


def _hf_sharded(folder: Path) -> Path:
    folder.mkdir()
    H.safetensors_file(folder / "model-00001-of-00001.safetensors", {"w": ("F32", [1], b"\x00" * 4)})
    index = {"metadata": {"total_size": 4}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def test_fifo_index_beside_a_real_shard_index(cli: CliWorker, tmp_path: Path) -> None:
    folder = _hf_sharded(tmp_path / "sharded")
    os.mkfifo(folder / "a.index.json")
    r = cli.run("inspect", folder, "--json", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, (0, 1))
    assert r.json()["format"] == "hf-sharded-dir"
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    os.mkfifo(lonely / "model.safetensors.index.json")
    H.safetensors_file(lonely / "model-00001-of-00001.safetensors", {"w": ("F32", [1], b"\x00" * 4)})
    r = cli.run("inspect", lonely, cwd=tmp_path, timeout=GUARD_S)  # the FIFO is never opened (no hang)
    clean_exit(r, (3,))
    one_line_error(r, "not a checkpoint")


# --- exit codes -----------------------------------------------------------------------------------------------------
EXIT3 = [
    H.encrypted_member,
    H.overlapping_entries,
    H.unknown_compression,
    H.missing_version,
    H.future_version,
    H.negative_stride,
    H.build_on_dtype,
    H.safetensors_bad_shape,
    H.name_mismatch,
    H.name_mismatch_pickle,
    H.lfs_pointer,
    H.html_page,
]


@pytest.mark.parametrize("gen", EXIT3, ids=lambda gen: gen.__name__)
def test_damaged_or_foreign_file_exits_3_in_one_line(
    cli: CliWorker, tmp_path: Path, gen: Callable[[Path], Case]
) -> None:
    case = gen(tmp_path)
    before = digest(case.path)
    r = cli.run("inspect", case.path, "--json", cwd=tmp_path, timeout=GUARD_S)
    assert r.code == 3, (r.code, r.stderr)
    one_line_error(r, *case.says, *case.globals)
    assert r.json()["kind"] == case.kind
    gate = cli.run("check", case.path, cwd=tmp_path, timeout=GUARD_S)
    assert gate.code == 3, gate.stderr
    one_line_error(gate)
    assert digest(case.path) == before


@pytest.mark.parametrize("label", [label for label, _ in H.BAD_MANIFESTS])
def test_malformed_manifest_refused(cli: CliWorker, tmp_path: Path, label: str) -> None:
    package, says = H.bad_manifest(tmp_path, label)
    out = tmp_path / "out"
    r = cli.run("unpack", package, "-o", out, cwd=tmp_path, timeout=GUARD_S)
    assert r.code == 3, (r.code, r.stderr)
    one_line_error(r, says)
    assert not out.exists() or list(out.iterdir()) == []


def test_special_files_as_inputs(cli: CliWorker, tmp_path: Path) -> None:
    fifo = tmp_path / "G_9.pth"
    os.mkfifo(fifo)
    for args in (
        ("inspect", fifo),
        ("check", fifo),
        ("convert", fifo, "-o", tmp_path / "o.pth", "--to", "pth"),
    ):
        r = cli.run(*args, cwd=tmp_path, timeout=GUARD_S)
        assert r.code == 3, (args, r.code, r.stderr)
        one_line_error(r, "FIFO")
    if not Path("/dev/zero").exists() or not stat.S_ISCHR(os.stat("/dev/zero").st_mode):
        pytest.skip("no /dev/zero character device here")
    r = cli.run("inspect", "/dev/zero", cwd=tmp_path, timeout=GUARD_S)
    assert r.code == 3, r.stderr
    one_line_error(r, "device")


def test_output_folder_that_is_a_file_is_a_usage_error(torch_cli: CliWorker, tmp_path: Path) -> None:
    src = tmp_path / "G_2000.pth"
    shutil.copyfile(H.VITS_G, src)
    shutil.copyfile(H.VITS_D, tmp_path / "D_2000.pth")  # VITS resumes from a G/D pair only
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where a folder is expected")
    for args in (
        ("convert", src, "-o", blocker / "out.pth", "--to", "pth"),
        ("convert", src, "-o", blocker / "out_dcp", "--to", "dcp"),
        ("pack", tmp_path, "-o", blocker / "p.tar", "--file", src, "--file", tmp_path / "D_2000.pth"),
    ):
        r = torch_cli.run(*args, cwd=tmp_path, timeout=GUARD_S)  # convert reaches the write
        assert r.code == 2, (args, r.code, r.stderr)
        one_line_error(r)
    assert blocker.read_text() == "a file where a folder is expected"


def test_unwritable_output_folder_is_a_usage_error(cli: CliWorker, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("permissions are not enforced for this user (root?)")
        src = tmp_path / "G_2000.pth"
        shutil.copyfile(H.VITS_G, src)
        r = cli.run("convert", src, "-o", locked / "out.pth", "--to", "pth", cwd=tmp_path, timeout=GUARD_S)
        assert r.code == 2, r.stderr
        one_line_error(r)
        r = cli.run("unpack", src, "-o", locked / "sub", cwd=tmp_path, timeout=GUARD_S)
        clean_exit(r, (2, 3))
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_prune_keeps_a_dcp_folder_holding_other_files(cli: CliWorker, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    H.tiny_training_file(run / "G_300.pth", 300)
    H.dcp_training_folder(run / "G_200", 200)
    H.dcp_training_folder(run / "G_100", 100)
    (run / "G_100" / "notes.txt").write_text("my notes about this run")
    before = digest(run / "G_100")
    allow: list[str] = []
    doc = cli.run("inspect", run / "G_100", "--json", cwd=tmp_path, timeout=GUARD_S).json()
    for g in doc["safety"]["globals"]:
        if g["verdict"] == "unverified":
            allow += ["--allow-global", g["name"]]
    # without --allow-global the DCP folders are unverified: skipped, never deleted
    r = cli.run("prune", run, "--keep", "1", "--json", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, (0,))
    assert r.json()["delete"] == [] and (run / "G_200").is_dir()
    # trusted: the pure DCP folder may go, the one holding notes stays untouched
    r = cli.run("prune", run, "--keep", "1", *allow, "--json", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, (0,))
    plan = r.json()
    assert plan["delete"] == [str(run / "G_200")] and not (run / "G_200").exists()
    assert {k["paths"][0]: k["why"] for k in plan["keep"]}[str(run / "G_100")].startswith(
        "a folder that holds"
    )
    assert (run / "G_300.pth").is_file()
    assert digest(run / "G_100") == before, "prune touched a folder that holds a user's file"


def test_gates_refuse_unverified_unless_allowed(cli: CliWorker, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    path = H.unverified_training_file(run / "G_10.pth")
    name = "mytrainer.config.Config"
    r = cli.run("inspect", path, cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r)
    lines = r.stdout.splitlines()
    assert lines[1].split()[:2] == ["safety", "UNVERIFIED:"], lines[:3]  # before the format line
    assert name in r.stdout
    gates = [
        ("check", path),
        ("verify-resume", path, "--no-shadow"),
        ("diff", path, path),
        ("pack", run, "-o", tmp_path / "p.tar", "--file", path),
    ]
    for args in gates:
        r = cli.run(*args, "--json", cwd=tmp_path, timeout=GUARD_S)
        assert r.code == 3, (args, r.code, r.stderr)
        one_line_error(r, name)
        assert r.json()["kind"] == "unverified", (args, r.stdout)
        allowed = cli.run(*args, "--allow-global", name, cwd=tmp_path, timeout=GUARD_S)
        clean_exit(allowed)
    r = cli.run("latest", run, "--json", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, (1,))  # skipped: nothing to resume from
    assert not r.json()["chosen"]
    r = cli.run("prune", run, "--keep", "1", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, (0,))
    assert path.is_file()


# --- formats --------------------------------------------------------------------------------------------------------
def test_save_pretrained_folders(cli: CliWorker, tmp_path: Path) -> None:
    for gen in (H.save_pretrained, H.save_pretrained_bin):
        case = gen(tmp_path)
        r = cli.run("inspect", case.path, "--json", cwd=tmp_path, timeout=GUARD_S)
        clean_exit(r, codes_of(case))
        doc = r.json()
        assert doc["format"] == "hf-pretrained-dir" and doc["safety"]["verdict"] == "safe"
        assert doc["pieces"]["model"]["status"] == "present"


@pytest.mark.parametrize(
    ("gen", "profile", "piece"),
    [(H.optimizer_bin, "optimizer-state", "optimizer"), (H.scheduler_bin, "scheduler-state", "scheduler")],
)
def test_standalone_optimizer_and_scheduler_files(
    cli: CliWorker, tmp_path: Path, gen: Callable[[Path], Case], profile: str, piece: str
) -> None:
    case = gen(tmp_path)
    r = cli.run("inspect", case.path, "--json", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, codes_of(case))
    doc = r.json()
    assert doc["profile"] == profile and doc["pieces"][piece]["status"] == "present", doc["pieces"][piece]


def test_norm_buffers_are_the_norm_stats_piece(cli: CliWorker, tmp_path: Path) -> None:
    case = H.norm_buffers(tmp_path)
    r = cli.run("inspect", case.path, "--json", cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, codes_of(case))
    piece = r.json()["pieces"]["norm_stats"]
    assert piece["status"] == "present" and "norm_mean" in piece["where"] and "mel_std" in piece["where"]


def test_flipped_tensor_byte_caught_by_deep(cli: CliWorker, tmp_path: Path) -> None:
    case = H.flipped_tensor_byte(tmp_path)
    r = cli.run("inspect", case.path, cwd=tmp_path, timeout=GUARD_S)
    clean_exit(r, codes_of(case))  # what torch.load also accepts (see test_differential)
    r = cli.run("inspect", case.path, "--deep", cwd=tmp_path, timeout=GUARD_S)
    assert r.code == 3, r.stderr
    one_line_error(r, case.extra["deep_says"], "data/0")


# --- data loss ------------------------------------------------------------------------------------------------------
def test_convert_to_dcp_never_replaces_the_folder_holding_its_input(cli: CliWorker, tmp_path: Path) -> None:
    run = tmp_path / "logs" / "exp"
    run.mkdir(parents=True)
    src = run / "G_2000.pth"
    shutil.copyfile(H.VITS_G, src)
    (run / "config.json").write_text("{}")
    before = digest(tmp_path / "logs")
    for out in (run, run.parent, src):
        r = cli.run("convert", src, "-o", out, "--to", "dcp", "--force", cwd=tmp_path, timeout=GUARD_S)
        assert r.code == 2, (out, r.code, r.stderr)
        one_line_error(r, "input")
        assert digest(tmp_path / "logs") == before


def test_convert_force_never_replaces_another_kind_of_file(cli: CliWorker, tmp_path: Path) -> None:
    src = tmp_path / "G_2000.pth"
    shutil.copyfile(H.VITS_G, src)
    other = tmp_path / "other.pth"
    shutil.copyfile(H.VITS_D, other)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    before = {p: sha256(p) for p in (src, other, notes)}
    for target in (other, notes):
        r = cli.run("convert", src, "-o", target, "--to", "dcp", "--force", cwd=tmp_path, timeout=GUARD_S)
        assert r.code == 2, (target, r.code, r.stderr)
        one_line_error(r)
    r = cli.run("convert", src, "-o", notes, "--to", "pth", "--force", cwd=tmp_path, timeout=GUARD_S)
    assert r.code == 2, r.stderr
    one_line_error(r)
    assert {p: sha256(p) for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G_2000.pth", "notes.txt", "other.pth"]


def _package(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(H.VITS_G, run / "G_2000.pth")
    shutil.copyfile(H.VITS_D, run / "D_2000.pth")  # VITS resumes from a G/D pair only
    pkg = tmp_path / "run.tar"
    r = run_cli("pack", run, "-o", pkg, "--file", run / "G_2000.pth", "--file", run / "D_2000.pth")
    assert r.code == 0, r.stderr
    return pkg


def test_unpack_never_follows_a_planted_staging_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _package(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    (victim / "G_2000.pth").write_bytes(b"someone else's file")
    before = digest(victim)
    out = tmp_path / "out"
    out.mkdir()
    planted = out / ".ckpttool-unpack-planted"
    planted.symlink_to(victim, target_is_directory=True)
    names = iter(["planted", "planted", "x1y2z3w4", "a5b6c7d8"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    r = run_cli("unpack", pkg, "-o", out)
    assert r.code == 0, r.stderr
    assert next(names) == "a5b6c7d8"  # mkdtemp met the planted name twice, then staged under x1y2z3w4
    assert digest(victim) == before
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    assert sha256(out / "G_2000.pth") == sha256(H.VITS_G)
    assert sorted(p.name for p in out.iterdir()) == [".ckpttool-unpack-planted", "D_2000.pth", "G_2000.pth"]


def test_unpack_never_writes_through_a_planted_target_link(cli: CliWorker, tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"someone else's file")
    out = tmp_path / "out"
    out.mkdir()
    (out / "G_2000.pth").symlink_to(victim)
    for extra in ((), ("--force",)):
        r = cli.run("unpack", pkg, "-o", out, *extra, cwd=tmp_path, timeout=GUARD_S)
        assert r.code == 2, (extra, r.code, r.stderr)
        one_line_error(r)
        assert victim.read_bytes() == b"someone else's file"
        assert (out / "G_2000.pth").is_symlink()
