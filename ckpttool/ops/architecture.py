"""Per network: which architecture spec it matches, the config its shapes imply, and a config check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.configs import (
    ConfigOptions,
    embedded_config,
    load_config_file,
    resolve_config,
    run_config_beside,
)
from ckpttool.errors import ConfigError
from ckpttool.interpret.profiles import Layout
from ckpttool.keys import GPT_SOVITS_TAG_OF
from ckpttool.model import Checkpoint, TensorInfo, get_path
from ckpttool.specs.match import ConfigCheck, Fingerprint, check_config, fingerprint
from ckpttool.specs.model import get_spec


def spec_hint(layout: Layout) -> str | None:
    """The architecture-spec family prefix the trainer that wrote the file uses (its record's spec_family)."""
    record = layout.record
    return record.spec_family if record is not None else None


MIN_MATCH = 0.5  # below this share of the file's tensors a spec "matches" by accident, not by design


@dataclass
class Architecture:
    """One network's matching architecture spec (``fingerprint``) and, when a config was found, the config it
    was checked against (``config_source``) and the result (``check``)."""

    network: str
    fingerprint: Fingerprint
    config_source: str | None = None
    check: ConfigCheck | None = None
    notes: list[str] = field(default_factory=list)  # where the version was read, and what disagrees

    def to_json(self) -> dict[str, Any]:
        """An entry of ``architectures`` in ``ckpttool.inspect/1``."""
        doc = {"network": self.network, **self.fingerprint.to_json(), "config_source": self.config_source}
        doc["config_check"] = self.check.to_json() if self.check else None
        doc["notes"] = self.notes
        return doc


def network_shapes(ckpt: Checkpoint, layout: Layout) -> dict[str, dict[str, tuple[int, ...]]]:
    """Per network label: its tensors' shapes by key (wrapper prefixes kept); non-dict networks are left out."""
    out = {}
    for label, path in layout.networks.items():
        sd = get_path(ckpt.root, path) if path else ckpt.root
        if isinstance(sd, dict):
            out[label] = {str(k): tuple(v.shape) for k, v in sd.items() if isinstance(v, TensorInfo)}
    return out


def identify(ckpt: Checkpoint, layout: Layout) -> list[Architecture]:
    """The networks of ``ckpt`` that match an architecture spec on at least MIN_MATCH of their tensors, the
    trainer's spec family preferred; config checks are not filled in (:func:`check_architectures`)."""
    hint = spec_hint(layout)
    found = []
    for label, shapes in network_shapes(ckpt, layout).items():
        fp = fingerprint(shapes, hint=hint)
        if fp is not None and fp.matched >= MIN_MATCH * max(1, len(shapes)):
            found.append(Architecture(label, fp, notes=resolve_version(fp, ckpt, layout)))
    return found


def _config_value(config: Any, path: str) -> Any:
    node = config
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def version_signals(spec_family: str, ckpt: Checkpoint, layout: Layout) -> list[tuple[str, str]]:
    """(version, where it is written) from everything outside the shapes, most reliable first: the GPT-SoVITS
    header tag (what inference reads), the run folder (named from the config when the trainer saved the
    file: its record's ``naming.folder``), the config inside the file, the run config beside it. Only values
    the spec's ``version`` variable allows are kept."""
    spec = get_spec(spec_family)
    var = spec.variables.get("version")
    if var is None:
        return []
    out: list[tuple[str, str]] = []
    if layout.version and layout.version.startswith("tag:"):
        tag = GPT_SOVITS_TAG_OF.get(layout.version[4:], b"").decode() or layout.version[4:]
        out.append((layout.version[4:], f"the file header (GPT-SoVITS tag {tag})"))
    record = layout.record
    folder = Path(ckpt.path).parent.name
    if record is not None and record.naming.folder:
        m = re.match(record.naming.folder, folder)
        if m and m.groupdict().get("version"):
            out.append((m.group("version"), f"the run folder {folder}"))
    if var.config:
        found = embedded_config(ckpt)
        if found is not None and _config_value(found[1], var.config) is not None:
            out.append((str(_config_value(found[1], var.config)), f"{found[0]}.{var.config} in the file"))
        beside = run_config_beside(ckpt.path) if found is None else None
        if beside is not None:
            try:
                value = _config_value(load_config_file(beside), var.config)
            except ConfigError:
                value = None
            if value is not None:
                out.append((str(value), f"{beside.name} beside the run ({var.config})"))
    return [(v, where) for v, where in out if not var.choices or v in var.choices]


def resolve_version(fp: Fingerprint, ckpt: Checkpoint, layout: Layout) -> list[str]:
    """Fill in the version of a family whose versions build identical tensors (``detect.version_in_shapes:
    false``, GPT-SoVITS v3/v4) from :func:`version_signals`; returns notes on disagreeing signals and on a run
    folder whose LoRA rank is not the adapters'. Leaves other fingerprints alone."""
    notes: list[str] = []
    spec = get_spec(fp.family)
    if fp.version is None and spec.detect.get("version_in_shapes") is False:
        signals = version_signals(fp.family, ckpt, layout)
        if signals:
            (version, where), rest = signals[0], signals[1:]
            fp.version, fp.version_from = version, where
            notes += [f"version: {where} says {version}, but {w} says {v}" for v, w in rest if v != version]
        else:
            notes.append(
                "version: v3 and v4 have the same tensors and nothing else in or beside the file names it"
            )
    record = layout.record
    if fp.peft is not None and fp.peft.rank is not None and record is not None and record.naming.folder:
        folder = Path(ckpt.path).parent.name
        m = re.match(record.naming.folder, folder)
        rank = m.groupdict().get("rank") if m else None
        if rank is not None and int(rank) != fp.peft.rank:
            fp.lora_problems.append(
                f"the run folder {folder} is for rank {rank}, but the adapters are rank {fp.peft.rank}: the trainer "
                f"of rank {rank} resumes from this folder and cannot load them"
            )
    return notes


def check_architectures(
    ckpt: Checkpoint, layout: Layout, archs: list[Architecture], options: ConfigOptions
) -> None:
    """Fill in each architecture's config check, from --config/--set or the config embedded in the file."""
    resolved = resolve_config(ckpt, options)
    if resolved is None:
        return
    where, config = resolved
    shapes = network_shapes(ckpt, layout)
    for arch in archs:
        arch.config_source = where
        arch.check = check_config(
            get_spec(arch.fingerprint.family), shapes[arch.network], config, arch.fingerprint
        )
