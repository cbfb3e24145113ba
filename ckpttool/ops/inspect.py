"""``inspect``: what a checkpoint holds and whether training can resume from it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ckpttool.configs import ConfigOptions
from ckpttool.errors import UsageError
from ckpttool.formats.deep import DeepReport, deep_verify
from ckpttool.interpret.optimizer import OptimizerReport
from ckpttool.interpret.pieces import Finding, Network, Piece
from ckpttool.interpret.profiles import PIECES
from ckpttool.interpret.source import Source, load
from ckpttool.model import Safety, TensorInfo
from ckpttool.ops.architecture import Architecture, check_architectures, identify
from ckpttool.progress import Progress
from ckpttool.vocab import Verdict

SCHEMA = "ckpttool.inspect/1"


@dataclass
class InspectReport:
    """What ``inspect`` found in one file: format, size, layout (profile), networks, the ten pieces, optimizer
    reports, the resume verdict, findings, missing ``--require``d pieces, architectures and, with
    ``--tensors``, every tensor."""

    path: str
    format: str
    size: int
    profile: str
    description: str
    version: str | None
    networks: list[Network]
    pieces: list[Piece]
    optimizers: list[OptimizerReport]
    verdict: Verdict
    verdict_reason: str
    findings: list[Finding]
    notes: list[str]
    required_missing: list[str] = field(default_factory=list)
    tensors: list[TensorInfo] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    architectures: list[Architecture] = field(default_factory=list)
    safety: Safety = field(default_factory=Safety)
    deep: DeepReport | None = None

    @property
    def ok(self) -> bool:
        """False when a ``--require``d piece is absent, the file has error findings, or a config disagrees."""
        return (
            not self.required_missing
            and not any(f.severity == "error" for f in self.findings)
            and all(a.check is None or a.check.ok for a in self.architectures)
        )

    def contradictions(self) -> list[str]:
        """What makes ``ok`` False although the verdict may be ``full``: each network a config contradicts
        (the keys, config vs checkpoint), the ``--require``d pieces absent, the error findings."""
        out = []
        for a in self.architectures:
            if a.check is not None and not a.check.ok:
                keys = "; ".join(
                    f"{k} config {e['config']}, checkpoint {e['checkpoint']}"
                    for k, e in a.check.key_summary.items()
                )
                out.append(f"{a.network} does not fit {a.config_source} ({keys or 'the tensors differ'})")
        if self.required_missing:
            out.append(f"required piece(s) absent: {', '.join(self.required_missing)}")
        out += [f.message for f in self.findings if f.severity == "error"]
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``ckpttool.inspect/1`` JSON document; ``tensors`` only when they were listed."""
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
            "safety": self.safety.to_json(),
            "deep": None
            if self.deep is None
            else {"bytes_read": self.deep.bytes_read, "checked": self.deep.checked},
            "ok": self.ok,
        }
        if self.tensors is not None:
            doc["tensors"] = [t.to_json() for t in self.tensors]
        return doc


def parse_require(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"optimizer,scheduler"`` (or a list) -> the piece names; UsageError for an unknown one."""
    if spec is None:
        return ()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [s.strip() for s in items if s.strip()]
    unknown = [n for n in names if n not in PIECES]
    if unknown:
        raise UsageError(
            f"unknown piece(s) {', '.join(unknown)} in --require; choose from {', '.join(PIECES)}"
        )
    return tuple(names)


@dataclass(frozen=True)
class InspectOptions:
    """``require``: pieces that must be present; ``with_tensors``: list every tensor; ``config``: the run
    config to check tensor shapes against (default: the one embedded in the file or beside it); ``deep``: read
    every tensor byte, telling ``progress`` (:mod:`ckpttool.progress`) the bytes read."""

    require: tuple[str, ...] = ()
    with_tensors: bool = False
    config: ConfigOptions = field(default_factory=ConfigOptions)
    deep: bool = False
    progress: Progress | None = field(default=None, compare=False)


def inspect_source(src: Source, options: InspectOptions | None = None) -> InspectReport:
    """Judge whether training can resume from ``src``; name its architecture and check it against a config.

    When a network matches an architecture spec, its family, version and implied config are reported, and
    checked against ``options.config`` (a file, or else the config embedded in the checkpoint or beside it).
    """
    options = options or InspectOptions()
    ckpt, layout, result = src.ckpt, src.layout, src.interp
    archs = identify(ckpt, layout)
    check_architectures(ckpt, layout, archs, options.config)
    for piece in result.pieces:
        versions = [
            f"{a.fingerprint.version_from or 'the shapes'} say{'s' if a.fingerprint.version_from else ''} "
            f"{a.network}: {a.fingerprint.family} {a.fingerprint.version}"
            for a in archs
            if a.fingerprint.version
        ]
        if piece.name == "version" and piece.status == "absent" and versions:
            piece.detail = "not stored, but " + "; ".join(versions)
    missing = [p.name for p in result.pieces if p.name in options.require and p.status == "absent"]
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
        notes=[*ckpt.notes, *layout.notes, *options.config.notes],
        required_missing=missing,
        tensors=list(ckpt.tensors) if options.with_tensors else None,
        meta=ckpt.meta,
        architectures=archs,
        safety=ckpt.safety,
        deep=deep_verify(ckpt, options.progress) if options.deep else None,
    )


def inspect_path(path: str | os.PathLike[str], options: InspectOptions | None = None) -> InspectReport:
    """:func:`inspect_source` of ``load(path)``: what the CLI's ``inspect`` runs."""
    return inspect_source(load(path), options)


def inspect_checkpoint(
    path: str | os.PathLike[str],
    *,
    require: str | Iterable[str] | None = None,
    with_tensors: bool = False,
    config: str | None = None,
    sets: Iterable[str] = (),
) -> InspectReport:
    """Read ``path`` (structure only, plus Adam step scalars) and judge whether training can resume from it.

    The convenience form of :func:`inspect_source`: ``require`` is a comma-separated string or a list,
    ``config`` a config file path and ``sets`` ``KEY=VALUE`` overrides.
    """
    options = InspectOptions(parse_require(require), with_tensors, ConfigOptions.from_cli(config, sets))
    return inspect_path(path, options)
