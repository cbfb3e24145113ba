"""Attribute shape changes to config changes: through architecture specs when the family is known,
otherwise by matching old/new dimension values against changed config values (including simple multiples)."""

from __future__ import annotations

from typing import Any

from deepdiff import DeepDiff

from ckpttool.configs import embedded_config as _embedded
from ckpttool.model import Checkpoint
from ckpttool.ops.diff import Change, Explanation, NetworkDiff, explain_generic, summarise


def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(config, dict):
        for k, v in config.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = config
    return out


def embedded_config(ckpt: Checkpoint) -> dict[str, Any] | None:
    found = _embedded(ckpt)
    return found[1] if found else None


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    dd = DeepDiff(a, b, ignore_order=False, verbose_level=2)
    changes: list[Change] = []
    for kind in ("values_changed", "type_changes"):
        for path, delta in dd.get(kind, {}).items():
            changes.append(Change(_path(path), delta.get("old_value"), delta.get("new_value")))
    for path, value in dd.get("dictionary_item_added", {}).items():
        changes.append(Change(_path(path), None, value))
    for path, value in dd.get("dictionary_item_removed", {}).items():
        changes.append(Change(_path(path), value, None))
    for kind in ("iterable_item_added", "iterable_item_removed"):
        for path, value in dd.get(kind, {}).items():
            old, new = (None, value) if kind.endswith("added") else (value, None)
            changes.append(Change(_path(path), old, new))
    return sorted(changes, key=lambda c: c.what)


def _path(deepdiff_path: str) -> str:
    # root['model']['inter_channels'] -> model.inter_channels ; root['a'][0] -> a.0
    inner = deepdiff_path.removeprefix("root")
    parts = [p.strip("'\"") for p in inner.strip("[]").split("][")] if inner else []
    return ".".join(parts)


def explain(
    ca: Checkpoint,
    cb: Checkpoint,
    networks: list[NetworkDiff],
    config_a: dict[str, Any] | None,
    config_b: dict[str, Any] | None,
    notes: list[str],
) -> tuple[list[Change], list[Explanation], list[str]]:
    conf_a = config_a if config_a is not None else embedded_config(ca)
    conf_b = config_b if config_b is not None else embedded_config(cb)
    changes: list[Change] = []
    if conf_a is not None and conf_b is not None:
        changes = config_diff(conf_a, conf_b)
    numeric: dict[str, tuple[Any, Any]] = {}
    for c in changes:
        numeric[c.what] = (c.a, c.b)
        numeric.setdefault(c.what.rsplit(".", 1)[-1], (c.a, c.b))
    shapes = [s for n in networks for s in n.shape_changes]
    for s in shapes:
        s.explained_by, s.explanation = [], None
    explain_generic(shapes, {k: v for k, v in numeric.items() if "." not in k} or numeric)
    explanations = summarise(shapes, {k: v for k, v in numeric.items()})
    unexplained = [s.name for s in shapes if not s.explained_by]
    return changes, explanations, unexplained
