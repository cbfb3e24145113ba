"""The pre-0.4 ``torch.save`` tar format: members ``storages``, ``tensors`` and ``pickle`` (``sys_info`` unused).

torch.load tries this format before the legacy pickle stream whenever it reads a real file from offset 0
(torch/serialization.py ``_legacy_load``: ``tarfile.open`` first), so a file whose first 512 bytes form a valid
tar header is a tar to torch, whatever follows. Every pickle inside is unpickled with the caller's pickle module:
the object (``pickle``), one per storage header and the view list (``storages``), one per tensor header
(``tensors``). torch >= 2.6 refuses the format under ``weights_only``. ckpttool runs each pickle through the
pickle machine for the verdict and shows the object's structure; tensor values are not read.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ckpttool.errors import CorruptCheckpoint
from ckpttool.formats.base import Format, Probe, Sniffed, open_regular
from ckpttool.formats.builders import StorageType
from ckpttool.formats.pickled import MAX_PICKLE_BYTES, build_checkpoint, read_pickle
from ckpttool.model import DTYPE_SIZES, Checkpoint, Safety, stub_class
from ckpttool.vocab import Format as FormatName

if TYPE_CHECKING:
    import tarfile

MAX_ENTRIES = 1_000_000


def is_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a tar header ``tarfile.open`` accepts (its checksum holds)."""
    if len(block) < 512:
        return False
    import tarfile  # here, not at the top: most files are zips, sniffed before this

    try:
        tarfile.TarInfo.frombuf(block[:512], "utf-8", "surrogateescape")
    except (tarfile.HeaderError, ValueError):
        return False
    return True


class TorchTar(Format):
    name = FormatName.TAR
    description = "pre-0.4 torch.save tar archive (storages, tensors, pickle)"
    suffixes = (".pth", ".pt", ".tar")

    def sniff(self, probe: Probe) -> Sniffed | None:
        return Sniffed(self.name, probe.size) if is_tar_header(probe.head) else None

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        import tarfile

        safety = Safety()
        with open_regular(path) as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if "pickle" not in members:
                raise CorruptCheckpoint(
                    f"{path}: a tar file without the 'pickle' member of torch's pre-0.4 format", path=path
                )
            blobs = {name: _member(tar, members[name], path) for name in ("pickle", "storages", "tensors")
                     if name in members}  # fmt: skip
        for name in ("storages", "tensors"):
            if name in blobs:
                safety.merge(_scan_headers(blobs[name], name, path))

        def placeholder(pid: Any) -> Any:
            return stub_class("torch._tar", "tensor")(pid)

        result = read_pickle(blobs["pickle"], path, placeholder, what="the 'pickle' member")
        ckpt = build_checkpoint(result, path)
        safety.merge(result.safety)
        ckpt.safety = safety
        ckpt.format = self.name
        ckpt.size = sniffed.size
        ckpt.notes.append(
            "pre-0.4 torch tar format: torch >= 2.6 refuses it unless weights_only is off, and then unpickles every "
            "member; its tensors are shown as placeholders (not read)"
        )
        return ckpt


def _member(tar: tarfile.TarFile, info: tarfile.TarInfo, path: str) -> bytes:
    if not info.isfile() or info.size > MAX_PICKLE_BYTES:
        raise CorruptCheckpoint(
            f"{path}: tar member {info.name} is not a regular file of sane size", path=path
        )
    fh = tar.extractfile(info)
    assert fh is not None
    return fh.read(info.size)


def _scan_headers(data: bytes, member: str, path: str) -> Safety:
    """Run every pickle of ``storages`` or ``tensors``, skipping the raw data between them."""
    safety = Safety()
    first = read_pickle(data, path, _none, what=f"the {member!r} member")
    safety.merge(first.safety)
    count, pos = first.root, first.end
    if type(count) is not int or not 0 <= count <= MAX_ENTRIES:
        raise CorruptCheckpoint(f"{path}: tar member {member} has a bad entry count", path=path)
    for _ in range(count):
        header = read_pickle(data, path, _none, start=pos, what=f"a header in {member!r}")
        safety.merge(header.safety)
        pos = header.end
        if member == "storages":  # (key, location, storage_type), then int64 size and the raw elements
            stype = header.root[2] if isinstance(header.root, tuple) and len(header.root) == 3 else None
            size = DTYPE_SIZES.get(stype.dtype, 1) if isinstance(stype, StorageType) else 1
            (n,) = struct.unpack_from("<q", data, pos)
            pos += 8 + max(n, 0) * size
        else:  # (key, storage_id, original_type), then int32 ndim, 4 bytes, sizes, strides, storage offset
            (ndim,) = struct.unpack_from("<i", data, pos)
            pos += 8 + 16 * max(ndim, 0) + 8
        if pos > len(data):
            raise CorruptCheckpoint(f"{path}: tar member {member} is cut short", path=path)
    if member == "storages" and pos < len(data):
        safety.merge(read_pickle(data, path, _none, start=pos, what="the view list").safety)
    return safety


def _none(pid: Any) -> Any:
    return pid
