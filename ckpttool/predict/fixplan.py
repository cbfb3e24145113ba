"""Which files `ckpttool fix` moves aside so that the trainer's own pick rule lands on the newest complete
state: everything the rule ranks above it (stale "latest" files, truncated or unreadable newer files, names
that make the rule raise), found by re-running the rule without them until it picks the wanted file."""

from __future__ import annotations

from pathlib import Path

from ckpttool.predict.pick import pick
from ckpttool.runs import QUARANTINE, Candidate, Unit
from ckpttool.trainers.behaviour import Loads

MAX_ROUNDS = 10_000


def quarantine_folder(loads: Loads, folder: Path) -> Path:
    """Where moved files go: a folder no pick rule looks into or matches. Rules that only list files (globs,
    regexes, ``last*.ckpt``) ignore a sub-folder; accelerate's lists every entry of ``checkpoints/``, so for it
    the quarantine sits beside that folder."""
    search = folder / loads.pick.folder if loads.pick.folder else folder
    return (search if loads.pick.ignores_subfolders else search.parent) / QUARANTINE


def plan_quarantine(loads: Loads, folder: Path, newest: Unit, cands: list[Candidate]) -> list[Path]:
    """The files to move so each role's pick is the newest complete state's file, or a readable file with
    the same counters (an identical copy the rule prefers, such as Lightning's ``-v1`` name it ignores)."""
    best = newest.head.key[:3]
    search = folder / loads.pick.folder if loads.pick.folder else folder
    exclude: set[str] = set()
    for role in loads.order:
        targets = {c.path.name for c in newest.files if (c.role or "") == role} or {
            c.path.name for c in newest.files
        }
        targets |= {c.path.name for c in cands if c.ok and (c.role or "") == role and c.key[:3] == best}
        for _ in range(MAX_ROUNDS):
            found = pick(loads.pick, folder, role, frozenset(exclude))
            if found.path is not None and found.path.name in targets:
                break
            name = found.path.name if found.path is not None else found.offender
            if name is None or name in exclude:
                break
            exclude.add(name)
    return [search / n for n in sorted(exclude)]
