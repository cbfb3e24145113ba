"""A bare pickle stream (``pickle.dump`` output, a ``.pkl``): not a torch checkpoint, but ``torch.load`` runs it.

torch.load hands any file that is neither a zip nor a tar to ``_legacy_load``, which unpickles the first
pickle with the caller's pickle module *before* comparing it with the legacy magic number
(torch/serialization.py ``_legacy_load``). So a ``.pkl`` file runs whatever it names under
``weights_only`` off, and only then fails with "Invalid magic number; corrupt file?". ckpttool reads it with the
pickle machine for its verdict and shows what it holds.
"""

from __future__ import annotations

from ckpttool.errors import CkptError, CorruptCheckpoint
from ckpttool.formats.base import Format, Probe, Sniffed
from ckpttool.formats.legacy import PickleWindow
from ckpttool.formats.pickle_vm import PickleError, run_pickle
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
        if head[:1] and head[0] in _STARTS and _pickle_prefix(head, probe.size):
            return Sniffed(self.name, probe.size)  # a longer protocol 0/1 pickle (no PROTO opcode)
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


def _pickle_prefix(head: bytes, size: int) -> bool:
    """Whether ``head`` (the first bytes of a file of ``size`` bytes) runs on the pickle machine without error up
    to STOP or up to its end, no opcode claiming more bytes than the file has: a protocol 0/1 pickle, which
    torch.load unpickles like any other stream. Text files and other formats' magic numbers starting with an
    opcode letter fail within a few bytes (an APPEND with nothing to append to, a number that is not one, a
    string length past the end of the file)."""
    try:
        run_pickle(head, 0, lambda pid: pid)
    except PickleError as exc:
        return exc.truncated and (exc.need is None or exc.need <= size)
    except (CkptError, ValueError):  # a tensor rebuild with odd metadata: a pickle all the same
        return True
    return True
