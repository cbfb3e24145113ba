"""What version a consumer that cannot read it from a file takes it to be.

GPT-SoVITS inference (``process_ckpt.get_sovits_version_from_path_fast``) never reads ``config.model.version``
of a SoVITS export: it looks the MD5 of the first 8 KiB up among the official pretrained files, then reads the
two-byte header tag, and for a plain ``PK`` zip falls back on the file size. A full fine-tune exported by
``s2_train_v3.py`` is such a plain zip, so the size decides how it will be loaded. The rule is data in the trainer
record (``FileKind.version_guess``); this module applies it and says what it means for the file at hand.
"""

from __future__ import annotations

from typing import Any

from ckpttool.model import Checkpoint
from ckpttool.trainers import VersionGuess
from ckpttool.vocab import Format as FormatName

HEAD = 8192  # bytes hashed (process_ckpt.get_hash_from_file)


def guessed_version(ckpt: Checkpoint, guess: VersionGuess) -> tuple[str, str] | None:
    """(version, how it was guessed) for a plain torch zip, or None for any other format (a header tag names
    the version of a tagged file). Reads the first 8 KiB of the file (container bytes, no tensor is decoded)."""
    if ckpt.format != FormatName.TORCH_ZIP:
        return None
    if guess.md5_8k:
        try:
            with open(ckpt.path, "rb") as f:
                head = f.read(HEAD)
        except OSError:
            head = b""
        import hashlib

        version = guess.md5_8k.get(hashlib.md5(head, usedforsecurity=False).hexdigest()) if head else None
        if version is not None:
            return version, "the MD5 of its first 8 KiB, an official pretrained file"
    for rule in guess.by_size:
        if rule.below is None or ckpt.size < rule.below:
            limit = f"under {rule.below:,} bytes" if rule.below is not None else "above every size threshold"
            return rule.version, f"its size, {ckpt.size:,} bytes ({limit})"
    return None


def guess_note(ckpt: Checkpoint, guess: VersionGuess, stated: Any) -> list[str]:
    """The note ``inspect`` shows: the version the consumer will take this file for, how it decides, and
    whether that agrees with the version the file states (``stated``: e.g. its config's model.version)."""
    found = guessed_version(ckpt, guess)
    if found is None:
        return []
    version, how = found
    who = guess.consumer or "the consumer"
    text = (
        f"{who} guesses the version from {how}: {version} ({guess.source}); a guess, not read from the file"
    )
    if stated is not None and str(stated) != version:
        text += f". The file says {stated}: " + (
            guess.mismatch or "it will be loaded as a {guessed} model"
        ).format(guessed=version, stated=stated)
    return [text]
