"""The training environment's torch and Lightning versions, read without importing either.

What ``torch.load`` does with a file depends on the torch (and Lightning) of the process that will resume, not
on ckpttool's: GPT-SoVITS on Windows ships its own ``runtime/`` folder. Versions come, in order, from the
user's overrides (``--torch-version``, ``--lightning-version``), from the package metadata in
``--trainer-root``'s environment (``runtime/Lib/site-packages``, ``.venv``/``venv``/``env``), else from the
current environment's metadata (``importlib.metadata``, no import).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

SITE_PACKAGES = (
    "runtime/Lib/site-packages",  # GPT-SoVITS / RVC Windows bundles
    "runtime/lib/python3*/site-packages",
    ".venv/lib/python3*/site-packages",
    ".venv/Lib/site-packages",
    "venv/lib/python3*/site-packages",
    "venv/Lib/site-packages",
    "env/lib/python3*/site-packages",
    "env/Lib/site-packages",
)
LIGHTNING = ("pytorch_lightning", "pytorch-lightning", "lightning")


@dataclass(frozen=True)
class Environment:
    """Versions of the process that will resume (``None``: unknown) and where they were read from."""

    torch: str | None
    lightning: str | None
    source: str

    def to_json(self) -> dict[str, str | None]:
        """The ``environment`` field of ``ckpttool.check/2``."""
        return {"torch": self.torch, "lightning": self.lightning, "source": self.source}


def version_tuple(version: str | None) -> tuple[int, int]:
    """(major, minor) of a version string (``2.5.1+cu124`` -> (2, 5)); (0, 0) when unknown."""
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _dist_info(site: Path, names: tuple[str, ...]) -> str | None:
    for name in names:
        for d in sorted(site.glob(f"{name.replace('-', '_')}-*.dist-info")) + sorted(
            site.glob(f"{name}-*.dist-info")
        ):
            m = re.match(rf"{re.escape(d.name.split('-')[0])}-([^-]+)\.dist-info$", d.name)
            if m:
                return m.group(1)
    return None


def from_trainer_root(root: Path) -> Environment | None:
    """The versions installed in a trainer checkout's own environment, if it has one."""
    for pattern in SITE_PACKAGES:
        for site in sorted(root.glob(pattern)):
            torch = _dist_info(site, ("torch",))
            if torch:
                return Environment(torch, _dist_info(site, LIGHTNING), f"{site}")
    return None


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def detect_environment(
    trainer_root: str | Path | None = None, torch: str | None = None, lightning: str | None = None
) -> Environment:
    """The environment a resume will run in (see the module docstring for the order)."""
    found = from_trainer_root(Path(trainer_root)) if trainer_root else None
    if found is None:
        t = _installed("torch")
        lt = next(filter(None, (_installed(n) for n in LIGHTNING)), None)
        found = Environment(t, lt, "this environment's installed packages")
    if torch or lightning:
        source = "--torch-version/--lightning-version" + (
            "" if torch and lightning else f", else {found.source}"
        )
        found = Environment(torch or found.torch, lightning or found.lightning, source)
    return found


def effective_weights_only(setting: str, env: Environment) -> tuple[bool, str]:
    """(weights_only, why) for a loader setting (:class:`ckpttool.trainers.behaviour.Loader`) in ``env``.
    Sources: torch/serialization.py ``load`` (default False until 2.5, True from 2.6.0); Lightning
    fabric/utilities/cloud_io.py ``_load`` (2.4.0-2.5.x default ``weights_only`` False; 2.6.0 passes None)."""
    t = version_tuple(env.torch)
    torch_default = t >= (2, 6)
    tv = f"torch {env.torch or 'unknown'}"
    if setting == "disabled":
        return False, "the trainer passes weights_only off (False)"
    if setting == "enabled":
        return True, "the trainer passes weights_only=True"
    if setting == "enabled-from-2.4":
        on = t >= (2, 4) or torch_default
        return on, f"the trainer passes weights_only=True on torch >= 2.4 ({tv})"
    if setting == "lightning":
        lv = version_tuple(env.lightning)
        if (2, 4) <= lv < (2, 6):
            return False, f"Lightning {env.lightning} loads with weights_only off (False)"
        return torch_default, (
            f"Lightning {env.lightning or 'unknown'} leaves weights_only to torch: "
            f"{'True' if torch_default else 'False'} on {tv}"
        )
    return torch_default, f"torch.load's default: {'True' if torch_default else 'False'} on {tv}"
