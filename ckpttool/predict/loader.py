"""Will the trainer's loader accept this file? ``torch.load`` predicted from what ckpttool read, not run.

Facts: torch/serialization.py ``load`` (zip, TorchScript and tar handling per version) and
torch/_weights_only_unpickler.py (the allow-list in :mod:`ckpttool.formats.weights_only`, the opcodes it
implements, the modules it blocks from 2.5); the research notes cite each line. The messages quote the
exception the trainer will see, shortened.
"""

from __future__ import annotations

from dataclasses import dataclass

from ckpttool.errors import CkptError
from ckpttool.formats.weights_only import BLOCKED_MODULES, OPCODES, allowed_globals, parse_version
from ckpttool.model import Checkpoint
from ckpttool.vocab import Format

# What torch.load raises for what ckpttool found (the error kinds of ckpttool.errors)
_READ_ERRORS = {
    "truncated": "RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory",
    "corrupt": "RuntimeError: PytorchStreamReader failed reading zip archive (the file is damaged)",
    "not-found": "FileNotFoundError: No such file or directory",
    "unsupported": "UnpicklingError: the file is not a torch checkpoint",
}

# What safetensors' load_file raises (safetensors 0.7, checked against the real library in tests/test_predict.py)
_SAFETENSORS_ERRORS = {
    "truncated": "SafetensorError: Error while deserializing header: incomplete metadata, file not fully covered",
    "corrupt": "SafetensorError: Error while deserializing header (the file is damaged)",
}


@dataclass(frozen=True)
class LoadResult:
    """Whether the loader returns (``ok``) or raises ``error``; ``harmless``: the globals that made a
    ``weights_only`` load fail although they only build data (a rewrite can fix those)."""

    ok: bool
    error: str | None = None
    harmless: tuple[str, ...] = ()


def refused_globals(ckpt: Checkpoint, torch_version: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Globals of ``ckpt`` that ``torch.load(weights_only=True)`` of ``torch_version`` does not accept."""
    allowed = allowed_globals(torch_version) | set(extra)
    out = []
    for use in ckpt.safety.uses:
        name = use.name
        module = name.rsplit(".", 1)[0]
        if name in allowed and not (parse_version(torch_version) >= (2, 5) and module in BLOCKED_MODULES):
            continue
        if ":" in name:  # a verdict on the container (zip ambiguity), not a global
            continue
        out.append(name)
    return out


def predict_load(
    ckpt: Checkpoint | CkptError,
    weights_only: bool,
    torch_version: str | None,
    safe_globals: tuple[str, ...] = (),
) -> LoadResult:
    """What ``torch.load(path, weights_only=weights_only)`` in torch ``torch_version`` does with the file
    ckpttool read as ``ckpt`` (or failed to read, with that error)."""
    if isinstance(ckpt, CkptError):
        if ckpt.consumer_error:
            return LoadResult(False, ckpt.consumer_error)
        member = str(ckpt.path or "")
        if member.endswith(".safetensors") and ckpt.kind in _SAFETENSORS_ERRORS:
            # a folder's weights go through safetensors' load_file, not torch.load (transformers trainer.py:3697,
            # accelerate checkpointing.py load_accelerator_state)
            name = member.replace("\\", "/").rsplit("/", 1)[-1]
            return LoadResult(False, f"{name}: {_SAFETENSORS_ERRORS[ckpt.kind]}")
        return LoadResult(False, _READ_ERRORS.get(ckpt.kind, f"{ckpt.kind}: {ckpt.message}"))
    version = torch_version or "2.6"
    if ckpt.format == Format.TAGGED_ZIP:
        return LoadResult(False, "UnpicklingError: invalid load key (the GPT-SoVITS version header in the "
                                 "first two bytes); only GPT-SoVITS's own loader reads it")  # fmt: skip
    if ckpt.format == Format.SAFETENSORS:
        return LoadResult(
            False, "UnpicklingError: invalid load key, a safetensors file is not a torch.load file"
        )
    if not weights_only:
        return LoadResult(True)
    if ckpt.format == Format.TORCHSCRIPT and parse_version(version) >= (2, 6):
        return LoadResult(False, "RuntimeError: Cannot use weights_only=True with TorchScript archives")
    opcodes = set(ckpt.meta.get("pickle_opcodes") or ())
    unsupported = sorted(opcodes - OPCODES)  # protocol >= 3 opcodes: torch.save writes protocol 2
    if unsupported:
        return LoadResult(
            False, f"UnpicklingError: Weights only load failed ... Unsupported operand ({unsupported[0]})"
        )
    refused = refused_globals(ckpt, version, safe_globals)
    if refused:
        from ckpttool.formats.policy import classify

        harmless = tuple(n for n in refused if classify(*n.rsplit(".", 1))[0] == "safe")
        return LoadResult(
            False,
            f"UnpicklingError: Weights only load failed ... Unsupported global: GLOBAL {refused[0]} was not an "
            "allowed global by default",
            harmless if len(harmless) == len(refused) else (),
        )
    return LoadResult(True)
