"""The typed library API: what a training script calls before it resumes.

Each function takes Python values (paths as ``str`` or :class:`pathlib.Path`, a config as a file or a mapping,
``overrides`` as a mapping of dotted keys to values) and returns the same report dataclass the CLI renders:
:class:`~ckpttool.ops.inspect.InspectReport`, :class:`~ckpttool.ops.check.CheckReport`,
:class:`~ckpttool.ops.diff.DiffReport`, :class:`~ckpttool.ops.verify.VerifyReport`. Each has ``ok`` (or
``differs``) and ``to_json()``. Nothing here prints. Every error a caller can cause is a
:class:`ckpttool.errors.CkptError` subclass (``UsageError``, ``ConfigError``, ``TruncatedCheckpoint``, ...);
problems *of the checkpoint* are findings in the report, not exceptions.

Reading structure never imports torch; ``diff(values=True)``, ``check(verify=True)`` and ``verify_resume``
(its shadow run) do. See docs/api.md.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpttool.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from ckpttool.configs import ConfigOptions
    from ckpttool.ops.check import CheckReport
    from ckpttool.ops.diff import DiffReport, Progress
    from ckpttool.ops.inspect import InspectReport
    from ckpttool.ops.verify import VerifyReport

PathLike = str | os.PathLike[str]
ConfigArg = PathLike | Mapping[str, Any] | None

__all__ = ["check", "diff", "inspect", "inspect_checkpoint", "verify_resume"]


def _read_config(config: ConfigArg, what: str) -> tuple[str, dict[str, Any]] | None:
    """(where, plain dict) of a config file path or a mapping; None for None."""
    from ckpttool.configs import load_config_file

    if config is None:
        return None
    if isinstance(config, Mapping):
        return f"the {what} mapping", dict(config)
    if isinstance(config, str | os.PathLike):
        return os.fspath(config), load_config_file(os.fspath(config))
    raise ConfigError(f"{what}: expected a file path or a mapping, not {type(config).__name__}")


def _config_options(config: ConfigArg, overrides: Mapping[str, Any] | None) -> ConfigOptions:
    from ckpttool.configs import ConfigOptions

    items = tuple((overrides or {}).items())
    for key, _ in items:
        if not isinstance(key, str) or not key.strip() or "" in key.split("."):
            raise ConfigError(f"overrides: {key!r} is not a dotted config key like 'model.inter_channels'")
    return ConfigOptions(_read_config(config, "config"), items)


def _names(value: Iterable[str] | str | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise UsageError(f"{what}: give a list of names, not the string {value!r}")
    return tuple(value)


def _paths(value: PathLike | Iterable[PathLike]) -> list[str]:
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return [os.fspath(p) for p in value]


def inspect(
    path: PathLike,
    *,
    require: Iterable[str] = (),
    config: ConfigArg = None,
    overrides: Mapping[str, Any] | None = None,
    tensors: bool = False,
    deep: bool = False,
    allow_globals: Iterable[str] | None = None,
) -> InspectReport:
    """What the checkpoint at ``path`` (a file or a checkpoint folder) holds and whether training can resume.

    ``require``: piece names that must be present (``"optimizer"``, ``"scheduler"``, ...; see
    ``ckpttool.interpret.profiles.PIECES``), reported in ``required_missing`` and ``ok``. ``config``: the run
    config to check tensor shapes against, as a JSON/YAML file path or a mapping (default: the config embedded
    in the file, else the run's config beside it); ``overrides``: dotted keys set on it
    (``{"model.inter_channels": 256}``). ``tensors`` lists every tensor; ``deep`` also reads every tensor's bytes
    and checks them (CRC32 of torch zips, sizes). ``allow_globals``: None reports unverified pickle globals in
    ``report.safety`` (like the CLI); a collection refuses a file naming globals outside it.

    Raises InputNotFound, TruncatedCheckpoint, CorruptCheckpoint, UnsupportedFormat, UnsafeCheckpoint (always),
    UnverifiedCheckpoint (with ``allow_globals``), UsageError (unknown piece) and ConfigError.
    """
    from ckpttool.interpret.source import load
    from ckpttool.ops.inspect import InspectOptions, inspect_source, parse_require

    options = InspectOptions(
        parse_require(_names(require, "require")), tensors, _config_options(config, overrides), deep
    )
    gate = None if allow_globals is None else frozenset(_names(allow_globals, "allow_globals"))
    return inspect_source(load(path, gate=gate), options)


def check(
    targets: PathLike | Iterable[PathLike],
    *,
    trainer: str | None = None,
    trainer_root: PathLike | None = None,
    verify: bool = False,
    steps: int = 4,
    device: str = "auto",
    require: Iterable[str] = (),
    config: ConfigArg = None,
    overrides: Mapping[str, Any] | None = None,
    allow_globals: Iterable[str] = (),
    torch_version: str | None = None,
    lightning_version: str | None = None,
) -> CheckReport:
    """The gate before a resume, as ``ckpttool check``: for a run folder, the newest complete checkpoint and
    what the trainer will actually load; for files, those files. Then the verdict, the config check and the
    static resume checks; ``verify=True`` adds the shadow run (``steps`` even, on ``device``: ``auto``,
    ``cpu`` or ``cuda[:N]``) and, with ``trainer_root`` (a GPT-SoVITS checkout), the model run.

    ``trainer``: a trainer record name (``ckpttool trainers``) when detection should not guess. ``report.ok``
    is False when a check failed or the trainer will not resume from the newest complete state; each problem
    is a ``report.checks`` entry with status ``fail``. Files that are unsafe, or name globals outside
    ``allow_globals``, are refused (UnsafeCheckpoint, UnverifiedCheckpoint); a missing path is InputNotFound.
    """
    from ckpttool.ops.check import CheckOptions, check_targets
    from ckpttool.ops.inspect import parse_require

    options = CheckOptions(
        require=parse_require(_names(require, "require")),
        config=_config_options(config, overrides),
        verify=verify,
        steps=steps,
        device=device,
        allow_globals=frozenset(_names(allow_globals, "allow_globals")),
        trainer=trainer,
        trainer_root=None if trainer_root is None else os.fspath(trainer_root),
        torch_version=torch_version,
        lightning_version=lightning_version,
    )
    return check_targets(_paths(targets), options)


def diff(
    a: PathLike,
    b: PathLike,
    *,
    config_a: ConfigArg = None,
    config_b: ConfigArg = None,
    values: bool = False,
    progress: Progress | None = None,
    allow_globals: Iterable[str] = (),
) -> DiffReport:
    """Checkpoint ``a`` against ``b`` (any formats ckpttool reads): keys, shapes, dtypes, pieces, counters and
    config, with the config change that explains each shape change (``report.explanations``).

    ``config_a``/``config_b``: the run configs (file path or mapping), else what the files embed. ``values``
    also compares tensor values one pair at a time (imports torch; ``network.values`` per network), calling
    ``progress(done, total, tensor_name)`` per pair. ``report.differs`` is what ``--exit-code`` exits 1 on.
    """
    from ckpttool.ops.diff import DiffOptions, diff_paths

    ca = _read_config(config_a, "config_a")
    cb = _read_config(config_b, "config_b")
    options = DiffOptions(
        ca[1] if ca else None,
        cb[1] if cb else None,
        values,
        progress,
        frozenset(_names(allow_globals, "allow_globals")),
    )
    return diff_paths(a, b, options)


def verify_resume(
    paths: PathLike | Iterable[PathLike],
    *,
    steps: int = 4,
    device: str = "auto",
    config: ConfigArg = None,
    shadow: bool = True,
    model_run: bool = True,
    trainer_root: PathLike | None = None,
    recipe: str | None = None,
    strict: bool = False,
    optimizer_class: str | None = None,
    scheduler_class: str | None = None,
    allow_globals: Iterable[str] = (),
) -> VerifyReport:
    """Prove that training resumed from ``paths`` (one bundle or Lightning file, or a G file and its D file)
    continues as if it had never stopped: static checks, then a shadow run of ``steps`` (even, >= 2) optimizer
    steps on ``device`` that must end bit-identical, then a model run (``recipe`` ``"module:function"``, or the
    GPT-SoVITS checkout ``trainer_root``, or the one the working directory is in unless ``model_run=False``).

    ``config``: the run config (file or mapping; default ``config.json`` beside the files). ``shadow=False``:
    static checks only. ``strict``: known trainer drifts fail instead of warn. ``report.ok`` / ``report.level``
    (``static``, ``shadow-run``, ``model-run``) say what was proven. Raises UsageError (odd steps, the same
    file twice, ``model_run=False`` with a recipe or trainer root) and DeviceError (CUDA asked, none here).
    """
    from ckpttool.ops.verify import VerifyOptions, verify_paths

    if not model_run and (recipe or trainer_root):
        raise UsageError("model_run=False cannot be combined with recipe or trainer_root")
    options = VerifyOptions(
        config=_read_config(config, "config"),
        steps=steps,
        device=device,
        recipe=recipe,
        strict=strict,
        shadow=shadow,
        optimizer_class=optimizer_class,
        scheduler_class=scheduler_class,
        allow_globals=frozenset(_names(allow_globals, "allow_globals")),
        trainer_root=None if trainer_root is None else os.fspath(trainer_root),
        detect_trainer_root=model_run,
    )
    return verify_paths(_paths(paths), options)


def inspect_checkpoint(
    path: PathLike,
    *,
    require: str | Iterable[str] | None = None,
    with_tensors: bool = False,
    config: str | None = None,
    sets: Iterable[str] = (),
) -> InspectReport:
    """Deprecated: use :func:`inspect` (``config`` a path or mapping, ``overrides`` a mapping instead of
    ``sets`` of ``"KEY=VALUE"`` strings, ``tensors`` instead of ``with_tensors``). Same report."""
    warnings.warn(
        "ckpttool.inspect_checkpoint is deprecated; use ckpttool.inspect(path, require=[...], config=..., "
        "overrides={...}, tensors=...)",
        DeprecationWarning,
        stacklevel=2,
    )
    from ckpttool.ops.inspect import inspect_checkpoint as _impl

    return _impl(Path(path), require=require, with_tensors=with_tensors, config=config, sets=sets)
