"""Compile ckpttool's message catalogues (``ckpttool/locale/*/LC_MESSAGES/ckpttool.po``) into the ``.mo`` files
Python's :mod:`gettext` reads, and check that the catalogues cover the code.

    python scripts/compile_translations.py           # rewrite every .mo from its .po
    python scripts/compile_translations.py --check   # exit 1 if a .mo is stale or a message is missing

The ``.mo`` files are committed (users install no gettext tools), so this script is what makes them
reproducible; ``tests/test_i18n.py`` compares the committed files with its output. It writes the GNU MO format
itself (the gettext manual, "The Format of GNU MO Files": a little-endian header with magic ``0x950412de``,
two tables of (length, offset) pairs for the sorted originals and their translations, NUL-terminated UTF-8
strings, no hash table, which Python's reader does not use) instead of depending on GNU ``msgfmt`` or babel:
the format is small and fixed, and a new dev dependency for 60 lines is not worth it. Only the ``.po``
subset ckpttool's catalogues use is read: ``msgid``, ``msgid_plural``, ``msgstr``, ``msgstr[N]``, continued
strings and comments; an entry flagged ``fuzzy`` or without a translation is left out (the English shows).

Messages are found in the code by what marks them: the literal first argument of a call to ``_``,
``ngettext``, ``say`` or ``say_n`` (the latter two with their plural as second argument) in a module that imports
from ``ckpttool.i18n``.
"""

from __future__ import annotations

import argparse
import ast
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ckpttool"
LOCALE = PACKAGE / "locale"
MARKERS = {"_": False, "say": False, "ngettext": True, "say_n": True}  # name -> has a plural argument
MAGIC = 0x950412DE


@dataclass
class Entry:
    """One catalogue entry: the message, its plural (or None), the translations (one per plural form) and
    whether it is flagged fuzzy."""

    msgid: str
    plural: str | None = None
    msgstr: list[str] = field(default_factory=list)
    fuzzy: bool = False


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(token: str, where: str) -> str:
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        raise ValueError(f"{where}: expected a quoted string, got {token!r}")
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), token[1:-1])


def parse_po(text: str, name: str = "<po>") -> list[Entry]:
    """The entries of a ``.po`` file, header (msgid ``""``) included. Raises ValueError on syntax it does not
    know (``msgctxt``, obsolete ``#~`` entries)."""
    entries: list[Entry] = []
    entry: Entry | None = None
    target: tuple[str, int] | None = None  # which string a continuation line extends
    fuzzy = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{name}:{number}"
        if not line:
            continue
        if line.startswith("#~") or line.startswith("msgctxt"):
            raise ValueError(f"{where}: unsupported .po syntax: {line[:20]}")
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            continue
        keyword, _, rest = line.partition(" ")
        if line.startswith('"'):
            if entry is None or target is None:
                raise ValueError(f"{where}: a string outside an entry")
            value = _unquote(line, where)
            if target[0] == "msgid":
                entry.msgid += value
            elif target[0] == "msgid_plural":
                entry.plural = (entry.plural or "") + value
            else:
                entry.msgstr[target[1]] += value
            continue
        if keyword == "msgid":
            entry = Entry(_unquote(rest.strip(), where), fuzzy=fuzzy)
            entries.append(entry)
            fuzzy, target = False, ("msgid", 0)
        elif entry is None:
            raise ValueError(f"{where}: {keyword} before msgid")
        elif keyword == "msgid_plural":
            entry.plural, target = _unquote(rest.strip(), where), ("msgid_plural", 0)
        elif keyword == "msgstr" or keyword.startswith("msgstr["):
            index = int(keyword[7:-1]) if keyword != "msgstr" else 0
            if index != len(entry.msgstr):
                raise ValueError(f"{where}: {keyword} out of order")
            entry.msgstr.append(_unquote(rest.strip(), where))
            target = ("msgstr", index)
        else:
            raise ValueError(f"{where}: unknown keyword {keyword!r}")
    return entries


def compile_mo(entries: list[Entry]) -> bytes:
    """The GNU ``.mo`` bytes of ``entries`` (untranslated and fuzzy entries left out, the header kept),
    originals sorted by their UTF-8 bytes so the output depends only on the content."""
    pairs: dict[bytes, bytes] = {}
    for e in entries:
        if (e.fuzzy and e.msgid) or not any(e.msgstr):
            continue
        key = e.msgid if e.plural is None else f"{e.msgid}\0{e.plural}"
        pairs[key.encode("utf-8")] = "\0".join(e.msgstr).encode("utf-8")
    keys = sorted(pairs)
    header_size = 7 * 4
    originals_at = header_size
    translations_at = originals_at + 8 * len(keys)
    strings_at = translations_at + 8 * len(keys)
    table_o, table_t, blob = [], [], b""
    for k in keys:
        table_o.append((len(k), strings_at + len(blob)))
        blob += k + b"\0"
    for k in keys:
        v = pairs[k]
        table_t.append((len(v), strings_at + len(blob)))
        blob += v + b"\0"
    out = struct.pack("<7I", MAGIC, 0, len(keys), originals_at, translations_at, 0, strings_at)
    out += b"".join(struct.pack("<2I", n, at) for n, at in table_o)
    out += b"".join(struct.pack("<2I", n, at) for n, at in table_t)
    return out + blob


def catalogues() -> list[Path]:
    """Every ``.po`` under ``ckpttool/locale``."""
    return sorted(LOCALE.glob("*/LC_MESSAGES/*.po"))


def extract(package: Path = PACKAGE) -> tuple[dict[str, str | None], list[str]]:
    """The messages the code marks (msgid -> plural or None), and the places that call a marker with
    something other than a literal string (which no catalogue can cover)."""
    found: dict[str, str | None] = {}
    problems: list[str] = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "i18n.py" and path.parent == package:
            continue
        source = path.read_text(encoding="utf-8")
        if "ckpttool.i18n import" not in source:
            continue
        for node in ast.walk(ast.parse(source, str(path))):
            if not (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in MARKERS
            ):
                continue
            where = f"{path.relative_to(package.parent)}:{node.lineno}"
            plural = MARKERS[node.func.id]
            wanted = 2 if plural else 1
            literal = [
                a.value
                for a in node.args[:wanted]
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
            if len(literal) != wanted:
                problems.append(f"{where}: {node.func.id}() needs literal strings")
                continue
            found[literal[0]] = literal[1] if plural else None
    return found, problems


def fields(template: str) -> set[str]:
    """The ``str.format`` field names of a template."""
    return set(re.findall(r"(?<!\{)\{([A-Za-z_]\w*)", template))


def check_catalogue(po: Path) -> list[str]:
    """What is wrong with one catalogue against the code: messages missing or unused, untranslated or fuzzy
    entries, plural mismatches, translations whose ``{fields}`` differ from the message's."""
    entries = [e for e in parse_po(po.read_text(encoding="utf-8"), str(po)) if e.msgid]
    code, problems = extract()
    by_id = {e.msgid: e for e in entries}
    problems += [f"{po.name}: missing {m!r}" for m in code if m not in by_id]
    problems += [f"{po.name}: not used in the code: {m!r}" for m in by_id if m not in code]
    for e in entries:
        if e.fuzzy or not all(e.msgstr) or not e.msgstr:
            problems.append(f"{po.name}: untranslated or fuzzy: {e.msgid!r}")
        if e.msgid in code and code[e.msgid] != e.plural:
            problems.append(
                f"{po.name}: plural of {e.msgid!r} is {e.plural!r}, the code says {code[e.msgid]!r}"
            )
        wanted = fields(e.msgid) | fields(e.plural or "")
        for s in e.msgstr:
            if fields(s) != wanted:
                problems.append(f"{po.name}: {e.msgid!r}: translation has fields {fields(s)}, not {wanted}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a .mo is stale or a message missing"
    )
    args = parser.parse_args(argv)
    status = 0
    for po in catalogues():
        mo = po.with_suffix(".mo")
        data = compile_mo(parse_po(po.read_text(encoding="utf-8"), str(po)))
        problems = check_catalogue(po)
        for p in problems:
            print(p, file=sys.stderr)
        status |= bool(problems)
        if args.check:
            if not mo.is_file() or mo.read_bytes() != data:
                print(f"{mo}: stale; run python scripts/compile_translations.py", file=sys.stderr)
                status = 1
        else:
            mo.write_bytes(data)
            print(f"wrote {mo.relative_to(ROOT)} ({len(data)} bytes)")
    return status


if __name__ == "__main__":
    sys.exit(main())
