"""From a state dict's names and shapes to a family, a version and the config values that produced it.

Why solve rather than look up: users change widths (``inter_channels``, ``gin_channels``) and layer counts, and
a file's shapes are the only reliable record of what it was trained with — configs get edited after the fact.
Each expected dimension is an expression over config variables; any expression with a single unknown is
inverted numerically, and repeating that until nothing new is learned solves chains like
``hidden_channels // n_heads``. Every solved value is then checked against every dimension.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import ConfigError
from ckpttool.keys import MODULE_PREFIXES, WRAPPER_PREFIXES, wrapper_prefix
from ckpttool.specs import expr as ex
from ckpttool.specs.causes import OneChange, atom_value
from ckpttool.specs.model import Spec, TensorSpec, builtin_specs
from ckpttool.specs.peft import PeftView, peft_view

Shapes = Mapping[str, tuple[int, ...]]


@dataclass
class Fingerprint:
    """A network's best-fitting architecture spec: family, version, how many of the spec's tensors are present
    (``matched`` of ``expected``), the names missing or unexpected, and the variable values its shapes imply.
    """

    family: str
    title: str
    role: str
    version: str | None
    matched: int
    expected: int
    missing: list[str]
    unexpected: list[str]
    partial: list[str]
    values: dict[str, Any]  # every variable: solved where the shapes say, structure, defaults otherwise
    inferred: dict[str, Any]  # config variables the shapes determine (what the user wants to see)
    constants: dict[
        str, tuple[Any, Any]
    ]  # architecture constants that differ from the real model: (here, real)
    conflicts: list[str]
    prefix: str = ""  # wrapper prefix stripped from the names (module., _orig_mod.)
    also: list[str] = field(default_factory=list)  # other families that fit as well
    peft: PeftView | None = None  # a PEFT-wrapped state dict, read under the plain names (specs/peft.py)
    lora_problems: list[str] = field(default_factory=list)  # adapters that cannot load (rank, widths)
    # where the version was read when the shapes cannot tell (header, run folder, config); None: the shapes
    version_from: str | None = None

    @property
    def complete(self) -> bool:
        """Every expected tensor present and nothing else."""
        return not self.missing and not self.unexpected

    def to_json(self) -> dict[str, Any]:
        """The fingerprint part of an ``architectures`` entry in ``ckpttool.inspect/1`` (name lists as
        counts)."""
        return {
            "family": self.family,
            "title": self.title,
            "role": self.role,
            "version": self.version,
            "matched": self.matched,
            "expected": self.expected,
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "partial": self.partial,
            "inferred_config": self.inferred,
            "nonstandard_constants": {k: {"here": a, "real": b} for k, (a, b) in self.constants.items()},
            "conflicts": self.conflicts,
            "also_matches": self.also,
            "version_from": self.version_from or ("shapes" if self.version else None),
            "lora": self.lora_json(),
        }

    def lora_json(self) -> dict[str, Any] | None:
        """The ``lora`` field of an ``architectures`` entry: PEFT-wrapped modules, adapted layers, rank, whether
        the base weights are in the file, and problems; None for a plain state dict."""
        if self.peft is None:
            return None
        base = [a for a in self.peft.adapters if f"{a.module}.weight" in self.peft.plain]
        return {
            "wrapped": self.peft.wrapped,
            "adapters": len(self.peft.adapters),
            "rank": self.peft.rank,
            "ranks": self.peft.ranks,
            "base_layers": len(base),
            "problems": self.lora_problems,
        }


class _Probe:
    """The helper functions detection rules may call: has, dim, count, any_key, lora_rank; plus, once a spec is
    set, the values of its ``detect.probes`` (named rules read off the shapes once, for the other rules to use).

    For a PEFT file the shapes are the plain names' (specs/peft.py), plus, for each adapted layer whose base is
    absent (a LoRA-only export), the ``[out, in]`` its adapters imply; ``lora_rank()`` is the adapters' shared
    rank (0 without adapters)."""

    def __init__(self, shapes: Shapes, peft: PeftView | None = None) -> None:
        self.shapes = {**peft.base_shapes(), **shapes} if peft is not None else shapes
        self.peft = peft
        self.named: dict[str, Any] = {}

    def env(self) -> dict[str, Any]:
        return {
            "has": self.has,
            "dim": self.dim,
            "count": self.count,
            "any_key": self.any_key,
            "lora_rank": self.lora_rank,
            **self.named,
        }

    def for_spec(self, spec: Spec) -> _Probe:
        """This probe with ``spec``'s named probes evaluated (a failed one is left out)."""
        out = _Probe(self.shapes)
        out.peft = self.peft
        for name, rule in (spec.detect.get("probes") or {}).items():
            val = _eval_rule(rule, out)
            if val is not None:
                out.named[str(name)] = val
        return out

    def lora_rank(self) -> int:
        return (self.peft.rank or max(self.peft.ranks, default=0)) if self.peft is not None else 0

    def has(self, name: str) -> bool:
        return name in self.shapes

    def dim(self, name: str, d: int) -> int:
        shape = self.shapes.get(name)
        return shape[d] if shape is not None and -len(shape) <= d < len(shape) else -1

    def count(self, pattern: str) -> int:
        """Distinct values of the first ``*`` among names matching the pattern (layer indices)."""
        rx = re.compile(re.escape(pattern).replace(r"\*", r"([^.]+)"))
        seen = {m.group(1) for n in self.shapes if (m := rx.fullmatch(n))}
        return len(seen)

    def any_key(self, prefix: str) -> bool:
        return any(n.startswith(prefix) for n in self.shapes)


def strip_wrapper(shapes: Shapes) -> tuple[str, dict[str, tuple[int, ...]]]:
    """Shapes keyed without the wrapper (DDP, torch.compile) or Lightning-module prefix all keys share."""
    prefix = wrapper_prefix(shapes, (*WRAPPER_PREFIXES, *MODULE_PREFIXES)) or ""
    return prefix, {n[len(prefix) :]: s for n, s in shapes.items()}


def plain_shapes(shapes: Shapes) -> tuple[str, dict[str, tuple[int, ...]], PeftView | None]:
    """Shapes under the names a spec uses: the shared wrapper prefix stripped, and a PEFT-wrapped state dict
    read through :func:`ckpttool.specs.peft.peft_view` (adapters apart). Returns (prefix, shapes, view)."""
    prefix, plain = strip_wrapper(shapes)
    view = peft_view(plain)
    return prefix, (view.plain if view is not None else plain), view


def absent_prefixes(spec: Spec, partial: list[str]) -> tuple[str, ...]:
    """The key prefixes a file may lack under the spec's ``detect.partial`` entries named in ``partial`` (an
    entry's third item is one prefix or a list of them)."""
    out: list[str] = []
    for rule in spec.detect.get("partial") or []:
        if str(rule[0]) in partial:
            out += [str(p) for p in rule[2]] if isinstance(rule[2], list) else [str(rule[2])]
    return tuple(out)


def _eval_rule(text: str, probe: _Probe) -> Any:
    try:
        return ex.evaluate(text, probe.env())
    except (ex.ExprError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return None


def detect_version(spec: Spec, probe: _Probe) -> str | None:
    """The first version whose detection rule holds for the probed shapes; else the spec's default version
    (None for a spec without a ``version`` variable)."""
    for version, rule in spec.detect.get("version") or []:
        if _eval_rule(rule, probe):
            return str(version)
    if spec.detect.get("version_in_shapes") is False:
        return None  # the versions build the same tensors: config, header or folder must say
    return spec.defaults().get("version") if "version" in spec.variables else None


def shape_version(shapes: Shapes, family_prefix: str) -> tuple[str, str | None] | None:
    """(family, version) by the detection rules alone (no solving: cheap enough for every file of a run folder)
    of the first spec whose family starts with ``family_prefix`` and whose detection keys the shapes hold; None
    when none does."""
    _, plain = strip_wrapper(shapes)
    probe = _Probe(plain)
    for spec in builtin_specs().values():
        if spec.family.startswith(family_prefix) and any(k in plain for k in spec.detect.get("any_of") or []):
            return spec.family, detect_version(spec, probe)
    return None


def structure(spec: Spec, probe: _Probe) -> dict[str, Any]:
    """The structure values (layer counts, ...) the spec's ``detect.structure`` rules read off the shapes;
    failed rules are left out."""
    out = {}
    for name, rule in (spec.detect.get("structure") or {}).items():
        val = _eval_rule(rule, probe)
        if val is not None:
            out[name] = val
    return out


def fingerprint(
    shapes: Shapes, hint: str | None = None, specs: Mapping[str, Spec] | None = None
) -> Fingerprint | None:
    """Best-fitting family for these tensors, or None when no spec's detection keys are present.

    ``hint`` (a trainer name such as ``gpt-sovits`` or ``vits``) breaks ties between families whose
    tensors are identical, like the VITS and GPT-SoVITS v1/v2 discriminators.
    """
    prefix, plain, view = plain_shapes(shapes)
    probe = _Probe(plain, view)
    results: list[tuple[float, int, Fingerprint]] = []
    for spec in (specs or builtin_specs()).values():
        if not any(k in plain for k in spec.detect.get("any_of") or []):
            continue
        fp = _fit(spec, plain, probe)
        fp.prefix, fp.peft = prefix, view
        union = len(set(plain) | {*fp.missing, *plain}) or 1
        score = fp.matched / union
        bonus = 1 if hint and spec.family.startswith(hint) else 0
        results.append((score, bonus, fp))
    if not results:
        return None
    results.sort(key=lambda r: (r[0], r[1]), reverse=True)
    best = results[0][2]
    best.also = [r[2].family for r in results[1:] if abs(r[0] - results[0][0]) < 1e-9]
    return best


def _fit(spec: Spec, shapes: Shapes, probe: _Probe) -> Fingerprint:
    probe = probe.for_spec(spec)
    version = detect_version(spec, probe)
    base = spec.defaults(version)
    structured = structure(spec, probe)
    base.update(structured)
    expected = spec.expand(base)
    names = {t.name for t in expected}
    values, solved, conflicts = solve(spec, expected, probe.shapes, base)
    inferred = {k: values[k] for k in spec.config_keys if k in solved}
    for k in structured:
        if k in spec.config_keys and not isinstance(base[k], list):
            inferred.setdefault(k, base[k])
    for k, v in base.items():  # lists solved element by element
        if (
            isinstance(v, list)
            and k in spec.config_keys
            and all(f"{k}[{i}]" in solved for i in range(len(v)))
        ):
            inferred[k] = values[k]
    real = spec.defaults(version)
    constants = {
        k: (values[k], real[k])
        for k, var in spec.variables.items()
        if var.config is None
        and (k in solved or k in structured or any(a.startswith(k + "[") for a in solved))
        and values[k] != real[k]
    }
    partial = [str(r[0]) for r in spec.detect.get("partial") or [] if _eval_rule(r[1], probe)]
    absent_ok = absent_prefixes(spec, partial)
    lora_problems: list[str] = []
    if probe.peft is not None:
        try:
            at_values = {t.name: t.shape for t in spec.expand(values)}
        except ConfigError:
            at_values = {}
        lora_problems = probe.peft.problems(at_values)
    return Fingerprint(
        family=spec.family,
        title=spec.title,
        role=spec.role,
        version=version,
        matched=len(names & set(shapes)),
        expected=len(names),
        missing=[t.name for t in expected if t.name not in shapes and not t.name.startswith(absent_ok)],
        unexpected=[n for n in shapes if n not in names],
        partial=partial,
        values=values,
        inferred=inferred,
        constants=constants,
        conflicts=conflicts,
        lora_problems=lora_problems,
    )


# --- solving ------------------------------------------------------------------------------------------------
def _with(values: Mapping[str, Any], atom: str, value: Any) -> dict[str, Any]:
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in values.items()}
    m = re.fullmatch(r"(\w+)\[(\d+)\]", atom)
    if m:
        name, idx = m.group(1), int(m.group(2))
        lst = out.setdefault(name, [])
        while len(lst) <= idx:
            lst.append(0)
        lst[idx] = value
    else:
        out[atom] = value
    return out


def _invert(node: Any, atom: str, observed: int, values: Mapping[str, Any]) -> int | None:
    def f(x: int) -> Any:
        return ex.evaluate(node, _with(values, atom, x))

    try:
        x1, x2 = 1 << 20, 1 << 21
        y1, y2 = f(x1), f(x2)
        slope = (y2 - y1) / (x2 - x1)
        if slope == 0:
            return None
        guess = round(x1 + (observed - y1) / slope)
        for x in (guess, guess - 1, guess + 1):
            if x >= 0 and f(x) == observed:
                return x
    except (ex.ExprError, TypeError, ZeroDivisionError, ValueError, IndexError):
        return None
    return None


def solve(
    spec: Spec, expected: list[TensorSpec], shapes: Shapes, base: Mapping[str, Any]
) -> tuple[dict[str, Any], set[str], list[str]]:
    """Values for every atom the shapes pin down; returns (values, solved atoms, conflicts)."""
    equations = []
    for t in expected:
        shape = shapes.get(t.name)
        if shape is None or len(shape) != len(t.shape):
            continue
        for d, text in enumerate(t.exprs):
            node = ex.parse(text)
            atoms = ex.atoms(node)
            if atoms:
                equations.append((t.name, d, node, atoms, int(shape[d])))
    values = dict(base)
    solved: set[str] = set()
    progress = True
    while progress:
        progress = False
        for _name, _d, node, atoms, observed in equations:
            unknown = atoms - solved
            if len(unknown) != 1:
                continue
            atom = next(iter(unknown))
            x = _invert(node, atom, observed, values)
            if x is not None:
                values = _with(values, atom, x)
                solved.add(atom)
                progress = True
    conflicts = []
    for name, d, node, atoms, observed in equations:
        if atoms <= solved:
            try:
                got = ex.evaluate(node, values)
            except ex.ExprError:
                continue
            if got != observed:
                conflicts.append(f"{name} dim {d} is {observed}, but {ex.text(node)} = {got}")
    return values, solved, conflicts


def count_matching(expected: list[TensorSpec], pattern: str) -> int:
    """How many of ``expected`` have a name matching the glob ``pattern`` (case-sensitive)."""
    return sum(1 for t in expected if fnmatch.fnmatchcase(t.name, pattern))


# --- checking a config ----------------------------------------------------------------------------------------
@dataclass
class DimMismatch:
    """One dimension a config gets wrong: the file's size (``actual``), the config's (``expected``), the
    expression behind it, the config keys in that expression and the values the file implies for them."""

    tensor: str
    dim: int
    actual: int
    expected: int
    expression: str
    keys: list[str]  # config variables in the expression, or what changes it (len(upsample_rates))
    implied: dict[str, Any]  # what the file's shapes say those variables are
    restructured: bool = False  # the file's own expression for this dim differs (another stage count, a tag)

    def sentence(self, config_values: Mapping[str, Any]) -> str:
        """The mismatch in words, with the values ``config_values`` gives: ``enc_p.proj.weight dim 0 is 384 =
        2 * inter_channels with inter_channels=192, but the config gives 512 (inter_channels=256)``."""
        given = ", ".join(f"{k}={atom_value(config_values, k)!r}" for k in self.keys)
        implied = ", ".join(f"{k}={v!r}" for k, v in self.implied.items())
        text = f"{self.tensor} dim {self.dim} is {self.actual}"
        if len(self.keys) == 1 and isinstance(self.implied.get(self.keys[0]), str):
            text += f" (a {self.implied[self.keys[0]]} size)"  # a version tag: 322 rows is "a v1 size"
        elif implied and not self.restructured:
            text += f" = {self.expression} with {implied}"
        return text + f", but the config gives {self.expected}" + (f" ({given})" if given else "")

    def to_json(self) -> dict[str, Any]:
        """An entry of ``config_check.mismatches`` in ``ckpttool.inspect/1``."""
        return {
            "tensor": self.tensor,
            "dim": self.dim,
            "actual": self.actual,
            "expected": self.expected,
            "expression": self.expression,
            "config_keys": self.keys,
            "implied": self.implied,
        }


@dataclass
class ConfigCheck:
    """A run config checked against a file's shapes: dimension mismatches, tensors the config implies that are
    missing or that it does not imply, a summary per config key, and the model constraints the config breaks.
    """

    family: str
    values: dict[str, Any]  # the config's variable values (defaults filled in)
    mismatches: list[DimMismatch]
    missing: list[str]  # tensors the config implies that the file lacks (partial files excluded)
    unexpected: list[str]
    key_summary: dict[str, dict[str, Any]]  # key -> {config, checkpoint, tensors}
    violations: list[str]  # constraints the config breaks (e.g. v2 gin_channels != 512)

    @property
    def ok(self) -> bool:
        """No mismatch and no missing or unexpected tensor (broken constraints only warn)."""
        return not (self.mismatches or self.missing or self.unexpected)

    def to_json(self) -> dict[str, Any]:
        """The ``config_check`` field of an ``architectures`` entry in ``ckpttool.inspect/1``."""
        return {
            "family": self.family,
            "ok": self.ok,
            "mismatches": [m.to_json() for m in self.mismatches],
            "missing": self.missing,
            "unexpected": self.unexpected,
            "keys": self.key_summary,
            "constraint_violations": self.violations,
        }


def config_values(spec: Spec, config: Mapping[str, Any], fp: Fingerprint | None = None) -> dict[str, Any]:
    """Variable values a (nested, plain) run config sets; the file's implied values (else the version's
    defaults) for the rest.

    Architecture constants come from the fingerprint when there is one: no config can set them, so a tiny
    or unusual model must not be reported as contradicting its config over them.
    """
    found: dict[str, Any] = {}
    for name, path in spec.config_keys.items():
        node: Any = config
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is None and isinstance(config.get(path.rsplit(".", 1)[-1]), int | str | list | bool):
            node = config.get(path.rsplit(".", 1)[-1])  # flat configs (RVC list, argparse namespaces)
        if node is not None:
            found[name] = node
    version = found.get("version") or (fp.version if fp else None)
    values = spec.defaults(version)
    if fp is not None:
        # What the config does not state is taken from the file: a partial config (or --set alone) is
        # checked for what it says, not for the defaults it leaves out. Constants always come from the file.
        for name in spec.variables:
            if name in fp.values and (name not in found):
                values[name] = fp.values[name]
    values.update(found)
    return values


def check_config(
    spec: Spec, shapes: Shapes, config: Mapping[str, Any], fp: Fingerprint | None = None
) -> ConfigCheck:
    """Check ``config`` (a plain nested run config) against ``shapes`` by expanding ``spec`` with the config's
    values (:func:`config_values`) and comparing every dimension. A dimension whose expression holds no config
    key but differs between versions is put down to ``version``. A PEFT-wrapped file is read under its plain
    names and its adapters' rank is checked against the spec's ``peft.rank_config``. Raises ConfigError when
    the spec cannot be expanded with these values."""
    _, plain, view = plain_shapes(shapes)
    values = config_values(spec, config, fp)
    expected = spec.expand(values)
    implied = fp.values if fp else {}
    own = _own_expansion(spec, fp)
    one = OneChange(spec, implied, values)
    mismatches: list[DimMismatch] = []
    for t in expected:
        shape = plain.get(t.name)
        if shape is None:
            continue
        for d, text in enumerate(t.exprs):
            actual = shape[d] if d < len(shape) else -1
            if d < len(shape) and actual == t.shape[d] and len(shape) == len(t.shape):
                continue
            atoms = sorted(ex.atoms(ex.parse(text)))
            keys = [a for a in atoms if a.split("[")[0] in spec.config_keys]
            mine = own.get(t.name)
            restructured = mine is not None and d < len(mine.exprs) and mine.exprs[d] != text
            if restructured:
                # the file's own expression differs (a stage count, a version tag): name the values that
                # differ in the config's expression and the variable whose change alone turns one into the other
                moved = [k for k in keys if atom_value(values, k) != atom_value(implied, k)]
                keys = list(dict.fromkeys(moved + [c.key for c in one.causes(t.name, d, text)]))
            if not keys and fp is not None:
                # a fixed size that differs (322 vs 732 text-embedding rows): put down to the version tag, or
                # to another non-numeric config value (RVC's v1/v2) on which config and file disagree
                tags = _tags_that_differ(spec, values, fp)
                keys = ["version"] if "version" in tags else tags
            imp = {a: atom_value(implied, a) for a in keys if atom_value(implied, a) is not None}
            if not keys and fp is not None and fp.version is not None and "version" in spec.config_keys \
                    and values.get("version") != fp.version:  # fmt: skip
                keys, imp = ["version"], {"version": fp.version}
            mismatches.append(DimMismatch(t.name, d, actual, t.shape[d], text, keys, imp, restructured))
    names = {t.name for t in expected}
    absent_ok = absent_prefixes(spec, fp.partial) if fp else ()
    missing = [t.name for t in expected if t.name not in plain and not t.name.startswith(absent_ok)]
    unexpected = [n for n in plain if n not in names]
    summary = _key_summary(one, values, implied, mismatches, missing, unexpected)
    if view is not None:
        _check_lora_rank(spec, config, view, mismatches, summary)
    return ConfigCheck(
        spec.family, values, mismatches, missing, unexpected, summary, spec.check_constraints(values)
    )


def _check_lora_rank(
    spec: Spec,
    config: Mapping[str, Any],
    view: PeftView,
    mismatches: list[DimMismatch],
    summary: dict[str, dict[str, Any]],
) -> None:
    """The LoRA rank the config asks for (the spec's ``peft.rank_config``: GPT-SoVITS ``train.lora_rank``, a
    string in the WebUI's config) against every adapter's: a mismatch per adapter that differs."""
    path = str(spec.peft.get("rank_config") or "")
    node: Any = config if path else None
    for part in path.split(".") if path else []:
        node = node.get(part) if isinstance(node, Mapping) else None
    try:
        wanted = int(node) if node is not None and not isinstance(node, bool) else None
    except (TypeError, ValueError):
        wanted = None
    if wanted is None:
        return
    key = path.rsplit(".", 1)[-1]
    for a in view.adapters:
        if a.rank is not None and a.rank != wanted:
            tensor = a.a_key or a.b_key or a.module
            dim = 0 if a.a_key else 1
            mismatches.append(DimMismatch(tensor, dim, a.rank, wanted, key, [key], {key: a.rank}))
    bad = [m for m in mismatches if m.keys == [key]]
    if bad:
        summary[key] = {"config": wanted, "checkpoint": view.rank, "tensors": len(bad)}


def _own_expansion(spec: Spec, fp: Fingerprint | None) -> dict[str, TensorSpec]:
    """The spec expanded with the values the file's shapes imply, by name ({} without a fingerprint)."""
    if fp is None:
        return {}
    try:
        return {t.name: t for t in spec.expand(fp.values)}
    except ConfigError:
        return {}


def _tags_that_differ(spec: Spec, values: Mapping[str, Any], fp: Fingerprint) -> list[str]:
    """Config variables with a non-numeric value (a version tag, a flag) that the config sets differently from
    what the file's shapes imply."""
    return [
        k
        for k in spec.config_keys
        if isinstance(values.get(k), str | bool) and values.get(k) != fp.values.get(k)
    ]


def _key_summary(
    one: OneChange,
    values: Mapping[str, Any],
    implied: Mapping[str, Any],
    mismatches: list[DimMismatch],
    missing: list[str],
    unexpected: list[str],
) -> dict[str, dict[str, Any]]:
    """Per config key (``(fixed size)`` for a mismatch no key explains): the config's value, the file's and how
    many tensors disagree over it, counting the tensors that exist on one side only because of that key
    (``if_f0``, or ``len(upsample_rates)`` for a stage count read from the key names)."""
    summary: dict[str, dict[str, Any]] = {}
    for m in mismatches:
        for k in m.keys or ["(fixed size)"]:
            entry = summary.setdefault(
                k, {"config": atom_value(values, k), "checkpoint": atom_value(implied, k), "tensors": set()}
            )
            entry["tensors"].add(m.tensor)
    for cause, names in one.presence_causes(set(missing), set(unexpected)):
        entry = summary.setdefault(
            cause.key, {"config": cause.new, "checkpoint": cause.old, "tensors": set()}
        )
        entry["tensors"] |= names
    # one entry per tensor and key, not per dim, in the counts
    return {k: {**e, "tensors": len(e["tensors"])} for k, e in summary.items()}
