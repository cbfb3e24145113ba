"""``CkptToolCallback`` for PyTorch Lightning (``lightning.pytorch``, else ``pytorch_lightning``).

    from ckpttool.integrations.lightning import CkptToolCallback

    trainer = Trainer(callbacks=[CkptToolCallback()], ...)
    trainer.fit(model, ckpt_path="checkpoints/last.ckpt")   # refused (ResumeRefused) when broken or stale

Where it hooks in, and why there (Lightning-AI/pytorch-lightning@7f0c343, src/lightning/pytorch/):

- No callback hook sees ``ckpt_path`` before the file is loaded: ``Trainer._run`` calls the ``setup`` hooks
  (trainer/trainer.py:1045, trainer/call.py:109), then ``_restore_modules_and_callbacks(ckpt_path)``
  (trainer.py:1052), which sets ``trainer.ckpt_path`` and loads the file (trainer/connectors/
  checkpoint_connector.py:76, :84 ``strategy.load_checkpoint``), and only then ``on_fit_start``
  (trainer.py:1063). So in ``setup`` the callback wraps the strategy's ``checkpoint_io`` (the plugin every
  load and save goes through: strategies/strategy.py:368 and :491) with :class:`CheckedCheckpointIO`. Its
  ``load_checkpoint`` runs ``ckpttool.check`` on the path *before* ``torch.load`` when fitting (validate/test/
  predict only need a readable file), and raises ResumeRefused.
- ``on_save_checkpoint`` receives the dict before it is written (checkpoint_connector.py:509, then
  trainer.py:1470 ``strategy.save_checkpoint``), so the written file cannot be checked there. The wrapper's
  ``save_checkpoint`` reads the file back right after the inner plugin wrote it; behind an
  ``AsyncCheckpointIO`` (whose save returns before the write ends) the files are read back in ``teardown``,
  after its executor has finished (plugins/io/async_plugin.py:85-89).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from ckpttool.integrations.gate import readable_gate, resume_gate, verify_saved


def _lightning() -> ModuleType:
    """``lightning.pytorch`` when installed, else ``pytorch_lightning`` (the same API under its old name)."""
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(
        "ckpttool.integrations.lightning needs PyTorch Lightning: pip install lightning (or pytorch-lightning)"
    )


pl = _lightning()
_CheckpointIO: Any = importlib.import_module(pl.__name__ + ".plugins.io").CheckpointIO
_Callback: Any = pl.Callback


class CheckedCheckpointIO(_CheckpointIO):
    """A ``CheckpointIO`` that delegates to ``inner`` and puts ckpttool's gate around it: a load while fitting
    must pass :func:`~ckpttool.integrations.gate.resume_gate` first; every save must read back."""

    def __init__(self, inner: Any, callback: CkptToolCallback, trainer: Any) -> None:
        super().__init__()
        self.inner = inner
        self.callback = callback
        self.trainer = trainer
        self._deferred = type(inner).__name__ == "AsyncCheckpointIO"
        self._pending: list[str] = []

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(getattr(self.trainer, "state", None), "fn", None)  # TrainerFn, a str enum
        fitting = getattr(fn, "value", fn) == "fit"
        self.callback.check_resume(path, fitting=fitting)
        return self.inner.load_checkpoint(path, *args, **kwargs)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        self.inner.save_checkpoint(checkpoint, path, storage_options=storage_options)
        if self._deferred:
            self._pending.append(os.fspath(path))
        else:
            self.callback.check_saved(path)

    def remove_checkpoint(self, path: Any) -> None:
        self.inner.remove_checkpoint(path)

    def teardown(self) -> None:
        self.inner.teardown()
        pending, self._pending = self._pending, []
        for path in pending:
            if os.path.exists(path):  # ModelCheckpoint may have removed it since (save_top_k)
                self.callback.check_saved(path)


class CkptToolCallback(_Callback):
    """Refuse ``Trainer.fit(ckpt_path=...)`` from a checkpoint ckpttool judges broken, unsafe or stale, and read
    back every checkpoint the trainer writes.

    ``allow_stale``: resume even when a newer complete checkpoint lies beside ``ckpt_path``. ``require``,
    ``config``, ``overrides``, ``allow_globals``: as :func:`ckpttool.check`. ``deep``: read back every tensor
    byte of each save (CRC-32), not only its structure. ``raise_on_bad_save``: a save that does not read back
    raises CorruptCheckpoint (stopping the run; default), else it is a warning. ``last_report`` holds the
    CheckReport of the last resume allowed; ``saved`` the files checked after saving.
    """

    def __init__(
        self,
        *,
        allow_stale: bool = False,
        require: Iterable[str] = (),
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        allow_globals: Iterable[str] = (),
        deep: bool = False,
        raise_on_bad_save: bool = True,
    ) -> None:
        super().__init__()
        self.allow_stale = allow_stale
        self.require = tuple(require)
        self.config = config
        self.overrides = overrides
        self.allow_globals = tuple(allow_globals)
        self.deep = deep
        self.raise_on_bad_save = raise_on_bad_save
        self.last_report: Any = None
        self.saved: list[str] = []

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Wrap the strategy's checkpoint plugin (once); runs before Lightning loads ``ckpt_path``."""
        strategy = trainer.strategy
        if not isinstance(strategy.checkpoint_io, CheckedCheckpointIO):
            strategy.checkpoint_io = CheckedCheckpointIO(strategy.checkpoint_io, self, trainer)

    def check_resume(self, path: Any, *, fitting: bool = True) -> None:
        """The gate (also callable directly): when ``fitting``, :func:`resume_gate`; otherwise the file only
        has to read back (validate/test/predict load the weights, not the training state). A remote path
        (``s3://...``) is not checked: it warns."""
        if "://" in os.fspath(path):
            warnings.warn(f"ckpttool: {path} is remote; not checked", RuntimeWarning, stacklevel=2)
            return
        if not fitting:
            readable_gate(path, allow_globals=self.allow_globals)
            return
        self.last_report = resume_gate(
            path, allow_stale=self.allow_stale, require=self.require, config=self.config,
            overrides=self.overrides, allow_globals=self.allow_globals,
        )  # fmt: skip

    def check_saved(self, path: Any) -> None:
        """Read back a file just written; raise or warn (``raise_on_bad_save``) when it does not. Remote paths
        are not read back."""
        if "://" in os.fspath(path):
            return
        try:
            verify_saved(path, deep=self.deep)
        except Exception as exc:
            if self.raise_on_bad_save:
                raise
            warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
            return
        self.saved.append(os.fspath(path))
