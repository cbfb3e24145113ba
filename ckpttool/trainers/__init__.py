"""The trainer records: one YAML file per training program, loaded into :mod:`ckpttool.trainers.record` types.

``all_trainers()`` returns them in detection order; ``get_trainer(name)`` one by name. A user can add records of
their own with ``$CKPTTOOL_TRAINERS`` (folders of ``*.yaml``, ``os.pathsep``-separated); a record with a built-in
name replaces it. docs/architecture.md has a worked example.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from ckpttool.datacache import yaml_files
from ckpttool.errors import ConfigError
from ckpttool.trainers.record import (
    Counter,
    Detect,
    Fallback,
    FileKind,
    Match,
    Naming,
    Resume,
    SizeGuess,
    Trainable,
    Trainer,
    VersionGuess,
    VersionSource,
)

__all__ = [
    "Counter",
    "Detect",
    "Fallback",
    "FileKind",
    "Match",
    "Naming",
    "Resume",
    "SizeGuess",
    "Trainable",
    "Trainer",
    "VersionGuess",
    "VersionSource",
    "all_trainers",
    "get_trainer",
    "load_trainer_file",
]

DATA = "ckpttool.trainers.data"


def _convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` (from YAML) as type ``tp``: dataclasses from mappings, tuples from lists, checked scalars."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, where)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, found {type(value).__name__}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, found {type(value).__name__}")
        kt, vt = typing.get_args(tp)
        return {_convert(kt, k, where): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp in (str, int, float, bool):
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, found {value!r}")
        return value
    raise ConfigError(f"{where}: cannot read a {tp}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a record dataclass (resolving them compiles each annotation: done once)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _dataclass(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, found {type(value).__name__}")
    hints = _hints(cls)
    names = set(hints)
    unknown = sorted(set(value) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(names))}"
        )
    return cls(**{k: _convert(hints[k], v, f"{where}.{k}") for k, v in value.items()})


def parse_trainer(data: Any, where: str) -> Trainer:
    """A Trainer from a record's parsed YAML; raises ConfigError naming the key (``where.key``) at fault."""
    record = _dataclass(Trainer, data, where)
    assert isinstance(record, Trainer)
    return record


def _parse_yaml(text: str, where: str) -> Any:
    import yaml  # only when a record is parsed: the built-in ones come from the cache (ckpttool.datacache)

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None


def _read(text: str, where: str) -> Trainer:
    return parse_trainer(_parse_yaml(text, where), where)


def load_trainer_file(path: str | Path) -> Trainer:
    """A user's own trainer record (YAML). Raises ConfigError when it cannot be read or is malformed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read trainer record ({exc.strerror})") from None
    return _read(text, str(p))


@lru_cache(maxsize=1)
def _records() -> tuple[Trainer, ...]:
    found: dict[str, Trainer] = {}
    for name, data in yaml_files(DATA, _parse_yaml).items():
        record = parse_trainer(data, name)
        found[record.name] = record
    for extra in filter(None, os.environ.get("CKPTTOOL_TRAINERS", "").split(os.pathsep)):
        for path in sorted(Path(extra).glob("*.yaml")):
            record = load_trainer_file(path)
            found[record.name] = record
    return tuple(sorted(found.values(), key=lambda t: (t.detect.priority if t.detect else 1000, t.name)))


def all_trainers() -> tuple[Trainer, ...]:
    """Every record, in detection order."""
    return _records()


def get_trainer(name: str | None) -> Trainer | None:
    """The record named ``name``, or None (also for ``name`` None)."""
    if name is None:
        return None
    return next((t for t in _records() if t.name == name), None)


def reload() -> None:
    """Forget the cached records (tests that set $CKPTTOOL_TRAINERS)."""
    _records.cache_clear()
