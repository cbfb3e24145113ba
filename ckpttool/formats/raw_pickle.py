"""A bare pickle stream (``pickle.dump`` output, a ``.pkl``): not a torch checkpoint, but ``torch.load`` runs it.

torch.load hands any file that is neither a zip nor a tar to ``_legacy_load``, which unpickles the first
pickle with the caller's pickle module *before* comparing it with the legacy magic number
(torch/serialization.py ``_legacy_load``). So a ``.pkl`` file runs whatever it names under
``weights_only`` off, and only then fails with "Invalid magic number; corrupt file?". ckpttool reads it with the
pickle machine for its verdict and shows what it holds.
"""

from __future__ import annotations

from ckpttool.errors import CorruptCheckpoint
from ckpttool.formats.base import Format, Probe, Sniffed
from ckpttool.formats.legacy import PickleWindow
from ckpttool.formats.pickled import build_checkpoint
from ckpttool.model import Checkpoint
from ckpttool.vocab import Format as FormatName

# First bytes of a pickle: PROTO (protocols 2-5), or a protocol 0/1 opcode that can start one.
_STARTS = frozenset(b"(]})cNIFSVXKJMGUTBCLdlt")


class RawPickle(Format):
    name = FormatName.PICKLE
    description = "a bare pickle stream (not a torch checkpoint; torch.load would still unpickle it)"
    suffixes = (".pkl", ".pickle")

    def sniff(self, probe: Probe) -> Sniffed | None:
        head = probe.head
        if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
            return Sniffed(self.name, probe.size)
        if head[:1] and head[0] in _STARTS and head.rstrip().endswith(b".") and probe.size <= len(head):
            return Sniffed(self.name, probe.size)  # a short protocol-0 pickle: text ending in STOP
        return None

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        window = PickleWindow(path, sniffed.size)

        def no_storage(pid: object) -> object:
            raise CorruptCheckpoint(
                f"{path}: a persistent id in a bare pickle; torch.load cannot resolve it", path=path
            )

        result = window.run(0, no_storage, "the pickle")
        ckpt = build_checkpoint(result, path)
        ckpt.format = self.name
        ckpt.size = sniffed.size
        ckpt.notes.append(
            "a bare pickle, not a torch checkpoint: torch.load unpickles it (running what it names when "
            "weights_only is off) and then fails with 'Invalid magic number; corrupt file?'"
        )
        if result.end < sniffed.size:
            ckpt.notes.append(f"{sniffed.size - result.end:,} bytes follow the pickle")
        return ckpt
