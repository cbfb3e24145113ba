"""Trainer callbacks: ckpttool's checks where training scripts already are.

- ``ckpttool.integrations.lightning.CkptToolCallback``: a Lightning ``Callback`` (``lightning`` or
  ``pytorch_lightning``) that refuses a broken, stale or unsafe ``ckpt_path`` before ``Trainer.fit`` loads it
  and checks that every checkpoint it writes reads back.
- ``ckpttool.integrations.transformers.CkptToolCallback``: a ``transformers.TrainerCallback`` that does the same
  for ``resume_from_checkpoint`` and the ``checkpoint-N`` folders of ``save_steps``; ``checked_resume(path)``
  validates a folder before ``trainer.train(resume_from_checkpoint=...)`` loads it.

Importing ``ckpttool`` (or this package) imports neither library; each submodule imports its own. The shared,
framework-free logic is in :mod:`ckpttool.integrations.gate` and :mod:`ckpttool.integrations.hf_trainer_folder`.
"""
