"""``inspect``: what a checkpoint holds and whether training can resume from it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import UsageError
from ckpttool.formats import open_checkpoint
from ckpttool.formats.values import StorageReader
from ckpttool.interpret.optimizer import OptimizerReport
from ckpttool.interpret.pieces import Finding, Network, Piece, interpret
from ckpttool.interpret.profiles import PIECES, detect_layout
from ckpttool.model import TensorInfo
from ckpttool.ops.architecture import Architecture, check_architectures, identify

SCHEMA = "ckpttool.inspect/1"


@dataclass
class InspectReport:
    path: str
    format: str
    size: int
    profile: str
    description: str
    version: str | None
    networks: list[Network]
    pieces: list[Piece]
    optimizers: list[OptimizerReport]
    verdict: str
    verdict_reason: str
    findings: list[Finding]
    notes: list[str]
    required_missing: list[str] = field(default_factory=list)
    tensors: list[TensorInfo] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    architectures: list[Architecture] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when a ``--require``d piece is absent, the file has error findings, or a config disagrees."""
        return (
            not self.required_missing
            and not any(f.severity == "error" for f in self.findings)
            and all(a.check is None or a.check.ok for a in self.architectures)
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "path": self.path,
            "format": self.format,
            "size": self.size,
            "profile": self.profile,
            "description": self.description,
            "version": self.version,
            "networks": [n.to_json() for n in self.networks],
            "pieces": {p.name: p.to_json() for p in self.pieces},
            "optimizers": [o.to_json() for o in self.optimizers],
            "verdict": self.verdict,
            "verdict_reason": self.verdict_reason,
            "findings": [f.to_json() for f in self.findings],
            "notes": self.notes,
            "required_missing": self.required_missing,
            "architectures": [a.to_json() for a in self.architectures],
            "ok": self.ok,
        }
        if self.tensors is not None:
            doc["tensors"] = [t.to_json() for t in self.tensors]
        return doc


def parse_require(spec: str | Iterable[str] | None) -> list[str]:
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [s.strip() for s in items if s.strip()]
    unknown = [n for n in names if n not in PIECES]
    if unknown:
        raise UsageError(
            f"unknown piece(s) {', '.join(unknown)} in --require; choose from {', '.join(PIECES)}"
        )
    return names


def inspect_checkpoint(
    path: str | os.PathLike[str],
    *,
    require: str | Iterable[str] | None = None,
    with_tensors: bool = False,
    config: str | None = None,
    sets: Iterable[str] = (),
) -> InspectReport:
    """Read ``path`` (structure only, plus Adam step scalars) and judge whether training can resume from it.

    When a network matches an architecture spec, its family, version and implied config are reported, and
    checked against ``config`` (a JSON/YAML file) or else the config embedded in the checkpoint.
    """
    required = parse_require(require)
    ckpt = open_checkpoint(path)
    layout = detect_layout(ckpt)
    archs = identify(ckpt, layout)
    check_architectures(ckpt, layout, archs, config, sets)
    with StorageReader() as reader:
        result = interpret(ckpt, layout, lambda ts: [reader.scalar(t) for t in ts])
    for piece in result.pieces:
        versions = [f"{a.network}: {a.fingerprint.family} {a.fingerprint.version}" for a in archs
                    if a.fingerprint.version]  # fmt: skip
        if piece.name == "version" and piece.status == "absent" and versions:
            piece.detail = "not stored, but the shapes say " + "; ".join(versions)
    missing = [p.name for p in result.pieces if p.name in required and p.status == "absent"]
    return InspectReport(
        path=ckpt.path,
        format=ckpt.format,
        size=ckpt.size,
        profile=layout.profile,
        description=layout.description,
        version=result.version,
        networks=result.networks,
        pieces=result.pieces,
        optimizers=result.optimizers,
        verdict=result.verdict,
        verdict_reason=result.verdict_reason,
        findings=result.findings,
        notes=[*ckpt.notes, *layout.notes],
        required_missing=missing,
        tensors=list(ckpt.tensors) if with_tensors else None,
        meta=ckpt.meta,
        architectures=archs,
    )
