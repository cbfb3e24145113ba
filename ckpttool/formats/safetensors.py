"""Read a safetensors header (8-byte little-endian length, then JSON) without torch or the safetensors lib.

The header alone gives names, dtypes, shapes and byte ranges. Checking that the ranges tile the data area
exactly is what catches a cut-short or padded file before anyone loads it.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from ckpttool.errors import CorruptCheckpoint, TruncatedCheckpoint
from ckpttool.formats.base import Format, Handles, Probe, Sniffed, WriteOptions, open_regular, read_range
from ckpttool.model import DTYPE_SIZES, Checkpoint, RangeStorage, StorageRef, TensorInfo
from ckpttool.vocab import Format as FormatName

MAX_HEADER = 100_000_000  # the safetensors library refuses larger headers ("header too large")

# safetensors dtype codes -> torch dtype names
DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "C64": "complex64",
    "C128": "complex128",
    "F8_E8M0": "float8_e8m0fnu",
}
CODES = {v: k for k, v in DTYPES.items()}


def read_header(path: str) -> tuple[int, dict[str, Any]]:
    with open_regular(path) as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER:
            raise CorruptCheckpoint(
                f"{path}: safetensors header of {n:,} bytes (the library refuses > 100 MB)", path=path
            )
        raw = f.read(n)
    if len(raw) < n:
        raise TruncatedCheckpoint(f"{path}: safetensors header is cut short", path=path)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CorruptCheckpoint(f"{path}: safetensors header is not valid JSON ({exc})", path=path) from exc
    if not isinstance(header, dict):
        raise CorruptCheckpoint(f"{path}: safetensors header is not a JSON object", path=path)
    return 8 + n, header


def read_safetensors(path: str, sniffed: Sniffed) -> Checkpoint:
    data_start, header = read_header(path)
    metadata = header.pop("__metadata__", None) or {}
    tensors: list[TensorInfo] = []
    ranges: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        ok = (
            isinstance(entry, dict)
            and entry.get("dtype") in DTYPES
            and isinstance(entry.get("shape"), list)
            and all(type(d) is int and d >= 0 for d in entry["shape"])
            and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2
            and all(type(x) is int and x >= 0 for x in entry["data_offsets"])
        )
        if not ok:
            raise CorruptCheckpoint(
                f"{path}: bad header entry for {name!r} (a dtype code, a list of non-negative integer dims and two "
                "integer offsets are required, as the safetensors library checks)",
                path=path,
            )
        dtype = DTYPES[entry["dtype"]]
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        numel = math.prod(shape)
        if end - begin != numel * DTYPE_SIZES[dtype] or begin < 0:
            raise CorruptCheckpoint(
                f"{path}: {name} spans {end - begin} bytes but {dtype}{list(shape)} needs "
                f"{numel * DTYPE_SIZES[dtype]}",
                path=path,
            )
        storage = RangeStorage(path, name, dtype, numel, "cpu", offset=data_start + begin)
        stride = tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))
        tensors.append(TensorInfo(name, dtype, shape, stride, storage))
        ranges.append((begin, end, name))
    covered = 0
    for begin, end, name in sorted(ranges):
        if begin != covered:
            raise CorruptCheckpoint(
                f"{path}: tensor {name} starts at byte {begin}, expected {covered}; "
                "the data area has gaps or overlaps",
                path=path,
            )
        covered = end
    available = sniffed.size - data_start
    if covered > available:
        raise TruncatedCheckpoint(
            f"{path}: tensors need {covered} data bytes but the file has {available}; it was cut short",
            path=path,
        )
    if covered < available:
        raise CorruptCheckpoint(
            f"{path}: {available - covered} unexpected bytes after the last tensor", path=path
        )
    root: Any = {t.path: t for t in tensors}
    notes = []
    state = metadata.get("ckpttool.state") if isinstance(metadata, dict) else None
    if state is not None:
        # written by `ckpttool convert --to safetensors`: the whole training state, typed, with tensor references
        from ckpttool.state_json import decode

        by_name = {t.path: t for t in tensors}
        try:
            root = decode(json.loads(state), lambda key: by_name[key])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptCheckpoint(
                f"{path}: ckpttool.state metadata is damaged ({exc})", path=path
            ) from None
        metadata = {k: v for k, v in metadata.items() if k != "ckpttool.state"}
        notes.append("training state restored from the ckpttool.state metadata (written by ckpttool convert)")
    ckpt = Checkpoint(
        path=path, format=FormatName.SAFETENSORS, root=root, tensors=tensors, size=sniffed.size, notes=notes
    )
    ckpt.meta.update({"safetensors_metadata": dict(metadata), "header_bytes": data_start})
    return ckpt


class Safetensors(Format):
    """safetensors: an 8-byte header length, a JSON header, then the tensors' bytes (no pickle at all)."""

    name = FormatName.SAFETENSORS
    description = "safetensors file (JSON header + raw tensors)"
    suffixes = (".safetensors",)
    storage = RangeStorage
    target = "safetensors"

    def sniff(self, probe: Probe) -> Sniffed | None:
        head = probe.head
        if len(head) < 9:
            return None
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] != b"{" or not 0 < n <= MAX_HEADER:
            return None
        if 8 + n > probe.size:
            raise TruncatedCheckpoint(
                f"{probe.path}: safetensors header claims {n} bytes but the file has only {probe.size - 8}; "
                "the file was cut short",
                path=probe.path,
            )
        return Sniffed(self.name, probe.size)

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        return read_safetensors(path, sniffed)

    def read_bytes(self, handles: Handles, ref: StorageRef, start: int, length: int) -> bytes:
        return read_range(handles, ref, start, length)

    def write(self, ckpt: Checkpoint, target: Path, materialised: Any, options: WriteOptions) -> list[str]:
        """Every tensor under its dotted path; everything else (optimizer hyper-parameters, counters, configs,
        RNG state) as typed JSON in the ``ckpttool.state`` metadata entry, so a round trip loses nothing. A
        plain state dict stays a plain safetensors file."""
        from safetensors.torch import save

        from ckpttool.outputs import atomic_write
        from ckpttool.state_json import FORMAT, encode

        reader = options.reader
        tensors: dict[str, Any] = {}
        for t in ckpt.tensors:
            if t.path not in tensors:
                tensors[t.path] = reader.tensor(t).contiguous().clone()
        metadata: dict[str, str] = {}
        notes = []
        flat = (
            isinstance(ckpt.root, dict)
            and bool(ckpt.root)
            and all(isinstance(v, TensorInfo) for v in ckpt.root.values())
        )
        if not flat:
            metadata["ckpttool.state"] = json.dumps(encode(ckpt.root, lambda t: t.path))
            metadata["ckpttool.format"] = FORMAT
            notes.append("non-tensor training state kept as typed JSON in the ckpttool.state metadata")
        metadata["ckpttool.source_format"] = str(ckpt.format)
        data = save(tensors, metadata=metadata)
        atomic_write(target, lambda fh: fh.write(data), options.verify)
        return notes
