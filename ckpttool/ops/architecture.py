"""Per network: which architecture spec it matches, the config its shapes imply, and a config check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ckpttool.configs import ConfigOptions, resolve_config
from ckpttool.interpret.profiles import Layout
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

    def to_json(self) -> dict[str, Any]:
        """An entry of ``architectures`` in ``ckpttool.inspect/1``."""
        doc = {"network": self.network, **self.fingerprint.to_json(), "config_source": self.config_source}
        doc["config_check"] = self.check.to_json() if self.check else None
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
            found.append(Architecture(label, fp))
    return found


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
