"""The user's language for the lines people read (``check`` and ``fix`` outcomes and advice), through Python's
stdlib :mod:`gettext`; everything else, and every JSON document, stays English.

The language is chosen the way GNU gettext chooses it: the first of ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``
and ``LANG`` that is set (``LANGUAGE`` may list several, ``zh_CN:en``); ``C``/``POSIX`` mean English. Any
``zh_*`` (``zh_TW``, ``zh_SG``, plain ``zh``) falls back to the one catalogue there is, Simplified Chinese. On
Windows, where none of those variables is usually set, the display language of the user's account is used.
The catalogue is ``ckpttool/locale/<lang>/LC_MESSAGES/ckpttool.mo``, compiled from the ``.po`` beside it by
``scripts/compile_translations.py``; a message missing there is shown in English (``fallback=True``).

Text built in the library with interpolated values (a prediction's summary, a fix action's reason) must stay
English in JSON but be said in the user's language on the terminal. :func:`say` therefore returns a
:class:`Text`: a ``str`` whose value is the English sentence (what ``to_json`` writes, what code compares),
which also keeps its message template and values so that :func:`tr` can render it in the user's language.
Messages are marked for the catalogue by being the literal first argument of ``_``, ``ngettext``, ``say`` or
``say_n`` (``tests/test_i18n.py`` checks that every one is in the ``.po``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gettext

DOMAIN = "ckpttool"
LOCALEDIR = Path(__file__).parent / "locale"
LANGUAGE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")  # GNU gettext's order


def _windows_language() -> str | None:
    """The Windows account's display language as a POSIX name (``zh_CN``), or None."""
    if sys.platform == "win32":
        import ctypes
        import locale

        return locale.windows_locale.get(ctypes.windll.kernel32.GetUserDefaultUILanguage())
    return None


def languages() -> tuple[str, ...]:
    """The languages to look up, in order, from the environment (empty: English). Every ``zh*`` entry is
    followed by ``zh_CN``, the catalogue ckpttool ships."""
    found: list[str] = []
    for var in LANGUAGE_VARIABLES:
        value = os.environ.get(var)
        if value:
            found = value.split(":")
            break
    else:
        win = _windows_language()
        found = [win] if win else []
    out: list[str] = []
    for lang in found:
        out.append(lang)
        if lang.lower().startswith("zh") and not lang.startswith("zh_CN"):
            out.append("zh_CN")
    return tuple(out)


@lru_cache(maxsize=8)
def _catalogue(langs: tuple[str, ...]) -> gettext.NullTranslations:
    import gettext

    if not langs:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, str(LOCALEDIR), languages=list(langs), fallback=True)


def translations() -> gettext.NullTranslations:
    """The catalogue for the current environment (looked up again when the environment changes)."""
    return _catalogue(languages())


def _(message: str) -> str:
    """``message`` in the user's language (itself when the catalogue has no translation)."""
    return translations().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of ``singular``/``plural`` for ``n`` in the user's language."""
    return translations().ngettext(singular, plural, n)


@dataclass(frozen=True)
class Msg:
    """A message template (``str.format`` fields) and its values; ``plural`` and ``n`` for counted forms.
    Values that are :class:`Text` are themselves rendered in the user's language."""

    id: str
    args: Mapping[str, Any] = field(default_factory=dict)
    plural: str | None = None
    n: int = 1

    def english(self) -> str:
        """The message in English (the template chosen by ``n`` when plural)."""
        template = self.id if self.plural is None or self.n == 1 else self.plural
        return template.format(**self.args)

    def localized(self) -> str:
        """The message in the user's language."""
        template = _(self.id) if self.plural is None else ngettext(self.id, self.plural, self.n)
        return template.format(**{k: tr(v) for k, v in self.args.items()})


class Text(str):
    """An English string (its ``str`` value) that can also be said in the user's language: from one
    :class:`Msg`, or as the concatenation of ``parts``."""

    msg: Msg | None
    parts: tuple[str, ...]

    def __new__(cls, english: str, msg: Msg | None = None, parts: tuple[str, ...] = ()) -> Text:
        self = super().__new__(cls, english)
        self.msg = msg
        self.parts = parts
        return self

    def localized(self) -> str:
        """The text in the user's language."""
        if self.msg is not None:
            return self.msg.localized()
        return "".join(tr(p) for p in self.parts) if self.parts else str(self)


def say(template: str, /, **args: Any) -> Text:
    """``template.format(**args)`` as a :class:`Text` (English value, translatable rendering)."""
    msg = Msg(template, args)
    return Text(msg.english(), msg)


def say_n(singular: str, plural: str, n: int, /, **args: Any) -> Text:
    """A counted message: ``singular`` or ``plural`` by ``n`` (passed to the template as ``n`` too)."""
    msg = Msg(singular, {"n": n, **args}, plural, n)
    return Text(msg.english(), msg)


def cat(*parts: str) -> Text:
    """The concatenation of ``parts`` (plain strings stay as they are, :class:`Text` parts are translated)."""
    return Text("".join(parts), None, tuple(parts))


def join(sep: str, items: list[str] | tuple[str, ...]) -> Text:
    """``sep.join(items)`` keeping each item translatable."""
    parts: list[str] = []
    for i, item in enumerate(items):
        if i:
            parts.append(sep)
        parts.append(item)
    return cat(*parts)


def tr(text: Any) -> Any:
    """``text`` in the user's language when it is a :class:`Text`; anything else unchanged."""
    return text.localized() if isinstance(text, Text) else text


def ljust(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (CJK characters take two)."""
    import unicodedata

    cols = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - cols)


__all__ = ["Msg", "Text", "_", "cat", "join", "languages", "ljust", "ngettext", "say", "say_n", "tr"]
