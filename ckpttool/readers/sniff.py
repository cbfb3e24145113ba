"""Decide a file's format from its first bytes. The only place formats are told apart.

The extension is never the decision: GPT-SoVITS writes zips whose first two bytes are a version tag, Lightning
writes ``.ckpt`` zips, RVC ``.pth`` exports are zips, and people rename files.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from ckpttool.errors import CorruptCheckpoint, InputNotFound, TruncatedCheckpoint, UnsupportedFormat

ZIP_MAGIC = b"PK\x03\x04"
# GPT-SoVITS my_save2 overwrites the "PK" of the zip magic with a version tag (formats.md §2.2).
GPT_SOVITS_TAGS = {
    b"00": "v1",
    b"01": "v2",
    b"02": "v3",
    b"03": "v3",
    b"04": "v4",
    b"05": "v2Pro",
    b"06": "v2ProPlus",
}
# The legacy (pre-1.6) torch format starts with a protocol-2 pickle of this magic number.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
SAFETENSORS_MAX_HEADER = 100_000_000

TORCH_ZIP = "torch-zip"
TAGGED_ZIP = "gpt-sovits-tagged-zip"
LEGACY = "torch-legacy"
TORCHSCRIPT = "torchscript"
SAFETENSORS = "safetensors"
DIRECTORY = "directory"


@dataclass(frozen=True)
class Sniffed:
    format: str
    size: int
    tag: str | None = None  # GPT-SoVITS version tag for tagged zips


def sniff(path: str) -> Sniffed:
    """Classify ``path`` by content. Raises a CkptError for anything that cannot be a checkpoint."""
    if not os.path.exists(path):
        raise InputNotFound(f"{path}: no such file or directory; check the path", path=path)
    if os.path.isdir(path):
        return Sniffed(sniff_directory(path) or DIRECTORY, 0)
    size = os.path.getsize(path)
    if size == 0:
        raise TruncatedCheckpoint(
            f"{path}: file is empty (0 bytes); the save never wrote anything", path=path
        )
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise InputNotFound(f"{path}: cannot read ({exc.strerror}); check permissions", path=path) from exc
    if head.startswith(ZIP_MAGIC):
        return Sniffed(TORCH_ZIP, size)
    if head[:2] in GPT_SOVITS_TAGS and head[2:4] == b"\x03\x04":
        return Sniffed(TAGGED_ZIP, size, GPT_SOVITS_TAGS[head[:2]])
    if head[:2] == b"\x80\x02" and head[2:3] == b"\x8a":
        return Sniffed(LEGACY, size)
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < n <= SAFETENSORS_MAX_HEADER:
            if 8 + n > size:
                raise TruncatedCheckpoint(
                    f"{path}: safetensors header claims {n} bytes but the file has only {size - 8}; "
                    "the file was cut short",
                    path=path,
                )
            return Sniffed(SAFETENSORS, size)
    if head[:2] == b"PK":
        raise CorruptCheckpoint(
            f"{path}: damaged zip header; the file is not a complete torch checkpoint", path=path
        )
    if _looks_like_tar(path, size):
        raise UnsupportedFormat(
            f"{path}: this is the pre-0.4 torch tar format, which ckpttool does not read; "
            "re-save it with a current torch.save",
            path=path,
        )
    raise UnsupportedFormat(
        f"{path}: not a checkpoint format ckpttool knows (torch zip, legacy torch, GPT-SoVITS tagged zip, "
        "safetensors, TorchScript); if it is a checkpoint, report its first bytes: " + head[:8].hex(),
        path=path,
    )


def _looks_like_tar(path: str, size: int) -> bool:
    if size < 512:
        return False
    with open(path, "rb") as f:
        f.seek(257)
        return f.read(5) == b"ustar"


# --- directories --------------------------------------------------------------------------------------------
ACCELERATE = "accelerate-dir"
HF_SHARDED = "hf-sharded-dir"
DCP = "dcp-dir"
ACCEL_MODEL = re.compile(r"^(?:model|pytorch_model)(?:_(\d+))?\.(?:safetensors|bin)$")
ACCEL_OTHER = re.compile(
    r"^(?:optimizer(?:_\d+)?\.bin|scheduler(?:_\d+)?\.bin|scaler\.pt|random_states_\d+\.pkl)$"
)


def sniff_directory(path: str | os.PathLike[str]) -> str | None:
    """Which kind of checkpoint directory ``path`` is, from the files it holds (None: not one)."""
    p = Path(path)
    if not p.is_dir():
        return None
    names = {c.name for c in p.iterdir() if c.is_file()}
    if ".metadata" in names:
        return DCP
    if any(n.endswith(".index.json") for n in names):
        return HF_SHARDED
    if any(ACCEL_MODEL.match(n) for n in names) and any(ACCEL_OTHER.match(n) for n in names):
        return ACCELERATE
    return None
