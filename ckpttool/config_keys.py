"""Checking ``--set KEY=VALUE`` against the keys a config can hold, and decoding config files.

A typo in ``--set`` must not pass silently: ``model.inter_chanels=256`` would otherwise add a key nothing reads
and every check would still agree. The known keys are the config paths of every architecture spec's variables
(``model.inter_channels``, ``data.filter_length`` ...) plus every leaf key of the ``--config`` file given; the
expected type of a value comes from the spec variable's default (and its ``choices``) or, for a key only the
file has, from the file's own value.

Config files are read as UTF-8 first, then UTF-8 with a byte-order mark (Windows Notepad) and GBK: GPT-SoVITS
opens its config with the locale's encoding, GBK on a Chinese-locale Windows, both when it writes the run's
config.json and when it reads a config back (GPT_SoVITS/utils.py:214, 231, 275: ``open(path, "r")`` with no
encoding), so a config edited there is GBK.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import ConfigError


def decode_config(data: bytes, where: str) -> tuple[str, str]:
    """(text, encoding name) of a config file's bytes: UTF-8 (with its byte-order mark, if any), then GBK.
    Raises ConfigError (one line, exit 2) when neither decodes it."""
    try:
        if data.startswith(b"\xef\xbb\xbf"):
            return data.decode("utf-8-sig"), "UTF-8 with BOM"
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        return data.decode("gbk"), "GBK"
    except UnicodeDecodeError:
        pass
    bad = data[utf8_error.start : utf8_error.start + 1].hex()
    raise ConfigError(
        f"{where}: cannot read the config as UTF-8, UTF-8 with BOM or GBK (byte 0x{bad} at offset "
        f"{utf8_error.start}); save it as UTF-8"
    )


@dataclass(frozen=True)
class KeyType:
    """What values a config key takes: Python types (from spec defaults or the config file) and, when every
    spec that reads the key lists them, the allowed values."""

    types: frozenset[str]
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        """``an integer``, ``one of v1, v2``, ``a list`` ..."""
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        words = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                 "list": "a list like [3, 7, 11]", "dict": "a mapping"}  # fmt: skip
        return " or ".join(words.get(t, t) for t in sorted(self.types))


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def _leaf_keys(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    from ckpttool.model.tree import iter_nodes

    out: dict[str, Any] = {}
    for path, node in iter_nodes(dict(config), descend=lambda obj, _path: isinstance(obj, dict)):
        if path and not isinstance(node, dict):
            out[prefix + ".".join(str(p) for p in path)] = node
    return out


def known_keys(config: Mapping[str, Any] | None = None) -> dict[str, KeyType]:
    """Every dotted config key a ``--set`` may name, with its value type: the config paths of every architecture
    spec (built-in and ``$CKPTTOOL_SPECS``) and the leaf keys of ``config`` (a config file already read)."""
    from ckpttool.specs.model import builtin_specs

    types: dict[str, set[str]] = {}
    choices: dict[str, list[Any]] = {}
    unrestricted: set[str] = set()
    for spec in builtin_specs().values():
        for var in spec.variables.values():
            if not var.config:
                continue
            types.setdefault(var.config, set()).add(_type_name(var.default))
            if var.choices:
                choices.setdefault(var.config, [])
                choices[var.config] += [c for c in var.choices if c not in choices[var.config]]
            else:
                unrestricted.add(var.config)
    for key, value in _leaf_keys(config or {}).items():
        if value is not None:
            types.setdefault(key, set()).add(_type_name(value))
        unrestricted.add(key)  # the file's own value is allowed whatever a spec lists
    return {
        k: KeyType(frozenset(t), tuple(choices.get(k, ())) if k not in unrestricted else ())
        for k, t in types.items()
    }


@dataclass
class CheckedSets:
    """``--set`` assignments after checking: (dotted key, value) pairs and notes for the report (a bare key
    read as the one full key it names)."""

    items: list[tuple[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fits(value: Any, kt: KeyType) -> bool:
    if kt.choices:
        return value in kt.choices or str(value) in {str(c) for c in kt.choices}
    got = _type_name(value)
    if got in kt.types or not kt.types:
        return True
    return got == "int" and "float" in kt.types  # 256 is a fine learning-rate-style number


def _coerce(value: Any, raw: str, kt: KeyType) -> Any:
    """A YAML scalar where the key holds strings (``resblock=1`` is the string "1", as s2.json has it)."""
    if kt.types == {"str"} and not isinstance(value, str) and not isinstance(value, list | dict):
        return raw.strip()
    if kt.choices and not isinstance(value, str) and str(value) in {str(c) for c in kt.choices}:
        return next(c for c in kt.choices if str(c) == str(value))
    return value


def check_assignments(
    items: Iterable[tuple[str, Any, str]], config: Mapping[str, Any] | None = None
) -> CheckedSets:
    """Check parsed ``--set`` assignments (key, value, raw text) against :func:`known_keys`.

    A known key's value must have its type (``--set model.inter_channels=abc`` is refused, naming the type); a
    bare key (``inter_channels``) that is the last part of exactly one known key is read as that key, with a
    note; anything else is refused with the closest known keys (difflib). Raises ConfigError (exit 2).
    """
    known = known_keys(config)
    out = CheckedSets()
    for key, value, raw in items:
        shown = f"--set {key}={raw}"
        if key not in known:
            parts = key.split(".")
            bare = [k for k in known if k.rsplit(".", 1)[-1] == key] if len(parts) == 1 else []
            if len(bare) == 1:
                out.notes.append(f"{shown}: read as {bare[0]}={raw} (the only config key named {key})")
                key = bare[0]
            elif len(bare) > 1:
                raise ConfigError(f"{shown}: {key} is ambiguous; say which: {', '.join(sorted(bare))}")
            else:
                raise ConfigError(f"{shown}: unknown config key {key!r}{_did_you_mean(key, known)}")
        kt = known[key]
        value = _coerce(value, raw, kt)
        if not _fits(value, kt):
            raise ConfigError(f"{shown}: {key} takes {kt.describe()}, not {value!r} ({_type_name(value)})")
        out.items.append((key, value))
    return out


def _did_you_mean(key: str, known: Mapping[str, KeyType]) -> str:
    """``; did you mean model.inter_channels? (also close: ...)`` from difflib over the full keys, then over
    their last parts; else what the known keys look like."""
    parts = key.split(".")
    lead = " (an empty part between dots)" if any(not p for p in parts) else ""
    cleaned = ".".join(p for p in parts if p)
    close = difflib.get_close_matches(cleaned, list(known), n=3, cutoff=0.8) if cleaned else []
    if not close and cleaned:
        by_last: dict[str, list[str]] = {}
        for k in known:
            by_last.setdefault(k.rsplit(".", 1)[-1], []).append(k)
        last = cleaned.rsplit(".", 1)[-1]
        close = [
            k for m in difflib.get_close_matches(last, list(by_last), n=3, cutoff=0.8) for k in by_last[m]
        ]
    if close:
        also = f" (also close: {', '.join(close[1:3])})" if len(close) > 1 else ""
        return f"{lead}; did you mean {close[0]}?{also}"
    examples = ", ".join(sorted(k for k in known if k.startswith("model."))[:5])
    return f"{lead}; no known key is close (known keys look like {examples}, ...)"
