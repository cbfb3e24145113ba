"""Run configs from files, from inside checkpoints, and from ``--set key=value`` overrides.

Everything becomes a plain nested dict, so specs read ``model.inter_channels`` the same way whether it came
from GPT-SoVITS's ``s2.json``, an ``s1*.yaml``, the ``utils.HParams`` pickled into a SoVITS export, Lightning's
``hyper_parameters`` or RVC's 18-value list.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckpttool.errors import ConfigError
from ckpttool.interpret.structure import to_plain
from ckpttool.model import Checkpoint, TensorInfo

# train/process_ckpt.py savee(): the order of RVC's config list (formats.md §7.2)
RVC_CONFIG_FIELDS = (
    "spec_channels", "segment_size", "inter_channels", "hidden_channels", "filter_channels", "n_heads",
    "n_layers", "kernel_size", "p_dropout", "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes",
    "upsample_rates", "upsample_initial_channel", "upsample_kernel_sizes", "spk_embed_dim", "gin_channels",
    "sampling_rate",
)  # fmt: skip
# What RVC's loader assumes when an export lacks the key (infer/vc/modules.py:124-125, infer/rtrvc.py): it picks
# the model class from these two, as run configs hold them (hps.version, hps.if_f0: train/utils.py:381, 385).
RVC_EXPORT_TAGS = (("version", "version", "v1"), ("f0", "if_f0", 1))  # (export key, config key, default)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """JSON or YAML by content (the seed accepts either); never executes anything (yaml.safe_load). Read as
    UTF-8, UTF-8 with BOM or GBK (:func:`read_config_file` also says which)."""
    return read_config_file(path)[0]


def read_config_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """(config, encoding name) of a JSON or YAML config file: UTF-8 first, then UTF-8 with BOM and GBK (what
    editors on a Chinese-locale Windows save). Raises ConfigError (exit 2) with one line: not found, not
    decodable, not JSON/YAML, not a mapping."""
    from ckpttool.config_keys import decode_config

    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror or exc})") from None
    text, encoding = decode_config(raw, str(p))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as json_exc:
        import yaml  # only for a YAML config: inspect of a file alone does not pay for it

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = (
                f"JSON: {json_exc.msg} at line {json_exc.lineno}" if p.suffix == ".json" else f"YAML: {first}"
            )
            raise ConfigError(f"{p}: not a valid JSON or YAML config ({hint})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config must be a mapping of keys to values, found {type(data).__name__}")
    return data, encoding


def config_where(path: str | Path, encoding: str) -> str:
    """How a config file is named in reports: its path, with the encoding when it was not plain UTF-8."""
    return str(path) if encoding == "UTF-8" else f"{path} (read as {encoding})"


def apply_overrides(config: dict[str, Any] | None, assignments: Iterable[str]) -> dict[str, Any] | None:
    """``model.inter_channels=256`` style overrides; values are parsed as YAML scalars (256, true, [1, 2])."""
    items = [parse_assignment(item) for item in assignments]
    if not items:
        return config
    return with_overrides(config or {}, items)


def embedded_config(ckpt: Checkpoint) -> tuple[str, dict[str, Any]] | None:
    """(where, config) for a config stored inside the checkpoint, as a plain nested dict."""
    root = ckpt.root
    if not isinstance(root, dict):
        return None
    cfg = root.get("config")
    if isinstance(cfg, list | tuple) and len(cfg) == len(RVC_CONFIG_FIELDS):
        model = dict(zip(RVC_CONFIG_FIELDS, (to_plain(v) for v in cfg), strict=True))
        spec = model.get("spec_channels")
        data: dict[str, Any] = {"filter_length": (spec - 1) * 2} if isinstance(spec, int) else {}
        data["sampling_rate"] = model.get("sampling_rate")
        weight = root.get("weight")
        emb_g = weight.get("emb_g.weight") if isinstance(weight, dict) else None
        if isinstance(emb_g, TensorInfo) and emb_g.shape:
            # the loader overwrites config[-3] with the speaker count (infer/vc/modules.py:123)
            model["spk_embed_dim"] = emb_g.shape[0]
        tags = {conf: to_plain(root.get(key, default)) for key, conf, default in RVC_EXPORT_TAGS}
        return "config (RVC list)", {"model": model, "data": data, **tags}
    for key in ("config", "hyper_parameters", "hparams", "hps", "args"):
        if key in root:
            plain = to_plain(root[key])
            if isinstance(plain, dict):
                inner = plain.get("config")
                if key == "hyper_parameters" and isinstance(inner, dict):
                    return "hyper_parameters.config", inner
                return key, plain
    return None


def run_config_beside(checkpoint_path: str) -> Path | None:
    """The run config the trainer keeps beside its checkpoints: ``config.json`` in the same folder, or where a
    trainer record whose folder rule matches says (GPT-SoVITS: logs/<exp>/config.json, one level above
    logs_s2_<version>/)."""
    import re

    from ckpttool.trainers import all_trainers

    here = Path(checkpoint_path).resolve().parent
    candidates = [here / "config.json"]
    for record in all_trainers():
        rule = record.detect.path if record.detect else None
        if rule and re.search(rule, here.as_posix()):
            candidates += [(here / name).resolve() for name in record.resume.config_files]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class ConfigOptions:
    """Which run config a command checks shapes against. ``file``: a config file already read, as (where it
    came from, the config); ``overrides``: ``--set`` assignments already parsed, as (dotted key, value). With no
    file, the config embedded in the checkpoint is used, else the run's config file beside it."""

    file: tuple[str, dict[str, Any]] | None = None
    overrides: tuple[tuple[str, Any], ...] = ()
    notes: tuple[
        str, ...
    ] = ()  # what the reader should know: a bare --set key read as a full one, an encoding

    @classmethod
    def from_cli(cls, path: str | None, sets: Iterable[str] = ()) -> ConfigOptions:
        """Parse ``--config PATH`` and ``--set KEY=VALUE``; each key is checked against the keys the
        architecture specs and the config file know (:func:`ckpttool.config_keys.check_assignments`). Raises
        ConfigError (exit 2) on an unreadable config, a bad assignment, an unknown key or a value of the wrong
        type."""
        notes: list[str] = []
        loaded = None
        if path:
            data, encoding = read_config_file(path)
            loaded = (config_where(path, encoding), data)
            if encoding != "UTF-8":
                notes.append(f"config {path} read as {encoding}")
        items = [parse_assignment_raw(item) for item in sets]
        overrides: tuple[tuple[str, Any], ...] = ()
        if items:
            from ckpttool.config_keys import check_assignments

            checked = check_assignments(items, loaded[1] if loaded else None)
            overrides, notes = tuple(checked.items), notes + checked.notes
        return cls(loaded, overrides, tuple(notes))


def parse_assignment_raw(item: str) -> tuple[str, Any, str]:
    """``model.inter_channels=256`` -> ("model.inter_channels", 256, "256"): :func:`parse_assignment` plus the
    value's text as typed."""
    key, value = parse_assignment(item)
    return key, value, item.partition("=")[2].strip()


def parse_assignment(item: str) -> tuple[str, Any]:
    """``model.inter_channels=256`` -> ("model.inter_channels", 256); values are YAML scalars."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, for example model.inter_channels=256")
    import yaml

    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def with_overrides(config: dict[str, Any], overrides: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A deep copy of ``config`` with each (dotted key, value) set; missing or non-dict intermediate keys
    become dicts."""
    out = copy.deepcopy(config)
    for key, value in overrides:
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[parts[-1]] = value
    return out


def resolve_config(ckpt: Checkpoint | None, options: ConfigOptions) -> tuple[str, dict[str, Any]] | None:
    """The config to check against: a file when given, else the embedded one, else the run's config.json
    beside the checkpoint; then the overrides."""
    sets = options.overrides
    if options.file is not None:
        where, config = options.file
    elif ckpt is not None and (found := embedded_config(ckpt)) is not None:
        where, config = found
    elif ckpt is not None and (beside := run_config_beside(ckpt.path)) is not None:
        config, encoding = read_config_file(beside)
        where = config_where(beside, encoding)
    elif sets:
        where, config = "--set", {}
    else:
        return None
    return (where + (" + --set" if sets and where != "--set" else "")), with_overrides(config, sets)
