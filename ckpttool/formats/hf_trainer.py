"""A Hugging Face ``Trainer`` checkpoint folder, ``<output_dir>/checkpoint-<global_step>``, read as one bundle.

What ``Trainer._save_checkpoint`` writes (transformers 5.24.0, src/transformers/trainer.py:3363-3425, file names
at :245-250): the model (``model.safetensors``, ``pytorch_model.bin``, a sharded ``*.index.json`` with its
shards, or ``adapter_model.safetensors|bin`` for PEFT) and ``config.json``; unless ``save_only_model``,
``optimizer.pt``, ``scheduler.pt``, ``scaler.pt`` (fp16), ``rng_state.pth`` (``rng_state_<rank>.pth`` on
several processes); always ``trainer_state.json``, whose ``global_step`` and ``epoch`` the resume restores
(:1694-1697). ``training_args.bin`` (the pickled ``TrainingArguments``) is never loaded on resume and is not
read here.

The tree has the layout of a single-file bundle: ``model``, ``optimizer``, ``scheduler``, ``scaler``,
``rng.<rank>``, ``trainer_state`` (the JSON), ``global_step``, ``epoch``, ``config``; every tensor still points
at its own member file. The folder is claimed by its ``trainer_state.json``: a ``save_pretrained`` folder
(:mod:`ckpttool.formats.hf_pretrained`) has none.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ckpttool.errors import CorruptCheckpoint, TruncatedCheckpoint, UnsupportedFormat
from ckpttool.formats.base import Format, Probe, Sniffed, open_regular
from ckpttool.formats.folders import read_member, rebase, total_size
from ckpttool.formats.hf_sharded import read_hf_sharded
from ckpttool.model import Checkpoint, Safety, TensorInfo
from ckpttool.vocab import Format as FormatName

TRAINER_STATE = "trainer_state.json"  # trainer.py TRAINER_STATE_NAME
# The weights _load_from_checkpoint looks for (trainer.py:3615-3700): model.safetensors before pytorch_model.bin;
# a shard index; a PEFT adapter.
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin")
INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
MEMBERS = {"optimizer.pt": "optimizer", "scheduler.pt": "scheduler", "scaler.pt": "scaler"}
FSDP_MODEL = "pytorch_model_fsdp"  # trainer.py FSDP_MODEL_NAME
RNG = re.compile(r"^rng_state(?:_(\d+))?\.pth$")  # trainer.py:3856-3866
MAX_JSON = 64 << 20

# What Trainer._save_checkpoint writes into checkpoint-N (transformers trainer.py:3363-3425: the model and its
# config, optimizer.pt, scheduler.pt, scaler.pt, rng_state*.pth, trainer_state.json, training_args.bin) and what
# save_model writes beside the weights (the processing class's tokenizer / processor files); transformers
# deletes the whole folder when it rotates checkpoints (trainer_utils.py:342-386 rotate_checkpoints: shutil.rmtree).
TRAINER_FILES = re.compile(
    r"^(?:config\.json|generation_config\.json|model(?:-\d+-of-\d+)?\.safetensors|"
    r"pytorch_model(?:-\d+-of-\d+)?\.bin|(?:model\.safetensors|pytorch_model\.bin)\.index\.json|"
    r"adapter_model\.(?:safetensors|bin)|adapter_config\.json|optimizer\.(?:pt|bin)|scheduler\.pt|scaler\.pt|"
    r"rng_state(?:_\d+)?\.pth|trainer_state\.json|training_args\.bin|"
    r"tokenizer(?:_config)?\.json|special_tokens_map\.json|added_tokens\.json|vocab\.(?:txt|json)|"
    r"merges\.txt|(?:spiece|sentencepiece\.bpe|tokenizer)\.model|chat_template\.(?:jinja|json)|"
    r"(?:preprocessor|processor|video_preprocessor)_config\.json)$"
)


CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")  # trainer_utils.py:267 (_re_checkpoint)


class TooLarge(Exception):
    """A JSON member past :data:`MAX_JSON`: not read (bounded work), never called corrupt."""


def _json(path: Path) -> Any:
    """A JSON member, parsed; CorruptCheckpoint (naming the JSONDecodeError transformers would raise) when it is
    not JSON; TooLarge past MAX_JSON bytes."""
    if path.stat().st_size > MAX_JSON:
        raise TooLarge
    try:
        with open_regular(path) as fh:
            return json.loads(fh.read(MAX_JSON))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        error = CorruptCheckpoint(
            f"{path}: not valid JSON ({exc}); transformers cannot resume from this folder", path=str(path)
        )
        error.consumer_error = f"{type(exc).__name__}: {exc}"  # json.load in TrainerState.load_from_json
        raise error from None


def _trainer_state(folder: Path, root: dict[str, Any], notes: list[str]) -> None:
    """``trainer_state.json`` into ``root``: what ``TrainerState.load_from_json`` (trainer_callback.py) and the
    resume's arithmetic need (a dict; an integer ``global_step``), else the TypeError the resume raises."""
    path = folder / TRAINER_STATE
    try:
        state = _json(path)
    except TooLarge:
        m = CHECKPOINT_DIR.match(folder.name)
        notes.append(
            f"{TRAINER_STATE} is {path.stat().st_size / 1e6:.0f} MB, past ckpttool's {MAX_JSON >> 20} MB limit for "
            "JSON: not read" + ("; the step is taken from the folder name" if m else "")
        )
        root["trainer_state"] = None
        if m:
            root["global_step"] = int(m.group(1))
        return
    root["trainer_state"] = state
    if not isinstance(state, dict):
        error = CorruptCheckpoint(
            f"{path}: holds a {type(state).__name__}, not an object; transformers cannot resume from this folder",
            path=str(path),
        )
        error.consumer_error = (
            "TypeError: transformers.trainer_callback.TrainerState() argument after ** must be a mapping, not "
            f"{type(state).__name__}"
        )
        raise error
    step = state.get("global_step")
    if not isinstance(step, int) or isinstance(step, bool):
        error = CorruptCheckpoint(
            f"{path}: global_step is {step!r}, not an integer; transformers cannot resume from this folder",
            path=str(path),
        )
        # the resume divides it by the steps per epoch (trainer.py _inner_training_loop)
        error.consumer_error = (
            f"TypeError: unsupported operand type(s) for //: '{type(step).__name__}' and 'int'"
        )
        raise error
    root["global_step"] = step
    epoch = state.get("epoch")
    if isinstance(epoch, int | float) and not isinstance(epoch, bool):
        root["epoch"] = epoch


def read_hf_trainer(folder: Path) -> Checkpoint:
    """Read every member the resume loads; see the module docstring for the tree's layout."""
    root: dict[str, Any] = {}
    tensors: list[TensorInfo] = []
    safety = Safety()
    notes: list[str] = []
    foreign: list[str] = []
    read: list[str] = []

    def take(key: str, member: Checkpoint, label: str) -> Any:
        safety.merge(member.safety, prefix=f"{label}: ")
        foreign.extend(g for g in member.foreign_globals if g not in foreign)
        member_root, member_tensors = rebase(member.root, key, member.tensors)
        tensors.extend(member_tensors)
        return member_root

    names = sorted(f.name for f in folder.iterdir() if f.is_file())
    subdirs = sorted(f.name for f in folder.iterdir() if f.is_dir())
    if any(FSDP_MODEL in n for n in subdirs) or f"{FSDP_MODEL}.bin" in names:  # trainer.py:3618-3627
        raise UnsupportedFormat(
            f"{folder}: a Trainer checkpoint saved by FSDP (its {FSDP_MODEL}* shards); ckpttool does not read "
            "FSDP shards yet: inspect a full-state-dict save instead",
            path=str(folder),
        )
    adapter_dirs = [d for d in subdirs if any((folder / d / n).is_file() for n in WEIGHTS[2:])]
    if not (set(names) & {*WEIGHTS, *INDEXES}) and not adapter_dirs:  # checked first on resume (:3650-3665)
        exc = CorruptCheckpoint(
            f"{folder}: a Trainer checkpoint without model weights (no {', '.join(WEIGHTS)} or shard index); "
            "transformers refuses to resume from it",
            path=str(folder),
        )
        exc.consumer_error = f"ValueError: Can't find a valid checkpoint at {folder}"  # trainer.py:3650-3665
        raise exc
    if TRAINER_STATE not in names:  # written last by _save_checkpoint (:3417): the save was cut short
        cut = TruncatedCheckpoint(
            f"{folder}: a Trainer checkpoint without {TRAINER_STATE}, which the Trainer writes last: the save was "
            "cut short; resume from the previous checkpoint-N",
            path=str(folder),
        )
        cut.consumer_error = (
            f"FileNotFoundError: [Errno 2] No such file or directory: '{folder / TRAINER_STATE}'"
        )
        raise cut
    if any(n in names for n in INDEXES) and not {"model.safetensors", "pytorch_model.bin"} & set(names):
        sharded = read_hf_sharded(folder)
        root["model"] = take("model", sharded, str(sharded.meta.get("index")))
        read.append(str(sharded.meta.get("index")))
    else:
        weights = next((n for n in WEIGHTS if n in names), None)
        if weights is not None:
            root["model"] = take("model", read_member(folder / weights), weights)
            read.append(weights)
            if weights == "model.safetensors" and "pytorch_model.bin" in names:
                notes.append(
                    "both model.safetensors and pytorch_model.bin: the resume loads model.safetensors"
                )
    pair = [n for n in ("optimizer.pt", "scheduler.pt") if n in names]
    if len(pair) == 1:  # trainer.py:3931: the optimizer and scheduler states load only together
        notes.append(
            f"{pair[0]} without {({'optimizer.pt', 'scheduler.pt'} - set(pair)).pop()}: transformers loads neither "
            "(trainer.py:3931) and resumes with a fresh optimizer and schedule; not read"
        )
    for name, key in MEMBERS.items():
        if name in names and not (name in pair and len(pair) == 1):
            root[key] = take(key, read_member(folder / name), name)
            read.append(name)
    ranks = [n for n in names if RNG.match(n) and n != "rng_state.pth"]
    if ranks and "rng_state.pth" not in names:  # trainer.py:3855-3870
        notes.append(
            f"{len(ranks)} per-process RNG file(s) ({', '.join(ranks[:3])}{' ...' if len(ranks) > 3 else ''}) and "
            "no rng_state.pth: a resume on one process looks for rng_state.pth and restores no RNG state; on N "
            "processes each restores rng_state_<rank>.pth"
        )
    for name in names:
        m = RNG.match(name)
        if m:
            root.setdefault("rng", {})[m.group(1) or "0"] = take(
                f"rng.{m.group(1) or '0'}", read_member(folder / name), name
            )
            read.append(name)
    _trainer_state(folder, root, notes)
    read.append(TRAINER_STATE)
    if "config.json" in names:
        try:
            root["config"] = _json(folder / "config.json")
            read.append("config.json")
        except TooLarge:
            notes.append(f"config.json is past ckpttool's {MAX_JSON >> 20} MB limit for JSON: not read")
    if "training_args.bin" in names:
        notes.append(
            "training_args.bin (the pickled TrainingArguments) is not read: the resume never loads it, and "
            "only a torch.load with the weights-only check off reads it"
        )
    ckpt = Checkpoint(
        str(folder),
        FormatName.HF_TRAINER,
        root,
        tensors,
        total_size(folder),
        foreign_globals=foreign,
        notes=notes,
    )
    ckpt.safety = safety
    ckpt.meta["members"] = read
    return ckpt


class HfTrainer(Format):
    name = FormatName.HF_TRAINER
    description = (
        "Hugging Face Trainer checkpoint folder (checkpoint-N: weights, optimizer.pt, trainer_state.json)"
    )
    directory = True

    def sniff(self, probe: Probe) -> Sniffed | None:
        # trainer_state.json makes a Trainer checkpoint; so does the name checkpoint-<N> that get_last_checkpoint
        # picks by (an empty or cut-short one is reported as what the resume will raise, not as another format)
        if probe.is_dir and (TRAINER_STATE in probe.names or CHECKPOINT_DIR.match(Path(probe.path).name)):
            return Sniffed(self.name, 0)
        return None

    def read(self, path: str, sniffed: Sniffed) -> Checkpoint:
        return read_hf_trainer(Path(path))
