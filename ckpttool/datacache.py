"""The YAML files shipped in ckpttool's data packages (specs, trainer records), parsed once and kept as JSON.

``inspect`` needs every architecture spec and trainer record; parsing their YAML (even with libyaml) costs
more than the rest of a small inspect, while reading the same data back from JSON costs a twentieth of it and
does not import ``yaml`` at all. The cache follows the rule Python uses for its ``.pyc`` files: an entry holds
the name, size and modification time of every YAML file it was made from, and is used only while they are
unchanged (editing a spec re-parses it). Only plain data is kept (an entry is written only when JSON gives
back exactly what YAML gave), it is read with :func:`json.loads`, and any trouble with the cache (no home
folder, a read-only disk, a damaged entry) falls back to parsing the YAML.

Where: ``$CKPTTOOL_CACHE_DIR``, else the platform's user cache folder (``~/.cache/ckpttool``,
``$XDG_CACHE_HOME/ckpttool``, ``~/Library/Caches/ckpttool``, ``%LOCALAPPDATA%\\ckpttool\\cache``).
``CKPTTOOL_NO_CACHE=1`` turns it off.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

Parse = Callable[[str, str], Any]  # (YAML text, file name) -> data; raises ConfigError for a bad file


def cache_dir() -> Path | None:
    """The folder cache entries go in, or None when caching is off (``CKPTTOOL_NO_CACHE``) or no home is
    known."""
    if os.environ.get("CKPTTOOL_NO_CACHE"):
        return None
    if os.environ.get("CKPTTOOL_CACHE_DIR"):
        return Path(os.environ["CKPTTOOL_CACHE_DIR"])
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return Path(base) / "ckpttool" / "cache" if base else None
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ckpttool"
    xdg = os.environ.get("XDG_CACHE_HOME")
    try:
        return Path(xdg) / "ckpttool" if xdg else Path.home() / ".cache" / "ckpttool"
    except RuntimeError:  # no home directory
        return None


def package_folder(package: str) -> Path | None:
    """The folder of data package ``package`` on disk, or None when it is not a plain folder (a zip import)."""
    module = importlib.import_module(package)
    file = getattr(module, "__file__", None)
    folder = Path(file).parent if file else None
    return folder if folder is not None and folder.is_dir() else None


def yaml_files(package: str, parse: Parse) -> dict[str, Any]:
    """``{file name: parse(text, name)}`` for every ``*.yaml`` file of data package ``package``, by name, from
    the cache when its entry matches the files on disk. Errors are those of ``parse``."""
    folder = package_folder(package)
    if folder is None:
        return _parse_resources(package, parse)
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".yaml"))
    key = [str(folder)] + [f"{p.name}:{st.st_size}:{st.st_mtime_ns}" for p in files for st in [p.stat()]]
    where = cache_dir()
    # one entry per data folder (each checkout or environment its own), replaced when the files change
    entry = where / f"{package}-{zlib.crc32(str(folder).encode()):08x}.json" if where else None
    if entry is not None:
        try:
            doc = json.loads(entry.read_bytes())
            if isinstance(doc, dict) and doc.get("key") == key and isinstance(doc.get("files"), dict):
                return dict(doc["files"])
        except (OSError, ValueError):
            pass
    parsed = {p.name: parse(p.read_text(encoding="utf-8"), p.name) for p in files}
    if entry is not None:
        _write(entry, {"key": key, "files": parsed})
    return parsed


def _parse_resources(package: str, parse: Parse) -> dict[str, Any]:
    from importlib import resources

    entries = sorted(
        (e for e in resources.files(package).iterdir() if e.name.endswith(".yaml")), key=lambda e: e.name
    )
    return {e.name: parse(e.read_text(encoding="utf-8"), e.name) for e in entries}


def _write(entry: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``entry`` atomically when JSON keeps it exactly; silently skip on any trouble."""
    try:
        text = json.dumps(doc, ensure_ascii=False)
        if json.loads(text) != doc:  # a tuple, a non-string key, a date: not plain data, do not cache
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, entry)
    except (OSError, TypeError, ValueError):
        pass
