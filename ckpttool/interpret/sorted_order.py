"""Registration order recovered for files that sorted their keys (safetensors), so optimizer state lines up.

``Optimizer.state_dict`` numbers parameters in the order they were given to the optimizer: for
``model.parameters()`` that is module registration order (torch/optim/optimizer.py ``state_dict``). A
safetensors file stores its tensors sorted (by dtype, then byte-wise by name: safetensors/src/tensor.rs
``prepare``), so ``layers.10`` comes before ``layers.2`` and ``linear1`` before ``self_attn``, and pairing the
state with the file's order puts moments on the wrong parameters (accelerate's ``save_state`` writes exactly
that pair: ``model.safetensors`` and ``optimizer.bin``).

The order is rebuilt from module structure and confirmed by shapes, as an assignment: the names are cut into
blocks (everything up to the last numeric index of a name: ``layers.3``; else its top module), blocks are
taken in natural order (``layers.2`` before ``layers.10``) wherever their shapes fit the next state entries,
and inside a block each entry takes a parameter of its shape (``weight`` before ``bias``). Parameters of equal
shape inside one block cannot be told apart by shapes: the fit is then reported as ambiguous, never as an
error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ckpttool.model import TensorInfo

Shape = tuple[int, ...]
METHOD = "module structure and shapes (the file sorted its keys, e.g. safetensors)"
_ATTR_RANK = {"weight": 0, "in_proj_weight": 0, "weight_v": 0, "weight_g": 1, "in_proj_bias": 1, "bias": 2}


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """``layers.10.w`` after ``layers.2.w``: numeric parts compare as numbers."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in name.split("."))


def block_of(name: str) -> str:
    """The repeated unit a parameter belongs to: the name up to its last numeric part, else its top module."""
    parts = name.split(".")
    last = max((i for i, p in enumerate(parts[:-1]) if p.isdigit()), default=-1)
    return ".".join(parts[: last + 1]) if last >= 0 else parts[0]


def _within(name: str) -> tuple[object, ...]:
    module, _, attr = name.rpartition(".")
    return (natural_key(module), _ATTR_RANK.get(attr, 3), attr)


@dataclass
class Recovered:
    """An order that fits every known state shape; ``ambiguous``: parameters whose place among equal-shape
    siblings of their block shapes alone cannot decide."""

    names: list[str]
    ambiguous: list[str] = field(default_factory=list)


def recover(names: list[str], wanted: list[Shape | None], params: dict[str, TensorInfo]) -> Recovered | None:
    """Assign ``names`` to the state entries whose shapes are ``wanted`` (None: an entry without state), or
    None when no block-wise assignment fits."""
    if len(names) != len(wanted) or not names:
        return None
    blocks: dict[str, list[str]] = {}
    for n in sorted(names, key=natural_key):
        blocks.setdefault(block_of(n), []).append(n)
    pending = sorted(blocks.values(), key=lambda b: natural_key(block_of(b[0])))
    out: list[str] = []
    ambiguous: list[str] = []
    pos = 0
    while pos < len(wanted):
        chosen = None
        for block in pending:
            window = wanted[pos : pos + len(block)]
            if len(window) == len(block) and _fits(window, block, params):
                chosen = block
                break
        if chosen is None:
            return None
        pending.remove(chosen)
        assigned = _assign(wanted[pos : pos + len(chosen)], chosen, params)
        if assigned is None:
            return None
        out += assigned
        shapes = Counter(params[n].shape for n in chosen)
        ambiguous += [n for n in chosen if shapes[params[n].shape] > 1]
        pos += len(chosen)
    return Recovered(out, ambiguous)


def _fits(window: list[Shape | None], block: list[str], params: dict[str, TensorInfo]) -> bool:
    have = Counter(params[n].shape for n in block)
    need = Counter(w for w in window if w is not None)
    return all(have[s] >= c for s, c in need.items())


def _assign(window: list[Shape | None], block: list[str], params: dict[str, TensorInfo]) -> list[str] | None:
    left = sorted(block, key=_within)
    out: list[str] = []
    for w in window:  # known shapes first take a parameter of their shape, in module order
        match = next((n for n in left if w is not None and params[n].shape == w), None)
        if w is not None and match is None:
            return None
        out.append(match or "")
        if match:
            left.remove(match)
    for i, n in enumerate(out):  # entries without state take what is left, in module order
        if not n:
            out[i] = left.pop(0)
    return out
