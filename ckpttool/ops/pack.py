"""``pack`` / ``unpack``: a run's resumable state as one file — the latest valid checkpoint(s), the run config and a
manifest (sizes, sha256, inspect summary) — so it can be backed up or moved and checked on arrival.

The package is a plain tar (checkpoints do not compress). Unpacking never trusts member names: only the files the
manifest lists are extracted, by plain name, into the target folder; links, absolute paths and ``..`` are refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.configs import run_config_beside
from ckpttool.errors import CorruptCheckpoint, InputNotFound, NoCheckpoint, OutputExists, UsageError
from ckpttool.formats import open_checkpoint
from ckpttool.interpret.source import require_verified
from ckpttool.ops.inspect import inspect_checkpoint
from ckpttool.outputs import atomic_write, check_output
from ckpttool.progress import Progress
from ckpttool.progress import report as report_progress
from ckpttool.runs import latest

MANIFEST = "ckpttool-manifest.json"
SCHEMA = "ckpttool.pack/1"


def _sha256(path: Path, progress: Progress | None = None) -> str:
    h = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            done += len(chunk)
            report_progress(progress, f"sha256 {path.name}", min(done, total), total)
    return h.hexdigest()


def _summary(path: Path) -> dict[str, Any]:
    r = inspect_checkpoint(path)
    return {
        "format": r.format,
        "profile": r.profile,
        "verdict": r.verdict,
        "pieces": {p.name: p.status for p in r.pieces},
    }


@dataclass
class PackReport:
    package: str
    manifest: dict[str, Any]
    written: bool = False
    verified: bool | None = None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "package": self.package,
            "written": self.written,
            "verified": self.verified,
            "problems": self.problems,
            "manifest": self.manifest,
        }


def _require_valid_pairs(files: list[Path], allow: frozenset[str]) -> None:
    """Files given with ``--file`` must be what a resume loads together: a G file with the D file of the same
    save (pairs as ``latest`` forms them). Raises NoCheckpoint (exit 1, a finding) naming the first that is
    not."""
    from ckpttool.runs import _units, read_candidate

    for unit in _units([read_candidate(p, allow) for p in files]):
        if not unit.ok:
            raise NoCheckpoint(f"nothing valid to pack: {unit.reason}", path=str(unit.head.path))


def pack_run(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    files: Iterable[str] = (),
    config: str | None = None,
    force: bool = False,
    allow: frozenset[str] = frozenset(),
    progress: Progress | None = None,
) -> PackReport:
    """Pack the latest valid checkpoint(s) of ``run_dir`` (or ``files``), the run config and a manifest into
    ``out``. Unsafe or unverified files are refused (unless their globals are in ``allow``). ``progress``
    (:mod:`ckpttool.progress`) is told the bytes hashed, file by file."""
    chosen = [Path(f) for f in files]
    root = Path(run_dir)
    if not chosen:
        res = latest(root, allow)
        if res.chosen is None:
            raise NoCheckpoint(f"{root}: no complete, readable checkpoint to pack", path=str(root))
        chosen = list(res.chosen.paths)
    folders = [p for p in chosen if p.is_dir()]
    if (
        folders
    ):  # a package holds plain files by name (unpack refuses paths): a checkpoint folder does not fit
        raise UsageError(
            f"{folders[0]}: a checkpoint folder (transformers, accelerate, sharded or DCP); pack handles checkpoint "
            "files only: archive the folder with tar or zip, after `ckpttool check` says it is ready"
        )
    for p in chosen:  # an unreadable, unsafe or unverified file is refused first (exit 3)
        require_verified(open_checkpoint(p), allow)
    if files:
        _require_valid_pairs(chosen, allow)  # then files that do not form a save (exit 1)
    cfg = Path(config) if config else run_config_beside(str(chosen[0]))
    members = [*chosen, *([cfg] if cfg else [])]
    names = [p.name for p in members]
    if len(set(names)) != len(names):
        raise UsageError("two files to pack share a name; pack them separately")
    target = check_output(out, [str(p) for p in members], force, _is_package)
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "source": str(root.resolve()),
        "files": [
            {
                "name": p.name,
                "role": "config" if p == cfg else "checkpoint",
                "size": p.stat().st_size,
                "sha256": _sha256(p, progress),
                "original_path": str(p),
                **({"inspect": _summary(p)} if p != cfg else {}),
            }
            for p in members
        ],
    }

    def write(fh: Any) -> None:
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for p in members:
                tar.add(str(p), arcname=p.name, recursive=False)

    def verify(tmp: Path) -> None:
        problems = _check_package(tmp, None)
        if problems:
            raise CorruptCheckpoint(f"{target}: the package failed its own check: {problems[0]}")

    atomic_write(target, write, verify)
    return PackReport(str(target), manifest, written=True, verified=True)


MAX_MANIFEST = 1 << 20
ROLES = ("checkpoint", "config")


def _is_package(path: Path) -> bool:
    """A previous ``pack`` output: a tar holding the manifest (what ``pack --force`` may replace)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            tar.getmember(MANIFEST)
    except (tarfile.TarError, KeyError, OSError):
        return False
    return True


def _read_manifest(tar: tarfile.TarFile, package: Path) -> dict[str, Any]:
    """The manifest, validated entry by entry: a package is untrusted input."""
    try:
        member = tar.getmember(MANIFEST)
        if not member.isfile() or member.size > MAX_MANIFEST:
            raise CorruptCheckpoint(f"{package}: {MANIFEST} is not a small regular file", path=str(package))
        fh = tar.extractfile(member)
        assert fh is not None
        manifest = json.loads(fh.read(MAX_MANIFEST))
    except (KeyError, AssertionError, ValueError, RecursionError) as exc:
        raise CorruptCheckpoint(
            f"{package}: not a ckpttool package (no readable {MANIFEST}: {type(exc).__name__})",
            path=str(package),
        ) from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("schema") != SCHEMA
        or not isinstance(manifest.get("files"), list)
    ):
        raise CorruptCheckpoint(f"{package}: {MANIFEST} is not a {SCHEMA} manifest", path=str(package))
    seen: set[str] = set()
    for entry in manifest["files"]:
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and _safe_name(entry["name"])
            and entry.get("role") in ROLES
            and type(entry.get("size")) is int
            and entry["size"] >= 0
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
        )
        if not ok:
            raise CorruptCheckpoint(
                f"{package}: {MANIFEST} has a malformed entry ({str(entry)[:80]}); refusing to unpack",
                path=str(package),
            )
        if entry["name"].lower() in seen:
            raise CorruptCheckpoint(f"{package}: {MANIFEST} lists {entry['name']!r} twice", path=str(package))
        seen.add(entry["name"].lower())
    return manifest


def _safe_name(name: str) -> bool:
    return (
        bool(name)
        and len(name) < 256
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and name not in (".", "..")
        and not name.startswith(".")
    )


def _stream(src: Any, dest: Path | None, limit: int) -> tuple[str, int]:
    """Hash (and optionally write) one member, a megabyte at a time, never more than ``limit`` bytes (the size
    the manifest declares): a member that runs on is cut off and fails the check."""
    h, size = hashlib.sha256(), 0
    with open(dest, "xb") if dest else io.BytesIO() as out:
        while size <= limit and (chunk := src.read(min(1 << 20, limit + 1 - size))):
            h.update(chunk)
            size += len(chunk)
            if dest:
                out.write(chunk)
    return h.hexdigest(), size


def _check_package(package: Path, extract_to: Path | None) -> list[str]:
    """Every member the manifest lists: present, a plain (not sparse, not linked) file whose declared size is
    the manifest's, checked before a byte is written; then its bytes against the manifest's sha256."""
    problems = []
    with tarfile.open(package, mode="r:") as tar:
        manifest = _read_manifest(tar, package)
        for entry in manifest["files"]:
            name = entry["name"]
            try:
                member = tar.getmember(name)
            except KeyError:
                problems.append(f"{name}: listed in the manifest but missing")
                continue
            if not member.isreg() or member.issparse():
                problems.append(f"{name}: not a plain regular file (links and sparse members are refused)")
                continue
            if member.size != entry["size"]:
                problems.append(
                    f"{name}: the archive says {member.size:,} bytes, the manifest {entry['size']:,}"
                )
                continue
            src = tar.extractfile(member)
            assert src is not None
            digest, size = _stream(src, (extract_to / name) if extract_to else None, entry["size"])
            if size != entry["size"] or digest != entry["sha256"]:
                problems.append(f"{name}: size or sha256 differs from the manifest (damaged in transit?)")
    return problems


def unpack_package(
    package: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    verify: bool = True,
    force: bool = False,
) -> PackReport:
    """Unpack a ``pack`` output into ``out_dir``: into an exclusive staging folder first (``mkdtemp``), every
    member checked against the manifest, then moved into place; ``--force`` replaces only regular files."""
    pkg = Path(package)
    if not pkg.is_file():
        raise InputNotFound(f"{pkg}: no such package", path=str(pkg))
    try:
        with tarfile.open(pkg, mode="r:") as tar:
            manifest = _read_manifest(tar, pkg)
    except tarfile.TarError as exc:
        raise CorruptCheckpoint(f"{pkg}: not a readable package ({exc})", path=str(pkg)) from None
    dest = Path(out_dir)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{dest}: cannot create the folder ({exc.strerror})") from None
    for entry in manifest["files"]:
        target = dest / entry["name"]
        if target.exists() or target.is_symlink():
            if not force:
                raise OutputExists(f"{target}: already exists; pass --force to replace it")
            if target.is_symlink() or not target.is_file():
                raise OutputExists(f"{target}: exists and is not a regular file; refusing to replace it")
    try:
        staging = Path(tempfile.mkdtemp(prefix=".ckpttool-unpack-", dir=dest))
    except OSError as exc:
        raise UsageError(f"{dest}: cannot write there ({exc.strerror})") from None
    written: list[str] = []
    try:
        problems = _check_package(pkg, staging)
        report = PackReport(str(pkg), manifest, problems=problems)
        if problems:
            report.verified = False
            return report
        for entry in manifest["files"]:
            os.replace(staging / entry["name"], dest / entry["name"])
            written.append(entry["name"])
        if verify:
            for entry in manifest["files"]:
                if entry.get("role") == "checkpoint":
                    now = _summary(dest / entry["name"])
                    if now != entry.get("inspect"):
                        report.problems.append(
                            f"{entry['name']}: inspect summary differs from the packed one"
                        )
        report.written = True
        report.verified = not report.problems if verify else None
        return report
    finally:
        # only what this call created: the staging folder's own entries (never followed through a link)
        for leftover in os.listdir(staging):
            (staging / leftover).unlink()
        staging.rmdir()
