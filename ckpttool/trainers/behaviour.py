"""How a trainer resumes, as data: which files it finds, in what order it loads them, with which loader and
``weights_only`` setting, what it does when a load fails, and when it stops.

These are the facts :mod:`ckpttool.predict` simulates to say what the real trainer will do with a run folder.
Each record cites the upstream file and line of every fact in its ``source`` fields (``ckpttool/trainers/data``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pick:
    """How the trainer finds the file it resumes from, per role (``G``/``D``; ``""`` for a single file).

    ``rule`` names an algorithm of :mod:`ckpttool.predict.pick`:

    - ``digits-of-path``: glob ``globs[role]`` in the folder, sort by ``int`` of every digit of the path as the
      trainer spells it (``path_from``: the folder segment the trainer's path starts at, e.g. ``logs``), take the
      last (VITS-family ``utils.latest_checkpoint_path``); no match raises IndexError, no digit ValueError;
    - ``regex-max``: list the folder, keep names that ``regex`` matches (``re.match``: anchored at the start
      only, as upstream writes it), sort by the integer groups, take the largest; no match raises IndexError;
    - ``lightning-last``: the newest (modification time) ``last*.ckpt`` of the checkpoint folder;
      none means Lightning trains from scratch with a warning;
    - ``first-digits-of-name``: every entry of the folder, sorted by the first digit run of its name
      (accelerate ``load_state(None)``); an entry without digits raises IndexError;
    - ``coqui-last``: the largest ``checkpoint_N`` or ``best_model_N`` of the folder (coqui Trainer
      ``get_last_checkpoint``);
    - ``hf-last-checkpoint``: the sub-folders named ``checkpoint-<N>``, largest N (transformers
      ``get_last_checkpoint``);
    - ``given``: the user passes the path (``--checkpoint_path``); nothing is searched.
    """

    rule: str
    globs: dict[str, str] = field(default_factory=dict)  # role -> glob pattern
    regex: str | None = None
    path_from: str | None = None
    folder: str | None = None  # a sub-folder the trainer looks in, relative to the run folder ("ckpt")
    ignores_subfolders: bool = True  # False: a folder inside the search folder counts as a candidate
    source: str = ""


WEIGHTS_ONLY_SETTINGS = frozenset({"disabled", "enabled", "enabled-from-2.4", "torch-default", "lightning"})


@dataclass(frozen=True)
class Loader:
    """The function the trainer loads a file with, and its ``weights_only`` setting:

    ``disabled``/``enabled`` (the trainer passes the flag off/on explicitly); ``torch-default`` (nothing passed:
    ``True`` from torch 2.6); ``lightning`` (Lightning 2.4-2.5 turn it off, others pass nothing: torch's default);
    ``enabled-from-2.4`` (on for torch >= 2.4, else torch's default: the idiap coqui Trainer, accelerate). These
    describe the *trainer's* loader, which ckpttool predicts; ckpttool itself never loads a file with the check
    off. Any other value is a ValueError when the record is read.
    ``safe_globals`` are added to torch's allow-list by the trainer itself (accelerate's numpy globals).
    ``min_torch``: the trainer refuses to ``torch.load`` on an older torch, raising ``min_torch_error``
    (transformers' ``check_torch_load_is_safe``: 2.6); files read by safetensors alone are not affected.
    """

    function: str = "torch.load"
    weights_only: str = "torch-default"
    safe_globals: tuple[str, ...] = ()
    min_torch: str | None = None
    min_torch_error: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.weights_only not in WEIGHTS_ONLY_SETTINGS:
            raise ValueError(
                f"loader weights_only {self.weights_only!r}: use one of {', '.join(sorted(WEIGHTS_ONLY_SETTINGS))}"
            )


@dataclass(frozen=True)
class Stop:
    """When the trainer has nothing left to train: the configured number of epochs (``epochs_config`` in the
    run config, default ``epochs_default``) against the epoch it resumes at. ``loop``: how the trainer loops:
    ``inclusive`` (``range(start, epochs + 1)``: nothing when start > epochs), ``exclusive``
    (``range(start, epochs)``), ``lightning`` (the saved loop's processed epochs >= ``max_epochs``)."""

    epochs_config: str | None = None
    epochs_default: int | None = None
    loop: str = "inclusive"
    source: str = ""


@dataclass(frozen=True)
class Loads:
    """What happens on resume, in order.

    - ``order``: the roles in the order the trainer loads them (GPT-SoVITS s2: D, then G);
    - ``on_error``: what an exception during the loads leads to: ``fallback`` (a bare ``try/except``: counters
      reset, the pretrained weights named by ``pretrained`` are loaded when their path is set and exists,
      else training starts from scratch), ``scratch`` (counters reset, nothing else loaded), ``crash``;
    - ``missing``: what a missing or mis-shaped model tensor does: ``keep-init`` (upstream ``load_checkpoint``
      keeps the model's own init and prints a traceback), ``crash`` (strict ``load_state_dict``);
    - ``not_found``: what finding no file does (usually as ``on_error``; Lightning's ``last``: ``scratch``);
    - ``pretrained``: role -> the run-config key holding the pretrained weights the fallback loads;
    - ``pretrained_resets_optimizer``: False when the fallback loads pretrained *weights* only, so an optimizer
      already loaded from a resumed file keeps its moments (a half-resume);
    - ``exports``: where the trainer's inference exports are (``{exp}`` is the experiment folder's name), listed
      when no complete training state is left: they survive a cut training file.
    """

    pick: Pick
    order: tuple[str, ...] = ("",)
    loader: Loader = field(default_factory=Loader)
    on_error: str = "crash"
    missing: str = "crash"
    not_found: str | None = None
    pretrained: dict[str, str] = field(default_factory=dict)
    pretrained_note: str | None = None  # where the pretrained paths come from when no config key holds them
    pretrained_resets_optimizer: bool = False
    stop: Stop | None = None
    exports: tuple[str, ...] = ()  # globs, relative to the trainer's root, of the inference exports it writes
    after_resume: str | None = None  # what goes wrong after a successful load (said with every resume)
    source: str = ""
