"""Optimizers built over the trainable parameters only, as GPT-SoVITS v3/v4 builds them.

``AdamW(filter(lambda p: p.requires_grad, net_g.parameters()))`` makes one group holding only the parameters
that require grad, in ``parameters()`` order: the state indices skip every frozen module (``set_no_grad``) and,
when PEFT wraps a module, every base weight in it (PEFT leaves only the ``lora_*`` parameters trainable).
Aligning such an optimizer with the state dict needs the trainer's rule, which its record gives
(:class:`ckpttool.trainers.Trainable`); this module turns the rule into an alignment strategy for
:func:`ckpttool.interpret.optimizer.analyse` and explains the state entries that are expected to be missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ckpttool.interpret.optimizer import OptimizerReport
from ckpttool.keys import WRAPPER_PREFIXES, wrapper_prefix
from ckpttool.specs.peft import WRAP
from ckpttool.trainers import Trainable

Strategy = tuple[str, Callable[[list[str]], list[str] | None]]


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def trainable_names(names: list[str], rule: Trainable) -> list[str]:
    """The parameter names (state-dict order, buffers already left out) the optimizer covers under ``rule``:
    without the frozen modules and, with ``peft_adapters_only``, without every non-``lora_`` parameter of a
    PEFT-wrapped module (a key holding ``base_model.model.``)."""
    prefix = wrapper_prefix(names, WRAPPER_PREFIXES) or ""
    out = []
    for full in names:
        name = full[len(prefix) :]
        if _under(name, rule.frozen) or (rule.only and not _under(name, rule.only)):
            continue
        if rule.peft_adapters_only and (name.startswith(WRAP) or f".{WRAP}" in name) and "lora_" not in name:
            continue
        out.append(full)
    return out


def strategies(rule: Trainable | None) -> tuple[Strategy, ...]:
    """The alignment strategy ``rule`` gives (none without a rule), named as ``inspect`` reports it."""
    if rule is None:
        return ()
    parts = [f"{', '.join(rule.frozen)} frozen"] if rule.frozen else []
    if rule.only:
        parts.append(f"only {', '.join(rule.only)}")
    if rule.peft_adapters_only:
        parts.append("PEFT base weights frozen, adapters trained")
    method = "the trainer's requires_grad parameters" + (f" ({'; '.join(parts)})" if parts else "")
    return ((method, lambda names: trainable_names(names, rule)),)


def explain_partial(report: OptimizerReport, opt: Any, rule: Trainable | None) -> str | None:
    """When the parameters without optimizer state are exactly the trainer's ``no_gradient`` ones (present in
    the optimizer, never reached by a gradient, so AdamW never created their state), the sentence that says
    so; None otherwise (the missing state is then unexplained)."""
    if rule is None or not rule.no_gradient or not report.aligned or not isinstance(opt, dict):
        return None
    state = opt.get("state") or {}
    prefix = wrapper_prefix(list(report.mapping.values()), WRAPPER_PREFIXES) or ""
    stateless = [n for i, n in report.mapping.items() if i not in state and str(i) not in state]
    expected = [n for n in report.mapping.values() if _under(n[len(prefix) :], rule.no_gradient)]
    if not stateless or sorted(stateless) != sorted(expected):
        return None
    return (
        f"{report.path}: state for {report.n_state} of {report.n_params} parameters; the {len(stateless)} "
        f"without state are {', '.join(rule.no_gradient)}, which never receive a gradient in this trainer "
        f"({rule.source}): expected, an uninterrupted run has none either"
    )
