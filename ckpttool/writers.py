"""Writing checkpoints: atomically, never over an input, and without importing anything the source named.

A checkpoint read by ckpttool holds stand-ins: ``Stub`` objects for classes it refused to import (``utils.HParams``,
``pathlib.WindowsPath``), ``NumpyArray`` headers for RNG state, ``TensorInfo`` for tensors. Writing turns them
back into the same pickle opcodes the trainer wrote (a GLOBAL naming the original class, then its arguments and
state), so the trainer loads the output exactly as it loaded the input — and ckpttool still never imports
those classes. Tensors are materialised by the caller.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ckpttool.errors import OutputExists, UsageError
from ckpttool.model import Stub, TensorInfo
from ckpttool.readers.unpickler import NumpyArray, NumpyDType, TorchDevice, TorchDtype


class _Global:
    """A class-like marker that pickles as GLOBAL module.name, without the module being importable here."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle insists that a reduce function be callable
        raise TypeError(f"{self.module}.{self.name} is only a name here; ckpttool never calls it")


# The pure-Python pickler: its save() can be extended to write a GLOBAL for a name nothing here imports.
_PurePickler: Any = pickle._Pickler


class _ReemitPickler(_PurePickler):
    """The pure-Python pickler, taught to write stand-ins back as what they stood for."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Stub):
            state = obj.state
            listitems = iter(obj.list_items) if obj.list_items else None
            dictitems = iter(obj.items.items()) if obj.items else None
            return (_Global(type(obj).module, type(obj).name), tuple(obj.args), state, listitems, dictitems)
        return NotImplemented

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if isinstance(obj, _Global):
            if self.proto >= 4:
                self.save(obj.module)
                self.save(obj.name)
                self.write(pickle.STACK_GLOBAL)
            else:
                self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)


PICKLE_MODULE = types.SimpleNamespace(Pickler=_ReemitPickler, __name__="ckpttool_reemit_pickle")


def materialise(obj: Any, tensor_of: Callable[[TensorInfo], Any], shared: bool = False) -> Any:
    """A copy of a checkpoint tree with real tensors, dtypes, devices and numpy arrays; stubs stay stubs.

    ``shared``: tensors that viewed one storage in the file view one storage again (tied weights, views), and
    parameters come back as ``nn.Parameter`` — for writing a file equivalent to the source.
    """
    import torch

    from ckpttool.readers.directory import DcpValue

    memo: dict[int, Any] = {}
    storages: dict[tuple[str, str], Any] = {}

    def tensor(info: TensorInfo) -> Any:
        if not shared or info.storage.dcp is not None:
            return tensor_of(info)
        from ckpttool.model import DTYPE_SIZES

        if DTYPE_SIZES.get(info.dtype) != DTYPE_SIZES.get(info.storage.dtype):
            return tensor_of(info)  # a typed view of another dtype's storage: read it on its own
        key = (info.storage.file, info.storage.key)
        base = storages.get(key)
        if base is None:
            flat = TensorInfo(info.path, info.dtype, (info.storage.numel,), (1,), info.storage, 0)
            base = storages[key] = tensor_of(flat)
        t = base.as_strided(info.shape, info.stride, info.storage_offset)
        return torch.nn.Parameter(t, requires_grad=t.is_floating_point()) if info.is_parameter else t

    def walk(x: Any) -> Any:
        if id(x) in memo:
            return memo[id(x)]
        out: Any
        if isinstance(x, TensorInfo):
            out = tensor(x)
        elif isinstance(x, DcpValue):
            from ckpttool.readers.dcp_io import load_value

            out = load_value(x.folder, x.fqn)
        elif isinstance(x, dict):
            out = type(x)() if type(x) is not dict else {}
            memo[id(x)] = out
            for k, v in x.items():
                out[k] = walk(v)
            return out
        elif isinstance(x, list):
            out = []
            memo[id(x)] = out
            out.extend(walk(v) for v in x)
            return out
        elif isinstance(x, tuple):
            out = tuple(walk(v) for v in x)
        elif isinstance(x, set | frozenset):
            out = type(x)(walk(v) for v in x)
        elif isinstance(x, Stub):
            clone = type(x)()
            clone.args = tuple(walk(v) for v in x.args)
            clone.state = walk(x.state) if x.state is not None else None
            clone.items = {k: walk(v) for k, v in x.items.items()}
            clone.list_items = [walk(v) for v in x.list_items]
            out = clone
        elif isinstance(x, TorchDtype):
            out = getattr(torch, x.name)
        elif isinstance(x, TorchDevice):
            out = torch.device(x.spec)
        elif isinstance(x, NumpyArray | NumpyDType):
            out = _numpy(x)
        else:
            out = x
        memo[id(x)] = out
        return out

    return walk(obj)


def _numpy(x: Any) -> Any:
    import numpy as np

    if isinstance(x, NumpyDType):
        return np.dtype(x.code)
    if x.data is None:
        raise UsageError(
            "the checkpoint holds a numpy array larger than 1 MB, which ckpttool does not keep in memory; "
            "it cannot be written back"
        )
    return np.frombuffer(x.data, dtype=np.dtype(x.dtype)).reshape(x.shape).copy()


def check_output(out: str | os.PathLike[str], inputs: list[str], force: bool) -> Path:
    """Refuse to write over an input (even with --force) or over an existing file without --force."""
    path = Path(out)
    for src in inputs:
        if path.exists() and Path(src).exists() and path.resolve() == Path(src).resolve():
            raise UsageError(
                f"{path}: the output is an input; ckpttool never modifies its inputs, choose another -o"
            )
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give a file name with -o")
    if path.exists() and not force:
        raise OutputExists(f"{path}: already exists; pass --force to replace it")
    if not path.parent.exists():
        raise UsageError(f"{path.parent}: the output folder does not exist")
    return path


def atomic_write(path: Path, data: Callable[[BinaryIO], object], verify: Callable[[Path], None]) -> None:
    """Write to a temporary file beside ``path``, fsync, verify it, then rename over ``path``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            data(fh)
            fh.flush()
            os.fsync(fh.fileno())
        verify(tmp)
        os.replace(tmp, path)
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def torch_save_to(fh: BinaryIO, obj: Any, tag: bytes | None = None) -> None:
    """torch.save with stand-ins re-emitted; ``tag`` replaces the first two bytes (GPT-SoVITS my_save2)."""
    import torch

    start = fh.tell()
    torch.save(obj, fh, pickle_module=PICKLE_MODULE, pickle_protocol=2)
    if tag:
        end = fh.tell()
        fh.seek(start)
        fh.write(tag[:2])
        fh.seek(end)


def torch_save_bytes(obj: Any, tag: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    torch_save_to(buf, obj, tag)
    return buf.getvalue()
