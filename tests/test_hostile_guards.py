"""The guards behind four hostile-input fixes, in process and without torch: a payload before damage is still
refused as unsafe (inside a tensor's size argument, before a bad persistent id), a string cut off by the end of
the data is a truncated pickle, a protocol 0/1 stream longer than the sniffed head is a pickle, and walking two
self-referencing trees together ends.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Any

import hostile_inputs as H
import pytest

from ckpttool.errors import CorruptCheckpoint, UnsafeCheckpoint
from ckpttool.formats.base import Probe
from ckpttool.formats.pickle_vm import PickleError, run_pickle
from ckpttool.formats.pickled import read_pickle
from ckpttool.formats.raw_pickle import RawPickle
from ckpttool.model import MISSING, zip_trees


def storage(pid: Any) -> Any:
    return pid


def test_payload_inside_a_tensor_size_is_unsafe_not_damage() -> None:
    # pickle runs posix.system while it builds the size tuple, before _rebuild_tensor_v2 sees a non-integer
    pid = H.tup(H.s("storage"), H.g("torch", "FloatStorage"), H.s("0"), H.s("cpu"), H.i(2)) + b"Q"
    args = (
        pid + H.i(0) + H.tup(H.call(H.g("posix", "system"), H.s("true"))) + H.ints((1,)) + b"\x89" + H.odict()
    )
    data = H.pickle_of(H.pdict({"w": H.g("torch._utils", "_rebuild_tensor_v2") + b"(" + args + b"tR"}))
    with pytest.raises(UnsafeCheckpoint) as err:
        read_pickle(data, "x.pth", storage)
    assert "posix.system" in err.value.globals
    # the same size argument without a payload is damage, as before
    clean = data.replace(H.call(H.g("posix", "system"), H.s("true")), H.s("true"))
    with pytest.raises(CorruptCheckpoint, match="size is not a short tuple"):
        read_pickle(clean, "x.pth", storage)


def test_payload_before_a_refused_persistent_id_is_unsafe() -> None:
    def refuse(pid: Any) -> Any:
        raise CorruptCheckpoint("x.pth: unexpected persistent id in data.pkl", path="x.pth")

    body = b"](" + H.call(H.g("posix", "system"), H.s("true")) + H.s("bogus") + b"Qe"
    with pytest.raises(UnsafeCheckpoint):
        read_pickle(H.pickle_of(body), "x.pth", refuse)
    with pytest.raises(CorruptCheckpoint, match="persistent id"):
        read_pickle(H.pickle_of(b"](" + H.s("bogus") + b"Qe"), "x.pth", refuse)
    # a global named after the failing opcode still counts (the rest of the stream is scanned)
    after = b"](" + H.s("bogus") + b"Q" + H.call(H.g("posix", "system"), H.s("true")) + b"e"
    with pytest.raises(UnsafeCheckpoint):
        read_pickle(H.pickle_of(after), "x.pth", refuse)


@pytest.mark.parametrize("opcode", [b"X" + struct.pack("<I", 1000), b"\x8c\xff"])
def test_string_running_past_the_data_is_truncation(opcode: bytes) -> None:
    with pytest.raises(PickleError) as err:
        run_pickle(b"\x80\x02}" + opcode + b"abc", 0, storage)
    assert err.value.truncated and err.value.need is not None and err.value.need > 3 + len(opcode) + 3


@pytest.mark.parametrize("protocol", [0, 1])
def test_long_protocol_0_and_1_pickles_are_pickles(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"pad": "x" * 1000, "n": list(range(50))}, protocol=protocol))
    head = path.read_bytes()[:512]
    assert RawPickle().sniff(Probe(str(path), os.path.getsize(path), head)) is not None


@pytest.mark.parametrize(
    "text",
    [
        b"(a note about this run, not a pickle)\n" * 20,
        b"I am a text file that happens to start with an opcode letter\n" * 20,
        b"lr: 0.001\nbatch_size: 8\n" * 40,
        b"]" + b"\x00" * 600,
        b"TOYCKPT1" + b"\x00" * 600,  # BINSTRING whose length runs past the end of the file
    ],
)
def test_text_starting_with_an_opcode_letter_is_not_a_pickle(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "notes.pkl"
    path.write_bytes(text)
    assert RawPickle().sniff(Probe(str(path), len(text), text[:512])) is None


def test_zip_trees_ends_on_self_referencing_containers() -> None:
    def tree(value: int) -> dict[str, Any]:
        loop: list[Any] = [value]
        loop.append(loop)
        node: dict[str, Any] = {"v": value}
        node["self"] = node
        return {"list": loop, "dict": node}

    assert list(zip_trees(tree(1), tree(1))) == [("list.0", 1, 1), ("dict.v", 1, 1)]
    assert ("list.0", 1, 2) in list(zip_trees(tree(1), tree(2)))


def test_zip_trees_still_walks_a_subtree_shared_by_two_paths() -> None:
    shared = {"w": 1}
    other = {"w": 2}
    pairs = list(zip_trees({"a": shared, "b": shared}, {"a": shared, "b": other}))
    assert pairs == [("a.w", 1, 1), ("b.w", 1, 2)]
    assert list(zip_trees({"a": 1}, {"b": 1})) == [("a", 1, MISSING), ("b", MISSING, 1)]
