"""A file's version when no key stores it: read off its folder, strings in its config, and its tensor shapes.

GPT-SoVITS's GPT stage (s1) records no version: the WebUI writes ``logs/<exp>/logs_s1_<version>/ckpt/`` and
``GPT_weights_<version>/``, copies those names into the config it saves, and trains v1 with a 512-row phoneme
vocabulary and every later version with the same 732-row one. A trainer record lists these places
(``FileKind.version_from``, each rule with its upstream source) and which versions share one set of shapes
(``version_shapes``); this module applies them. The shapes decide the family of versions; the folder or the
config names the member (v2 vs v2Pro); a folder that contradicts the shapes is reported, not believed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ckpttool.model import Checkpoint, TensorInfo, get_path
from ckpttool.specs.match import shape_version
from ckpttool.trainers import FileKind


@dataclass
class InferredVersion:
    """The version a file's surroundings and shapes imply: ``value``, the agreeing ``evidence`` (one phrase
    each) and ``conflicts`` (places that name a version the shapes rule out)."""

    value: str
    evidence: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def _text_at(ckpt: Checkpoint, where: str) -> str | None:
    if where == "path":
        return ckpt.path.replace("\\", "/")
    try:
        value = get_path(ckpt.root, where)
    except (KeyError, IndexError, ValueError, TypeError):
        return None
    return value if isinstance(value, str) else None


def _shapes(ckpt: Checkpoint, network_path: str | None) -> dict[str, tuple[int, ...]]:
    if network_path is None:
        return {}
    try:
        sd = get_path(ckpt.root, network_path) if network_path else ckpt.root
    except (KeyError, IndexError, ValueError, TypeError):
        return {}
    if not isinstance(sd, dict):
        return {}
    return {str(k): tuple(v.shape) for k, v in sd.items() if isinstance(v, TensorInfo)}


def infer_version(
    ckpt: Checkpoint, kind: FileKind, network_path: str | None, spec_family: str | None
) -> InferredVersion | None:
    """Apply ``kind.version_from`` to ``ckpt`` (whose first network is at ``network_path``; ``spec_family`` is
    the trainer's spec-family prefix for the ``shapes`` rule). The first named version the shapes allow wins,
    else the shapes' own version; None when nothing names one. Reads no tensor bytes."""
    named: list[tuple[str, str]] = []  # (version, evidence)
    by_shapes: tuple[str, str] | None = None  # (version, evidence)
    for rule in kind.version_from:
        if rule.where == "shapes":
            found = shape_version(_shapes(ckpt, network_path), spec_family) if spec_family else None
            if found is not None and found[1] is not None and by_shapes is None:
                by_shapes = (found[1], f"tensor shapes: {found[0]} {found[1]}")
            continue
        text = _text_at(ckpt, rule.where)
        m = re.search(rule.parse, text) if text is not None and rule.parse else None
        if m is None:
            continue
        version = rule.value or m.group(1)
        what = f"folder {m.group(0).strip('/')}" if rule.where == "path" else f"{rule.where} {text!r}"
        named.append((version, what))
    allowed = set(kind.version_shapes.get(by_shapes[0], (by_shapes[0],))) if by_shapes else None
    fits = [(v, e) for v, e in named if allowed is None or v in allowed]
    if fits:
        value = fits[0][0]
        result = InferredVersion(value, [e for v, e in fits if v == value])
        result.conflicts += [f"{e} names {v}, but {fits[0][1]} names {value}" for v, e in fits if v != value]
    elif by_shapes is not None:
        value = by_shapes[0]
        result = InferredVersion(value)
    else:
        return None
    if by_shapes is not None:
        shared = kind.version_shapes.get(by_shapes[0], ())
        note = f" (shared by {', '.join(shared)})" if len(shared) > 1 else ""
        result.evidence.append(by_shapes[1] + note)
        result.conflicts += [
            f"{e} names {v}, but the {by_shapes[1]} rule it out"
            for v, e in named
            if allowed and v not in allowed
        ]
    return result
