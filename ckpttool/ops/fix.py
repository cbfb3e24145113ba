"""``fix``: make the trainer pick the newest complete state, without deleting anything.

What the trainer would load instead (a stale "latest" file its pick rule ranks first, a truncated newer file,
a name that makes the rule raise) moves into a quarantine folder beside the files, named so that no trainer's
pick rule looks into it or matches it (:data:`ckpttool.predict.simulate.QUARANTINE`), and listed in the
manifest there; ``--undo`` moves everything back, byte-identical. A file the trainer's loader would refuse
only for harmless values (``torch.load(weights_only=True)`` refusing the ``pathlib`` path Lightning saves in
``hyper_parameters``) is rewritten with those values as plain strings or dicts — where the trainer does not read
them back on resume — proven to load with ``torch.load(weights_only=True)`` in a separate process, and the
original is kept in the quarantine folder.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ckpttool.errors import CkptError, InputNotFound, MigrationError, UsageError
from ckpttool.formats import open_checkpoint
from ckpttool.formats.values import StorageReader
from ckpttool.i18n import say
from ckpttool.model import SKIP, Stub, dotted, map_tree
from ckpttool.ops.check import CheckOptions, check_targets
from ckpttool.predict.fixplan import quarantine_folder
from ckpttool.predict.simulate import QUARANTINE, Prediction
from ckpttool.trainers import get_trainer

SCHEMA = "ckpttool.fix/1"
MANIFEST = "manifest.json"
# Keys whose values the trainer does not read back on resume: Lightning re-creates the module from the
# training script and only `load_from_checkpoint` uses saved hyper-parameters (Lightning 2.6
# trainer/connectors/checkpoint_connector.py restore_model: state_dict and hooks only).
REWRITABLE = ("hyper_parameters", "datamodule_hyper_parameters")


@dataclass
class Action:
    """One change: ``move`` (into quarantine), ``rewrite`` (harmless values converted; the original kept in
    quarantine), ``restore`` (``--undo``). ``converted`` lists ``path: before -> after`` per value."""

    action: str
    path: str
    to: str | None = None
    reason: str = ""
    converted: list[str] = field(default_factory=list)
    proof: str | None = None

    def to_json(self) -> dict[str, Any]:
        """An entry of ``actions`` in ``ckpttool.fix/1``."""
        return dict(self.__dict__)


@dataclass
class FixReport:
    """What ``fix`` did (or would do, ``dry_run``), and the trainer's predicted behaviour before and after."""

    run_dir: str
    dry_run: bool
    undo: bool
    actions: list[Action] = field(default_factory=list)
    before: list[Prediction] = field(default_factory=list)
    after: list[Prediction] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when, after the fix (or as planned), every trainer resumes from the newest complete state."""
        if self.problems:
            return False
        return all(p.ok for p in (self.after if self.after else [])) if not self.undo else True

    def to_json(self) -> dict[str, Any]:
        """The ``ckpttool.fix/1`` JSON document."""
        return {
            "schema": SCHEMA,
            "run_dir": self.run_dir,
            "dry_run": self.dry_run,
            "undo": self.undo,
            "ok": self.ok,
            "actions": [a.to_json() for a in self.actions],
            "problems": self.problems,
            "before": [p.to_json() for p in self.before],
            "after": [p.to_json() for p in self.after],
        }


def _sha256(path: Path) -> str:
    """sha256 of a file; of a checkpoint folder (accelerate, transformers, sharded), over each file's path
    relative to it and its bytes, in sorted order, so ``--undo`` can tell the folder is the one it moved."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if f is not path:
            h.update(f.relative_to(path).as_posix().encode("utf-8") + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        return {"schema": "ckpttool.quarantine/1", "entries": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{path}: cannot read the quarantine manifest ({exc}); fix it or move it away"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise UsageError(f"{path}: not a ckpttool quarantine manifest")
    return data


def _write_manifest(folder: Path, data: dict[str, Any]) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    n = 2
    while target.exists():
        target = folder / f"{name}~{n}"
        n += 1
    return target


def fix_run(
    run_dir: str | os.PathLike[str], options: CheckOptions | None = None, *, dry_run: bool = False
) -> FixReport:
    """Make each trainer of ``run_dir`` pick the newest complete state (see the module docstring).
    Raises InputNotFound for a missing folder, UsageError for a file (fix works on run folders)."""
    options = options or CheckOptions()
    root = Path(run_dir)
    if not root.exists():
        raise InputNotFound(f"{root}: no such run directory")
    if not root.is_dir():
        raise UsageError(f"{root}: fix works on the run folder the trainer resumes from, not on one file")
    report = FixReport(str(root), dry_run, False)
    report.before = check_targets([str(root)], options).predictions
    for pred in report.before:
        if pred.ok:
            continue
        record = get_trainer(pred.trainer)
        assert record is not None and record.loads is not None
        qfolder = quarantine_folder(record.loads, Path(pred.folder))
        for f in pred.quarantine:
            reason = (
                say("the trainer's pick rule ranks it above the newest complete state ({counters})",
                    counters=pred.newest_counters)
                if pred.newest_counters
                else say("the trainer's pick rule ranks it above the newest complete state")
            )  # fmt: skip
            report.actions.append(Action("move", f, str(qfolder / Path(f).name), reason))
        for f in pred.rewrite:
            error = next(s.error for s in pred.loads if s.path == f)
            report.actions.append(Action("rewrite", f, str(qfolder / Path(f).name),
                                         say("the trainer's loader refuses it ({error})", error=error)))  # fmt: skip
        if not pred.quarantine and not pred.rewrite:
            report.problems.append(say("{folder}: {summary}; fix cannot change that by moving files",
                                       folder=pred.folder, summary=pred.summary))  # fmt: skip
    if dry_run:
        for a in report.actions:
            if a.action == "rewrite":
                a.converted = _planned_conversions(Path(a.path))
        return report
    for a in report.actions:
        qfolder = Path(a.to or "").parent
        qfolder.mkdir(exist_ok=True)
        data = _manifest(qfolder)
        src = Path(a.path)
        if a.action == "move":
            digest = _sha256(src)
            dest = _free_name(qfolder, src.name)
            os.replace(src, dest)  # same file system: one rename, nothing copied or lost
            a.to = str(dest)
            data["entries"].append(_entry("moved", src, dest, digest, a.reason))
        else:
            dest = _free_name(qfolder, src.name)
            a.converted, a.proof, new_digest = _rewrite(src, dest)
            a.to = str(dest)
            data["entries"].append(_entry("rewritten", src, dest, _sha256(dest), a.reason, new_digest))
        _write_manifest(qfolder, data)
    report.after = check_targets([str(root)], options).predictions
    return report


def _entry(
    kind: str, src: Path, dest: Path, digest: str, reason: str, rewritten: str | None = None
) -> dict[str, Any]:
    entry = {
        "kind": kind,
        "original": src.name,
        "folder": os.path.relpath(src.parent, dest.parent),
        "stored_as": dest.name,
        "sha256": digest,
        "reason": reason,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if rewritten:
        entry["rewritten_sha256"] = rewritten
    return entry


# --- rewrites -------------------------------------------------------------------------------------------------
def _convertible(node: Any) -> Any:
    """The plain value a harmless stub stands for (a path string, an attribute dict), or SKIP."""
    if not isinstance(node, Stub):
        return SKIP
    full = f"{type(node).module}.{type(node).name}"
    if full.startswith("pathlib.") and all(isinstance(a, str) for a in node.args):
        pure = PureWindowsPath if "Windows" in full else PurePosixPath
        return str(pure(*node.args)) if node.args else "."
    if full == "argparse.Namespace":
        return dict(node.attributes())
    return SKIP


def _convert(root: Any) -> tuple[Any, list[str]]:
    converted: list[str] = []
    if not isinstance(root, dict):
        return root, converted

    def enter(node: Any, path: tuple[Any, ...]) -> Any:
        if not path or path[0] not in REWRITABLE:
            return SKIP
        plain = _convertible(node)
        if plain is not SKIP:
            converted.append(f"{dotted(path)}: {type(node).module}.{type(node).name} -> {plain!r}")
        return plain

    return map_tree(root, enter=enter), converted


def _planned_conversions(path: Path) -> list[str]:
    try:
        ckpt = open_checkpoint(path)
    except CkptError as exc:
        return [f"cannot read it: {exc.message}"]
    return _convert(ckpt.root)[1]


def _rewrite(src: Path, keep: Path) -> tuple[list[str], str, str]:
    """Rewrite ``src`` in place with its harmless values converted; the original is kept at ``keep`` (a hard
    link when the file system allows, so ``src`` never stops existing). Returns (conversions, proof, sha256 of
    the rewritten file)."""
    from ckpttool.formats.torch_zip import torch_save_to
    from ckpttool.ops.convert import compare_checkpoints
    from ckpttool.outputs import atomic_write

    ckpt = open_checkpoint(src)
    converted_root, converted = _convert(ckpt.root)
    if not converted:
        raise MigrationError(f"{src}: nothing fix knows how to convert; rewrite it by hand")
    with StorageReader() as reader:
        materialised = reader.materialise(converted_root, shared=True)
    proof = ""

    def verify(tmp: Path) -> None:
        nonlocal proof
        proof = prove_weights_only_load(tmp)
        changed = {c.split(":", 1)[0] for c in converted}
        written = open_checkpoint(tmp)
        diffs = [d for d in compare_checkpoints(ckpt, written) if d.split(":", 1)[0] not in changed]
        if diffs:
            raise MigrationError(
                f"{src}: the rewrite would change more than the converted values: {diffs[0]}"
            )
        try:
            os.link(src, keep)
        except OSError:
            os.replace(src, keep)

    atomic_write(src, lambda fh: torch_save_to(fh, materialised), verify)
    return converted, proof, _sha256(src)


def prove_weights_only_load(path: Path) -> str:
    """Load ``path`` with ``torch.load(weights_only=True)`` in a separate process (the file holds nothing but
    allow-listed globals then, so this runs no code from it). Raises MigrationError when it fails."""
    code = "import sys, torch; torch.load(sys.argv[1], weights_only=True, map_location='cpu'); print('ok')"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0 or proc.stdout.strip() != "ok":
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MigrationError(f"{path}: torch.load(weights_only=True) still refuses the rewrite: {last[:300]}")
    import torch

    return f"torch.load(weights_only=True) in a separate process (torch {torch.__version__}) loads it"


# --- undo -----------------------------------------------------------------------------------------------------
def undo_fix(run_dir: str | os.PathLike[str], *, dry_run: bool = False) -> FixReport:
    """Move every quarantined file under ``run_dir`` back (newest first), byte-identical. A file now at an
    original's place is replaced only when it is ckpttool's own rewrite (its sha256 is in the manifest)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise InputNotFound(f"{root}: no such run directory")
    report = FixReport(str(root), dry_run, True)
    folders = sorted(p for p in root.rglob(QUARANTINE) if p.is_dir())
    if root.name == QUARANTINE:
        folders.append(root)
    if not folders and (root.parent / QUARANTINE).is_dir():
        folders.append(root.parent / QUARANTINE)
    for q in folders:
        data = _manifest(q)
        remaining = []
        for entry in reversed(data["entries"]):
            stored = q / entry["stored_as"]
            target = (q / entry["folder"] / entry["original"]).resolve()
            action = Action("restore", str(stored), str(target), _undo_reason(entry))
            problem = _undo_problem(entry, stored, target)
            if problem:
                report.problems.append(problem)
                remaining.append(entry)
                continue
            report.actions.append(action)
            if not dry_run:
                os.replace(stored, target)
        if not dry_run:
            data["entries"] = list(reversed(remaining))
            if data["entries"]:
                _write_manifest(q, data)
            else:
                (q / MANIFEST).unlink()
                if not any(q.iterdir()):
                    q.rmdir()  # ckpttool created it and it is empty
    return report


def _undo_reason(entry: dict[str, Any]) -> str:
    """Why a file comes back: what fix did to it, when, and the reason it gave then."""
    when, why = entry.get("time", "?"), entry.get("reason", "")
    if entry["kind"] == "rewritten":
        return say("the original of ckpttool's rewrite at {when}: {why}", when=when, why=why)
    return say("moved by ckpttool fix at {when}: {why}", when=when, why=why)


def _undo_problem(entry: dict[str, Any], stored: Path, target: Path) -> str | None:
    if not (stored.is_file() or stored.is_dir()):  # a folder checkpoint, or a link to one, moves whole
        return say("{path}: listed in the manifest but missing; left alone", path=str(stored))
    if _sha256(stored) != entry.get("sha256"):
        return say("{path}: changed since fix moved it; left alone", path=str(stored))
    if target.exists():
        if (
            entry["kind"] == "rewritten"
            and target.is_file()
            and _sha256(target) == entry.get("rewritten_sha256")
        ):
            return None  # ckpttool's own rewrite: the original replaces it
        return say(
            "{path}: a file is there now; move it away to restore {name}", path=str(target), name=stored.name
        )
    return None


__all__ = ["Action", "FixReport", "fix_run", "undo_fix"]
