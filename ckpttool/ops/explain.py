"""Attribute shape changes to config changes.

First through the architecture specs: when both networks are the same family, each changed dimension has an
expression (``2 * inter_channels``) and the shapes of each side imply its variables, so the variables whose
implied values differ are the cause — no config file needed, and nothing is guessed. A dimension whose
expression differs between the two versions (322 vs 732 text-embedding rows) is a version difference.
Whatever remains is matched generically: old/new dims against changed config values in the same ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepdiff import DeepDiff

from ckpttool.configs import embedded_config
from ckpttool.interpret.profiles import Layout
from ckpttool.model import Checkpoint
from ckpttool.ops.architecture import resolve_version, spec_hint
from ckpttool.ops.diff_model import Change, Explanation, NetworkDiff, explain_generic, summarise
from ckpttool.specs import expr as ex
from ckpttool.specs.causes import OneChange, atom_cause, atom_value
from ckpttool.specs.match import Fingerprint, fingerprint
from ckpttool.specs.model import get_spec


@dataclass
class FamilyPair:
    """The architecture spec each side of one network matches (None: no spec)."""

    network: str
    a: Fingerprint | None
    b: Fingerprint | None

    def to_json(self) -> dict[str, Any]:
        """An entry of ``architectures`` in ``ckpttool.diff/1``."""

        def side(fp: Fingerprint | None) -> dict[str, Any] | None:
            if fp is None:
                return None
            return {"family": fp.family, "version": fp.version, "inferred_config": fp.inferred}

        return {"network": self.network, "a": side(self.a), "b": side(self.b)}


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """The differences between two configs, dotted key by dotted key (DeepDiff): changed values, added keys
    (``a`` None) and removed keys (``b`` None), sorted by key."""
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


def _shapes(ckpt: Checkpoint, path: str) -> dict[str, tuple[int, ...]]:
    from ckpttool.interpret.pieces import network_params

    return {k: tuple(v.shape) for k, v in network_params(ckpt, path).items()}


def explain_with_specs(
    ca: Checkpoint, cb: Checkpoint, la: Layout, lb: Layout, networks: list[NetworkDiff]
) -> tuple[list[FamilyPair], dict[str, tuple[Any, Any]], list[str]]:
    """Mark shape changes the specs explain; return the families, the changed variables and notes."""
    pairs: list[FamilyPair] = []
    changed: dict[str, tuple[Any, Any]] = {}
    notes: list[str] = []
    for net in networks:
        fa = fingerprint(_shapes(ca, net.path_a), hint=spec_hint(la))
        fb = fingerprint(_shapes(cb, net.path_b), hint=spec_hint(lb))
        pairs.append(FamilyPair(net.name, fa, fb))
        if fa is None or fb is None:
            continue
        resolve_version(fa, ca, la)
        resolve_version(fb, cb, lb)
        if fa.family != fb.family:
            notes.append(f"{net.name}: A is {fa.family}, B is {fb.family}: different architectures")
            continue
        if fa.version != fb.version:
            told = [
                f"{v} from {w}"
                for v, w in ((fa.version, fa.version_from), (fb.version, fb.version_from))
                if w
            ]
            why = f"; {', '.join(told)}: the two versions have the same tensors" if told else ""
            notes.append(f"{net.name}: version {fa.version} -> {fb.version} ({fa.family}{why})")
        spec = get_spec(fa.family)
        for group in (*net.only_a, *net.only_b):  # the family's own reason first (RVC vs GPT-SoVITS periods)
            group.pattern = spec.key_reason(group.prefix) or group.pattern
        ta = {t.name: t for t in spec.expand(fa.values)}
        tb = {t.name: t for t in spec.expand(fb.values)}
        one = OneChange(spec, fa.values, fb.values)
        for change in net.shape_changes:
            ea, eb = ta.get(change.name), tb.get(change.name)
            if ea is None or eb is None or len(change.shape_a) != len(change.shape_b):
                continue
            keys: list[str] = []
            reasons: list[str] = []
            for d, (da, db) in enumerate(zip(change.shape_a, change.shape_b, strict=True)):
                if da == db or d >= len(ea.exprs) or d >= len(eb.exprs):
                    continue
                xa, xb = ea.exprs[d], eb.exprs[d]
                atoms = sorted(ex.atoms(ex.parse(xa)) | ex.atoms(ex.parse(xb)))
                moved = [a for a in atoms if atom_value(fa.values, a) != atom_value(fb.values, a)]
                causes = list(
                    {c.key: c for c in (atom_cause(a, fa.values, fb.values) for a in moved)}.values()
                )
                if not causes and xa != xb:
                    causes = [c for c in one.causes(change.name, d, xb) if c.key != "version"]
                if causes:
                    keys += [c.key for c in causes]
                    changed.update({c.key: (c.old, c.new) for c in causes})
                    detail = ", ".join(c.text() for c in causes)
                    formula = f" = {xb}" if ex.atoms(ex.parse(xb)) else ""
                    reasons.append(f"dim {d}: {da} -> {db}{formula} ({detail})")
                elif fa.version != fb.version and xa != xb:
                    keys.append("version")
                    changed["version"] = (fa.version, fb.version)
                    reasons.append(f"dim {d}: {da} -> {db} ({fa.version}: {xa}, {fb.version}: {xb})")
            if keys and len(reasons) == sum(
                1 for x, y in zip(change.shape_a, change.shape_b, strict=True) if x != y
            ):
                change.explained_by = sorted(set(keys))
                change.explanation = "; ".join(reasons)
    return pairs, changed, notes


def version_changes(pairs: list[FamilyPair]) -> list[Change]:
    """A version change that no tensor shows (both sides of one family whose versions share every shape, the
    versions told by header, config or run folder): a difference of its own, ``<network> version``."""
    out = []
    for p in pairs:
        if p.a is None or p.b is None or p.a.family != p.b.family or p.a.version == p.b.version:
            continue
        if p.a.version_from or p.b.version_from:
            out.append(Change(f"{p.network} version", p.a.version, p.b.version))
    return out


def explain(
    ca: Checkpoint,
    cb: Checkpoint,
    la: Layout,
    lb: Layout,
    networks: list[NetworkDiff],
    config_a: dict[str, Any] | None,
    config_b: dict[str, Any] | None,
) -> tuple[list[Change], list[Explanation], list[str], list[FamilyPair], list[str]]:
    """Attribute the shape changes in ``networks`` (reset first) to config changes: through the specs, then
    generically against the config diff. The configs default to those embedded in the files; without both, no
    config diff. Returns (config changes, explanations, names of unexplained shape changes, families per
    network, notes)."""
    found_a, found_b = embedded_config(ca), embedded_config(cb)
    conf_a = config_a if config_a is not None else (found_a[1] if found_a else None)
    conf_b = config_b if config_b is not None else (found_b[1] if found_b else None)
    changes: list[Change] = []
    if conf_a is not None and conf_b is not None:
        changes = config_diff(conf_a, conf_b)
    shapes = [s for n in networks for s in n.shape_changes]
    for s in shapes:
        s.explained_by, s.explanation = [], None
    pairs, spec_changed, notes = explain_with_specs(ca, cb, la, lb, networks)
    numeric: dict[str, tuple[Any, Any]] = {}
    for c in changes:
        numeric[c.what] = (c.a, c.b)
        numeric.setdefault(c.what.rsplit(".", 1)[-1], (c.a, c.b))
    rest = [s for s in shapes if not s.explained_by]
    explain_generic(rest, {k: v for k, v in numeric.items() if "." not in k} or numeric)
    explanations = summarise(shapes, {**numeric, **spec_changed})
    unexplained = [s.name for s in shapes if not s.explained_by]
    return changes, explanations, unexplained, pairs, notes
