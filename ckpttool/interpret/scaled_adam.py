"""ScaledAdam's batched state, tied to the parameters it belongs to.

GPT-SoVITS's GPT stage trains with ScaledAdam (``GPT_SoVITS/AR/modules/optim.py``, RVC-Boss/GPT-SoVITS@48b1a01,
derived from icefall). It does not keep state per parameter: every ``step()`` groups each param group's
parameters into *batches* and keeps one state per batch:

- batches are keyed by ``(str(p.dtype), *p.shape)``, members in ``group["params"]`` order (optim.py:73-80), and
  the batches are sorted by that key with Python's tuple order (dtype string, then each dim numerically, a
  shorter shape first; optim.py:82-85);
- a batch's state is ``self.state[batch[0]]``: it lives on the batch's *first* parameter (optim.py:94-99; the
  docstring at L48-49 says "the last one", the code takes the first); the other members have no state at all;
- the state tensors carry a leading batch dimension B (the parameters are stacked, optim.py:100-102):
  ``delta`` and ``exp_avg_sq`` are ``(B, *shape)`` (L260, L277); ``param_rms`` and ``scale_exp_avg_sq``
  ``(B, 1, ..., 1)`` and ``scale_grads`` ``(size_update_period, B, 1, ..., 1)`` exist when the *stacked* batch
  has more than one element (L262-274: ``numel`` is overwritten with the whole stacked count, so two scalar
  ``alpha`` parameters get them too); ``step`` is a plain int (L250);
- the first batch of each group also holds ``model_norms`` ``(clipping_update_period,)`` from the second
  executed step on, and ``model_norm_threshold``/``num_clipped`` from step 1001 on (L314-337).

So "state for 11 of 31 parameters" is exactly right for a healthy file, and a per-parameter shape check is
wrong; the check here rebuilds the batches from the network's parameters and checks each state against
``(B, *shape)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.model import TensorInfo

Shape = tuple[int, ...]
METHOD = (
    "ScaledAdam's (dtype, shape) batches, state on each batch's first parameter (AR/modules/optim.py:73-99)"
)
SIZE_UPDATE_PERIOD = 4  # ScaledAdam's default size_update_period (optim.py:167), when a group does not say
CLIPPING_UPDATE_PERIOD = (
    100  # ScaledAdam's default (optim.py:168); GPT-SoVITS passes 1000 (kept in the group)
)


@dataclass
class Batch:
    """One ScaledAdam batch: its sort key ``(dtype, *shape)``, the state indices of its members in parameter
    order (the first owns the state) and their names."""

    key: tuple[Any, ...]
    members: list[Any]
    names: list[str]

    @property
    def shape(self) -> Shape:
        """The shape of each member."""
        return tuple(int(d) for d in self.key[1:])

    @property
    def owner(self) -> Any:
        """The state index that holds the batch's state (its first member)."""
        return self.members[0]


def form_batches(indices: list[Any], names: list[str], params: dict[str, TensorInfo]) -> list[Batch]:
    """The batches ScaledAdam forms from one param group: ``indices`` are the group's state indices and
    ``names`` the parameter each one is (same order). Grouped by ``(torch dtype string, *shape)`` in parameter
    order, sorted by that key (optim.py:73-85)."""
    buckets: dict[tuple[Any, ...], Batch] = {}
    for index, name in zip(indices, names, strict=True):
        t = params[name]
        key = (f"torch.{t.dtype}", *t.shape)
        buckets.setdefault(key, Batch(key, [], [])).members.append(index)
        buckets[key].names.append(name)
    return [buckets[k] for k in sorted(buckets)]


def expected_state(batch: Batch, group: dict[str, Any], first: bool) -> dict[str, Shape]:
    """The state tensors a batch's state holds and their shapes (``model_norms`` only for the first batch of
    a group, and only once two steps were executed: callers treat it as optional)."""
    b, shape = len(batch.members), batch.shape
    numel = b
    for d in shape:
        numel *= d
    out: dict[str, Shape] = {"delta": (b, *shape), "exp_avg_sq": (b, *shape)}
    if numel > 1:
        ones = (1,) * len(shape)
        period = group.get("size_update_period", SIZE_UPDATE_PERIOD)
        out["param_rms"] = (b, *ones)
        out["scale_exp_avg_sq"] = (b, *ones)
        out["scale_grads"] = (int(period), b, *ones)
    if first:
        out["model_norms"] = (int(group.get("clipping_update_period", CLIPPING_UPDATE_PERIOD)),)
    return out


def required_keys(batch: Batch) -> list[str]:
    """The keys ``_step_one_batch`` reads from a non-empty state (a state that is not empty is never
    initialised again, optim.py:229-230): ``step``, ``delta``, ``exp_avg_sq``, and the size-update tensors when
    each member has more than one element (the update uses the per-parameter count, optim.py:447-452)."""
    per_param = 1
    for d in batch.shape:
        per_param *= d
    keys = ["step", "delta", "exp_avg_sq"]
    return keys + (["param_rms", "scale_exp_avg_sq", "scale_grads"] if per_param > 1 else [])


@dataclass
class BadTensor:
    """A state tensor whose shape is not its batch's: state index, owning parameter, key, shapes."""

    index: Any
    param: str
    key: str
    state_shape: Shape
    expected: Shape
    batch: str  # "2 x [16, 16]"


@dataclass
class BatchAlignment:
    """ScaledAdam's state against the network's batches: which parameter owns each state (``mapping``), how
    many batches and parameters the state covers, tensors of the wrong shape, missing keys, state on
    parameters that own no batch (``stray``), and the verdict (``aligned``, ``problem``)."""

    aligned: bool
    problem: str | None = None
    mapping: dict[Any, str] = field(default_factory=dict)
    batches: int = 0
    covered: int = 0
    bad: list[BadTensor] = field(default_factory=list)
    missing_keys: dict[Any, list[str]] = field(default_factory=dict)
    stray: list[Any] = field(default_factory=list)


def _lookup(state: dict[Any, Any], index: Any) -> Any:
    return state.get(index, state.get(str(index)))


def align_scaled_adam(
    groups: list[dict[str, Any]], state: dict[Any, Any], params: dict[str, TensorInfo], names: list[str]
) -> BatchAlignment:
    """ScaledAdam's state (``groups``, ``state`` of its ``state_dict()``) against the network's parameters:
    ``names`` are the parameters (buffers left out) in ``state_dict`` order, which is the order
    ``model.parameters()`` hands them to the optimizer. Reads no tensor bytes."""
    order = [idx for g in groups for idx in g.get("params", [])]
    if len(order) != len(names):
        return BatchAlignment(
            False,
            f"ScaledAdam covers {len(order)} parameters but the network has {len(names)} parameter tensors: "
            "it belongs to another model",
        )
    batches: list[tuple[Batch, dict[str, Any], bool]] = []
    start = 0
    for g in groups:
        indices = list(g.get("params", []))
        group_batches = form_batches(indices, names[start : start + len(indices)], params)
        batches += [(b, g, i == 0) for i, b in enumerate(group_batches)]
        start += len(indices)
    owners = {b.owner for b, _, _ in batches}
    out = BatchAlignment(True, batches=len(batches))
    for batch, group, first in batches:
        entry = _lookup(state, batch.owner)
        if not isinstance(entry, dict):
            continue
        out.covered += len(batch.members)
        out.mapping[batch.owner] = batch.names[0]
        missing = [k for k in required_keys(batch) if k not in entry]
        if missing:
            out.missing_keys[batch.owner] = missing
        for key, want in expected_state(batch, group, first).items():
            got = entry.get(key)
            if isinstance(got, TensorInfo) and got.shape != want:
                what = f"{len(batch.members)} x {list(batch.shape)}"
                out.bad.append(BadTensor(batch.owner, batch.names[0], key, got.shape, want, what))
    out.stray = [
        k for k in state if k not in owners and not (isinstance(k, str) and k.isdigit() and int(k) in owners)
    ]
    if out.bad or out.missing_keys:
        out.aligned = False
        broken = (
            [f"{len(out.bad)} state tensors do not have their batch's shape (B, *shape)"] if out.bad else []
        )
        broken += [f"state {i} lacks {', '.join(keys)}" for i, keys in list(out.missing_keys.items())[:3]]
        out.problem = (
            f"ScaledAdam: {'; '.join(broken)}; torch loads them without a word, and ScaledAdam's step() then "
            "fails (or, where shapes broadcast, updates the wrong values)"
        )
    elif out.stray and out.covered == 0:
        out.aligned = False
        out.problem = (
            f"no ScaledAdam state sits where this network's batches keep it (state on {len(out.stray)} other "
            "parameters): it belongs to another model"
        )
    elif out.stray:
        out.problem = (
            f"state on {len(out.stray)} parameter(s) that own no batch (e.g. index {out.stray[0]}): ScaledAdam "
            "never reads it; the file was written for another parameter layout"
        )
    return out
