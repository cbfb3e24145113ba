"""Turn a Layout into the ten-piece table, the optimizer checks and the resume verdict.

The verdict vocabulary (docs/json-schema.md): ``full`` (training continues where it stopped), ``warm-start``
(weights and optimizer, but the schedule or progress must be re-derived by hand), ``weights-only`` (no usable
optimizer state: moments restart from zero) and ``none`` (no network weights at all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.interpret import structure as st
from ckpttool.interpret.amp_steps import skipped_steps
from ckpttool.interpret.optimizer import OptimizerReport, analyse
from ckpttool.interpret.profiles import PIECES, Layout, counter_value
from ckpttool.interpret.trainable import explain_partial, strategies
from ckpttool.model import Checkpoint, Stub, TensorInfo, get_path
from ckpttool.vocab import FindingCode, PieceStatus, Severity, Verdict

CONSEQUENCES = {
    "model": "nothing to resume or fine-tune from",
    "optimizer": "Adam moments restart from zero; expect a loss spike for the first few hundred steps",
    "scheduler": "the LR schedule restarts from its initial value unless the trainer recomputes it",
    "step": "the step counter restarts at 0: LR schedule, logging and checkpoint names restart",
    "epoch": "the epoch counter restarts: the trainer re-runs epochs already trained",
    "norm_stats": "inputs get normalised with recomputed statistics; fine only if the data did not change",
    "rng": "dropout and shuffling draw different random numbers than an uninterrupted run (not bit-exact)",
    "scaler": "the AMP loss scale restarts at its default and re-calibrates, skipping a few steps",
    "config": "the architecture must be rebuilt from a config kept elsewhere; keep config.json with the weights",
    "version": "nothing records which code version wrote the file",
}
REQUIRED = ("model", "optimizer", "scheduler", "step|epoch")


@dataclass
class Piece:
    """One of the ten pieces of training state: ``present`` (``where``: its path), ``rebuilt`` by the trainer,
    or ``absent`` (``consequence``: what that costs); ``required`` for an exact resume."""

    name: str
    status: PieceStatus
    required: bool
    where: str | None = None
    detail: str = ""
    consequence: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A value of ``pieces`` in ``ckpttool.inspect/1``."""
        return dict(self.__dict__)


@dataclass
class Network:
    """One network's state dict: where it is, its tensor count, values (``numel``), bytes, dtypes and devices."""

    label: str
    path: str
    tensors: int
    numel: int
    nbytes: int
    dtypes: dict[str, int]
    devices: list[str]

    def to_json(self) -> dict[str, Any]:
        """An entry of ``networks`` in ``ckpttool.inspect/1``."""
        return {
            "name": self.label,
            "path": self.path,
            "tensors": self.tensors,
            "numel": self.numel,
            "bytes": self.nbytes,
            "dtypes": self.dtypes,
            "devices": self.devices,
        }


@dataclass
class Finding:
    """One finding: ``severity`` error, warning or info; ``code`` a stable identifier (docs/json-schema.md)."""

    severity: Severity
    code: FindingCode
    message: str

    def to_json(self) -> dict[str, Any]:
        """An entry of ``findings`` in ``ckpttool.inspect/1``."""
        return dict(self.__dict__)


@dataclass
class Interpretation:
    """A checkpoint interpreted: its layout, networks, ten pieces, optimizer reports, resume verdict (with the
    reason), findings and the version it records."""

    layout: Layout
    networks: list[Network]
    pieces: list[Piece]
    optimizers: list[OptimizerReport]
    verdict: Verdict
    verdict_reason: str
    findings: list[Finding] = field(default_factory=list)
    version: str | None = None


def network_params(ckpt: Checkpoint, path: str) -> dict[str, TensorInfo]:
    """The state dict at ``path`` (name -> tensor), or ``{}`` when what is there is not a state dict. A
    TorchScript module is read as its parameters and buffers (the tensors under ``path``, by attribute path, as
    ``torch.jit.load(...).state_dict()`` names them), never by running its code."""
    obj = get_path(ckpt.root, path)
    if isinstance(obj, Stub) and ckpt.format == "torchscript":
        prefix = f"{path}." if path else ""
        return {t.path[len(prefix) :]: t for t in ckpt.tensors if t.path.startswith(prefix)}
    return dict(obj) if st.is_state_dict(obj) else {}


def _summ(label: str, path: str, params: dict[str, TensorInfo]) -> Network:
    dtypes: dict[str, int] = {}
    for t in params.values():
        dtypes[t.dtype] = dtypes.get(t.dtype, 0) + 1
    return Network(
        label,
        path,
        len(params),
        sum(t.numel for t in params.values()),
        sum(t.nbytes for t in params.values()),
        dtypes,
        sorted({t.device for t in params.values()}),
    )


def _value(ckpt: Checkpoint, path: str | None) -> Any:
    if path is None:
        return None
    if path.startswith(("tag:", "inferred:")):
        return path.split(":", 1)[1]
    try:
        return get_path(ckpt.root, path)
    except (KeyError, IndexError, ValueError):
        return None


def _short(obj: Any) -> str:
    if isinstance(obj, Stub):
        return obj.qualname
    if isinstance(obj, TensorInfo):
        return f"tensor {obj.dtype}{list(obj.shape)}"
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


def interpret(ckpt: Checkpoint, layout: Layout, read_scalars: Any = None) -> Interpretation:
    """Build the report pieces. ``read_scalars(list[TensorInfo]) -> list[value]`` reads Adam step counters."""
    networks = [_summ(label, path, network_params(ckpt, path)) for label, path in layout.networks.items()]
    optimizers: list[OptimizerReport] = []
    for opt_path, label in layout.optimizers.items():
        opt = _value(ckpt, opt_path)
        params = network_params(ckpt, layout.networks[label]) if label in layout.networks else None
        group_layout = layout.group_layout if label == "G" else None
        extra = strategies(layout.trainable.get(opt_path))
        rep = analyse(opt_path, label, opt, params, group_layout, extra)
        if read_scalars is not None and rep.step_tensors:
            rep.step_values += [float(v) for v in read_scalars(rep.step_tensors) if v is not None]
        if rep.step_values:
            rep.step_range = (min(rep.step_values), max(rep.step_values))
        optimizers.append(rep)
    pieces = _pieces(ckpt, layout, networks, optimizers)
    findings = _findings(ckpt, layout, networks, optimizers)
    verdict, reason = _verdict(pieces, networks, optimizers, layout)
    version = _value(ckpt, layout.version)
    return Interpretation(
        layout,
        networks,
        pieces,
        optimizers,
        verdict,
        reason,
        findings,
        None if version is None else str(version),
    )


def _pieces(
    ckpt: Checkpoint, layout: Layout, networks: list[Network], opts: list[OptimizerReport]
) -> list[Piece]:
    """The ten pieces in PIECES order: present (where, what), rebuilt by the trainer, not needed, or absent
    (with its consequence). A step or epoch counter is required when the file has neither and the trainer does
    not rebuild the step."""
    req = {"model", "optimizer", "scheduler"}
    counter_req = layout.step is None and layout.epoch is None and "step" not in layout.rebuilt
    where = _piece_locations(ckpt, layout, networks, opts)
    pieces: list[Piece] = []
    for name in PIECES:
        path, detail = where[name]
        required = name in req or (name in ("step", "epoch") and counter_req)
        piece = _piece(layout, name, path, detail, required)
        adam = max((o.step_range[1] for o in opts if o.step_range), default=None)
        if name == "step" and piece.status == "absent" and adam is not None:
            # accelerate keeps no training step, but Adam counted its updates: the progress measure there is
            piece.detail = "; ".join(x for x in (piece.detail, f"the optimizer has taken {adam:.0f} steps: "
                                     "that is the progress measure") if x)  # fmt: skip
        pieces.append(piece)
    return pieces


def _piece_locations(
    ckpt: Checkpoint, layout: Layout, networks: list[Network], opts: list[OptimizerReport]
) -> dict[str, tuple[str | None, str]]:
    """Per piece: where the file holds it (None: nowhere) and a one-line summary of what is there."""
    return {
        "model": (
            ", ".join(n.path or "<root>" for n in networks) or None,
            "; ".join(f"{n.label}: {n.tensors} tensors, {n.numel:,} values" for n in networks),
        ),
        "optimizer": (
            ", ".join(o.path or "<root>" for o in opts) or None,
            "; ".join(
                f"{o.network or '?'}: {o.kind}, {len(o.groups)} group(s), "
                f"lr {', '.join(_fmt_lr(g.lr) for g in o.groups)}, {_coverage(o)}"
                for o in opts
            ),
        ),
        "scheduler": (
            ", ".join(s or "<root>" for s in layout.schedulers) or None,
            "; ".join(_sched_detail(_value(ckpt, s)) for s in layout.schedulers),
        ),
        "step": (layout.step, _counter(ckpt, layout, "step")),
        "epoch": (layout.epoch, _counter(ckpt, layout, "epoch")),
        "norm_stats": (
            ", ".join(layout.norm_stats) or None,
            ", ".join(f"{p}: {_short(_value(ckpt, p))}" for p in layout.norm_stats),
        ),
        "rng": (", ".join(layout.rng.values()) or None, ", ".join(sorted(layout.rng))),
        "scaler": (
            None if layout.scaler is None else layout.scaler or "<root>",
            _scaler_detail(_value(ckpt, layout.scaler)),
        ),
        "config": (layout.config, _short(_value(ckpt, layout.config)) if layout.config else ""),
        "version": (
            layout.version
            if layout.version and not layout.version.startswith(("tag:", "inferred:"))
            else None,
            str(_value(ckpt, layout.version)) if layout.version else "",
        ),
    }


def _piece(layout: Layout, name: str, path: str | None, detail: str, required: bool) -> Piece:
    """One piece's row, from where it is (``path``) or why it is not."""
    if name == "version" and layout.version and layout.version.startswith("tag:"):
        return Piece(name, "present", False, "file header", f"GPT-SoVITS tag {layout.version[4:]}")
    if name == "version" and layout.version and layout.version.startswith("inferred:"):
        value = layout.version.split(":", 1)[1]
        evidence = "; ".join(layout.version_evidence)
        return Piece(name, "present", False, "(inferred)", f"{value}, not stored: {evidence}")
    if path is not None:
        meaning = layout.meaning.get(name)
        return Piece(
            name, "present", required, path, "; ".join(dict.fromkeys(x for x in (detail, meaning) if x))
        )
    if name in layout.rebuilt:
        return Piece(name, "rebuilt", required, None, layout.rebuilt[name])
    if name in layout.not_needed:
        return Piece(name, "absent", False, None, layout.not_needed[name])
    return Piece(name, "absent", required, None, "", CONSEQUENCES[name])


def _coverage(o: OptimizerReport) -> str:
    if o.batches is None:
        return f"state {o.n_state}/{o.n_params}"
    return f"state in {o.n_state} of {o.batches} batches, {o.covered}/{o.n_params} parameters"


def _fmt_lr(lr: Any) -> str:
    return f"{lr:.3g}" if isinstance(lr, float) else str(lr)


def _counter(ckpt: Checkpoint, layout: Layout, name: str) -> str:
    path = getattr(layout, name)
    if path is None:
        return ""
    meaning = layout.meaning.get(name)
    return meaning if meaning and name in layout.counter_parse else f"{path} = {_short(_value(ckpt, path))}"


def _sched_detail(obj: Any) -> str:
    if not isinstance(obj, dict):
        return _short(obj)
    kind = (
        "ExponentialLR"
        if "gamma" in obj and "step_size" not in obj and "T_max" not in obj
        else (
            "StepLR"
            if "step_size" in obj
            else "CosineAnnealingLR"
            if "T_max" in obj
            else "WarmupCosineLRSchedule"
            if "warmup_steps" in obj
            else "LambdaLR"
            if "lr_lambdas" in obj
            else "scheduler"
        )
    )
    parts = [kind]
    if "last_epoch" in obj:
        parts.append(f"last_epoch {obj['last_epoch']}")
    if "_current_step" in obj:
        parts.append(f"step {obj['_current_step']}")
    if isinstance(obj.get("_last_lr"), list):
        parts.append("last lr " + ", ".join(_fmt_lr(x) for x in obj["_last_lr"]))
    return ", ".join(parts)


def _scaler_detail(obj: Any) -> str:
    if isinstance(obj, dict) and "scale" in obj:
        return f"scale {obj['scale']}"
    return ""


def _findings(
    ckpt: Checkpoint, layout: Layout, networks: list[Network], opts: list[OptimizerReport]
) -> list[Finding]:
    out: list[Finding] = []
    for o in opts:
        if o.problem and o.aligned is False:
            out.append(Finding("error", "optimizer-misaligned", f"{o.path}: {o.problem}"))
            for m in o.mismatches[:5]:
                out.append(
                    Finding(
                        "error",
                        "optimizer-shape",
                        f"{o.path} state {m.index} ({m.param}): {m.key} "
                        f"{list(m.state_shape)} but {m.expected_as} is {list(m.param_shape)}",
                    )
                )
        elif o.problem:
            out.append(Finding("warning", "optimizer-unchecked", f"{o.path}: {o.problem}"))
        if o.aligned and o.method:
            fits = (
                f"state for {o.n_state - len(o.stray)} batches covering {o.covered} of {o.n_params} parameters; "
                "every state "
                "tensor has its batch's shape (B, *parameter shape)"
                if o.batches is not None
                else f"all {o.n_state} state entries match their parameters"
            )
            out.append(Finding("info", "optimizer-aligned", f"{o.path}: {fits} (mapped by {o.method})"))
        covered = o.covered if o.covered is not None else o.n_state
        if covered < o.n_params and o.n_params and (o.batches is None or o.aligned is not False):
            expected = (
                explain_partial(o, _value(ckpt, o.path), layout.trainable.get(o.path))
                if o.batches is None
                else None
            )
            rest = (
                f"state for {o.n_state - len(o.stray)} of {o.batches} batches covering {covered} of {o.n_params} "
                "parameters; ScaledAdam starts the others' moments afresh"
                if o.batches is not None
                else f"state for {o.n_state} of {o.n_params} parameters; the rest never received a gradient"
            )
            out.append(
                Finding("info", "optimizer-partial", expected)
                if expected
                else Finding("warning", "optimizer-partial", f"{o.path}: {rest}")
            )
        if o.step_range:
            out.extend(_step_findings(ckpt, layout, o))
    steps = {o.network: o.step_range[1] for o in opts if o.step_range}
    if "G" in steps and "D" in steps and steps["G"] != steps["D"]:
        out.append(
            Finding(
                "warning",
                "g-d-stage",
                f"G optimizer has taken {steps['G']:.0f} steps but D "
                f"{steps['D']:.0f}: G and D come from different stages",
            )
        )
    devices = sorted({d for n in networks for d in n.devices if d != "cpu"})
    if devices:
        out.append(
            Finding(
                "info",
                "devices",
                f"tensors were saved on {', '.join(devices)}; load with "
                "map_location='cpu' (ckpttool does) or the device you train on",
            )
        )
    for g in ckpt.foreign_globals:
        out.append(Finding("info", "stubbed-class", f"{g} is kept as an inert stub (never imported)"))
    return out


def _step_findings(ckpt: Checkpoint, layout: Layout, o: OptimizerReport) -> list[Finding]:
    lo, hi = o.step_range or (0.0, 0.0)
    out: list[Finding] = []
    if lo != hi:
        out.append(
            Finding(
                "info",
                "adam-step-spread",
                f"{o.path}: Adam step ranges {lo:.0f}..{hi:.0f}: some "
                "parameters were frozen or unused for a while",
            )
        )
    step = counter_value(ckpt, layout, "step") if "step" not in layout.counter_parse else None
    epoch = counter_value(ckpt, layout, "epoch") if "epoch" not in layout.counter_parse else None
    name = o.kind.split(" ")[0] if o.batches is not None else "Adam"
    skipped = _amp_skips(ckpt, layout, int(hi), step, name) if isinstance(step, int) else None
    if isinstance(step, int) and not isinstance(step, bool):
        if int(hi) == step:
            out.append(Finding("info", "adam-step", f"{o.path}: Adam step {hi:.0f} equals the recorded step"))
        elif skipped is not None:
            out.append(Finding("info", "amp-skipped-steps", f"{o.path}: {skipped}"))
        else:
            out.append(
                Finding(
                    "warning",
                    "adam-step",
                    f"{o.path}: Adam step {hi:.0f} but the recorded step is {step}"
                    " (gradient accumulation, or counters from different saves)",
                )
            )
    elif isinstance(epoch, int) and not isinstance(epoch, bool) and epoch > 0:
        out.append(
            Finding(
                "info",
                "adam-step",
                f"{o.path}: {hi:.0f} optimizer steps over {epoch} epoch(s), about {hi / epoch:.3g} per epoch",
            )
        )
    return out


def _amp_skips(
    ckpt: Checkpoint, layout: Layout, executed: int, recorded: int, optimizer: str = "the optimizer"
) -> str | None:
    """Why the optimizer took fewer steps than the recorded step, when the saved GradScaler explains it."""
    if layout.scaler is None or layout.step is None:
        return None
    found = skipped_steps(_value(ckpt, layout.scaler), executed, recorded)
    if found is None:
        return None
    lightning = isinstance(ckpt.root, dict) and "pytorch-lightning_version" in ckpt.root
    return found.sentence(
        "Lightning's global_step" if lightning else f"the recorded step ({layout.step})", optimizer
    )


def _verdict(
    pieces: list[Piece], networks: list[Network], opts: list[OptimizerReport], layout: Layout
) -> tuple[Verdict, str]:
    status = {p.name: p.status for p in pieces}
    if status["model"] == "absent":
        return "none", "no network weights in this file"
    if status["optimizer"] == "absent":
        return "weights-only", CONSEQUENCES["optimizer"]
    if any(o.aligned is False for o in opts):
        return "weights-only", "optimizer state does not fit the network; it cannot be loaded as is"
    missing_opt = [n.label for n in networks if n.label not in {o.network for o in opts}]
    if missing_opt:
        return "warm-start", f"no optimizer state for {', '.join(missing_opt)}: its moments restart from zero"
    if status["scheduler"] == "absent" and "scheduler" not in layout.not_needed:
        return "warm-start", CONSEQUENCES["scheduler"]
    if (
        status["step"] == "absent"
        and status["epoch"] == "absent"
        and not {"step", "epoch"} <= set(layout.not_needed)
    ):
        return "warm-start", CONSEQUENCES["step"]
    return "full", "weights, optimizer, schedule and progress can all be restored"
