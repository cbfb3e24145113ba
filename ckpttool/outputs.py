"""Where outputs land: atomically, never over an input, never over something ckpttool did not write.

Every writer (convert, migrate, pack, unpack, fix, ``save_checkpoint``) writes to a temporary file or an
exclusive staging folder beside the target, flushes and fsyncs it, verifies it, and only then renames it into
place; an existing output is replaced only with ``--force``, and only when it is an output of the same kind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ckpttool.errors import OutputExists, UsageError


def check_output(
    out: str | os.PathLike[str],
    inputs: list[str],
    force: bool,
    same_kind: Callable[[Path], bool] | None = None,
) -> Path:
    """Refuse to write over an input (even with --force), over an existing file without --force, and with
    --force over anything that is not a regular file of the kind being written (``same_kind``: e.g. a
    checkpoint), so a mistyped ``-o`` never replaces an unrelated file."""
    path = Path(out)
    for src in inputs:
        if path.exists() and Path(src).exists() and path.resolve() == Path(src).resolve():
            raise UsageError(
                f"{path}: the output is an input; ckpttool never modifies its inputs, choose another -o"
            )
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give a file name with -o")
    if path.exists() or path.is_symlink():
        if not force:
            raise OutputExists(f"{path}: already exists; pass --force to replace it")
        if path.is_symlink() or not path.is_file():
            raise OutputExists(
                f"{path}: exists and is not a regular file; refusing to replace it, choose another -o"
            )
        if same_kind is not None and not same_kind(path):
            raise OutputExists(
                f"{path}: exists and is not a file of the kind being written; refusing to replace it even with "
                "--force, choose another -o"
            )
    if not path.parent.exists():
        raise UsageError(f"{path.parent}: the output folder does not exist")
    return path


def check_output_folder(out: str | os.PathLike[str], inputs: list[str], force: bool) -> Path:
    """For outputs that are folders (DCP): refuse a target that is an input or holds one (even with --force),
    an existing target without --force, and with --force anything but a DCP folder."""
    path = Path(out)
    resolved = path.resolve()
    for src in inputs:
        source = Path(src).resolve()
        if resolved == source or resolved in source.parents:
            raise UsageError(
                f"{path}: is or holds the input {src}; ckpttool never modifies or deletes its inputs, "
                "choose another -o"
            )
    if path.exists() or path.is_symlink():
        if not force:
            raise OutputExists(f"{path}: already exists; pass --force to replace it")
        if not is_dcp_folder(path):
            raise OutputExists(
                f"{path}: exists and is not a DCP folder (a file, a link or a folder with other files); "
                "refusing to replace it even with --force: choose another -o"
            )
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: the output folder does not exist")
    return path


def atomic_write(path: Path, data: Callable[[BinaryIO], object], verify: Callable[[Path], None]) -> None:
    """Write to a temporary file beside ``path``, fsync, verify it, then rename over ``path``."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UsageError(f"{path.parent}: cannot write there ({exc.strerror}); choose another -o") from None
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


def is_dcp_folder(path: Path) -> bool:
    """A folder holding only what ``dcp.save`` writes: ``.metadata`` and ``*.distcp`` files."""
    if not path.is_dir() or path.is_symlink():
        return False
    names = [p.name for p in path.iterdir()]
    return ".metadata" in names and all(n == ".metadata" or n.endswith(".distcp") for n in names)


def replace_folder(staging: Path, target: Path, *, force: bool) -> None:
    """Move a finished staging folder to ``target``. An existing ``target`` is replaced only with ``force`` and
    only when it is a DCP folder (nothing else in it); the old one is removed after the new one is in place."""
    if target.exists() or target.is_symlink():
        if not force:
            raise OutputExists(f"{target}: already exists; pass --force to replace it")
        if not is_dcp_folder(target):
            raise OutputExists(
                f"{target}: exists and is not a DCP folder written by ckpttool (it holds other files); "
                "refusing to replace it even with --force: choose another -o"
            )
        backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, backup / target.name)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(backup / target.name, target)
            backup.rmdir()
            raise
        shutil.rmtree(backup, ignore_errors=True)
        return
    os.replace(staging, target)
