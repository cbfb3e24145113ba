"""The one exception hierarchy of ckpttool.

Every error a user can cause is a :class:`CkptError`. The CLI translates it to an exit code and a one-line
message in exactly one place (``ckpttool.cli``); library code never prints. Each subclass carries a ``kind``
that is also the ``kind`` field of the ``ckpttool.error/1`` JSON document, so scripts can branch on it.
"""

from __future__ import annotations

# Exit codes are a public contract (docs/exit-codes.md).
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_UNREADABLE = 3


class CkptError(Exception):
    """Base class: a message that says what is wrong and what to do."""

    kind = "error"
    exit_code = EXIT_UNREADABLE
    # What the real consumer raises on this input, when a reader knows it better than the generic torch.load
    # error of its kind (ckpttool.predict.loader quotes it): set by the reader that raises.
    consumer_error: str | None = None

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"schema": "ckpttool.error/1", "kind": self.kind, "message": self.message}
        if self.path is not None:
            doc["path"] = self.path
        return doc


class InputNotFound(CkptError):
    kind = "not-found"


RECENT_WRITE_S = 60  # a file modified this recently may be a save still in progress


class TruncatedCheckpoint(CkptError):
    """The file ends early: a crash or a full disk during the save, or a save still being written (the
    message says so when ``path`` was modified less than RECENT_WRITE_S seconds ago)."""

    kind = "truncated"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        age = _seconds_since_modified(path)
        if age is not None and age < RECENT_WRITE_S:
            message += (
                f" — but it was modified {age:.0f} s ago, so it may still be being written: wait for the save "
                "to finish and look again"
            )
        super().__init__(message, path=path)


def _seconds_since_modified(path: str | None) -> float | None:
    """Seconds since ``path`` (a file, or a checkpoint folder: its newest entry) was last modified; None when it
    cannot be read."""
    import os
    import time

    if not path:
        return None
    try:
        mtime = os.stat(path).st_mtime
        if os.path.isdir(path):
            mtime = max([mtime, *(e.stat().st_mtime for e in os.scandir(path))])
    except OSError:
        return None
    return max(0.0, time.time() - mtime)


class CorruptCheckpoint(CkptError):
    kind = "corrupt"


class UnsupportedFormat(CkptError):
    kind = "unsupported"


class UnsafeCheckpoint(CkptError):
    """The pickle references callables that could run code; it is refused, never executed."""

    kind = "unsafe"

    def __init__(self, message: str, *, globals_: list[str], path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.globals = globals_

    def to_json(self) -> dict[str, object]:
        doc = super().to_json()
        doc["globals"] = list(self.globals)
        return doc


class UnverifiedCheckpoint(CkptError):
    """The pickle names globals ckpttool cannot vouch for; a gate refuses it unless the user names them
    (``--allow-global``). ``inspect`` shows the verdict instead of raising this."""

    kind = "unverified"

    def __init__(self, message: str, *, globals_: list[str], path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.globals = globals_

    def to_json(self) -> dict[str, object]:
        doc = super().to_json()
        doc["globals"] = list(self.globals)
        return doc


class UsageError(CkptError):
    """Arguments that cannot work together, found after click's own parsing."""

    kind = "usage"
    exit_code = EXIT_USAGE


class ConfigError(CkptError):
    """A config file that cannot be read or a --set override that does not parse."""

    kind = "config"
    exit_code = EXIT_USAGE


class DeviceError(CkptError):
    kind = "device"
    exit_code = EXIT_USAGE


class OutputExists(CkptError):
    kind = "output-exists"
    exit_code = EXIT_USAGE


class NoCheckpoint(CkptError):
    """A run folder holds no complete, readable checkpoint to work on (a finding, not a usage error)."""

    kind = "no-checkpoint"
    exit_code = EXIT_PROBLEMS


class MigrationError(CkptError):
    kind = "migration"
    exit_code = EXIT_PROBLEMS


class ResumeRefused(CkptError):
    """A training script was about to resume from a checkpoint ckpttool judges broken, stale or unsafe: what the
    trainer callbacks in ``ckpttool.integrations`` raise before the trainer loads it. ``problems`` lists each
    failed check's message; ``report`` is the report behind them (a CheckReport, or a TrainerFolderReport)."""

    kind = "resume-refused"
    exit_code = EXIT_PROBLEMS

    def __init__(
        self, message: str, *, problems: list[str], report: object = None, path: str | None = None
    ) -> None:
        super().__init__(message, path=path)
        self.problems = problems
        self.report = report

    def to_json(self) -> dict[str, object]:
        doc = super().to_json()
        doc["problems"] = list(self.problems)
        return doc
