"""The safety verdict a reader attaches to a checkpoint: which globals its pickles name, and what
``torch.load`` with ``weights_only`` off would do with each. Pure data; :mod:`ckpttool.formats.policy` classifies."""

from __future__ import annotations

from dataclasses import dataclass, field

SAFE, UNSAFE, UNVERIFIED = "safe", "unsafe", "unverified"


@dataclass(frozen=True)
class GlobalUse:
    """One global a pickle names: its full path after mapping, whether the load would call it (REDUCE, NEWOBJ,
    INST, OBJ, or BUILD through its class's __setstate__) or only reference it, and its verdict."""

    name: str
    called: bool
    verdict: str
    why: str

    def describe(self) -> str:
        module, _, attr = self.name.rpartition(".")
        action = "call" if self.called else "reference"
        return f"torch.load with weights_only off would import {module or self.name} and {action} {attr}"


@dataclass
class Safety:
    """The verdict over every global in every pickle of a checkpoint (``safe``, ``unsafe`` or ``unverified``)
    and the globals behind it; ``notes`` say what else a loader would do (hand a TorchScript archive to
    ``torch.jit.load``, pick one of two member copies...)."""

    verdict: str = SAFE
    uses: list[GlobalUse] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, use: GlobalUse) -> None:
        """Record a use; a name seen before keeps one entry: called if any use calls it, the worse verdict."""
        for i, old in enumerate(self.uses):
            if old.name == use.name:
                worse = use if _worst(use.verdict, old.verdict) != old.verdict else old
                self.uses[i] = GlobalUse(old.name, old.called or use.called, worse.verdict, worse.why)
                break
        else:
            self.uses.append(use)
        self.verdict = _worst(self.verdict, use.verdict)

    def merge(self, other: Safety, prefix: str = "") -> None:
        for use in other.uses:
            self.add(use)
        self.notes += [f"{prefix}{n}" for n in other.notes]
        self.verdict = _worst(self.verdict, other.verdict)

    def mark(self, name: str, verdict: str, why: str) -> None:
        """Record a concern that is not a pickle global (a TorchScript archive, a value too large to scan) under
        a name the user can allow, like a global."""
        self.add(GlobalUse(name, True, verdict, why))

    @property
    def unsafe(self) -> list[GlobalUse]:
        return [u for u in self.uses if u.verdict == UNSAFE]

    @property
    def unverified(self) -> list[GlobalUse]:
        return [u for u in self.uses if u.verdict == UNVERIFIED]

    def blocking(self, allowed: frozenset[str] = frozenset()) -> list[GlobalUse]:
        """The unsafe and unverified globals not named in ``allowed`` (``--allow-global``)."""
        return [u for u in self.uses if u.verdict != SAFE and u.name not in allowed]

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "globals": [
                {"name": u.name, "called": u.called, "verdict": u.verdict, "why": u.why} for u in self.uses
            ],
            "notes": self.notes,
        }


def _worst(a: str, b: str) -> str:
    order = {SAFE: 0, UNVERIFIED: 1, UNSAFE: 2}
    return a if order[a] >= order[b] else b
