"""The framework-free half of the trainer callbacks: refuse a resume, check a save. Imports no torch and no
training framework; reads structure only (no tensor bytes unless ``deep``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpttool.errors import EXIT_UNREADABLE, CkptError, CorruptCheckpoint, ResumeRefused

if TYPE_CHECKING:
    from ckpttool.ops.check import CheckReport
    from ckpttool.ops.inspect import InspectReport
    from ckpttool.runs import Candidate


def refuse(path: str, problems: list[str], report: object = None) -> ResumeRefused:
    """The ResumeRefused a callback raises: one line naming the file and every problem (each said without the
    file's path again when it starts with it)."""
    shown = [p.removeprefix(f"{path}: ") for p in problems]
    return ResumeRefused(
        f"ckpttool refuses to resume from {path}: {'; '.join(shown)}",
        problems=problems,
        report=report,
        path=path,
    )


def newer_checkpoint(path: str | os.PathLike[str], allow_globals: Iterable[str] = ()) -> Candidate | None:
    """A complete, readable checkpoint beside ``path`` (same folder, as ``ckpttool latest`` scans it) whose
    content counters (epoch, step, Adam step) are ahead of ``path``'s: resuming from ``path`` would throw that
    training away. None when ``path`` is the newest (or as new: ``last.ckpt`` beside ``epoch=1-step=10.ckpt``
    of the same save)."""
    from ckpttool.runs import latest, read_candidate

    target = Path(path).resolve()
    allow = frozenset(allow_globals)
    res = latest(target.parent, allow)
    if res.chosen is None:
        return None
    mine = next((c for c in res.candidates if c.path.resolve() == target), None) or read_candidate(
        target, allow
    )
    head = res.chosen.head
    if head.path.resolve() == target or not mine.ok:
        return None
    return head if head.key[:3] > mine.key[:3] else None


def resume_gate(
    path: str | os.PathLike[str],
    *,
    allow_stale: bool = False,
    require: Iterable[str] = (),
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    allow_globals: Iterable[str] = (),
    trainer: str | None = None,
) -> CheckReport:
    """:func:`ckpttool.check` of the checkpoint a trainer is about to resume from, as a gate: returns the report
    when the resume may go ahead, raises ResumeRefused when any check fails (no model or optimizer state,
    a config that contradicts the shapes, ...), when the file cannot be read (truncated, corrupt, unsafe, names
    globals outside ``allow_globals``) or, unless ``allow_stale``, when a newer complete checkpoint lies beside
    it (:func:`newer_checkpoint`)."""
    from ckpttool.api import check

    where = os.fspath(path)
    allowed = tuple(allow_globals)
    try:
        report = check(
            [where],
            require=require,
            config=config,
            overrides=overrides,
            allow_globals=allowed,
            trainer=trainer,
        )
    except CkptError as exc:
        if exc.exit_code != EXIT_UNREADABLE:
            raise  # a usage or config error of the caller, not a problem of the file
        raise refuse(where, [exc.message]) from exc
    problems = [c.message for c in report.checks if c.status == "fail"]
    if not allow_stale and (newer := newer_checkpoint(where, allowed)) is not None:
        problems.append(
            f"it is stale: {newer.path} beside it is newer ({newer.describe()}); resume from that one, or pass "
            "allow_stale=True"
        )
    if problems:
        raise refuse(where, problems, report)
    return report


def readable_gate(path: str | os.PathLike[str], *, allow_globals: Iterable[str] = ()) -> InspectReport:
    """The gate for a load that restores weights only (validate, test, predict): the file must read (not
    truncated, corrupt, unsafe, or naming globals outside ``allow_globals``); raises ResumeRefused otherwise."""
    from ckpttool.api import inspect

    where = os.fspath(path)
    try:
        return inspect(where, allow_globals=tuple(allow_globals))
    except CkptError as exc:
        if exc.exit_code != EXIT_UNREADABLE:
            raise
        raise refuse(where, [exc.message]) from exc


def verify_saved(path: str | os.PathLike[str], *, deep: bool = False) -> InspectReport:
    """Read back a checkpoint just written: its structure parses (zip directory, pickle, every tensor's storage
    record of the right size) and, with ``deep``, every tensor byte checks (CRC-32 of torch zips). Raises
    CorruptCheckpoint naming the file when it does not read back (a full disk, a killed writer)."""
    from ckpttool.api import inspect

    where = os.fspath(path)
    try:
        return inspect(where, deep=deep)
    except CkptError as exc:
        raise CorruptCheckpoint(
            f"{where}: the checkpoint just saved does not read back ({exc.kind}: {exc.message})", path=where
        ) from exc
