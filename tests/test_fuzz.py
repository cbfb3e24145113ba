"""Hypothesis fuzzing of ``ckpttool inspect``: mutated pickle opcode streams (a fixture's data.pkl and small
hand-made pickles, run bare and inside a torch zip), mutated zip central directories and mutated safetensors
headers.

Every example runs the real CLI in one long-lived worker (a fork per example) that has imported ckpttool,
warmed up every reader, then installed an audit hook that ends the child on a process start, ``exec`` or the
import of a module not imported during warm-up; the worker runs under a 2 GiB address-space limit and each
example under a 10 s alarm. What must hold: exit 0, 1 or 3; at most one line on stderr; no traceback; no hook
event.

Reproducible: derandomized, no example database. ``CKPTTOOL_FUZZ_EXAMPLES=2000`` raises the number of examples
per strategy for a long local run.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import re
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import hostile_inputs as H
import pytest
from conftest import FIXTURES, PINNED_ENV, ROOT
from hostile_inputs import CliWorker, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the CLI worker forks a child per run")
EXAMPLES = int(os.environ.get("CKPTTOOL_FUZZ_EXAMPLES", "30"))  # per strategy; CI runs 3 x 30
settings.register_profile(
    "ckpttool-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
FUZZ = settings.get_profile("ckpttool-fuzz")
CASE_TIMEOUT_S = 10
HOOK_EXIT = 86

HOOK = r"""
import os, sys

_WATCH = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen", "exec", "ctypes.dlopen",
          "socket.connect", "webbrowser.open"}


def _ckpttool_fuzz_hook(event, args):
    if event == "import":
        if args[0] in sys.modules:
            return
    elif event not in _WATCH:
        return
    os.write(2, ("AUDIT EVENT: %s %.200r\n" % (event, args)).encode())
    os._exit(86)


sys.addaudithook(_ckpttool_fuzz_hook)
"""


def _torch_free_modules() -> list[str]:
    """Every ckpttool module that does not import torch at its top: imported before the hook is armed, so a
    module ckpttool loads lazily on a rare path is not mistaken for one an input made it load."""
    names = []
    for path in sorted((ROOT / "ckpttool").rglob("*.py")):
        if path.name == "__main__.py" or re.search(r"^(import torch|from torch)", path.read_text(), re.M):
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# modules a reader may need only for some inputs (codecs of odd string opcodes and zip names; wcwidth measures
# report text that is not plain ASCII, such as a key a fuzzed file names)
PRELOAD = (
    *_torch_free_modules(),
    "ckpttool.cli.inspect_cmd",
    "wcwidth",
    "pickletools",
    "tarfile",
    "encodings.cp437",
    "encodings.latin_1",
    "encodings.raw_unicode_escape",
    "encodings.unicode_escape",
    "encodings.ascii",
    "encodings.utf_16",
    "encodings.utf_32",
    "json",
    "zipfile",
    "zlib",
    "bz2",
    "lzma",
)


def _seed_pickles() -> dict[str, bytes]:
    """Small pickles covering many opcodes (every protocol), plus a torch state-dict pickle."""
    value = {
        "a": [1, -2, 3.5, None, True, 2**70, -(2**40)],
        "b": (b"\x00\xff", "é", frozenset({1})),
        "c": {1: {2, 3}},
        "d": OrderedDict(x=1),
        "e": bytearray(b"xy"),
        "f": 1 + 2j,
    }
    out = {f"proto{p}": pickle.dumps(value, protocol=p) for p in range(6)}
    out["state_dict"] = H.small_state_dict()[0]
    return out


def _fixture_pickle(name: str) -> bytes:
    with zipfile.ZipFile(FIXTURES / name) as zf:
        return zf.read(zf.infolist()[0])


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def worker(fuzz_dir: Path) -> Iterator[CliWorker]:
    warm_dir = fuzz_dir / "warm"
    warm_dir.mkdir()
    warm: list[list[str]] = []
    for gen in (
        H.raw_pkl_os_system,
        H.pre04_tar,
        H.legacy_magic_payload,
        H.deep_list_value,
        H.name_mismatch,
        H.safetensors_bad_shape,
        H.sole_upper_data_pkl,
        H.huge_counters,
        H.encrypted_member,
        H.zip_case_twins,
        H.lfs_pointer,
        H.html_page,
        H.overlapping_entries,
    ):
        case = gen(warm_dir)
        warm += [["inspect", str(case.path)], ["inspect", str(case.path), "--json"]]
    for name, data in _seed_pickles().items():
        path = warm_dir / f"{name}.pkl"
        path.write_bytes(data)
        damaged = warm_dir / f"{name}-damaged.pkl"
        damaged.write_bytes(data[: len(data) // 2] + b"\xff" + data[len(data) // 2 :])
        warm += [["inspect", str(path)], ["inspect", str(damaged)]]
    for fixture in (
        "plain_state_dict.pth",
        "legacy_format.pth",
        "weights.safetensors",
        "seed_bundle.pth",
        "gpt_sovits/GPT_weights_v2/demo-e15.ckpt",
        "torchscript.pt",
        "malicious.pth",
    ):
        warm += [["inspect", str(FIXTURES / fixture)], ["inspect", str(FIXTURES / fixture), "--json"]]
    tagged = warm_dir / "tagged.pth"  # the GPT-SoVITS header-tagged zip, small
    tagged.write_bytes(b"05" + H.torch_zip_bytes(*H.small_state_dict())[2:])
    warm.append(["inspect", str(tagged)])
    scratch = fuzz_dir / "worker"
    scratch.mkdir()
    w = CliWorker(scratch, PINNED_ENV, preload=PRELOAD, warm=warm, rlimit_as=2 << 30, hook=HOOK)
    yield w
    w.close()


def check(worker: CliWorker, path: Path, data: bytes) -> None:
    path.write_bytes(data)
    r = worker.run("inspect", path, cwd=path.parent, timeout=CASE_TIMEOUT_S)
    explain(r, data)


def explain(r: Result, data: bytes) -> None:
    where = f"input ({len(data)} bytes): {data[:300]!r}{'...' if len(data) > 300 else ''}"
    assert r.code != HOOK_EXIT, f"audit hook fired: {r.stderr.strip()}\n{where}"
    assert r.signal is None, f"killed by signal {r.signal} (10 s alarm or a crash)\n{where}"
    assert r.code in (0, 1, 3), f"exit {r.code}: {r.stderr.strip()[-600:]}\n{where}"
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, f"{r.stderr[-600:]}\n{where}"
    assert len(r.lines) <= 1, f"{len(r.lines)} stderr lines: {r.stderr[-600:]}\n{where}"
    if r.code == 3:  # a refusal is one line naming the problem, never an internal error
        assert r.lines and r.lines[0].startswith("ckpttool: "), f"{r.stderr[-600:]}\n{where}"
        assert "internal error" not in r.stderr, f"{r.stderr[-600:]}\n{where}"


# --- mutation strategies ------------------------------------------------------------------------------------------
OPCODES = [op.code.encode("latin-1") for op in pickletools.opcodes]
INTERESTING = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x80",
    b"\xff" * 8,
    b"\n",
]


@st.composite
def mutate(draw: st.DrawFn, seed: bytes, lo: int = 0, hi: int | None = None, opcodes: bool = False) -> bytes:
    """Up to 6 edits inside data[lo:hi]: flips, byte sets, interesting values, inserts (opcodes with random
    arguments for pickles), deletions, duplicated spans."""
    data = bytearray(seed)
    hi = len(data) if hi is None else hi
    kinds = ["flip", "set", "interesting", "delete", "dup", "insert"] + (["opcode"] * 3 if opcodes else [])
    for _ in range(draw(st.integers(1, 6))):
        hi = min(hi, len(data))
        if hi <= lo:
            break
        pos = draw(st.integers(lo, hi - 1))
        kind = draw(st.sampled_from(kinds))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "interesting":
            value = draw(st.sampled_from(INTERESTING))
            data[pos : pos + len(value)] = value
        elif kind == "delete":
            n = min(draw(st.integers(1, 16)), hi - pos)
            del data[pos : pos + n]
            hi -= n
        elif kind == "dup":
            span = bytes(data[pos : min(pos + draw(st.integers(1, 64)), hi)])
            data[pos:pos] = span
            hi += len(span)
        elif kind == "insert":
            extra = draw(st.binary(min_size=1, max_size=8))
            data[pos:pos] = extra
            hi += len(extra)
        else:
            extra = draw(st.sampled_from(OPCODES)) + draw(st.binary(max_size=9))
            data[pos:pos] = extra
            hi += len(extra)
    return bytes(data)


SEED_PICKLES = {
    **_seed_pickles(),
    "plain_state_dict": _fixture_pickle("plain_state_dict.pth"),
    "seed_bundle": _fixture_pickle("seed_bundle.pth"),
}
PICKLE_RECORDS = H.small_state_dict()[1]


@st.composite
def pickle_inputs(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEED_PICKLES)))
    return name, draw(mutate(SEED_PICKLES[name], opcodes=True))


@FUZZ
@given(case=pickle_inputs(), in_zip=st.booleans())
def test_fuzz_pickle_streams(
    worker: CliWorker, fuzz_dir: Path, case: tuple[str, bytes], in_zip: bool
) -> None:
    _, pkl = case
    if in_zip:
        path = H.torch_zip(fuzz_dir / "pickle_in_zip.pth", pkl, PICKLE_RECORDS)
        r = worker.run("inspect", path, cwd=fuzz_dir, timeout=CASE_TIMEOUT_S)
        explain(r, pkl)
    else:
        check(worker, fuzz_dir / "mutated.pkl", pkl)


SEED_ZIPS = {
    "plain_state_dict": (FIXTURES / "plain_state_dict.pth").read_bytes(),
    "small": H.torch_zip_bytes(*H.small_state_dict()),
}


@st.composite
def zip_inputs(draw: st.DrawFn) -> bytes:
    """Edits inside the central directory (and its end record) of a small torch zip."""
    seed = SEED_ZIPS[draw(st.sampled_from(sorted(SEED_ZIPS)))]
    start, _ = H.central_directory(seed)
    return draw(mutate(seed, start, len(seed)))


@FUZZ
@given(data=zip_inputs())
def test_fuzz_zip_directories(worker: CliWorker, fuzz_dir: Path, data: bytes) -> None:
    check(worker, fuzz_dir / "mutated_cd.pth", data)


def _safetensors_seed() -> bytes:
    header = {
        "__metadata__": {"format": "pt", "note": "x"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},
    }
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + bytes(24)


SAFETENSORS_SEED = _safetensors_seed()
HEADER_END = 8 + struct.unpack_from("<Q", SAFETENSORS_SEED)[0]
JSON_TOKENS = [
    b'"',
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"-1",
    b"1e999",
    b"null",
    b"true",
    b"1.5",
    b'"F64"',
    b'"shape"',
    b'"data_offsets"',
    b"18446744073709551616",
    b"\\u0000",
    b"[[[[[[[[",
]


@st.composite
def safetensors_inputs(draw: st.DrawFn) -> bytes:
    """Edits inside the JSON header (token inserts as well as bytes); the length prefix is kept consistent
    unless one edit targets it."""
    seed = bytearray(SAFETENSORS_SEED)
    header = bytearray(seed[8:HEADER_END])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(header)))
        if draw(st.booleans()):
            header[pos:pos] = draw(st.sampled_from(JSON_TOKENS))
        else:
            header = bytearray(draw(mutate(bytes(header), 0, len(header))))
    data = struct.pack("<Q", len(header)) + bytes(header) + bytes(seed[HEADER_END:])
    if draw(st.integers(0, 9)) == 0:  # sometimes a wrong length
        data = draw(mutate(data, 0, 8))
    return data


def test_audit_hook_is_armed(worker: CliWorker, fuzz_dir: Path) -> None:
    """The hook must be live in the children: convert imports its command module and torch, which the worker
    never imported (an ``import`` statement raises 'import', importlib.import_module only the module's 'exec')."""
    r = worker.run(
        "convert",
        FIXTURES / "plain_state_dict.pth",
        "-o",
        fuzz_dir / "x.pth",
        "--to",
        "pth",
        cwd=fuzz_dir,
        timeout=CASE_TIMEOUT_S,
    )
    assert r.code == HOOK_EXIT and r.stderr.startswith("AUDIT EVENT: "), (r.code, r.stderr[-500:])
    assert not (fuzz_dir / "x.pth").exists()


@FUZZ
@given(data=safetensors_inputs())
def test_fuzz_safetensors_headers(worker: CliWorker, fuzz_dir: Path, data: bytes) -> None:
    check(worker, fuzz_dir / "mutated.safetensors", data)
