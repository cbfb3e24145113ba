"""Differential test against the real consumer: what ``torch.load(weights_only=False)`` does with each input,
next to ckpttool's verdict on it.

One worker process imports torch once; for each input it forks a child that installs an audit hook and then
loads the input the way torch would (a file: ``torch.load(path, weights_only=False, map_location='cpu')``; a DCP
folder: ``FileSystemReader(path).read_metadata()``, which ``pickle.load``s ``.metadata``, then each BYTE_IO
value through ``torch.load(weights_only=False)`` as ``DefaultLoadPlanner.load_bytes`` does). The hook records
the first code-running event (a new import, exec/compile, a process, a write, a delete, a socket, a library
load) and ends the child there; a payload's marker file appearing counts too.

Oracle 1: no input on which torch ran code is called ``safe`` by ckpttool.
Oracle 2: every input ckpttool calls ``safe`` that torch reads as a checkpoint container (torch zip or legacy
stream) loads with ``torch.load(weights_only=True)`` given benign stand-ins for ckpttool's benign list (a
``utils`` module with ``HParams``, pathlib classes, ``argparse.Namespace``, numpy reconstruction functions...).

The stand-ins are installed in the children before the hook for both oracles: a benign-listed global is, by
policy, trusted to be what it claims, so importing it is not counted as running the file's code.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hostile_inputs as H
import pytest
from conftest import FIXTURES, PINNED_ENV, ROOT
from hostile_inputs import Case, CliWorker

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the CLI worker forks a child per run")
SHARED_CASES = ROOT.parent / "shared" / "cases"
CHILD_TIMEOUT_S = 20

TORCH_WORKER = r"""
import argparse, collections, io, json, os, pathlib, signal, sys, tempfile, types, warnings
import encodings.ascii, encodings.cp437, encodings.latin_1, encodings.raw_unicode_escape
import encodings.unicode_escape, encodings.utf_8
warnings.simplefilter("ignore")
import numpy
import numpy.random
import torch
import torch.serialization
try:  # not every torch build has torch.distributed
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, MetadataIndex
except Exception:
    FileSystemReader = None

torch.set_num_threads(1)
reply = os.fdopen(os.dup(1), "w", buffering=1)
inbox = os.fdopen(os.dup(0), "r")
devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(devnull, 0)
os.dup2(devnull, 1)
os.dup2(devnull, 2)

# benign stand-ins for ckpttool's benign list (policy.BENIGN), as a trainer's process would have them
def _module(name):
    if name in sys.modules:
        return sys.modules[name]
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    parent, _, leaf = name.rpartition(".")
    if parent:
        setattr(_module(parent), leaf, mod)
    return mod


class HParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


HParams.__module__ = "utils"
_module("utils").HParams = HParams
for name in ("lightning.fabric.utilities.data", "pytorch_lightning.utilities.parsing",
             "lightning_fabric.utilities.data"):  # Lightning's hparams dict, without importing Lightning
    _module(name).AttributeDict = type("AttributeDict", (dict,), {"__module__": name})
STAND_INS = [HParams, argparse.Namespace, collections.Counter, collections.defaultdict, set, frozenset, complex,
             bytearray, bytes, slice, range, object]
for cls_name in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"):
    STAND_INS.append(getattr(pathlib, cls_name))
import numpy.dtypes
try:
    from numpy._core import multiarray as _ma
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _ma
STAND_INS += [_ma._reconstruct, _ma.scalar, numpy.ndarray, numpy.dtype, numpy.dtypes.UInt32DType,
              numpy.dtypes.Float64DType, numpy.dtypes.Int64DType]
import numpy.random._pickle as _np_pickle
STAND_INS += [_np_pickle.__randomstate_ctor, _np_pickle.__bit_generator_ctor, _np_pickle.__generator_ctor]
for name in ("lightning.fabric.utilities.data", "pytorch_lightning.utilities.parsing",
             "lightning_fabric.utilities.data"):
    STAND_INS.append(sys.modules[name].AttributeDict)
import codecs, copyreg
STAND_INS += [codecs.encode, copyreg._reconstructor]
try:
    from torch.torch_version import TorchVersion
    STAND_INS.append(TorchVersion)
except ImportError:
    pass


def load_unsafe(path):
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, ".metadata")):
        for name in sorted(os.listdir(path)):  # a save_pretrained folder: transformers torch.loads the .bin
            if name.endswith((".bin", ".pth", ".pt")):
                torch.load(os.path.join(path, name), weights_only=False, map_location="cpu")
        return
    if os.path.isdir(path):
        if FileSystemReader is None:
            raise RuntimeError("DCP unavailable in this torch build")
        reader = FileSystemReader(path)
        md = reader.read_metadata()
        for fqn, entry in md.state_dict_metadata.items():
            if isinstance(entry, BytesStorageMetadata):
                item = md.storage_data[MetadataIndex(fqn)]
                with open(os.path.join(path, item.relative_path), "rb") as fh:
                    fh.seek(item.offset)
                    blob = fh.read(item.length)
                torch.load(io.BytesIO(blob), weights_only=False, map_location="cpu")
        return
    torch.load(path, weights_only=False, map_location="cpu")


def load_weights_only(path):
    with torch.serialization.safe_globals(STAND_INS):
        torch.load(path, weights_only=True, map_location="cpu")


tempfile.gettempdir()  # its first call probes the folder by writing a file: not the input's doing
for path in json.loads(sys.argv[1]):  # warm-up: lazy imports happen here, before any hook
    for fn in (load_unsafe, load_weights_only):
        try:
            fn(path)
        except Exception:
            pass

WATCH = {"exec", "compile", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
         "os.remove", "os.rmdir", "os.rename", "os.truncate", "shutil.rmtree", "socket.connect", "socket.bind",
         "ctypes.dlopen", "ctypes.dlsym", "webbrowser.open", "urllib.Request"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def child(req, out_fd):
    scratch = set()  # folders torch itself makes with tempfile.mkdtemp (the pre-0.4 tar reader extracts there)

    def report(doc):
        os.write(out_fd, (json.dumps(doc) + "\n").encode())

    def inside_scratch(p):
        p = os.fspath(p) if not isinstance(p, int) else ""
        return any(str(p).startswith(d + os.sep) or str(p) == d for d in scratch)

    def hook(event, args):
        if event == "tempfile.mkdtemp":
            scratch.add(str(args[0]))
            return
        hit = None
        if event == "import":
            if args[0] not in sys.modules:
                hit = f"import {args[0]}"
        elif event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            text = str(path)
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            if ("pwned" in text or writes) and not inside_scratch(path):
                hit = f"open {text[:120]} {mode or flags}"
        elif event in WATCH:
            if event in ("shutil.rmtree", "os.remove", "os.rmdir") and args and inside_scratch(args[0]):
                return
            hit = f"{event} {str(args)[:120]}"
        if hit:
            report({"event": hit})
            os._exit(0)

    signal.alarm(req["timeout"])
    if req["mode"] == "unsafe":
        sys.addaudithook(hook)
    try:
        (load_unsafe if req["mode"] == "unsafe" else load_weights_only)(req["path"])
    except BaseException as exc:
        report({"event": None, "loaded": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        os._exit(0)
    report({"event": None, "loaded": True, "error": None})
    os._exit(0)


reply.write(json.dumps({"ready": True}) + "\n")
for line in inbox:
    req = json.loads(line)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            child(req, w)
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    lines = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
    doc = lines[0] if lines else {"event": None, "loaded": False,
                                  "error": f"child ended without a report (status {status:#x})"}
    if os.WIFSIGNALED(status):
        doc["error"] = f"killed by signal {os.WTERMSIG(status)}"
    reply.write(json.dumps(doc) + "\n")
"""


class TorchWorker:
    """The torch fork server. Starting it (importing torch) runs in the background until :meth:`wait_ready`."""

    def __init__(self, warm: list[str], cwd: Path) -> None:
        env = {**os.environ, **PINNED_ENV}
        env.pop("CKPTTOOL_DEBUG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TORCH_WORKER, json.dumps(warm)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(cwd),
        )
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready and not json.loads(self._readline(600)).get("ready"):
            raise RuntimeError("the torch worker did not start")
        self.ready = True

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise TimeoutError("the torch worker stopped answering")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the torch worker died")
        return line

    def submit(self, path: Path, mode: str) -> None:
        """Queue one load; the worker answers in order. Requests are ~150 bytes: hundreds fit in the pipe
        before a write could block, and the worker only ever waits for its replies to be read."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(
            json.dumps({"path": str(path), "mode": mode, "timeout": CHILD_TIMEOUT_S}) + "\n"
        )
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        self.wait_ready()
        answer: dict[str, Any] = json.loads(self._readline(CHILD_TIMEOUT_S + 30))
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Row:
    name: str
    path: Path
    marker: Path | None
    ran_code: bool = False
    event: str = ""
    load_error: str = ""
    verdict: str = ""
    fmt: str = ""
    weights_only: str = ""  # "", "loads", or the error
    may_not_run: bool = False  # torch reads one of two entries: only one order runs the payload


TORCH_FORMATS = ("torch-zip", "torch-legacy")


def fixture_files() -> list[Path]:
    found = [p for ext in ("*.pth", "*.ckpt", "*.pt") for p in FIXTURES.rglob(ext)]
    found = [p for p in found if p.name not in ("malicious.pth", "truncated.pth")]
    if SHARED_CASES.is_dir():
        found += [p for ext in ("*.pth", "*.ckpt", "*.pt") for p in SHARED_CASES.rglob(ext)]
    return sorted(found)


DIFFERENTIAL_GENERATORS = [
    *H.PAYLOADS,
    *H.FORMATS,
    H.stride0_view,
    H.cyclic_containers,
    H.vits_huge_iteration,
    H.huge_counters,
    H.encrypted_member,
    H.overlapping_entries,
    H.negative_stride,
    H.build_on_dtype,
    H.missing_version,
    H.future_version,
]


def label(path: Path) -> str:
    if SHARED_CASES in path.parents:
        return f"shared/cases/{path.relative_to(SHARED_CASES)}"
    return str(path.relative_to(ROOT))


def verdict_of(cli: CliWorker, path: Path) -> tuple[str, str]:
    """(verdict, format) from `ckpttool inspect --json`: exit 3 with kind 'unsafe' is 'unsafe'; exit 0/1 gives
    the safety verdict; any other exit 3 gives the error kind."""
    r = cli.run("inspect", path, "--json", timeout=CHILD_TIMEOUT_S)
    try:
        doc = r.json()
    except ValueError:
        return f"exit {r.code} (no JSON)", ""
    if r.code == 3:
        return str(doc.get("kind")), ""
    if r.code in (0, 1):
        return str(doc["safety"]["verdict"]), str(doc["format"])
    return f"exit {r.code}", ""


WARM = [
    FIXTURES / "vits" / "G_2000.pth",
    FIXTURES / "legacy_format.pth",
    FIXTURES / "weights.safetensors",
    FIXTURES / "gpt_sovits" / "SoVITS_weights_v2" / "demo_e8_s144.pth",
    FIXTURES / "seed_bundle.pth",
]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Row], Path]:
    folder = tmp_path_factory.mktemp("differential")
    clean = H.clean_dcp(folder)  # also warms DCP's reader up
    torch_worker = TorchWorker(
        [str(p) for p in [*WARM, clean.path] if p.exists()], folder
    )  # starts meanwhile
    try:
        cases: list[Case] = [gen(folder) for gen in DIFFERENTIAL_GENERATORS] + [clean]
        rows = [
            Row(c.name, c.path, c.marker, may_not_run=bool(c.extra.get("torch_reads_one"))) for c in cases
        ]
        rows += [Row(label(p), p, None) for p in fixture_files()]
        for row in rows:  # torch works through these while ckpttool gives its verdicts (two processes)
            torch_worker.submit(row.path, "unsafe")
        cli = H.shared_cli(PINNED_ENV)
        for row in rows:
            row.verdict, row.fmt = verdict_of(cli, row.path)
        for row in rows:
            result = torch_worker.result()
            row.event = result.get("event") or ""
            row.load_error = result.get("error") or ""
            row.ran_code = bool(row.event) or bool(row.marker and row.marker.exists())
            if row.marker and row.marker.exists() and not row.event:
                row.event = f"marker {row.marker.name} written"
        oracle2 = [
            r
            for r in rows
            if r.verdict == "safe" and r.fmt in TORCH_FORMATS and not r.ran_code and not r.load_error
        ]
        for row in oracle2:
            torch_worker.submit(row.path, "weights_only")
        for row in oracle2:
            wo = torch_worker.result()
            row.weights_only = "loads" if wo.get("loaded") else str(wo.get("error"))
    finally:
        torch_worker.close()
    report = folder / "differential.txt"
    report.write_text(render(rows))
    print("\n" + render(rows))
    print(f"differential table written to {report}")
    return rows, report


def render(rows: list[Row]) -> str:
    head = f"{'input':58}  {'torch.load(weights_only=False)':52}  {'ckpttool':12}  weights_only=True"
    lines = [head, "-" * len(head)]
    for r in rows:
        torch_col = f"RAN CODE: {r.event}" if r.ran_code else ("loaded" if not r.load_error else r.load_error)
        lines.append(f"{r.name[:58]:58}  {torch_col[:52]:52}  {r.verdict[:12]:12}  {r.weights_only[:70]}")
    return "\n".join(lines) + "\n"


def test_torch_never_runs_code_from_a_file_ckpttool_calls_safe(table: tuple[list[Row], Path]) -> None:
    """Oracle 1: whenever torch ran code, ckpttool's verdict is unsafe or unverified: not safe, and not an
    error that hides the payload either ("corrupt", "not a checkpoint format": what the memo-misaligned pickle,
    the bare protocol-0 stream and the payload inside a tensor's size argument used to get)."""
    rows, report = table
    bad = [r for r in rows if r.ran_code and r.verdict not in ("unsafe", "unverified")]
    where = f"torch.load ran code from files ckpttool does not flag (table: {report}):\n"
    assert not bad, where + render(bad)


def test_every_payload_runs_under_torch(table: tuple[list[Row], Path]) -> None:
    """The differential means something only if the payloads work: each one torch reads must run (of the two
    data.pkl/Data.pkl orders, torch reads one entry, so at least one order runs)."""
    rows, report = table
    with_payload = [r for r in rows if r.marker is not None and r.path.suffix != ".safetensors"]
    idle = [
        r
        for r in with_payload
        if not r.ran_code and not r.may_not_run and "DCP unavailable" not in r.load_error
    ]
    assert not idle, f"payloads torch did not run (table: {report}):\n" + render(idle)
    twins = [r for r in with_payload if r.may_not_run]
    assert not twins or any(r.ran_code for r in twins), render(twins)


def test_files_ckpttool_calls_safe_load_with_weights_only(table: tuple[list[Row], Path]) -> None:
    """Every file ckpttool calls safe that torch reads as a checkpoint and can load at all (weights_only off)
    also loads with weights_only on, given the benign stand-ins."""
    rows, report = table
    checked = [r for r in rows if r.verdict == "safe" and r.fmt in TORCH_FORMATS and not r.load_error]
    assert checked, "no safe torch file was checked"
    bad = [r for r in checked if r.weights_only != "loads"]
    assert not bad, (
        f"safe by ckpttool but refused by torch.load(weights_only=True) (table: {report}):\n" + render(bad)
    )
