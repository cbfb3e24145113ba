"""Loading spec files and expanding them into concrete tensors for one config.

A spec is data (YAML under ``ckpttool/specs/data``): variables with their config paths and defaults, per-version
default changes, derived values, detection rules, and a tree of items that name tensors and give their shapes
as expressions. Expansion walks that tree for one set of variable values and yields every tensor in
``state_dict`` order, each dimension kept as a composed expression over the variables (see ``expr``).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ckpttool.datacache import yaml_files
from ckpttool.errors import ConfigError
from ckpttool.specs import expr as ex

DATA = "ckpttool.specs.data"
COMMON = "common.yaml"


@dataclass(frozen=True)
class Variable:
    """A spec variable: its default, its dotted path in the run config (None: an architecture constant) and
    allowed values."""

    name: str
    default: Any
    config: str | None  # dotted path in the run config; None for an architecture constant
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TensorSpec:
    """One expected tensor: its shape for the expanded config and, per dim, the expression behind it."""

    name: str
    shape: tuple[int, ...]
    exprs: tuple[str, ...]
    buffer: bool = False
    zero_init: bool = False
    follows: str | None = None  # weight_g: its dim 0 follows dim 0 of this sibling (weight_v)
    chunks: tuple[int, tuple[str, ...]] | None = None  # (dim, part names): equal parts consumed separately
    align: tuple[tuple[int, str], ...] = ()  # (dim, "start"|"end"): where old values sit after a resize
    axes: tuple[str, ...] | None = None  # per dim: "out", "in", "kernel" (how new entries are initialised)
    fill: float | None = None  # the model's constant init for new entries (LayerNorm gamma: 1)
    preserve: bool = False  # a residual branch's output: zero it when the whole layer is new (identity)

    def atoms(self, dim: int) -> set[str]:
        """The unknowns of dimension ``dim``'s expression."""
        return ex.atoms(ex.parse(self.exprs[dim]))

    @property
    def numel(self) -> int:
        """The number of values (1 for a scalar)."""
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class Spec:
    """A model family's spec, as loaded from its YAML file: variables, per-version defaults, derived values,
    detection rules, constraints and the tensor tree (``tensors``, with shared ``blocks``)."""

    family: str
    title: str
    role: str
    source: str
    variables: dict[str, Variable]
    versions: dict[str, dict[str, Any]]
    derived: dict[str, str]
    detect: dict[str, Any]
    constraints: list[tuple[str, str]]
    tensors: list[dict[str, Any]]
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: str = ""
    key_patterns: list[tuple[str, str]] = field(default_factory=list)  # (module regex, why it may be missing)
    peft: dict[str, Any] = field(
        default_factory=dict
    )  # how a trainer PEFT-wraps it: wrapped, targets, rank_config

    @property
    def config_keys(self) -> dict[str, str]:
        """Variable name -> dotted run-config path, for the variables a config can set."""
        return {v.name: v.config for v in self.variables.values() if v.config}

    def defaults(self, version: str | None = None) -> dict[str, Any]:
        """Every variable's default, with the defaults of ``version`` (or of the default version) applied."""
        values = {name: copy.deepcopy(v.default) for name, v in self.variables.items()}
        if version is not None and "version" in self.variables:
            values["version"] = version
        ver = values.get("version")
        if ver in self.versions:
            values.update(copy.deepcopy(self.versions[ver]))
        return values

    def env(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Variables plus derived values, for evaluating item conditions, loops and shapes."""
        env = dict(values)
        for name, text in self.derived.items():
            env[name] = ex.evaluate(text, env)
        return env

    def expand(self, values: Mapping[str, Any]) -> list[TensorSpec]:
        """Every tensor the model has for these variable values, in ``state_dict`` order. Raises ConfigError
        (ExprError included) when the spec is malformed or a dimension is not an integer for these values."""
        return list(_Expander(self, values).run())

    def key_reason(self, prefix: str) -> str | None:
        """Why keys under the module ``prefix`` (``dec.ups``, ``enc_q``) may be in only one of two files of this
        family: the first ``key_patterns`` entry whose module regex matches it; None when none does."""
        for regex, why in self.key_patterns:
            if re.match(rf"(?:{regex})(?:\.|$)", prefix):
                return why
        return None

    def check_constraints(self, values: Mapping[str, Any]) -> list[str]:
        """The messages of the constraints ``values`` break (a constraint that cannot be evaluated is
        skipped)."""
        env = self.env(values)
        out = []
        for cond, message in self.constraints:
            try:
                if not ex.evaluate(cond, env):
                    out.append(message)
            except ex.ExprError:
                continue
        return out


class _Expander:
    def __init__(self, spec: Spec, values: Mapping[str, Any]) -> None:
        self.spec = spec
        self.env = spec.env(values)
        # Derived names are inlined and non-numeric variables become literals, so each composed expression
        # mentions only the numeric variables a solver can target.
        top: dict[str, str] = {}
        for name, val in values.items():
            if isinstance(val, str | bool) or val is None:
                top[name] = repr(val)
        for name, text in spec.derived.items():
            top[name] = ex.substitute_text(text, top)
        self.top = top
        self.lengths = tuple(sorted((k, len(v)) for k, v in values.items() if isinstance(v, list | tuple)))

    def run(self) -> Iterator[TensorSpec]:
        yield from self.items(self.spec.tensors, "", self.top, {}, 0)

    def value(self, text: Any, subst: Mapping[str, str]) -> Any:
        return ex.evaluate(self.compose(text, subst), self.env)

    def compose(self, text: Any, subst: Mapping[str, str]) -> str:
        return ex.substitute_text(str(text), subst)

    def items(
        self,
        items: list[dict[str, Any]],
        prefix: str,
        subst: Mapping[str, str],
        attrs: dict[str, Any],
        depth: int,
    ) -> Iterator[TensorSpec]:
        if depth > 40:
            raise ConfigError(f"spec {self.spec.family}: blocks nest too deeply (a block uses itself?)")
        for item in items:
            if "for" in item:
                var, _, iterable = str(item["for"]).partition(" in ")
                var = var.strip()
                if not var.isidentifier() or not iterable:
                    raise ConfigError(f"spec {self.spec.family}: bad loop {item['for']!r}")
                rest = {k: v for k, v in item.items() if k != "for"}
                for val in self.value(iterable, subst):
                    yield from self.items([rest], prefix, {**subst, var: repr(val)}, attrs, depth + 1)
                continue
            if "if" in item and not self.value(item["if"], subst):
                continue
            name = self.name(str(item.get("name", "")), subst)
            full = ".".join(p for p in (prefix, name) if p)
            inner = dict(attrs)
            if item.get("zero_init"):
                inner["zero_init"] = True
            if item.get("preserve"):
                inner["preserve"] = True
            if "chunks" in item:
                parts = item["chunks"]["parts"]
                if not isinstance(parts, list):
                    parts = [str(i) for i in range(int(self.value(parts, subst)))]
                inner["chunks"] = (int(item["chunks"]["dim"]), tuple(str(p) for p in parts))
            if "align" in item:
                side = str(self.value(item["align"]["side"], subst))
                if side not in ("start", "end"):
                    raise ConfigError(f"spec {self.spec.family}: {full} align side must be start or end")
                inner["align"] = (*inner.get("align", ()), (int(item["align"]["dim"]), side))
            if "shape" in item:
                yield self.tensor(full, item, subst, inner)
            elif "use" in item:
                block_name = str(item["use"])
                if block_name not in self.spec.blocks:
                    block_name = str(self.value(block_name, subst))
                block = self.spec.blocks.get(block_name)
                if block is None:
                    raise ConfigError(f"spec {self.spec.family}: unknown block {block_name!r} at {full}")
                given = item.get("with") or {}
                missing = set(block.get("args", [])) - set(given)
                if missing:
                    raise ConfigError(
                        f"spec {self.spec.family}: {full} uses {block_name} without {sorted(missing)}"
                    )
                args = {k: self.compose(v, subst) for k, v in given.items()}
                yield from self.items(block["body"], full, {**self.top, **args}, inner, depth + 1)
            elif "body" in item:
                yield from self.items(item["body"], full, subst, inner, depth + 1)
            else:
                raise ConfigError(f"spec {self.spec.family}: item {full!r} has no shape, use or body")

    _FIELD = re.compile(r"\{([^{}]+)\}")

    def name(self, template: str, subst: Mapping[str, str]) -> str:
        if "{" not in template:
            return template
        return self._FIELD.sub(lambda m: str(self.value(m.group(1), subst)), template)

    def tensor(
        self, full: str, item: dict[str, Any], subst: Mapping[str, str], attrs: dict[str, Any]
    ) -> TensorSpec:
        exprs, shape = [], []
        for dim in item["shape"]:
            text = ex.simplify_text(self.compose(dim, subst), self.lengths)
            val = ex.evaluate(text, self.env)
            if isinstance(val, float) and val.is_integer():
                val = int(val)
            if not isinstance(val, int) or isinstance(val, bool):
                # name the values that are not numbers (inter_channels='abc'), not the folded 'abcabc' twice
                odd = [
                    f"{var.config or name}={self.env.get(name)!r}"
                    for name, var in self.spec.variables.items()
                    if isinstance(var.default, int) and not isinstance(self.env.get(name), int | float)
                ]
                raise ConfigError(
                    f"spec {self.spec.family}: {full}: dimension {dim} comes out as {val!r}, not an integer"
                    + (f"; not a number: {', '.join(odd)}" if odd else "")
                )
            exprs.append(text)
            shape.append(val)
        follows = item.get("follows")
        return TensorSpec(
            name=full,
            shape=tuple(shape),
            exprs=tuple(exprs),
            buffer=bool(item.get("buffer")),
            zero_init=bool(attrs.get("zero_init")),
            follows=full.rsplit(".", 1)[0] + "." + follows if follows else None,
            chunks=attrs.get("chunks") if attrs.get("chunks") and len(shape) > attrs["chunks"][0] else None,
            align=tuple((d, side) for d, side in attrs.get("align", ()) if d < len(shape)),
            axes=tuple(str(a) for a in item["axes"]) if item.get("axes") else None,
            fill=float(item["fill"]) if item.get("fill") is not None else None,
            preserve=bool(attrs.get("preserve")),
        )


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    import yaml  # only when a spec is parsed: the built-in ones come from the cache (ckpttool.datacache)

    try:
        # libyaml's loader when present (a cache miss parses every spec; the pure-Python loader is 10x slower)
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a spec must be a mapping")
    return data


def parse_spec(data: dict[str, Any], common_blocks: Mapping[str, Any], where: str = "") -> Spec:
    """A Spec from a spec file's parsed YAML; ``common_blocks`` are the shared blocks, ``where`` names the
    file in errors. Raises ConfigError for a malformed spec."""
    try:
        variables = {
            name: Variable(name, v.get("default"), v.get("config"), tuple(v.get("choices", ())))
            for name, v in (data.get("variables") or {}).items()
        }
        return Spec(
            family=str(data["family"]),
            title=str(data.get("title", data["family"])),
            role=str(data.get("role", "")),
            source=str(data.get("source", "")),
            variables=variables,
            versions={str(k): dict(v or {}) for k, v in (data.get("versions") or {}).items()},
            derived={str(k): str(v) for k, v in (data.get("derived") or {}).items()},
            detect=dict(data.get("detect") or {}),
            constraints=[(str(c), str(m)) for c, m in data.get("constraints") or []],
            tensors=list(data["tensors"]),
            blocks={**common_blocks, **(data.get("blocks") or {})},
            path=where,
            key_patterns=[(str(r), str(m)) for r, m in data.get("key_patterns") or []],
            peft=dict(data.get("peft") or {}),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{where or 'spec'}: malformed spec ({type(exc).__name__}: {exc})") from None


@lru_cache(maxsize=1)
def builtin_specs() -> dict[str, Spec]:
    """Every spec shipped with ckpttool, plus the ``*.yaml`` files in the folders ``$CKPTTOOL_SPECS`` lists
    (``os.pathsep``-separated), by family name; a user's family with a built-in name replaces it."""
    files = yaml_files(DATA, _read_yaml)
    common = files[COMMON].get("blocks", {})
    out: dict[str, Spec] = {}
    for name, data in files.items():
        if name != COMMON:
            spec = parse_spec(data, common, name)
            out[spec.family] = spec
    for extra in filter(None, os.environ.get("CKPTTOOL_SPECS", "").split(os.pathsep)):
        for path in sorted(Path(extra).glob("*.yaml")):
            spec = load_spec_file(path)
            out[spec.family] = spec
    return out


def load_spec_file(path: str | Path) -> Spec:
    """A user's own spec file (same format); it may use the shared blocks."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read spec ({exc.strerror})") from None
    common = yaml_files(DATA, _read_yaml)[COMMON].get("blocks", {})
    return parse_spec(_read_yaml(text, str(p)), common, str(p))


def get_spec(family: str) -> Spec:
    """The spec of ``family`` (built-in or from ``$CKPTTOOL_SPECS``). Raises ConfigError for an unknown
    family."""
    specs = builtin_specs()
    if family not in specs:
        raise ConfigError(f"unknown model family {family!r}; known: {', '.join(sorted(specs))}")
    return specs[family]
