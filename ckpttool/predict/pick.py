"""The trainers' own rules for finding the file they resume from, applied to a folder listing.

Each rule reproduces an upstream function's result, including its failures (the exception it raises), so a
prediction can say "the trainer will load G_233333333333.pth" or "the trainer will raise IndexError and fall
back". The rules and their sources are documented in :class:`ckpttool.trainers.behaviour.Pick`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ckpttool.formats.hf_trainer import CHECKPOINT_DIR
from ckpttool.trainers.behaviour import Pick


@dataclass(frozen=True)
class Picked:
    """What a rule finds in a folder for one role: the path, or the exception the trainer raises (``error``:
    ``"IndexError: list index out of range"``), and notes (ties decided by listing order, ...)."""

    path: Path | None
    error: str | None = None
    note: str | None = None
    offender: str | None = None  # the name that made the rule raise (no digits), when one did


def _listing(folder: Path, files_only: bool = True, exclude: frozenset[str] = frozenset()) -> list[str]:
    try:
        names = [n for n in os.listdir(folder) if n not in exclude]
    except OSError:
        return []
    if files_only:
        names = [n for n in names if (folder / n).is_file()]
    return names


def trainer_path(path: Path, path_from: str | None) -> str:
    """``path`` as the trainer spells it: from the folder segment ``path_from`` on (GPT-SoVITS globs
    ``logs/<exp>/logs_s2_v2/G_*.pth`` relative to its root), else the path as given, with ``/``."""
    parts = path.parts
    if path_from and path_from in parts:
        i = len(parts) - 1 - parts[::-1].index(path_from)
        return "/".join(parts[i:])
    return path.as_posix()


def digits_of_path(
    folder: Path, pattern: str, path_from: str | None, exclude: frozenset[str] = frozenset()
) -> Picked:
    """VITS-family ``utils.latest_checkpoint_path``: glob, sort by ``int`` of all digits of the whole path,
    take the last (jaywalnut310/vits utils.py:70-75; GPT_SoVITS/utils.py:112-117)."""
    names = sorted(n for n in _listing(folder, exclude=exclude) if fnmatch.fnmatchcase(n, pattern))
    if not names:
        return Picked(None, "IndexError: list index out of range (no file matches " + pattern + ")")
    keyed = []
    for n in names:
        digits = "".join(c for c in trainer_path(folder / n, path_from) if c.isdigit())
        try:
            keyed.append((int(digits), n))
        except ValueError:
            return Picked(
                None, f"ValueError: invalid literal for int() with base 10: {digits!r} (from {n})", offender=n
            )
    keyed.sort(key=lambda kn: kn[0])
    best = keyed[-1]
    tie = [n for k, n in keyed if k == best[0]]
    note = f"{', '.join(tie)} tie; the file system's listing order decides" if len(tie) > 1 else None
    return Picked(folder / best[1], None, note)


def regex_max(folder: Path, regex: str, exclude: frozenset[str] = frozenset()) -> Picked:
    """A listing filtered by ``re.match(regex, name)`` (anchored at the start only) and sorted by the integer
    groups, largest first (GPT_SoVITS/AR/utils/__init__.py:8-24 get_newest_ckpt)."""
    rx = re.compile(regex)
    found = []
    for n in sorted(_listing(folder, exclude=exclude)):
        m = rx.match(n)
        if m:
            found.append((tuple(int(g) for g in m.groups() if g is not None and g.isdigit()), n))
    if not found:
        return Picked(None, "IndexError: list index out of range (no file matches " + regex + ")")
    found.sort(key=lambda kn: kn[0])
    best = found[-1]
    tie = [n for k, n in found if k == best[0]]
    note = f"{', '.join(tie)} tie; the file system's listing order decides" if len(tie) > 1 else None
    return Picked(folder / best[1], None, note)


LAST = re.compile(r"^last(-(\d+))?")


def lightning_last(folder: Path, exclude: frozenset[str] = frozenset()) -> Picked:
    """``fit(ckpt_path="last")``: every ``*.ckpt`` whose stem matches ``^last(-(\\d+))?`` (not anchored at
    the end), newest modification time wins (Lightning 2.6 checkpoint_connector.py:181-195,
    model_checkpoint.py:867-877). None found: a warning, and training starts from scratch."""
    found = [
        folder / n
        for n in _listing(folder, exclude=exclude)
        if n.endswith(".ckpt") and LAST.match(n[: -len(".ckpt")])
    ]
    if not found:
        return Picked(None, "no last checkpoint available (Lightning warns and trains from scratch)")
    return Picked(max(found, key=lambda p: p.stat().st_mtime))


def first_digits_of_name(folder: Path, exclude: frozenset[str] = frozenset()) -> Picked:
    """accelerate ``load_state(None)``: every entry of ``<project>/checkpoints`` (files included), sorted by
    the first digit run of its name; an entry without digits raises IndexError (accelerator.py:3789-3798)."""
    names = sorted(_listing(folder, files_only=False, exclude=exclude))
    if not names:
        return Picked(None, "IndexError: list index out of range (the checkpoints folder is empty)")
    keyed = []
    for n in names:
        digits = re.findall(r"[0-9]+", n)
        if not digits:
            return Picked(None, f"IndexError: list index out of range ({n!r} has no digits)", offender=n)
        keyed.append((int(digits[0]), n))
    keyed.sort(key=lambda kn: kn[0])
    return Picked(folder / keyed[-1][1])


def hf_last_checkpoint(folder: Path, exclude: frozenset[str] = frozenset()) -> Picked:
    """transformers ``get_last_checkpoint(output_dir)``: the sub-folders named ``checkpoint-<N>``, largest N
    (trainer_utils.py:270-279); nothing is checked inside them. None: ``train(resume_from_checkpoint=True)``
    raises ValueError (trainer.py:1555-1557)."""
    found = [
        (int(m.group(1)), n)
        for n in _listing(folder, files_only=False, exclude=exclude)
        if (m := CHECKPOINT_DIR.search(n)) and (folder / n).is_dir()
    ]
    if not found:
        return Picked(None, f"ValueError: No valid checkpoint found in output directory ({folder})")
    return Picked(folder / max(found)[1])


def coqui_last(folder: Path, exclude: frozenset[str] = frozenset()) -> Picked:
    """coqui Trainer ``get_last_checkpoint``: the largest ``checkpoint_N`` and ``best_model_N`` among
    ``*.pth``; a larger ``best_model_N`` wins (coqui-ai/Trainer io.py:226-288)."""
    best: dict[str, tuple[int, str]] = {}
    names = [n for n in _listing(folder, exclude=exclude) if n.endswith(".pth")]
    for key in ("checkpoint", "best_model"):
        for n in names:
            m = re.search(key + r"_([0-9]+)", str(folder / n))
            if m and (key not in best or int(m.group(1)) > best[key][0]):
                best[key] = (int(m.group(1)), n)
    if not best:
        if any("checkpoint" in n or "best_model" in n for n in names):
            found = [folder / n for n in names if "checkpoint" in n or "best_model" in n]
            return Picked(max(found, key=lambda p: p.stat().st_ctime), note="by creation time")
        return Picked(None, f"ValueError: No models found in continue path {folder}!")
    pick = max(best.values(), key=lambda kn: kn[0])
    return Picked(folder / pick[1])


def pick(rule: Pick, folder: Path, role: str, exclude: frozenset[str] = frozenset()) -> Picked:
    """The file ``rule`` finds in ``folder`` for ``role``, as if the names in ``exclude`` were not there."""
    search = folder / rule.folder if rule.folder else folder
    if rule.rule == "digits-of-path":
        return digits_of_path(search, rule.globs.get(role, "*"), rule.path_from, exclude)
    if rule.rule == "regex-max":
        return regex_max(search, rule.regex or ".*", exclude)
    if rule.rule == "lightning-last":
        return lightning_last(search, exclude)
    if rule.rule == "first-digits-of-name":
        return first_digits_of_name(search, exclude)
    if rule.rule == "hf-last-checkpoint":
        return hf_last_checkpoint(search, exclude)
    if rule.rule == "coqui-last":
        return coqui_last(search, exclude)
    return Picked(None, "the trainer loads the path you give it")
