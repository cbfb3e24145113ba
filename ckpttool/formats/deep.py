"""``inspect --deep``: read every byte a checkpoint's tensors use and check what can be checked.

Zip members (torch files, every zip member of a folder's files) are checked against their CRC-32: torch never
checks them (it builds miniz with ``MINIZ_DISABLE_ZIP_READER_CRC32_CHECKS``), so a flipped bit in a tensor
loads silently there. Formats without checksums (safetensors, legacy torch, DCP) are read in full, which finds
short files and unreadable sectors but not a changed byte. Costs one read of the file: see
benchmarks/bench_deep.py for seconds per GB.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ckpttool.errors import CorruptCheckpoint
from ckpttool.model import Checkpoint, ZipStorage
from ckpttool.progress import Progress
from ckpttool.progress import report as report_progress

Tick = Callable[[int], None]


@dataclass
class DeepReport:
    bytes_read: int = 0
    checked: list[str] = field(default_factory=list)  # one line per file


def _crc_members(path: str, tick: Tick) -> int:
    from ckpttool.formats.torch_zip import open_archive

    with open(path, "rb") as head:
        tagged = head.read(2) != b"PK"
    total = 0
    with open_archive(path, tagged) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            crc = 0
            with zf.open(info) as fh:
                fh._expected_crc = None  # type: ignore[attr-defined]  # compared below, with a clearer message
                while chunk := fh.read(1 << 24):
                    crc = zlib.crc32(chunk, crc)
                    total += len(chunk)
                    tick(len(chunk))
            if crc != info.CRC:
                raise CorruptCheckpoint(
                    f"{path}: {info.filename} fails its CRC-32 check (its bytes changed after the save; torch.load "
                    "does not check and would load them); use another copy",
                    path=path,
                )
    return total


def _read_all(path: Path, tick: Tick) -> int:
    total = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            total += len(chunk)
            tick(len(chunk))
    return total


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.glob("*.distcp"))
    return os.path.getsize(path) if path.is_file() else 0


def deep_verify(ckpt: Checkpoint, progress: Progress | None = None) -> DeepReport:
    """Check every file behind ``ckpt``'s tensors; raises CorruptCheckpoint at the first damage found.
    ``progress`` is told the bytes read (label ``deep read``; the total is the files' sizes, which a zip's
    uncompressed members may pass a little)."""
    report = DeepReport()
    files: dict[str, bool] = {}  # file -> is a zip
    for t in ckpt.tensors:
        files.setdefault(t.storage.file, isinstance(t.storage, ZipStorage))
    total = sum(_size(Path(name)) for name in files)
    done = [0]

    def tick(n: int) -> None:
        done[0] = min(done[0] + n, max(total - 1, 0))  # the end is told once, below
        report_progress(progress, "deep read", done[0], total)

    for name, is_zip in files.items():
        path = Path(name)
        if is_zip:
            report.bytes_read += _crc_members(name, tick)
            report.checked.append(f"{path.name}: every zip member's CRC-32 matches")
        elif path.is_dir():
            for data in sorted(path.glob("*.distcp")):
                report.bytes_read += _read_all(data, tick)
            report.checked.append(f"{path.name}: DCP keeps no checksums; every .distcp byte read")
        else:
            report.bytes_read += _read_all(path, tick)
            report.checked.append(
                f"{path.name}: no checksums in this format; every byte read, lengths checked"
            )
    report_progress(progress, "deep read", total, total)
    return report
