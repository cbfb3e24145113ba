"""Trainer records: what one training program writes, how it names and picks its files, and how it resumes.

A record is data (YAML under ``ckpttool/trainers/data``), loaded into these frozen dataclasses. Every fact cites
its upstream file and line in the record's ``source`` fields. Profiles (which key holds which piece), ``latest``,
``prune``, ``check`` and the resume checks read the records; none of them knows a trainer by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.trainers.behaviour import Loads


@dataclass(frozen=True)
class Counter:
    """Where a progress counter is and what it means. ``parse``: a regex whose group 1 is the number, applied
    to the string at ``key`` (GPT-SoVITS exports keep ``"8epoch_144iteration"`` in ``info``)."""

    key: str
    parse: str | None = None
    meaning: str | None = None
    # value + finished_offset = the epochs (steps) finished when the file was saved: lets diff see that
    # Lightning's 0-based epoch 3 and an export's 'GPT-e4' name the same save
    finished_offset: int | None = None


@dataclass(frozen=True)
class Match:
    """When a file is of this kind: every condition given must hold."""

    formats: tuple[str, ...] = ()
    keys: tuple[str, ...] | None = None  # the top-level keys, exactly
    keys_all: tuple[str, ...] = ()
    keys_any: tuple[str, ...] = ()
    keys_none: tuple[str, ...] = ()  # none of these top-level keys
    state_dicts: tuple[str, ...] = ()  # paths that must hold a state dict
    any_state_dict: tuple[str, ...] = ()  # at least one of these paths holds a state dict
    config_list: int | None = None  # ``config`` is a list of this many values (RVC)
    weight_prefix: str | None = None  # every key of the first network starts with this
    not_weight_prefix: str | None = None


@dataclass(frozen=True)
class Trainable:
    """Which parameters a network's optimizer covers when the trainer builds it over the ``requires_grad``
    parameters only (``AdamW(filter(lambda p: p.requires_grad, net.parameters()))``): one group, in
    ``parameters()`` order, without the frozen ones. Names are state-dict keys (wrapper prefixes stripped)."""

    frozen: tuple[str, ...] = ()  # module prefixes the model sets to requires_grad=False (set_no_grad)
    only: tuple[str, ...] = ()  # the optimizer covers only these module prefixes (a GAN's disc.* optimizer)
    peft_adapters_only: bool = False  # inside a PEFT-wrapped module only the lora_* parameters train
    no_gradient: tuple[str, ...] = ()  # trainable prefixes that never reach the loss: no optimizer state
    source: str = ""


@dataclass(frozen=True)
class SizeGuess:
    """One step of a by-size version guess: files smaller than ``below`` bytes (None: any size) are taken
    for ``version``."""

    version: str
    below: int | None = None


@dataclass(frozen=True)
class VersionGuess:
    """How a consumer that cannot read the version from a file guesses it (GPT-SoVITS inference, for a
    plain ``PK`` export): by the MD5 of the first 8 KiB (the official pretrained files), else by size."""

    md5_8k: dict[str, str] = field(default_factory=dict)  # hex digest of the first 8192 bytes -> version
    by_size: tuple[SizeGuess, ...] = ()  # first rule whose ``below`` the size is under wins
    consumer: str = ""  # who guesses (named in the note)
    mismatch: str = ""  # what the consumer does when its guess differs ({guessed}, {stated} filled in)
    source: str = ""


@dataclass(frozen=True)
class VersionSource:
    """One place a file's version can be read from, tried in a file kind's ``version_from`` order.

    ``where``: ``path`` (the file's path, with / separators), ``shapes`` (the version the architecture spec of
    the trainer's ``spec_family`` detects from the tensor shapes) or a dotted key path whose string value is
    read. ``parse``: a regex searched in that text; its group 1 is the version, or ``value`` when given (a
    folder without a version suffix). ``source``: the upstream file and line behind the rule.
    """

    where: str
    parse: str | None = None
    value: str | None = None
    source: str = ""


@dataclass(frozen=True)
class FileKind:
    """One kind of file a trainer writes (a training checkpoint, an export) and where its pieces are.

    Paths are dotted key paths into the checkpoint tree. ``{role}`` in a network label or optimizer target
    stands for the role the file name gives (``G``/``D``); ``*`` in a path stands for every list index;
    ``network_keys``/``optimizer_keys``/``scheduler_keys`` are regexes over top-level keys (accelerate).
    """

    profile: str
    description: str
    match: Match
    networks: dict[str, str] = field(default_factory=dict)
    optimizers: dict[str, str] = field(default_factory=dict)
    schedulers: tuple[str, ...] = ()
    counters: dict[str, Counter] = field(default_factory=dict)
    config: str | None = None
    version: tuple[str, ...] = ()  # candidate paths; the first that exists holds the version
    version_from_header: bool = False  # a GPT-SoVITS header tag, when present, names the version
    # where else the version can be read (the folder, config strings, the shapes), when no ``version`` key holds
    # it; ``version_shapes``: per version the shapes tell, the versions that share those shapes (v2: v2..v4)
    version_from: tuple[VersionSource, ...] = ()
    version_shapes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    description_if: dict[str, str] = field(default_factory=dict)  # key -> text added when it exists
    scaler: tuple[str, ...] = ()
    network_keys: str | None = None
    optimizer_keys: str | None = None
    scheduler_keys: str | None = None
    roles: dict[str, str] = field(default_factory=dict)  # role -> file-name regex
    default_role: str | None = None
    role_from_keys: dict[str, str] = field(default_factory=dict)  # role -> key prefix that betrays it
    structural: bool = False  # also look for unclaimed pieces by their structure
    structural_skip: tuple[str, ...] = ()
    rebuilt: dict[str, str] = field(default_factory=dict)
    not_needed: dict[str, str] = field(default_factory=dict)
    meaning: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    optimizer_groups: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    # what an optimizer covers, by optimizer path ("optimizer.0") or by the role its optimizer trains ("G")
    trainable: dict[str, Trainable] = field(default_factory=dict)
    version_guess: VersionGuess | None = None  # how the consumer guesses the version of such a file
    rng_files: bool = False  # accelerate: rng.<rank>.<generator>
    source: str = ""


@dataclass(frozen=True)
class Detect:
    """Which trainer wrote a file whose layout several trainers share (VITS's four keys): any rule that holds
    attributes it; records are tried in ``priority`` order (lowest first)."""

    priority: int = 100
    path: str | None = None  # regex searched in the file's path (with / separators)
    name: str | None = None  # regex searched in the file name
    model_keys: tuple[str, ...] = ()  # a network key starts with one of these (wrapper prefixes stripped)
    # prefix -> counts: the network keys hold one of these numbers of distinct indices i in "<prefix><i>."
    # (a discriminator is told by how many sub-discriminators it has: RVC's 7 or 9 against VITS's 6)
    model_key_counts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    fallback: bool = False  # attributes any file of the shared layout (the generic record)
    source: str = ""


@dataclass(frozen=True)
class Naming:
    """How checkpoint files are named and which one is the trainer's "latest"."""

    pattern: str | None = None  # regex over the file name; named groups role, number
    latest: tuple[str, ...] = ()  # file-name tags the trainer overwrites in place ("233333333333")
    pick: str | None = None  # how the trainer picks its file on resume (see docs/trainers.md)
    folder: str | None = None  # regex over the file's folder name; named groups version, rank
    source: str = ""


@dataclass(frozen=True)
class Fallback:
    """What the trainer does when resuming fails: which condition sends it there, what it loads instead
    (a config key naming the weights, with its default per version), and where training restarts."""

    when: str  # the condition (e.g. "any exception while building, wrapping or loading: no G file, ...")
    loads: str | None = None  # config key of the weights it loads instead (train.pretrained_s2G)
    defaults: dict[str, str] = field(default_factory=dict)  # version -> the default of that key
    strict: bool = False  # load_state_dict(strict=...) of those weights
    missing: str = ""  # what happens when that file does not exist either
    restarts: str = ""  # where training restarts (epoch 1, step 0)
    source: str = ""


@dataclass(frozen=True)
class Resume:
    """How the trainer rebuilds what it does not save."""

    next_epoch: str = "next"  # "next": resumes at saved epoch + 1; "same": re-runs the saved epoch
    scheduler_rule: str | None = None  # a rebuild rule of ckpttool.resume.schedulers.RULES
    gamma_config: str | None = None
    gamma_default: float | None = None
    fp16_config: str | None = None  # the run-config key that turns fp16 (a GradScaler) on
    fp16_values: tuple[
        str, ...
    ] = ()  # values of fp16_config that mean fp16 (Lightning's '16-mixed'); else truthy
    fp16_default: bool | None = None
    max_epochs_config: str | None = None  # the run-config key the trainer stops at (Trainer(max_epochs=...))
    epochs_done: str | None = (
        None  # the checkpoint key counting epochs the stop rule compares with max_epochs
    )
    config_files: tuple[str, ...] = ()  # where the run config lives, relative to the checkpoint's folder
    fallback: Fallback | None = None  # what it does when no file can be resumed from
    source: str = ""


@dataclass(frozen=True)
class Trainer:
    """One training program: the files it writes and how to recognise them, how it names them, how it resumes,
    and the upstream sources of these facts (``source`` fields)."""

    name: str
    title: str
    source: str
    spec_family: str | None = None  # the architecture-spec family prefix of its networks
    detect: Detect | None = None
    files: tuple[FileKind, ...] = ()
    naming: Naming = field(default_factory=Naming)
    resume: Resume = field(default_factory=Resume)
    loads: Loads | None = None  # how it finds, loads and falls back (ckpttool.predict simulates it)
    extra: dict[str, Any] = field(default_factory=dict)
