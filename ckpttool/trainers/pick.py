"""Which file a trainer resumes from, decided the way its own code decides: from the names in its folder.

A record's ``naming.pick`` names the rule and ``naming.pattern`` the regex the trainer applies. Only rules
implemented here are applied; the others are documentation (ckpttool then orders files by their content).

``regex-match-max`` — GPT-SoVITS s1 (``GPT_SoVITS/AR/utils/__init__.py:8-24`` ``get_newest_ckpt``): every name
of ``os.listdir(ckpt_dir)`` is tried with ``re.match(pattern, name)`` (anchored at the start only: a trailing
``.bak`` still matches, a ``-v1`` before ``.ckpt`` does not); the matching names are sorted by their groups as
integers, highest first, with Python's stable sort, so names with equal numbers keep the listing order; the
first one is taken. No match raises IndexError, which s1_train.py catches: training starts from scratch
(s1_train.py:140-147).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RULES = ("regex-match-max",)


@dataclass
class Pick:
    """The trainer's choice among ``names``: ``name`` (None: nothing matches), the numbers it was chosen by,
    ``ties`` (other names with the same numbers, in listing order: which one wins depends on the listing) and
    ``matched`` (every matching name, best first)."""

    name: str | None
    numbers: tuple[int, ...] = ()
    ties: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)


def pick(rule: str, pattern: str, names: list[str]) -> Pick | None:
    """Apply ``rule`` with ``pattern`` to ``names`` given in listing order (``os.listdir``'s, as the trainer
    sees them). None for a rule not implemented here."""
    if rule != "regex-match-max":
        return None
    regex = re.compile(pattern)
    found: list[tuple[tuple[int, ...], str]] = []
    for name in names:
        m = regex.match(name)
        if m is not None:
            found.append((tuple(int(g) for g in m.groups() if g is not None), name))
    found.sort(key=lambda item: item[0], reverse=True)  # stable: equal numbers keep the listing order
    if not found:
        return Pick(None)
    best = found[0][0]
    return Pick(found[0][1], best, [n for k, n in found[1:] if k == best], [n for _, n in found])
