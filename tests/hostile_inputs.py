"""Hostile inputs for ckpttool, each written by a small generator into a folder, with the outcome ckpttool must
give (exit code, error kind or safety verdict, the globals it names, what its one-line message says).

Every file is tiny and built at test time from raw pickle opcodes, ``zipfile``/``tarfile`` and the repository
fixtures. The test process uses ``pickle.dumps`` only to WRITE hostile files, never to load one. Payloads call
something that writes a marker file (``Case.marker``), so a payload that ran is visible even when the callable
looks harmless.

The module also holds :class:`CliWorker`, a pre-warmed fork server that runs ``ckpttool.cli.main`` once per
request in a forked child with a wall-clock guard (an alarm), optional memory limit and optional audit hook:
tens of CLI runs cost milliseconds each instead of an interpreter start each.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import io
import json
import os
import pickle
import select
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
VITS_G = FIXTURES / "vits" / "G_2000.pth"
VITS_D = FIXTURES / "vits" / "D_2000.pth"
LEGACY = FIXTURES / "legacy_format.pth"


@dataclass
class Case:
    """One hostile input and what ``ckpttool inspect`` must say about it."""

    name: str
    path: Path
    code: int | tuple[int, ...]  # expected exit code(s) of `ckpttool inspect PATH`
    kind: str | None = None  # error kind for exit 3, else the safety verdict ("safe", "unverified")
    globals: tuple[str, ...] = ()  # globals the error (or the safety report) must name
    says: tuple[str, ...] = ()  # substrings of the one-line message (stderr) or of stdout
    marker: Path | None = None  # the file the payload would create
    extra: dict[str, Any] = field(default_factory=dict)


# --- raw pickle opcodes -----------------------------------------------------------------------------------------
def s(text: str) -> bytes:
    """BINUNICODE."""
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def b(data: bytes) -> bytes:
    """BINBYTES (protocol 3+ opcode; every unpickler accepts it)."""
    return b"B" + struct.pack("<I", len(data)) + data


def i(value: int) -> bytes:
    """An int: BININT when it fits, else LONG1/LONG4."""
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    if len(raw) < 256:
        return b"\x8a" + bytes([len(raw)]) + raw
    return b"\x8b" + struct.pack("<i", len(raw)) + raw


def g(module: str, name: str) -> bytes:
    """GLOBAL (text form)."""
    return b"c" + f"{module}\n{name}\n".encode()


def sg(module: str, name: str) -> bytes:
    """STACK_GLOBAL with its two strings pushed just before."""
    return s(module) + s(name) + b"\x93"


def call(func: bytes, *args: bytes) -> bytes:
    """func(*args) with REDUCE."""
    return func + b"(" + b"".join(args) + b"tR"


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def ints(values: tuple[int, ...] | list[int]) -> bytes:
    return tup(*(i(v) for v in values))


def odict(pairs: bytes = b"") -> bytes:
    """collections.OrderedDict() [+ SETITEMS]."""
    out = g("collections", "OrderedDict") + b")R"
    return out + (b"(" + pairs + b"u" if pairs else b"")


def tensor(
    key: str,
    shape: tuple[int, ...],
    stride: tuple[int, ...] | None = None,
    *,
    offset: int = 0,
    numel: int | None = None,
    storage: str = "FloatStorage",
    hooks: bytes | None = None,
) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks), as torch.save
    writes it (persistent id ('storage', type, key, location, numel))."""
    if stride is None:
        stride = tuple(_prod(shape[k + 1 :]) for k in range(len(shape)))
    if numel is None:
        numel = max(_prod(shape), 1)
    pid = tup(s("storage"), g("torch", storage), s(key), s("cpu"), i(numel)) + b"Q"
    args = pid + i(offset) + ints(shape) + ints(stride) + b"\x89" + (hooks if hooks is not None else odict())
    return g("torch._utils", "_rebuild_tensor_v2") + b"(" + args + b"tR"


def pdict(items: dict[str, bytes], outer: bytes = b"}") -> bytes:
    """A dict of str -> already-encoded values."""
    return outer + b"(" + b"".join(s(k) + v for k, v in items.items()) + b"u"


def pickle_of(body: bytes, proto: int = 2) -> bytes:
    return b"\x80" + bytes([proto]) + body + b"."


def _prod(dims: tuple[int, ...]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def touch(marker: Path) -> bytes:
    """posix.system('touch MARKER') as opcodes."""
    return call(g("posix", "system"), s(f"touch '{marker}'"))


def write_marker_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


class Reduce:
    """Pickles as ``fn(*args)`` (for pickle.dumps of payloads; never unpickled here)."""

    def __init__(self, fn: Any, args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.fn, self.args


# --- zip writing ------------------------------------------------------------------------------------------------
def torch_zip(
    path: Path,
    pkl: bytes,
    records: dict[str, bytes] | None = None,
    *,
    folder: str = "archive",
    pickle_name: str = "data.pkl",
    deflate_pickle: bool = False,
    extra: list[tuple[str, bytes]] | None = None,
    version: str = "3\n",
) -> Path:
    """A zip with torch.save's layout: <folder>/data.pkl first, byteorder, data/<key> records, version."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        info = zipfile.ZipInfo(f"{folder}/{pickle_name}", date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED if deflate_pickle else zipfile.ZIP_STORED
        zf.writestr(info, pkl)
        for name, data in extra or []:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
        zf.writestr(zipfile.ZipInfo(f"{folder}/byteorder", date_time=(2024, 1, 1, 0, 0, 0)), "little")
        for key, data in (records or {}).items():
            zf.writestr(zipfile.ZipInfo(f"{folder}/data/{key}", date_time=(2024, 1, 1, 0, 0, 0)), data)
        zf.writestr(zipfile.ZipInfo(f"{folder}/version", date_time=(2024, 1, 1, 0, 0, 0)), version)
    return path


def rezip(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    """Copy a torch zip member by member (same names, same order), replacing some members' bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = replace.get(info.filename)
            if data is None:
                data = zin.read(info)
            zout.writestr(zipfile.ZipInfo(info.filename, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return dst


def data_pkl(path: Path) -> tuple[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        first = zf.infolist()[0]
        return first.filename, zf.read(first)


def small_state_dict() -> tuple[bytes, dict[str, bytes]]:
    """{'w': float32[2, 2], 'b': float32[2]} as a pickle and its records."""
    body = pdict({"w": tensor("0", (2, 2)), "b": tensor("1", (2,))})
    records = {"0": struct.pack("<4f", 1, 2, 3, 4), "1": struct.pack("<2f", 5, 6)}
    return pickle_of(body), records


def central_directory(data: bytes) -> tuple[int, int]:
    """(offset, size) of a zip's central directory, from its end record."""
    eocd = data.rindex(b"PK\x05\x06")
    size, offset = struct.unpack_from("<II", data, eocd + 12)
    return offset, size


def patch_cd_entry(data: bytes, name: str, **fields: int) -> bytes:
    """Change fields of one central-directory entry: flag, method, crc, csize, usize, offset."""
    layout = {
        "flag": (8, "<H"),
        "method": (10, "<H"),
        "crc": (16, "<I"),
        "csize": (20, "<I"),
        "usize": (24, "<I"),
        "offset": (42, "<I"),
    }
    out = bytearray(data)
    pos = central_directory(data)[0]
    while out[pos : pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", out, pos + 28)
        if out[pos + 46 : pos + 46 + n] == name.encode():
            for key, value in fields.items():
                off, fmt = layout[key]
                struct.pack_into(fmt, out, pos + off, value)
            return bytes(out)
        pos += 46 + n + m + k
    raise KeyError(name)


def local_header_offset(data: bytes, name: str) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.getinfo(name).header_offset


# --- payload classes --------------------------------------------------------------------------------------------
def _vits_with(folder: Path, name: str, payload: bytes, proto: int = 4) -> Path:
    """The VITS G fixture with ``payload`` (one value, then POP) inserted before data.pkl's STOP, and its PROTO
    raised to 4 so that dotted STACK_GLOBAL names resolve as pickle does for protocol >= 4."""
    member, pkl = data_pkl(VITS_G)
    assert pkl[:2] == b"\x80\x02" and pkl.endswith(b".")
    new = b"\x80" + bytes([proto]) + pkl[2:-1] + payload + b"0."
    return rezip(VITS_G, folder / name, {member: new})


def vits_torch_os_system(folder: Path) -> Case:
    marker = folder / "pwned-torch-os-system"
    payload = call(sg("torch", "os.system"), s(f"touch '{marker}'"))
    path = _vits_with(folder, "G_torch_os_system.pth", payload)
    return Case(
        "vits STACK_GLOBAL torch+os.system",
        path,
        3,
        "unsafe",
        ("torch.os.system",),
        ("refused",),
        marker,
    )


def vits_pathlib_os_system(folder: Path) -> Case:
    marker = folder / "pwned-pathlib-os-system"
    payload = call(sg("pathlib", "os.system"), s(f"touch '{marker}'"))
    path = _vits_with(folder, "G_pathlib_os_system.pth", payload)
    return Case(
        "vits STACK_GLOBAL pathlib+os.system",
        path,
        3,
        "unsafe",
        ("pathlib.os.system",),
        ("refused",),
        marker,
    )


def cprofile_run(folder: Path) -> Case:
    marker = folder / "pwned-cprofile"
    body, records = small_state_dict()
    pkl = body[:-1] + call(g("cProfile", "run"), s(write_marker_code(marker))) + b"0."
    path = torch_zip(folder / "cprofile_run.pth", pkl, records)
    return Case("cProfile.run", path, 3, "unsafe", ("cProfile.run",), ("refused",), marker)


def _evil_torch_zip_bytes(marker: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("inner/data.pkl", pickle_of(touch(marker)))
        zf.writestr("inner/version", "3\n")
    return buf.getvalue()


def load_from_bytes(folder: Path) -> Case:
    marker = folder / "pwned-load-from-bytes"
    body, records = small_state_dict()
    pkl = body[:-1] + call(g("torch.storage", "_load_from_bytes"), b(_evil_torch_zip_bytes(marker))) + b"0."
    path = torch_zip(folder / "load_from_bytes.pth", pkl, records)
    return Case(
        "torch.storage._load_from_bytes",
        path,
        3,
        "unsafe",
        ("torch.storage._load_from_bytes",),
        ("refused",),
        marker,
    )


def fx_reduce_graph_module(folder: Path) -> Case:
    marker = folder / "pwned-fx"
    body_dict = pdict(
        {"_code": s("\ndef forward(self):\n    return None\n"), "_graphmodule_cls_name": s("GraphModule")}
    )
    payload = call(g("torch.fx.graph_module", "reduce_graph_module"), body_dict, s(write_marker_code(marker)))
    base, records = small_state_dict()
    path = torch_zip(folder / "fx_graph_module.pth", base[:-1] + payload + b"0.", records)
    return Case(
        "torch.fx reduce_graph_module",
        path,
        3,
        "unsafe",
        ("torch.fx.graph_module.reduce_graph_module",),
        ("refused",),
        marker,
    )


def _dict_config(marker: Path) -> bytes:
    handler = pdict({"()": s("logging.FileHandler"), "filename": s(str(marker))})
    config = pdict(
        {
            "version": i(1),
            "handlers": pdict({"h": handler}),
            "loggers": pdict({"ckpttool-hostile": pdict({"handlers": b"](" + s("h") + b"e"})}),
        }
    )
    return call(g("logging.config", "dictConfig"), config)


def dict_config(folder: Path) -> Case:
    marker = folder / "pwned-dictconfig"
    base, records = small_state_dict()
    path = torch_zip(folder / "dict_config.pth", base[:-1] + _dict_config(marker) + b"0.", records)
    return Case(
        "logging.config.dictConfig '()' factory",
        path,
        3,
        "unsafe",
        ("logging.config.dictConfig",),
        ("refused",),
        marker,
    )


def dict_config_in_tensor_args(folder: Path) -> Case:
    """The dictConfig call nested inside _rebuild_tensor_v2's arguments: in the hooks OrderedDict."""
    marker = folder / "pwned-dictconfig-hooks"
    hooks = odict(i(0) + _dict_config(marker))
    body = pdict({"w": tensor("0", (2,), hooks=hooks)})
    path = torch_zip(folder / "dict_config_hooks.pth", pickle_of(body), {"0": struct.pack("<2f", 1, 2)})
    return Case(
        "dictConfig inside _rebuild_tensor_v2 hooks",
        path,
        3,
        "unsafe",
        ("logging.config.dictConfig",),
        ("refused",),
        marker,
    )


def dict_config_in_tensor_size(folder: Path) -> Case:
    """The dictConfig call as an element of _rebuild_tensor_v2's size argument: pickle runs it while building
    the arguments, before torch sees that the size is not an integer."""
    marker = folder / "pwned-dictconfig-size"
    pid = tup(s("storage"), g("torch", "FloatStorage"), s("0"), s("cpu"), i(2)) + b"Q"
    args = pid + i(0) + tup(_dict_config(marker)) + ints((1,)) + b"\x89" + odict()
    body = pdict({"w": g("torch._utils", "_rebuild_tensor_v2") + b"(" + args + b"tR"})
    path = torch_zip(folder / "dict_config_size.pth", pickle_of(body), {"0": struct.pack("<2f", 1, 2)})
    return Case(
        "dictConfig inside _rebuild_tensor_v2's size",
        path,
        3,
        "unsafe",
        ("logging.config.dictConfig",),
        ("refused",),
        marker,
    )


def memo_misaligned(folder: Path) -> Case:
    """MEMOIZE before any string (a scanner that only counts string memo entries drifts by one), an
    OrderedDict({}) call, then STACK_GLOBAL of 'posix' 'system' fetched back from the memo."""
    marker = folder / "pwned-memo"
    memoize = b"\x94"
    body = (
        b"}"
        + memoize  # memo 0: the root dict
        + s("collections")
        + memoize
        + s("OrderedDict")
        + memoize
        + b"\x93"
        + memoize  # memo 1, 2, 3
        + b"}"
        + memoize
        + b"\x85"
        + memoize
        + b"R"
        + memoize  # OrderedDict({}): memo 4, 5, 6
        + b"0"  # drop it
        + s("system")
        + memoize
        + s("posix")
        + memoize
        + b"00"  # memo 7 'system', memo 8 'posix'
        + b"h\x08h\x07\x93"  # BINGET 8, BINGET 7, STACK_GLOBAL -> posix.system
        + s(f"touch '{marker}'")
        + b"\x85R0"
        + s("w")
        + tensor("0", (1,))
        + b"s"
    )
    path = torch_zip(folder / "memo_misaligned.pth", pickle_of(body, 4), {"0": struct.pack("<f", 1)})
    return Case(
        "memo-misaligned STACK_GLOBAL posix.system",
        path,
        3,
        "unsafe",
        ("posix.system",),
        ("refused",),
        marker,
    )


def raw_pkl_os_system(folder: Path) -> Case:
    marker = folder / "pwned-raw-pkl"
    path = folder / "payload.pkl"
    path.write_bytes(pickle.dumps({"model": Reduce(os.system, (f"touch '{marker}'",))}, protocol=4))
    return Case(
        "bare .pkl with os.system",
        path,
        3,
        "unsafe",
        (f"{os.system.__module__}.system",),
        ("refused",),
        marker,
    )


def raw_pkl_old_protocol(folder: Path, protocol: int = 1) -> Case:
    """A protocol 0 or 1 pickle (no PROTO opcode) of more than 512 bytes calling os.system: torch.load
    unpickles any stream that is neither a zip nor a tar before it checks anything."""
    marker = folder / f"pwned-raw-pkl-p{protocol}"
    path = folder / f"payload_p{protocol}.pkl"
    value = {"pad": "x" * 1000, "model": Reduce(os.system, (f"touch '{marker}'",))}
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    return Case(
        f"bare protocol-{protocol} .pkl (> 512 bytes) with os.system",
        path,
        3,
        "unsafe",
        (f"{os.system.__module__}.system",),
        ("refused",),
        marker,
    )


def raw_pkl_protocol0(folder: Path) -> Case:
    return raw_pkl_old_protocol(folder, 0)


def legacy_magic_payload(folder: Path) -> Case:
    """The legacy format whose first (magic-number) pickle calls posix.system before leaving the magic."""
    marker = folder / "pwned-legacy-magic"
    data = LEGACY.read_bytes()
    assert data[14:15] == b"."
    magic = data[2:14]  # LONG1 of the magic number
    first = b"\x80\x02" + magic + touch(marker) + b"0."
    path = folder / "legacy_magic.pth"
    path.write_bytes(first + data[15:])
    return Case(
        "legacy magic pickle calls posix.system",
        path,
        3,
        "unsafe",
        ("posix.system",),
        ("refused",),
        marker,
    )


def zip_case_twins(folder: Path, evil_first: bool = False) -> Case:
    """archive/data.pkl (clean) and archive/Data.pkl (payload): torch's case-insensitive index picks one."""
    marker = folder / f"pwned-case-twins-{int(evil_first)}"
    clean, records = small_state_dict()
    evil = clean[:-1] + touch(marker) + b"0."
    path = folder / f"case_twins_{'evil' if evil_first else 'clean'}_first.pth"
    with zipfile.ZipFile(path, "w") as zf:
        pair = [("archive/Data.pkl", evil), ("archive/data.pkl", clean)]
        for name, data in pair if evil_first else pair[::-1]:
            zf.writestr(name, data)
        zf.writestr("archive/byteorder", "little")
        for key, data in records.items():
            zf.writestr(f"archive/data/{key}", data)
        zf.writestr("archive/version", "3\n")
    order = "malicious first" if evil_first else "clean first"
    return Case(
        f"data.pkl + Data.pkl ({order})",
        path,
        3,
        "unsafe",
        ("posix.system",),
        ("refused",),
        marker,
        extra={"torch_reads_one": True},
    )


def zip_case_twins_evil_first(folder: Path) -> Case:
    return zip_case_twins(folder, evil_first=True)


def zip_same_name_twins(folder: Path) -> Case:
    """Two central-directory entries with the very same name archive/data.pkl, the second with a payload."""
    import warnings

    marker = folder / "pwned-same-name"
    clean, records = small_state_dict()
    evil = clean[:-1] + touch(marker) + b"0."
    path = folder / "same_name_twins.pth"
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile: "Duplicate name"
        zf.writestr("archive/data.pkl", clean)
        zf.writestr("archive/data.pkl", evil)
        for key, data in records.items():
            zf.writestr(f"archive/data/{key}", data)
        zf.writestr("archive/version", "3\n")
    return Case(
        "archive/data.pkl twice (same name)",
        path,
        3,
        "unsafe",
        ("posix.system",),
        ("refused",),
        marker,
        extra={"torch_reads_one": True},
    )


def sole_upper_data_pkl(folder: Path) -> Case:
    pkl, records = small_state_dict()
    path = torch_zip(folder / "upper_data_pkl.pth", pkl, records, pickle_name="DATA.PKL")
    return Case(
        "sole archive/DATA.PKL (clean)",
        path,
        (0, 1),
        "safe",
        extra={"tensors": {"w": [2, 2], "b": [2]}},
    )


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def _pre04_members(payload_pickle: bytes, storages: bytes | None = None) -> list[tuple[str, bytes]]:
    """The pre-0.4 tar members: 'storages' (count, headers..., view list), 'tensors' (count), 'pickle'."""
    return [
        ("storages", storages if storages is not None else pickle_of(i(0)) + pickle_of(b"]")),
        ("tensors", pickle_of(i(0))),
        ("pickle", payload_pickle),
    ]


def pre04_tar(folder: Path) -> Case:
    marker = folder / "pwned-tar"
    path = folder / "pre04.tar.pth"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in _pre04_members(pickle_of(pdict({"step": i(5), "x": touch(marker)}))):
            _tar_member(tar, name, data)
    return Case(
        "pre-0.4 tar, payload in 'pickle'", path, 3, "unsafe", ("posix.system",), ("refused",), marker
    )


def pre04_tar_storages(folder: Path) -> Case:
    marker = folder / "pwned-tar-storages"
    path = folder / "pre04_storages.tar.pth"
    storages = pickle_of(i(0)) + pickle_of(b"]" + touch(marker) + b"a")
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in _pre04_members(pickle_of(pdict({"step": i(5)})), storages):
            _tar_member(tar, name, data)
    return Case(
        "pre-0.4 tar, payload in the 'storages' view list",
        path,
        3,
        "unsafe",
        ("posix.system",),
        ("refused",),
        marker,
    )


def pre04_tar_tensors(folder: Path) -> Case:
    marker = folder / "pwned-tar-tensors"
    path = folder / "pre04_tensors.tar.pth"
    members = _pre04_members(pickle_of(pdict({"step": i(5)})))
    members[1] = ("tensors", pickle_of(touch(marker) + b"0" + i(0)))
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            _tar_member(tar, name, data)
    return Case(
        "pre-0.4 tar, payload in the 'tensors' count",
        path,
        3,
        "unsafe",
        ("posix.system",),
        ("refused",),
        marker,
    )


def legacy_tar_polyglot(folder: Path) -> Case:
    """A file that is both a clean legacy torch file and a pre-0.4 tar: its magic-number pickle pads itself to
    512 bytes (BINBYTES, POP) that also form a valid tar header; the tar's 'pickle' member has a payload.
    torch.load tries the tar first."""
    marker = folder / "pwned-polyglot"
    legacy = LEGACY.read_bytes()
    rest = legacy[15:]  # the protocol, sys-info, object and key pickles, then the storages
    prefix = b"\x80\x02" + legacy[2:14] + b"B" + struct.pack("<I", 512 - 19 - 2)
    info = tarfile.TarInfo("x")
    info.size, info.mtime, info.mode = len(rest), 1_700_000_000, 0o644
    header = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    header[: len(prefix)] = prefix
    header[len(prefix) : 100] = b"\x00" * (100 - len(prefix))
    header[510:512] = b"0."
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % (sum(header) & 0o777777)
    tail = io.BytesIO()
    with tarfile.open(fileobj=tail, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in _pre04_members(pickle_of(pdict({"step": i(5), "x": touch(marker)}))):
            _tar_member(tar, name, data)
    padded = rest + b"\x00" * (-len(rest) % 512)
    path = folder / "legacy_tar_polyglot.pth"
    path.write_bytes(bytes(header) + padded + tail.getvalue())
    return Case(
        "legacy file that is also a tar (payload in the tar)",
        path,
        3,
        "unsafe",
        ("posix.system",),
        ("refused",),
        marker,
    )


def _dataclass(module: str, name: str, state: bytes) -> bytes:
    """What pickle writes for a dataclass instance: NEWOBJ of the class, then BUILD with its __dict__."""
    return sg(module, name) + b")\x81" + state + b"b"


def dcp_metadata(entries: dict[str, int]) -> bytes:
    """DCP's .metadata (torch.distributed.checkpoint Metadata, as dcp.save pickles it) for BYTE_IO entries
    {fqn: length}, stored back to back in __0_0.distcp."""
    md = "torch.distributed.checkpoint.metadata"
    sdm = pdict({fqn: _dataclass(md, "BytesStorageMetadata", b"}") for fqn in entries})
    planner = pdict({fqn: tup(s(fqn)) for fqn in entries})
    storage, offset = b"}(", 0
    for fqn, length in entries.items():
        index = _dataclass(md, "MetadataIndex", pdict({"fqn": s(fqn), "offset": b"N", "index": b"N"}))
        info = _dataclass(
            "torch.distributed.checkpoint.filesystem",
            "_StorageInfo",
            pdict({"relative_path": s("__0_0.distcp"), "offset": i(offset), "length": i(length)}),
        )
        storage += index + info
        offset += length
    state = pdict({"state_dict_metadata": sdm, "planner_data": planner, "storage_data": storage + b"u"})
    return pickle_of(_dataclass(md, "Metadata", state), 4)


def torch_zip_bytes(pkl: bytes, records: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        for key, data in (records or {}).items():
            zf.writestr(f"archive/data/{key}", data)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def dcp_folder(path: Path, values: dict[str, bytes]) -> Path:
    """A DCP folder with the layout dcp.save writes, holding only BYTE_IO values (torch.save blobs), stored
    back to back in __0_0.distcp."""
    path.mkdir()
    (path / "__0_0.distcp").write_bytes(b"".join(values.values()))
    (path / ".metadata").write_bytes(dcp_metadata({fqn: len(blob) for fqn, blob in values.items()}))
    return path


def dcp_training_folder(path: Path, step: int) -> Path:
    """{'model': {'w': float32[2]}, 'step': step, 'epoch': step // 10} as DCP BYTE_IO values."""
    model = torch_zip_bytes(pickle_of(pdict({"w": tensor("0", (2,))})), {"0": struct.pack("<2f", step, 1)})
    return dcp_folder(
        path,
        {
            "model": model,
            "step": torch_zip_bytes(pickle_of(i(step))),
            "epoch": torch_zip_bytes(pickle_of(i(step // 10))),
        },
    )


def clean_dcp(folder: Path) -> Case:
    path = dcp_training_folder(folder / "dcp_clean", 100)
    return Case("DCP folder, clean (hand-built)", path, (0, 1), "unverified")


def dcp_big_value(folder: Path) -> Case:
    """A DCP folder whose non-tensor value, a BYTE_IO entry of over 1 MB, is a torch.save blob with a payload:
    dcp.load hands it to torch.load(weights_only=False)."""
    marker = folder / "pwned-dcp-value"
    value = torch_zip_bytes(pickle_of(b"](" + b(b"\x00" * (1 << 20) + b"pad") + touch(marker) + b"e"))
    assert len(value) > 1 << 20
    path = dcp_folder(folder / "dcp_big_value", {"step": torch_zip_bytes(pickle_of(i(7))), "meta": value})
    return Case(
        "DCP BYTE_IO value > 1 MB with a payload", path, 3, "unsafe", ("posix.system",), ("refused",), marker
    )


def dcp_metadata_payload(folder: Path) -> Case:
    """A DCP folder whose .metadata pickle itself calls os.system (DCP's reader uses pickle.load)."""
    marker = folder / "pwned-dcp-metadata"
    path = folder / "dcp_metadata"
    path.mkdir()
    meta = pdict({"state_dict_metadata": b"}", "x": touch(marker)})
    (path / ".metadata").write_bytes(pickle_of(meta))
    (path / "__0_0.distcp").write_bytes(b"")
    return Case("DCP .metadata with a payload", path, 3, "unsafe", ("posix.system",), ("refused",), marker)


def safetensors_file(
    path: Path,
    tensors: dict[str, tuple[str, list[Any], bytes]],
    metadata: dict[str, str] | None = None,
    raw_header: dict[str, Any] | None = None,
) -> Path:
    """A safetensors file from (dtype code, shape, bytes) entries, or a raw header dict."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blob = b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if raw_header is not None:
        header.update(raw_header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob)
    return path


def safetensors_stub_cprofile(folder: Path) -> Case:
    """A safetensors file whose ckpttool.state metadata holds a stub of cProfile.run (what convert --to pth would
    write back as a GLOBAL)."""
    marker = folder / "pwned-st-stub"
    mark = "__ckpttool__"
    state = {
        mark: "dict",
        "items": [
            ["model", {mark: "dict", "items": [["w", {mark: "tensor", "key": "model.w"}]]}],
            [
                "hook",
                {
                    mark: "stub",
                    "module": "cProfile",
                    "name": "run",
                    "args": [write_marker_code(marker)],
                    "state": None,
                    "items": [],
                    "list_items": [],
                },
            ],
        ],
    }
    meta = {"ckpttool.state": json.dumps(state), "ckpttool.format": "ckpttool.state/1"}
    path = safetensors_file(
        folder / "stub_cprofile.safetensors", {"model.w": ("F32", [2], b"\x00" * 8)}, meta
    )
    return Case(
        "safetensors ckpttool.state stub of cProfile.run",
        path,
        (0, 3),
        None,
        ("cProfile.run",),
        marker=marker,
    )


PAYLOADS: list[Callable[[Path], Case]] = [
    vits_torch_os_system,
    vits_pathlib_os_system,
    cprofile_run,
    load_from_bytes,
    fx_reduce_graph_module,
    dict_config,
    dict_config_in_tensor_args,
    dict_config_in_tensor_size,
    memo_misaligned,
    raw_pkl_os_system,
    raw_pkl_old_protocol,
    raw_pkl_protocol0,
    legacy_magic_payload,
    zip_case_twins,
    zip_case_twins_evil_first,
    zip_same_name_twins,
    sole_upper_data_pkl,
    pre04_tar,
    pre04_tar_storages,
    pre04_tar_tensors,
    legacy_tar_polyglot,
    dcp_big_value,
    dcp_metadata_payload,
    safetensors_stub_cprofile,
]


# --- resource bombs ---------------------------------------------------------------------------------------------
def deep_tuple_key(folder: Path) -> Case:
    """A tuple nested 1,000,000 deep used as a dict key, in a deflate-compressed data.pkl (a few KB)."""
    depth = 1_000_000
    body = b"}" + b")" + b"\x85" * depth + b"Ns"
    path = torch_zip(folder / "deep_tuple_key.pth", pickle_of(body), deflate_pickle=True)
    return Case("tuple nested 1e6 deep as a key", path, 3, "corrupt", (), ("refused", "nested"))


def deep_list_value(folder: Path) -> Case:
    """A list nested 100,000 deep (as a value): the tree-depth limit."""
    depth = 100_000
    body = pdict({"x": b"]" * depth + b"a" * (depth - 1)})
    path = torch_zip(folder / "deep_list.pth", pickle_of(body), deflate_pickle=True)
    return Case("list nested 1e5 deep", path, 3, "corrupt", (), ("levels deep",))


def long_binput_huge(folder: Path) -> Case:
    """LONG_BINPUT 2**28: the C unpickler sizes its memo array by index (gigabytes)."""
    pkl, records = small_state_dict()
    body = pkl[2:-1] + b"r" + struct.pack("<I", 2**28) + b"j" + struct.pack("<I", 2**28) + b"0"
    path = torch_zip(folder / "long_binput.pth", b"\x80\x02" + body + b".", records)
    return Case("LONG_BINPUT 2**28", path, (0, 1), "safe")


def stride0_view(folder: Path) -> Case:
    """float32[2**30] with stride 0 over a 4-byte storage: 4 GiB when expanded."""
    body = pdict({"w": tensor("0", (2**30,), (0,), numel=1)})
    path = torch_zip(folder / "stride0.pth", pickle_of(body), {"0": struct.pack("<f", 1.5)})
    return Case("stride-0 float32[2**30] view of 4 bytes", path, (0, 1), "safe")


def _repeat_deflate(chunk: bytes, times: int, tail: bytes) -> tuple[bytes, int, int]:
    """Raw deflate of chunk * times + tail, built from one full-flushed compressed chunk repeated (fast)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    last = end.compress(tail) + end.flush()
    crc = 0
    for _ in range(times):
        crc = binascii.crc32(chunk, crc)
    crc = binascii.crc32(tail, crc)
    return block * times + last, len(chunk) * times + len(tail), crc


def _zip_raw(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip from (name, stored bytes, method, uncompressed size, crc) without zipfile (sizes may lie); a zip64
    end record when there are more than 65,535 entries."""
    local = io.BytesIO()
    central = io.BytesIO()
    for name, data, method, usize, crc in entries:
        offset = local.tell()
        raw = name.encode()
        usize32, csize32 = min(usize, 0xFFFFFFFF), min(len(data), 0xFFFFFFFF)
        local.write(
            struct.pack(
                "<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, csize32, usize32, len(raw), 0
            )
            + raw
            + data
        )
        central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                csize32,
                usize32,
                len(raw),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw
        )
    cd = central.getvalue()
    n, start = len(entries), local.tell()
    tail = b""
    if n > 0xFFFF:
        tail = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(cd), start)
        tail += struct.pack("<IIQI", 0x07064B50, 0, start + len(cd), 1)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), len(cd), start, 0)
    return local.getvalue() + cd + tail + eocd


def deflate_bomb(folder: Path) -> Case:
    """data.pkl deflated at ~1000x that inflates past 1 GiB (a ~1 MB file)."""
    chunk = b"N0" * (1 << 19)  # 1 MiB of push None / pop
    stream, usize, crc = _repeat_deflate(chunk, 1100, b"N.")
    data = _zip_raw(
        [
            ("archive/data.pkl", stream, 8, usize, crc),
            ("archive/version", b"3\n", 0, 2, binascii.crc32(b"3\n")),
        ]
    )
    path = folder / "deflate_bomb.pth"
    path.write_bytes(data)
    return Case("deflate bomb data.pkl (> 1 GiB inflated)", path, 3, "corrupt", (), ("refused",))


def huge_record_claim(folder: Path) -> Case:
    """A storage record whose directory entry claims a 4 GB inflated size from a few deflated bytes."""
    pkl, records = small_state_dict()
    base = torch_zip(folder / "tmp_claim.pth", pkl, records).read_bytes()
    (folder / "tmp_claim.pth").unlink()
    data = patch_cd_entry(base, "archive/data/0", method=8, usize=0xFFFFFFF0)
    offset = local_header_offset(base, "archive/data/0")
    data = data[: offset + 8] + struct.pack("<H", 8) + data[offset + 10 :]  # the local header's method too
    path = folder / "huge_record_claim.pth"
    path.write_bytes(data)
    return Case(
        "storage record claiming a 4 GB inflated size",
        path,
        3,
        "corrupt",
        (),
        ("data/0",),
    )


def colliding_int_keys(folder: Path) -> Case:
    """100,000 distinct int dict keys that all hash alike (multiples of 2**61 - 1): quadratic insertion."""
    modulus = 2**61 - 1
    parts = [b"}"]
    for start in range(1, 100_001, 1000):
        parts.append(b"(" + b"".join(i(k * modulus) + b"N" for k in range(start, start + 1000)) + b"u")
    path = torch_zip(folder / "colliding_keys.pth", pickle_of(b"".join(parts)), deflate_pickle=True)
    return Case("100k colliding int keys", path, 3, "corrupt", (), ("collide",))


def many_members(folder: Path) -> Case:
    """A torch zip with 100,000 members (written as raw bytes)."""
    pkl, records = small_state_dict()
    entries = [("archive/data.pkl", pkl, 0, len(pkl), binascii.crc32(pkl))]
    entries += [(f"archive/data/{k}", v, 0, len(v), binascii.crc32(v)) for k, v in records.items()]
    entries += [(f"archive/x/{n:x}", b"", 0, 0, 0) for n in range(100_000)]
    entries.append(("archive/version", b"3\n", 0, 2, binascii.crc32(b"3\n")))
    path = folder / "many_members.pth"
    path.write_bytes(_zip_raw(entries))
    return Case("100k zip members", path, (0, 1), "safe")


def cyclic_containers(folder: Path) -> Case:
    """A list and a dict that contain themselves (memo BINGET of the container inside it): pickle and torch
    handle cycles, so must every traversal."""
    body = pdict(
        {
            "model": pdict({"w": tensor("0", (2,))}),
            "step": i(3),
            "loop_list": b"]q\x01h\x01a",
            "loop_dict": b"}q\x02" + s("self") + b"h\x02s",
        }
    )
    path = torch_zip(folder / "cyclic.pth", pickle_of(body), {"0": struct.pack("<2f", 1, 2)})
    return Case("self-referencing list and dict", path, (0, 1), "safe")


def vits_huge_iteration(folder: Path, value: int | float = 10**9) -> Case:
    """The VITS G file with ``iteration = value`` (1e9: a resume check replaying the LR schedule epoch by epoch
    would loop for minutes; 10**5000: an integer str() refuses to print)."""
    member, pkl = data_pkl(VITS_G)
    needle = s("iteration")
    at = pkl.index(needle) + len(needle)
    # skip the memo put after the key, then replace the BININT1/BININT2/BININT value
    at += {b"q": 2, b"r": 5}.get(pkl[at : at + 1], 0)
    op = pkl[at : at + 1]
    width = {b"K": 2, b"M": 3, b"J": 5}[op]
    encoded = b"G" + struct.pack(">d", value) if isinstance(value, float) else i(value)
    new = pkl[:at] + encoded + pkl[at + width :]
    if isinstance(value, int) and value.bit_length() > 64:
        shown = f"an int of {value.bit_length()} bits"
    else:
        shown = "1e9" if value == 10**9 else repr(value)
    name = "G_1000000000.pth" if value == 10**9 else f"G_{shown.replace(' ', '_').replace('.', '_')}.pth"
    path = rezip(VITS_G, folder / name, {member: new})
    return Case(f"iteration = {shown}", path, (0, 1), "safe")


def tiny_training_file(path: Path, step: int) -> Path:
    """{'model': {'w': float32[2]}, 'step': step, 'epoch': step // 10} as a torch zip."""
    body = pdict({"model": pdict({"w": tensor("0", (2,))}), "step": i(step), "epoch": i(step // 10)})
    return torch_zip(path, pickle_of(body), {"0": struct.pack("<2f", step, 1)})


def sparse_package(folder: Path) -> Case:
    """An unpack package whose listed member is an old-GNU sparse file claiming 1 TiB."""
    content = b"not a checkpoint at all"
    manifest = {
        "schema": "ckpttool.pack/1",
        "files": [
            {
                "name": "G_1.pth",
                "role": "checkpoint",
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        ],
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        _tar_member(tar, "ckpttool-manifest.json", json.dumps(manifest).encode())
        _tar_member(tar, "G_1.pth", content)
    data = bytearray(buf.getvalue())
    at = data.index(b"G_1.pth\x00")
    header = data[at : at + 512]
    header[156:157] = b"S"  # GNUTYPE_SPARSE
    header[386:410] = b"%011o\x00%011o\x00" % (0, len(content))  # one (offset, numbytes) struct
    header[482] = 0
    header[483:495] = b"\x80" + (2**40).to_bytes(11, "big")  # the real size it claims, base-256
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    data[at : at + 512] = header
    path = folder / "sparse.tar"
    path.write_bytes(bytes(data))
    return Case("sparse member in a package", path, 1, None)


def oversized_package(folder: Path) -> Case:
    """An unpack package whose member is longer than the size its manifest declares."""
    content = b"x" * 4096
    manifest = {
        "schema": "ckpttool.pack/1",
        "files": [{"name": "G_1.pth", "role": "checkpoint", "size": 16, "sha256": "0" * 64}],
    }
    path = _package(folder / "oversized.tar", manifest, [("G_1.pth", content)])
    return Case("member longer than the manifest says", path, 1, None)


def unverified_training_file(path: Path) -> Path:
    """A small training file that also pickles an instance of a trainer's own class (mytrainer.config.Config):
    unverified, not unsafe."""
    cfg = g("mytrainer.config", "Config") + b")\x81" + pdict({"lr": b"G" + struct.pack(">d", 1e-4)}) + b"b"
    body = pdict({"model": pdict({"w": tensor("0", (2,))}), "step": i(10), "epoch": i(1), "cfg": cfg})
    return torch_zip(path, pickle_of(body), {"0": struct.pack("<2f", 1, 2)})


# --- exit-code cases --------------------------------------------------------------------------------------------
def encrypted_member(folder: Path) -> Case:
    pkl, records = small_state_dict()
    base = torch_zip(folder / "tmp_enc.pth", pkl, records).read_bytes()
    (folder / "tmp_enc.pth").unlink()
    data = patch_cd_entry(base, "archive/data.pkl", flag=1)
    path = folder / "encrypted.pth"
    path.write_bytes(data[:6] + struct.pack("<H", 1) + data[8:])  # and the local header's flag
    return Case("encrypted member flag", path, 3, "corrupt", (), ("encrypted",))


def unknown_compression(folder: Path) -> Case:
    """data.pkl stored with compression method 12 (bzip2), which torch's reader does not implement."""
    pkl, records = small_state_dict()
    base = torch_zip(folder / "tmp_method.pth", pkl, records).read_bytes()
    (folder / "tmp_method.pth").unlink()
    data = patch_cd_entry(base, "archive/data.pkl", method=12)
    path = folder / "bzip2_member.pth"
    path.write_bytes(data[:8] + struct.pack("<H", 12) + data[10:])
    return Case("unknown compression method", path, 3, "corrupt", (), ("compression method 12",))


def overlapping_entries(folder: Path) -> Case:
    """data.pkl's directory entry claims a size that runs over the local header and bytes of data/0."""
    pkl, records = small_state_dict()
    base = torch_zip(folder / "tmp_overlap.pth", pkl, records).read_bytes()
    (folder / "tmp_overlap.pth").unlink()
    start = 30 + len("archive/data.pkl")
    longer = local_header_offset(base, "archive/data/0") + 30 + len("archive/data/0") + 4 - start
    crc = binascii.crc32(base[start : start + longer])
    data = patch_cd_entry(base, "archive/data.pkl", csize=longer, usize=longer, crc=crc)
    data = data[:14] + struct.pack("<III", crc, longer, longer) + data[26:]
    path = folder / "overlap.pth"
    path.write_bytes(data)
    return Case("overlapping zip entries", path, 3, "corrupt", (), ("overlap",))


def missing_version(folder: Path) -> Case:
    pkl, records = small_state_dict()
    path = folder / "no_version.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        for key, data in records.items():
            zf.writestr(f"archive/data/{key}", data)
    return Case("no version record", path, 3, "corrupt", (), ("version",))


def future_version(folder: Path) -> Case:
    pkl, records = small_state_dict()
    path = torch_zip(folder / "version_99.pth", pkl, records, version="99\n")
    return Case("archive version 99", path, 3, "corrupt", (), ("version",))


def negative_stride(folder: Path) -> Case:
    body = pdict({"w": tensor("0", (2,), (-1,), offset=1, numel=2)})
    path = torch_zip(folder / "negative_stride.pth", pickle_of(body), {"0": struct.pack("<2f", 1, 2)})
    return Case("negative stride", path, 3, "corrupt", (), ("negative stride",))


def build_on_dtype(folder: Path) -> Case:
    """BUILD on torch.float32 (setting attributes of a global: how a function's code is swapped)."""
    body = pdict(
        {"dtype": g("torch", "float32") + pdict({"is_floating_point": s("x")}) + b"b", "w": tensor("0", (1,))}
    )
    path = torch_zip(folder / "build_dtype.pth", pickle_of(body), {"0": struct.pack("<f", 1)})
    return Case("BUILD on a dtype", path, 3, "unsafe", ("torch.float32",), ("refused",))


def huge_counters(folder: Path) -> Case:
    """step, epoch, iteration and lr as integers of over 4,300 digits (str() of them raises ValueError)."""
    big = 10**5000 + 7
    text_int = b"I1" + b"0" * 4400 + b"\n"  # protocol-0 INT text form: 10**4400
    body = pdict(
        {
            "model": pdict({"w": tensor("0", (1,))}),
            "step": i(big),
            "epoch": i(-big),
            "iteration": text_int,
            "learning_rate": i(big),
            "lr": i(big),
        }
    )
    path = torch_zip(folder / "huge_counters.pth", pickle_of(body), {"0": struct.pack("<f", 1)})
    return Case("integers over 4,300 digits", path, (0, 1), "safe")


def _package(path: Path, manifest: Any, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        _tar_member(tar, "ckpttool-manifest.json", raw)
        for name, data in members:
            _tar_member(tar, name, data)
    return path


_SHA = "0" * 64
_GOOD = {"name": "G_1.pth", "role": "checkpoint", "size": 1, "sha256": _SHA}
_SCHEMA = "ckpttool.pack/1"
# (label, manifest (a JSON value, or raw bytes), what the one-line message says)
BAD_MANIFESTS: list[tuple[str, tuple[Any, str]]] = [
    ("non-dict entry", ({"schema": _SCHEMA, "files": ["G_1.pth"]}, "malformed entry")),
    ("entry is a list", ({"schema": _SCHEMA, "files": [[1, 2]]}, "malformed entry")),
    (
        "very deep JSON",
        (
            b'{"schema": "ckpttool.pack/1", "files": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "not a ckpttool package",
        ),
    ),
    ("duplicate names", ({"schema": _SCHEMA, "files": [_GOOD, dict(_GOOD)]}, "twice")),
    (
        "duplicate names by case",
        ({"schema": _SCHEMA, "files": [_GOOD, {**_GOOD, "name": "g_1.PTH"}]}, "twice"),
    ),
    (
        "missing role",
        ({"schema": _SCHEMA, "files": [{k: v for k, v in _GOOD.items() if k != "role"}]}, "malformed entry"),
    ),
    ("unknown role", ({"schema": _SCHEMA, "files": [{**_GOOD, "role": "script"}]}, "malformed entry")),
    ("size is a string", ({"schema": _SCHEMA, "files": [{**_GOOD, "size": "1"}]}, "malformed entry")),
    ("size is a bool", ({"schema": _SCHEMA, "files": [{**_GOOD, "size": True}]}, "malformed entry")),
    ("negative size", ({"schema": _SCHEMA, "files": [{**_GOOD, "size": -1}]}, "malformed entry")),
    (
        "name with a slash",
        ({"schema": _SCHEMA, "files": [{**_GOOD, "name": "a/G_1.pth"}]}, "malformed entry"),
    ),
    ("hidden name", ({"schema": _SCHEMA, "files": [{**_GOOD, "name": ".bashrc"}]}, "malformed entry")),
    ("files is a dict", ({"schema": _SCHEMA, "files": {"G_1.pth": _GOOD}}, "manifest")),
    ("manifest is a list", ([_GOOD], "manifest")),
    ("manifest is not JSON", (b"\xff\xfe{", "not a ckpttool package")),
]


def bad_manifest(folder: Path, label: str) -> tuple[Path, str]:
    """A package whose manifest is the malformed one named ``label``, with a member G_1.pth: (path, says)."""
    manifest, says = dict(BAD_MANIFESTS)[label]
    path = folder / "bad_manifest.tar"
    return _package(path, manifest, [("G_1.pth", b"x")]), says


def safetensors_bad_shape(folder: Path) -> Case:
    path = safetensors_file(
        folder / "bad_shape.safetensors",
        {},
        raw_header={"w": {"dtype": "F32", "shape": [1.9, True, "2"], "data_offsets": [0, 0]}},
    )
    return Case(
        "safetensors shape [1.9, true, '2']",
        path,
        3,
        "corrupt",
        (),
        ("bad header entry",),
    )


# --- format cases -----------------------------------------------------------------------------------------------
def save_pretrained(folder: Path) -> Case:
    path = folder / "pretrained"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "toy", "hidden_size": 2}))
    safetensors_file(path / "model.safetensors", {"w": ("F32", [2], struct.pack("<2f", 1, 2))})
    return Case("save_pretrained folder", path, (0, 1), "safe", says=("hf-pretrained-dir",))


def save_pretrained_bin(folder: Path) -> Case:
    path = folder / "pretrained_bin"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "toy"}))
    pkl, records = small_state_dict()
    torch_zip(path / "pytorch_model.bin", pkl, records)
    return Case(
        "save_pretrained folder (pytorch_model.bin)",
        path,
        (0, 1),
        "safe",
        says=("hf-pretrained-dir",),
    )


def optimizer_bin(folder: Path) -> Case:
    """A standalone optimizer.bin (accelerate/transformers): {'state': {0: {...}}, 'param_groups': [...]}."""
    state = (
        b"}("
        + i(0)
        + pdict({"step": i(3), "exp_avg": tensor("0", (2,)), "exp_avg_sq": tensor("1", (2,))})
        + b"u"
    )
    group = pdict(
        {
            "lr": b"G" + struct.pack(">d", 1e-3),
            "betas": tup(b"G" + struct.pack(">d", 0.9), b"G" + struct.pack(">d", 0.999)),
            "eps": b"G" + struct.pack(">d", 1e-8),
            "weight_decay": b"G" + struct.pack(">d", 0.0),
            "params": b"](" + i(0) + b"e",
        }
    )
    body = pdict({"state": state, "param_groups": b"](" + group + b"e"})
    records = {"0": struct.pack("<2f", 0.1, 0.2), "1": struct.pack("<2f", 0.01, 0.02)}
    path = torch_zip(folder / "optimizer.bin", pickle_of(body), records)
    return Case("standalone optimizer.bin", path, (0, 1), "safe", says=("optimizer-state",))


def scheduler_bin(folder: Path) -> Case:
    body = pdict(
        {
            "base_lrs": b"](" + b"G" + struct.pack(">d", 1e-3) + b"e",
            "last_epoch": i(7),
            "_step_count": i(8),
            "verbose": b"\x89",
            "_get_lr_called_within_step": b"\x89",
            "_last_lr": b"](" + b"G" + struct.pack(">d", 1e-3) + b"e",
            "gamma": b"G" + struct.pack(">d", 0.99),
        }
    )
    path = torch_zip(folder / "scheduler.bin", pickle_of(body))
    return Case("standalone scheduler.bin", path, (0, 1), "safe", says=("scheduler-state",))


def norm_buffers(folder: Path) -> Case:
    body = pdict(
        {
            "model": pdict(
                {
                    "proj.weight": tensor("0", (2, 2)),
                    "norm_mean": tensor("1", (2,)),
                    "mel_std": tensor("2", (2,)),
                }
            ),
            "step": i(10),
        }
    )
    records = {
        "0": struct.pack("<4f", 1, 2, 3, 4),
        "1": struct.pack("<2f", 0, 0),
        "2": struct.pack("<2f", 1, 1),
    }
    path = torch_zip(folder / "norm_buffers.pth", pickle_of(body), records)
    return Case("norm_mean / mel_std buffers", path, (0, 1), "safe")


def name_mismatch(folder: Path, member: str = "archive/data/0") -> Case:
    """The central directory names ``member``, its local header another name (last letter changed)."""
    pkl, records = small_state_dict()
    data = bytearray(torch_zip(folder / "tmp_mismatch.pth", pkl, records).read_bytes())
    (folder / "tmp_mismatch.pth").unlink()
    at = local_header_offset(bytes(data), member) + 30 + len(member) - 1
    data[at : at + 1] = b"X"
    path = folder / f"name_mismatch_{member.rsplit('/', 1)[-1]}.pth"
    path.write_bytes(bytes(data))
    return Case(f"CD / local header name mismatch ({member})", path, 3, "corrupt", (), (member,))


def name_mismatch_pickle(folder: Path) -> Case:
    return name_mismatch(folder, "archive/data.pkl")


def lfs_pointer(folder: Path) -> Case:
    path = folder / "G_lfs.pth"
    path.write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 123456789\n"
    )
    return Case("Git LFS pointer", path, 3, "unsupported", (), ("Git LFS pointer", "git lfs pull"))


def html_page(folder: Path) -> Case:
    path = folder / "G_html.pth"
    path.write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>login</body></html>\n")
    return Case("HTML page", path, 3, "unsupported", (), ("HTML page",))


def flipped_tensor_byte(folder: Path) -> Case:
    """One byte of a stored tensor record flipped: torch.load never checks CRC-32, inspect --deep does."""
    pkl, records = small_state_dict()
    data = bytearray(torch_zip(folder / "flipped.pth", pkl, records).read_bytes())
    offset = local_header_offset(bytes(data), "archive/data/0") + 30 + len("archive/data/0")
    data[offset + 1] ^= 0x40
    path = folder / "flipped.pth"
    path.write_bytes(bytes(data))
    return Case(
        "one flipped byte in a tensor record",
        path,
        (0, 1),
        "safe",
        extra={"deep_says": "CRC-32"},
    )


FORMATS: list[Callable[[Path], Case]] = [
    save_pretrained,
    save_pretrained_bin,
    optimizer_bin,
    scheduler_bin,
    norm_buffers,
    name_mismatch,
    name_mismatch_pickle,
    lfs_pointer,
    html_page,
    flipped_tensor_byte,
]


# --- the fork server ----------------------------------------------------------------------------------------------
WORKER = r"""
import json, os, resource, signal, sys

cfg = json.loads(sys.argv[1])
reply = os.fdopen(os.dup(1), "w", buffering=1)
inbox = os.fdopen(os.dup(0), "r")
devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(devnull, 0)
os.dup2(devnull, 1)
for mod in cfg["preload"]:
    try:
        __import__(mod)
    except Exception:  # a preload only saves time; the command imports what it needs itself
        pass
from ckpttool.cli import main


def run(argv):
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


saved = os.dup(2)
os.dup2(devnull, 2)
for argv in cfg["warm"]:  # import what commands import lazily, before any limit or hook is set
    try:
        run(argv)
    except BaseException:
        pass
os.dup2(saved, 2)
os.close(saved)
if cfg["rlimit_as"]:
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cfg["rlimit_as"], cfg["rlimit_as"]))
    except (ValueError, OSError):  # not every kernel enforces an address-space limit (macOS)
        pass
if cfg["hook"]:
    exec(cfg["hook"])  # installs an audit hook, inherited by every forked child
reply.write(json.dumps({"ready": True}) + "\n")

for line in inbox:
    req = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            signal.alarm(int(req["timeout"]))
            os.chdir(req["cwd"])
            fd1 = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            fd2 = os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd1, 1)
            os.dup2(fd2, 2)
            os.environ.update(req["env"])
            code = run(req["argv"])
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException as exc:
            try:
                os.write(2, ("worker child: " + repr(exc) + "\n").encode())
            except OSError:
                pass
        os._exit(code if isinstance(code, int) and 0 <= code < 256 else 98)
    _, status = os.waitpid(pid, 0)
    result = {"code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
              "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}
    reply.write(json.dumps(result) + "\n")
"""


@dataclass
class Result:
    code: int | None
    stdout: str
    stderr: str
    signal: int | None = None

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


class CliWorker:
    """A pre-warmed interpreter that forks once per request and runs ``ckpttool.cli.main(argv)`` in the child.

    Each child gets ``timeout`` seconds of wall-clock time (``signal.alarm``: a hang is killed by SIGALRM and
    reported as ``signal``), its own stdout/stderr files, and inherits the worker's memory limit and audit hook.
    """

    def __init__(
        self,
        scratch: Path,
        env: dict[str, str],
        *,
        preload: tuple[str, ...] = (),
        warm: list[list[str]] | None = None,
        rlimit_as: int = 0,
        hook: str = "",
    ) -> None:
        self.scratch = scratch
        self.n = 0
        cfg = {"preload": list(preload), "warm": warm or [], "rlimit_as": rlimit_as, "hook": hook}
        full_env = {**os.environ, **env}
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        full_env.pop("CKPTTOOL_DEBUG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=str(scratch),
        )
        self.ready = False  # it imports and warms up in the background until the first run

    def wait_ready(self) -> None:
        if self.ready:
            return
        line = self._readline(600)
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError(f"the CLI worker did not start: {line!r}")
        self.ready = True

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise TimeoutError("the CLI worker stopped answering")
        return self.proc.stdout.readline()

    def run(
        self, *args: Any, cwd: Path | None = None, timeout: int = 20, env: dict[str, str] | None = None
    ) -> Result:
        self.wait_ready()
        self.n += 1
        out, err = self.scratch / f"run{self.n}.out", self.scratch / f"run{self.n}.err"
        req = {
            "argv": [str(a) for a in args],
            "cwd": str(cwd or self.scratch),
            "timeout": timeout,
            "out": str(out),
            "err": str(err),
            "env": env or {},
        }
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self._readline(timeout + 30)
        if not line:
            raise RuntimeError("the CLI worker died")
        res = json.loads(line)
        result = Result(res["code"], _read(out), _read(err), res["signal"])
        out.unlink(missing_ok=True)
        err.unlink(missing_ok=True)
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_SHARED: dict[str, CliWorker] = {}


def _shared(kind: str, env: dict[str, str], preload: tuple[str, ...]) -> CliWorker:
    if kind not in _SHARED:
        import atexit
        import shutil
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix=f"ckpttool-{kind}-worker-"))
        warm = [["inspect", str(VITS_G), "--json"], ["check", str(VITS_G)]]
        worker = CliWorker(scratch, env, preload=preload, warm=warm, rlimit_as=3 << 30)
        atexit.register(shutil.rmtree, scratch, True)
        atexit.register(worker.close)
        _SHARED[kind] = worker
    return _SHARED[kind]


def shared_cli(env: dict[str, str]) -> CliWorker:
    """One CLI worker for the whole session, without torch (a fork of it costs a few milliseconds): for every
    command that does not write tensors. 3 GiB address-space limit; closed when the interpreter exits."""
    return _shared("cli", env, ())


def shared_torch_cli(env: dict[str, str]) -> CliWorker:
    """The same with torch imported once, for the commands that write tensors (convert); starts in the
    background, so call it early."""
    return _shared("torch-cli", env, ("torch",))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
