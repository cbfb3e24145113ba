"""A pickle machine in pure Python that never imports or calls anything a file names, with bounded work.

It runs every opcode of protocols 0-5 the way :class:`pickle.Unpickler` does (Lib/pickle.py), except that a
global becomes an inert stand-in (:func:`ckpttool.formats.builders.stand_in`, else a
:class:`~ckpttool.model.Stub` class), and it records, for the safety verdict, every global the real unpickler
would import and whether it would call it. Why not ``pickle.Unpickler`` with a restricted ``find_class``:
its C code hashes a tuple key recursively (a tuple nested a million deep crashes the process), allocates its
memo by index (``LONG_BINPUT 2**28`` takes gigabytes), and stops at the first error, hiding what follows. Here:

- the memo is a dict; tuples and frozensets deeper than :data:`MAX_TUPLE_DEPTH` are refused before anything
  hashes them; dict keys whose hashes collide (crafted integers) are refused after :data:`MAX_COLLISIONS`;
- the operation count is capped (:data:`MAX_OPS`, ``$CKPTTOOL_MAX_PICKLE_OPS``);
- integers too large to print become :class:`~ckpttool.model.HugeInt`;
- an error stops the machine, but the rest of the stream is still scanned for globals (:func:`scan_globals`),
  so a payload placed after deliberate damage is still named.
"""

from __future__ import annotations

import codecs
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import CkptError
from ckpttool.formats.builders import (
    INERT_CLASSES,
    MAX_TUPLE_DEPTH,
    BadTensor,
    Builder,
    Refused,
    StorageType,
    TensorRef,
    hashable_depth_ok,
    stand_in,
)
from ckpttool.formats.policy import GlobalUse, Safety, classify, python_name
from ckpttool.model import UNVERIFIED, HugeInt, NumpyArray, NumpyDType, Stub, TorchDtype, stub_class

MAX_OPS = int(os.environ.get("CKPTTOOL_MAX_PICKLE_OPS", 50_000_000))
MAX_COLLISIONS = 64
MAX_INT_BYTES = 256  # a LONG longer than this is kept as a HugeInt (Python refuses to print > 4300 digits)


class _Short(Exception):
    """An inline opcode's argument runs past the end of the data (the stream was cut short): ``end`` is the offset
    it needs the data to reach."""

    def __init__(self, end: int) -> None:
        super().__init__(end)
        self.end = end


class PickleError(ValueError):
    """The stream is not a well-formed pickle (where torch.load would fail too), or breaks a limit."""

    def __init__(
        self, message: str, pos: int, *, truncated: bool = False, limit: bool = False, need: int | None = None
    ) -> None:
        super().__init__(message)
        self.pos, self.truncated, self.limit = pos, truncated, limit
        self.need = need  # for a truncated stream: the offset an opcode's declared length reaches, when known


@dataclass
class MachineResult:
    root: Any
    end: int  # offset just after STOP
    safety: Safety
    foreign: list[str]  # stubbed classes (reported as kept inert)
    opcodes: set[str] = field(default_factory=set)  # opcode names used (for weights_only predictions)
    proto: int = 0


_NAMES = {
    0x80: "PROTO", 0x95: "FRAME", 0x2E: "STOP", 0x28: "MARK", 0x71: "BINPUT", 0x72: "LONG_BINPUT",
    0x94: "MEMOIZE", 0x68: "BINGET", 0x6A: "LONG_BINGET", 0x58: "BINUNICODE", 0x8C: "SHORT_BINUNICODE",
    0x8D: "BINUNICODE8", 0x4B: "BININT1", 0x4D: "BININT2", 0x4A: "BININT", 0x8A: "LONG1", 0x8B: "LONG4",
    0x74: "TUPLE", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3", 0x29: "EMPTY_TUPLE", 0x52: "REDUCE",
    0x51: "BINPERSID", 0x50: "PERSID", 0x63: "GLOBAL", 0x93: "STACK_GLOBAL", 0x7D: "EMPTY_DICT",
    0x5D: "EMPTY_LIST", 0x8F: "EMPTY_SET", 0x75: "SETITEMS", 0x73: "SETITEM", 0x65: "APPENDS", 0x61: "APPEND",
    0x90: "ADDITEMS", 0x91: "FROZENSET", 0x62: "BUILD", 0x81: "NEWOBJ", 0x92: "NEWOBJ_EX", 0x69: "INST",
    0x6F: "OBJ", 0x4E: "NONE", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x47: "BINFLOAT", 0x46: "FLOAT",
    0x49: "INT", 0x4C: "LONG", 0x55: "SHORT_BINSTRING", 0x54: "BINSTRING", 0x53: "STRING", 0x56: "UNICODE",
    0x43: "SHORT_BINBYTES", 0x42: "BINBYTES", 0x8E: "BINBYTES8", 0x96: "BYTEARRAY8", 0x64: "DICT",
    0x6C: "LIST", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x67: "GET", 0x70: "PUT", 0x82: "EXT1",
    0x83: "EXT2", 0x84: "EXT4", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}  # fmt: skip


class Machine:
    """Runs one pickle from ``data[start:]``. ``persistent_load(pid)`` resolves persistent ids (torch storages)."""

    def __init__(
        self, data: bytes, start: int, persistent_load: Callable[[Any], Any], encoding: str = "utf-8"
    ) -> None:
        self.data, self.pos, self.persistent_load, self.encoding = data, start, persistent_load, encoding
        self.proto = 0
        self.safety = Safety()
        self.origin: dict[int, str] = {}  # id(stand-in) -> the global it stands for
        self.globals: dict[str, Any] = {}
        self.foreign: dict[str, None] = {}
        self.opcodes: set[str] = set()
        self.collisions: dict[int, dict[int, int]] = {}
        self._seen_called: set[int] = set()  # ids of globals already recorded as called

    # --- helpers ------------------------------------------------------------------------------------------
    def _fail(self, message: str, **kw: Any) -> PickleError:
        return PickleError(message, self.pos, **kw)

    def _take(self, n: int) -> bytes:
        start = self.pos
        end = start + n
        if n < 0 or end > len(self.data):
            raise self._fail("the pickle ends in the middle of an opcode", truncated=True, need=end)
        self.pos = end
        return self.data[start:end]

    def _line(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise self._fail("the pickle ends in the middle of a text opcode", truncated=True)
        line = self.data[self.pos : end]
        self.pos = end + 1
        return line

    def _global(self, module: str, name: str, op: str) -> Any:
        module, name = python_name(module, name, self.proto)
        full = f"{module}.{name}"
        obj = self.globals.get(full)
        if obj is None:
            obj = stand_in(module, name)
            if obj is None:
                obj = stub_class(module, name)
                if full not in INERT_CLASSES:
                    self.foreign[full] = None
            self.globals[full] = obj
            self.origin[id(obj)] = full
            verdict, why = classify(module, name)
            self.safety.add(GlobalUse(full, False, verdict, why))
        return obj

    def _called(self, obj: Any) -> None:
        # torch.save calls the same few globals thousands of times (_rebuild_tensor_v2, OrderedDict): a callee
        # already recorded as called needs no second look (``self.globals`` keeps every stand-in alive, so the
        # ids stay theirs)
        if id(obj) in self._seen_called:
            return
        if id(obj) in self.origin:
            self._seen_called.add(id(obj))
        target = obj if isinstance(obj, type) or id(obj) in self.origin else type(obj)
        full = self.origin.get(id(target))
        if full is None and isinstance(target, type) and issubclass(target, Stub):
            full = target.qualname
        if full is None:
            return
        for use in self.safety.uses:
            if use.name == full and not use.called:
                self.safety.add(GlobalUse(full, True, use.verdict, use.why))
                break

    def _call(self, func: Any, args: Any, op: str) -> Any:
        """What calling ``func(*args)`` gives while reading: a builder's value, or a stub recording the call."""
        if not isinstance(args, tuple):
            raise self._fail(f"{op} needs a tuple of arguments")
        self._called(func)
        if isinstance(func, Builder):
            try:
                return func(*args)
            except Refused:
                return self._odd_call(func.name, args)
        if isinstance(func, type) and issubclass(func, Stub):
            return func(*args)
        if isinstance(func, Stub | StorageType | TorchDtype):
            return stub_class("<called>", repr(func))(*args)
        raise self._fail(f"{op} calls a {type(func).__name__}, which cannot be called")

    def _tuple(self, items: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(items)

    def _key(self, container: Any, key: Any) -> None:
        """Refuse unhashable keys, keys nested too deeply to hash safely, and keys crafted so that their hashes
        collide (quadratic insertion time)."""
        if type(key) is str or type(key) is bytes:
            return  # randomised hashes
        if (type(key) is tuple or type(key) is frozenset) and not hashable_depth_ok(key):
            raise self._fail(f"a key nested more than {MAX_TUPLE_DEPTH} levels deep", limit=True)
        try:
            h = hash(key)
        except TypeError:
            raise self._fail(f"an unhashable {type(key).__name__} used as a key") from None
        counts = self.collisions.setdefault(id(container), {})
        n = counts.get(h, 0) + 1
        counts[h] = n
        if n > MAX_COLLISIONS:
            raise self._fail("dictionary keys crafted so that their hashes collide", limit=True)

    def _setitem(self, target: Any, key: Any, value: Any) -> None:
        if isinstance(target, dict):
            self._key(target, key)
            target[key] = value
        elif isinstance(target, Stub):
            self._called(target)
            self._key(target.items, key)
            target.items[key] = value
        else:
            raise self._fail(f"SETITEM on a {type(target).__name__}")

    def _append(self, target: Any, values: list[Any]) -> None:
        if isinstance(target, list):
            target.extend(values)
        elif isinstance(target, Stub):
            self._called(target)
            target.list_items.extend(values)
        else:
            raise self._fail(f"APPEND on a {type(target).__name__}")

    def _build(self, inst: Any, state: Any) -> None:
        if id(inst) in self.origin or isinstance(inst, type):
            # BUILD on a global sets attributes of a class or function: the classic way to swap a function's
            # code. Nothing is set here; the global is reported unsafe.
            full = str(self.origin.get(id(inst)) or getattr(inst, "qualname", repr(inst)))
            self.safety.add(GlobalUse(full, True, "unsafe", "BUILD sets attributes on the global itself"))
            return
        if isinstance(inst, Stub | NumpyArray | NumpyDType):
            inst.__setstate__(state)
        # tensors, containers and values: a real load would set attributes; nothing to keep here

    def _long(self, raw: bytes) -> int | HugeInt:
        if len(raw) > MAX_INT_BYTES:
            return HugeInt(len(raw) * 8, bool(raw[-1] & 0x80))
        return int.from_bytes(raw, "little", signed=True)

    def _text_int(self, line: bytes, op: str) -> Any:
        text = line.strip().rstrip(b"L")
        if text in (b"00", b"01") and op == "INT":
            return text == b"01"
        if len(text) > 600:
            return HugeInt(int(len(text) * 3.33), text.startswith(b"-"))
        try:
            return int(text)
        except ValueError:
            raise self._fail(f"{op} holds {text[:20]!r}, not an integer") from None

    def _str(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise self._fail("a string that is not valid UTF-8") from None

    def _legacy_str(self, raw: bytes) -> str | bytes:
        if self.encoding == "bytes":
            return raw
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    # --- the loop -----------------------------------------------------------------------------------------
    def run(self) -> MachineResult:
        """Run to STOP. The common opcodes (what torch.save writes) are handled inline, with the position in a
        local variable; the rest go through :meth:`_rare`."""
        data = self.data
        size = len(data)
        stack: list[Any] = []
        metastack: list[list[Any]] = []
        memo: dict[int, Any] = {}
        unpack = struct.unpack_from
        seen = bytearray(256)
        pos = self.pos
        ops = 0
        op = 0
        try:
            while True:
                op = data[pos]
                pos += 1
                seen[op] = 1
                ops += 1
                if op == 0x72:  # LONG_BINPUT
                    memo[unpack("<I", data, pos)[0]] = stack[-1]
                    pos += 4
                elif op == 0x68:  # BINGET
                    stack.append(memo[data[pos]])
                    pos += 1
                elif op == 0x71:  # BINPUT
                    memo[data[pos]] = stack[-1]
                    pos += 1
                elif op == 0x4D:  # BININT2
                    stack.append(unpack("<H", data, pos)[0])
                    pos += 2
                elif op == 0x28:  # MARK
                    metastack.append(stack)
                    stack = []
                elif op == 0x4B:  # BININT1
                    stack.append(data[pos])
                    pos += 1
                elif op == 0x74:  # TUPLE
                    items = stack
                    stack = metastack.pop()
                    stack.append(tuple(items))
                elif op == 0x52:  # REDUCE
                    args = stack.pop()
                    self.pos = pos
                    stack[-1] = self._call(stack[-1], args, "REDUCE")
                elif op == 0x29:  # EMPTY_TUPLE
                    stack.append(())
                elif op == 0x58:  # BINUNICODE
                    n = unpack("<I", data, pos)[0]
                    end = pos + 4 + n
                    if end > size:
                        raise _Short(end)
                    stack.append(data[pos + 4 : end].decode("utf-8", "surrogatepass"))
                    pos = end
                elif op == 0x86:  # TUPLE2
                    stack[-2:] = [(stack[-2], stack[-1])]
                elif op == 0x89:  # NEWFALSE
                    stack.append(False)
                elif op == 0x51:  # BINPERSID
                    self.pos = pos
                    stack[-1] = self.persistent_load(stack[-1])
                elif op == 0x6A:  # LONG_BINGET
                    stack.append(memo[unpack("<I", data, pos)[0]])
                    pos += 4
                elif op == 0x4A:  # BININT
                    stack.append(unpack("<i", data, pos)[0])
                    pos += 4
                elif op == 0x85:  # TUPLE1
                    stack[-1] = (stack[-1],)
                elif op == 0x87:  # TUPLE3
                    stack[-3:] = [(stack[-3], stack[-2], stack[-1])]
                elif op == 0x75:  # SETITEMS
                    items = stack
                    stack = metastack.pop()
                    if len(items) % 2:
                        raise self._fail("SETITEMS with an odd number of items")
                    target = stack[-1]
                    if type(target) is dict or type(target) is OrderedDict:
                        for i in range(0, len(items), 2):
                            key = items[i]
                            if type(key) is not str:
                                self._key(target, key)
                            target[key] = items[i + 1]
                    else:
                        for i in range(0, len(items), 2):
                            self._setitem(target, items[i], items[i + 1])
                elif op == 0x7D:  # EMPTY_DICT
                    stack.append({})
                elif op == 0x88:  # NEWTRUE
                    stack.append(True)
                elif op == 0x4E:  # NONE
                    stack.append(None)
                elif op == 0x94:  # MEMOIZE
                    memo[len(memo)] = stack[-1]
                elif op == 0x8C:  # SHORT_BINUNICODE
                    n = data[pos]
                    end = pos + 1 + n
                    if end > size:
                        raise _Short(end)
                    stack.append(data[pos + 1 : end].decode("utf-8", "surrogatepass"))
                    pos = end
                elif op == 0x73:  # SETITEM
                    value = stack.pop()
                    key = stack.pop()
                    self._setitem(stack[-1], key, value)
                elif op == 0x5D:  # EMPTY_LIST
                    stack.append([])
                elif op == 0x65:  # APPENDS
                    items = stack
                    stack = metastack.pop()
                    self._append(stack[-1], items)
                elif op == 0x61:  # APPEND
                    value = stack.pop()
                    self._append(stack[-1], [value])
                elif op == 0x47:  # BINFLOAT
                    stack.append(struct.unpack_from(">d", data, pos)[0])
                    pos += 8
                elif op == 0x63:  # GLOBAL
                    self.pos = pos
                    module = self._str(self._line())
                    gname = self._str(self._line())
                    stack.append(self._global(module, gname, "GLOBAL"))
                    pos = self.pos
                elif op == 0x93:  # STACK_GLOBAL
                    gname = stack.pop()
                    module = stack.pop()
                    if type(gname) is not str or type(module) is not str:
                        raise self._fail("STACK_GLOBAL needs two strings")
                    stack.append(self._global(module, gname, "STACK_GLOBAL"))
                elif op == 0x62:  # BUILD
                    state = stack.pop()
                    self._build(stack[-1], state)
                elif op == 0x81:  # NEWOBJ
                    args = stack.pop()
                    cls = stack.pop()
                    self.pos = pos
                    stack.append(self._new(cls, args, {}))
                elif op == 0x80:  # PROTO
                    self.proto = data[pos]
                    pos += 1
                    if self.proto > 5:
                        raise self._fail(f"unsupported pickle protocol {self.proto}")
                elif op == 0x95:  # FRAME
                    pos += 8
                    if pos > size:
                        raise _Short(pos)
                elif op == 0x2E:  # STOP
                    value = stack.pop()
                    self.pos = pos
                    self._check_ops(ops)
                    return MachineResult(
                        value, pos, self.safety, list(self.foreign), self._names(seen), self.proto
                    )
                else:
                    if op not in _NAMES:
                        self.pos = pos
                        raise self._fail(f"unknown opcode 0x{op:02x}")
                    self.pos = pos
                    stack = self._rare(_NAMES[op], stack, metastack, memo)
                    pos = self.pos
                if ops & 0xFFFF == 0:
                    self._check_ops(ops)
        except PickleError:
            raise
        except _Short as short:
            self.pos = pos
            raise self._fail(
                "the pickle ends in the middle of an opcode", truncated=True, need=short.end
            ) from None
        except (IndexError, KeyError, struct.error) as exc:
            self.pos = pos
            if isinstance(exc, IndexError | struct.error) and pos + 8 >= size:
                raise self._fail("the pickle ends before its STOP opcode", truncated=True) from None
            what = "no such memo entry" if isinstance(exc, KeyError) else "an empty stack or a short opcode"
            raise self._fail(f"{_NAMES.get(op, hex(op))} finds {what}") from None
        except RecursionError:
            self.pos = pos
            raise self._fail("the pickle nests too deeply", limit=True) from None

    def _check_ops(self, ops: int) -> None:
        if ops > MAX_OPS:
            raise self._fail(f"more than {MAX_OPS:,} pickle operations (raise CKPTTOOL_MAX_PICKLE_OPS if genuine)",
                             limit=True)  # fmt: skip

    @staticmethod
    def _names(seen: bytearray) -> set[str]:
        return {_NAMES[i] for i, flag in enumerate(seen) if flag and i in _NAMES}

    def _new(self, cls: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        if not isinstance(args, tuple):
            raise self._fail("NEWOBJ needs a tuple of arguments")
        self._called(cls)
        if isinstance(cls, type) and issubclass(cls, Stub):
            inst = cls.__new__(cls)
            inst.args, inst.kwargs = args, dict(kwargs)
            return inst
        if isinstance(cls, Builder):
            try:
                return cls(*args)
            except Refused:
                return self._odd_call(cls.name, args)
        raise self._fail(f"NEWOBJ of a {type(cls).__name__}")

    def _odd_call(self, full: str, args: tuple[Any, ...]) -> Any:
        """A known-safe constructor called with arguments ckpttool does not build (``bytearray(10**12)``
        allocates a terabyte): kept as a stub, and the use is no longer called safe."""
        shown = ", ".join(type(a).__name__ if not isinstance(a, int | float) else repr(a) for a in args[:3])
        self.safety.add(
            GlobalUse(full, True, UNVERIFIED, f"called with arguments ckpttool does not build ({shown})")
        )
        return stub_class(*full.rsplit(".", 1))(*args)

    def _rare(
        self, name: str, stack: list[Any], metastack: list[list[Any]], memo: dict[int, Any]
    ) -> list[Any]:
        """Opcodes torch.save never writes: protocol 0/1 text forms, bytes, sets, extensions. Returns the stack
        (a new one when the opcode pops a mark)."""
        if name in ("DICT", "LIST", "FROZENSET", "POP_MARK", "INST", "OBJ", "ADDITEMS"):
            items, outer = stack, metastack.pop()
            if name == "DICT":
                if len(items) % 2:
                    raise self._fail("DICT with an odd number of items")
                d: dict[Any, Any] = {}
                for i in range(0, len(items), 2):
                    self._setitem(d, items[i], items[i + 1])
                outer.append(d)
            elif name == "LIST":
                outer.append(list(items))
            elif name == "FROZENSET":
                probe: dict[Any, Any] = {}
                for x in items:
                    self._key(probe, x)
                outer.append(frozenset(items))
            elif name == "INST":
                module = self._str(self._line())
                cname = self._str(self._line())
                cls = self._global(module, cname, "INST")
                outer.append(self._call(cls, tuple(items), "INST"))
            elif name == "OBJ":
                if not items:
                    raise self._fail("OBJ without a class")
                outer.append(self._call(items[0], tuple(items[1:]), "OBJ"))
            elif name == "ADDITEMS":
                target = outer[-1]
                if not isinstance(target, set):
                    raise self._fail(f"ADDITEMS on a {type(target).__name__}")
                for x in items:
                    self._key(target, x)
                    target.add(x)
            return outer
        if name == "EMPTY_SET":
            stack.append(set())
        elif name == "LONG1":
            stack.append(self._long(self._take(data_byte(self))))
        elif name == "LONG4":
            (n,) = struct.unpack("<i", self._take(4))
            if n < 0:
                raise self._fail("LONG4 with a negative length")
            stack.append(self._long(self._take(n)))
        elif name == "BINFLOAT":
            stack.append(struct.unpack(">d", self._take(8))[0])
        elif name == "FLOAT":
            try:
                stack.append(float(self._line()))
            except ValueError:
                raise self._fail("FLOAT holds no number") from None
        elif name in ("INT", "LONG"):
            stack.append(self._text_int(self._line(), name))
        elif name == "BINUNICODE8":
            (n,) = struct.unpack("<Q", self._take(8))
            stack.append(self._str(self._take(n)))
        elif name == "UNICODE":
            stack.append(self._line().decode("raw-unicode-escape"))
        elif name == "SHORT_BINSTRING":
            stack.append(self._legacy_str(self._take(data_byte(self))))
        elif name == "BINSTRING":
            (n,) = struct.unpack("<i", self._take(4))
            stack.append(self._legacy_str(self._take(n)))
        elif name == "STRING":
            raw = self._line().rstrip()
            if len(raw) < 2 or raw[0] != raw[-1] or raw[0] not in b"\"'":
                raise self._fail("STRING is not quoted")
            stack.append(self._legacy_str(codecs.escape_decode(raw[1:-1])[0]))
        elif name in ("SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"):
            fmt = {"SHORT_BINBYTES": None, "BINBYTES": "<I", "BINBYTES8": "<Q", "BYTEARRAY8": "<Q"}[name]
            n = data_byte(self) if fmt is None else struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]
            raw = self._take(n)
            stack.append(bytearray(raw) if name == "BYTEARRAY8" else raw)
        elif name == "POP":
            if stack:
                stack.pop()
            else:
                return metastack.pop()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name == "GET":
            stack.append(memo[self._text_index()])
        elif name == "PUT":
            memo[self._text_index()] = stack[-1]
        elif name == "PERSID":
            stack.append(self.persistent_load(self._line().decode("ascii", "replace")))
        elif name in ("EXT1", "EXT2", "EXT4"):
            size = {"EXT1": 1, "EXT2": 2, "EXT4": 4}[name]
            code = int.from_bytes(self._take(size), "little", signed=name == "EXT4")
            # copyreg's extension registry belongs to the loading process (empty by default: a real load fails)
            stack.append(self._global("copyreg", f"extension_code_{code}", name))
        else:  # NEXT_BUFFER, READONLY_BUFFER: out-of-band buffers, which torch.load never passes
            raise self._fail(f"{name}: the pickle refers to out-of-band data")
        return stack

    def _text_index(self) -> int:
        try:
            return int(self._line())
        except ValueError:
            raise self._fail("a memo index that is not a number") from None


def data_byte(m: Machine) -> int:
    return m._take(1)[0]


def run_pickle(
    data: bytes, start: int, persistent_load: Callable[[Any], Any], encoding: str = "utf-8"
) -> MachineResult:
    """Run one pickle from ``data[start:]``. Raises :class:`PickleError` when the stream is damaged or breaks a
    limit, :class:`~ckpttool.formats.builders.BadTensor` when a tensor rebuild call has impossible metadata, or
    what ``persistent_load`` raises; each with ``.safety`` attached (the globals seen before the error and those
    a scan of the rest finds)."""
    machine = Machine(data, start, persistent_load, encoding)
    try:
        return machine.run()
    except (PickleError, BadTensor, CkptError) as exc:
        # A builder refusing a tensor's metadata (BadTensor) or the caller's persistent_load refusing a storage
        # (CkptError) stops the machine as damage does: whatever ran before (a REDUCE inside the arguments of
        # _rebuild_tensor_v2) and whatever follows still count for the verdict, as for a damaged stream.
        pos = exc.pos if isinstance(exc, PickleError) else machine.pos
        for module, name in scan_globals(data, pos):
            module, name = python_name(module, name, machine.proto)
            if f"{module}.{name}" not in {u.name for u in machine.safety.uses}:
                verdict, why = classify(module, name)
                machine.safety.add(GlobalUse(f"{module}.{name}", False, verdict, why))
        exc.safety = machine.safety  # type: ignore[union-attr]
        raise


def scan_globals(data: bytes, start: int, limit: int = 64 << 20) -> list[tuple[str, str]]:
    """Every global named in ``data[start:]`` without running it: GLOBAL/INST text, and STACK_GLOBAL whose
    strings were pushed just before (directly or from the memo). Tolerant: an unknown byte is skipped."""
    import pickletools

    found: dict[tuple[str, str], None] = {}
    strings: list[str] = []
    memo: dict[int, str] = {}
    table = {op.code.encode("latin-1")[0]: op for op in pickletools.opcodes}
    pos, end = start, min(len(data), start + limit)
    while pos < end:
        op = table.get(data[pos])
        pos += 1
        if op is None:
            continue
        arg: Any = None
        try:
            reader = op.arg
            if reader is not None:
                stream = _Cursor(data, pos)
                arg = reader.reader(stream)  # type: ignore[arg-type]
                pos = stream.pos
        except (ValueError, struct.error, EOFError, UnicodeDecodeError, OverflowError):
            continue
        if op.name in ("GLOBAL", "INST") and isinstance(arg, str) and " " in arg:
            module, name = arg.split(" ", 1)
            found[(module, name)] = None
        elif (isinstance(arg, str) and "UNICODE" in op.name) or op.name in (
            "STRING",
            "BINSTRING",
            "SHORT_BINSTRING",
        ):
            strings.append(str(arg))
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT") and strings and isinstance(arg, int):
            memo[arg] = strings[-1]
        elif op.name == "MEMOIZE" and strings:
            memo[len(memo)] = strings[-1]
        elif op.name in ("BINGET", "LONG_BINGET", "GET") and isinstance(arg, int) and arg in memo:
            strings.append(memo[arg])
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found[(strings[-2], strings[-1])] = None
    return list(found)


class _Cursor:
    """The file-like view pickletools' argument readers need."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def read(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk

    def readline(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        end = len(self.data) if end < 0 else end + 1
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk


__all__ = ["MachineResult", "OrderedDict", "PickleError", "TensorRef", "run_pickle", "scan_globals"]
