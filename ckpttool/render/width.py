"""Display width of terminal text and word wrapping by it: CJK characters take two columns, ANSI styles none.

Most report text is printable ASCII plus a few symbols of ckpttool's own (:data:`NARROW`), measured by its
length; anything else goes through ``wcwidth``, imported only for such text (it costs a fair share of a
command's start-up).
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Non-ASCII characters of ckpttool's own output that take one terminal column (wcwidth agrees: a test checks)
NARROW = frozenset("×—–‖−…·→←≤≥≈±‘’“”✓✗ΣΔ√²₂½§")


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: East Asian wide characters count two, ANSI styles none.

    Printable ASCII and the narrow symbols ckpttool's own messages use (:data:`NARROW`) are one column each;
    anything else is measured by ``wcwidth``, imported only then."""
    plain = _ANSI.sub("", text) if "\x1b" in text else text
    if plain.isprintable() and (plain.isascii() or all(ch in NARROW for ch in plain if not ch.isascii())):
        return len(plain)
    from wcwidth import wcswidth, wcwidth

    n = wcswidth(plain)
    return n if n >= 0 else sum(max(0, wcwidth(ch)) for ch in plain)


def _split_long(word: str, width: int) -> list[str]:
    """A word wider than ``width`` in pieces that fit, preferring breaks after ``/`` (paths)."""
    pieces: list[str] = []
    cur = ""
    for ch in word:
        if cur and display_width(cur + ch) > width:
            cut = cur.rfind("/") + 1
            if 0 < cut < len(cur):
                pieces.append(cur[:cut])
                cur = cur[cut:]
            else:
                pieces.append(cur)
                cur = ""
        cur += ch
    return [*pieces, cur] if cur else pieces


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` display columns, broken between words (like :mod:`textwrap`,
    which counts code points, not columns); a word wider than a line is broken, after a ``/`` where it can."""
    width = max(width, 10)
    lines: list[str] = []
    cur = ""
    for word in text.split():
        for piece in _split_long(word, width) if display_width(word) > width else [word]:
            candidate = f"{cur} {piece}" if cur else piece
            if display_width(candidate) <= width:
                cur = candidate
            else:
                lines.append(cur)
                cur = piece
    return [*lines, cur] if cur or not lines else lines
