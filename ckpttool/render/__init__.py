"""Reports to text: aligned tables for people (:mod:`ckpttool.render.grid`), one JSON document for machines."""

from __future__ import annotations

import json
from typing import Any


def to_json(doc: dict[str, Any]) -> str:
    """``doc`` as indented JSON with a final newline, keys in their order; values JSON cannot hold become
    strings."""
    return json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n"
