"""Human rendering of latest, check, prune and pack reports."""

from __future__ import annotations

from pathlib import Path

from ckpttool.i18n import _, ljust, tr
from ckpttool.ops.check import CheckReport
from ckpttool.ops.fix import FixReport
from ckpttool.ops.pack import PackReport
from ckpttool.predict.simulate import Prediction
from ckpttool.render import term
from ckpttool.render.inspect_table import human_bytes
from ckpttool.render.verify_table import check_summary, render_checks
from ckpttool.runs import LatestResult, PrunePlan


def render_latest_paths(r: LatestResult) -> str:
    """For scripts: the chosen files, one per line (G before D); nothing when none is valid."""
    return "".join(f"{p}\n" for p in (r.chosen.paths if r.chosen else []))


def latest_notes(r: LatestResult, predictions: list[Prediction] | None = None) -> list[str]:
    """Why each invalid file was skipped, and each save skipped although its files are valid; then the
    warnings, or, where ckpttool knows the trainer, what it will load instead."""
    notes = [f"skipped {c.path}: {c.reason}" for c in r.candidates if not c.ok]
    notes += [
        f"skipped {', '.join(map(str, u.paths))}: {u.reason}"
        for u in r.units
        if not u.ok and all(c.ok for c in u.files)
    ]
    bad = [p for p in predictions or [] if not p.ok]
    if bad:
        notes += [f"warning: {p.summary}" + (f"; run: {p.fix}" if p.fix else "") for p in bad]
        return notes + [f"warning: {w}" for w in r.warnings if "is older than" not in w]
    return notes + [f"warning: {w}" for w in r.warnings]


def render_latest_table(r: LatestResult) -> str:
    """Every candidate, newest first, with its role, profile, counters and status; the chosen files marked
    ``*``."""
    chosen = set(r.chosen.paths) if r.chosen else set()
    ordered = sorted(r.candidates, key=lambda c: c.key, reverse=True)
    rows = [
        [
            ("*" if c.path in chosen else "") + str(c.path),
            c.role or "",
            c.profile or "",
            c.describe(),
            "ok" if c.ok else f"skipped: {c.reason}",
        ]
        for c in ordered
    ]
    shorten = term.PathShortener(r.run_dir)
    rows = [[shorten(row[0]), *row[1:4], shorten(row[4])] for row in rows]
    headers = ["file (* = chosen)", "role", "profile", "counters", "status"]
    lines = [*term.hang("run folder ", term.relpath(r.run_dir)), "", term.fit_table(rows, headers), ""]
    notes = latest_notes(r)
    lines += term.rewrap_all(f"  {shorten(n)}" for n in notes)
    found = f"latest: {', '.join(shorten(str(p)) for p in r.chosen.paths)}" if r.chosen else "latest: none"
    lines += [found, term.summary(("warn", "skipped") for _ in notes) if r.chosen else "1 problem: latest"]
    return "\n".join(lines) + "\n"


def render_prediction(p: Prediction) -> list[str]:
    """What the trainer will do: the files its rule picks, the outcome, the newest complete state, the fix."""
    head = "ok  " if p.ok else "FAIL"
    lines = [f"  {head}  {ljust(_('trainer'), 16)} {p.trainer} ({p.assumed}); torch.load "
             f"weights_only={p.weights_only}: {p.weights_only_why}"]  # fmt: skip
    for s in p.loads:
        what = s.path if s.path else _("(nothing found)")
        extra = f" — {s.error}" if s.error else (f" ({s.counters})" if s.counters else "")
        lines.append(f"        {ljust(_('loads'), 5)} {s.role or 'file':<4}       {what}{extra}")
        if s.note:
            lines.append("                         " + _("note: {note}").format(note=s.note))
    if len(p.outcome) <= 8:
        lines.append(f"        {ljust(_('outcome'), 7)} {p.outcome:<8} {tr(p.summary)}")
    else:  # a long keyword (pretrained, half-resume) would push the text past column 25: it leads the text
        lines.append(f"        {ljust(_('outcome'), 16)} {p.outcome} — {tr(p.summary)}")
    for n in p.notes:
        lines.append(f"        {ljust(_('note'), 16)} {tr(n)}")
    if p.fix:
        lines.append(f"        {ljust(_('fix'), 16)} {tr(p.fix)}")
    return lines


CHECK_INDENT = 25  # where the text of a check or prediction line begins: "  MARK  name<16> "


def prediction_lines(p: Prediction, shorten: term.PathShortener | None = None) -> list[str]:
    """:func:`render_prediction` for the terminal: paths shortened, long lines wrapped, the mark coloured; with
    ``-q`` nothing when the trainer resumes as it should."""
    options = term.current()
    if options.quiet and p.ok:
        return []
    shorten = shorten or term.PathShortener()
    raw = [shorten(line) for line in render_prediction(p)]
    if p.fix:  # a command to run from here: relative to the current directory, never to the run folder
        raw[-1] = term.PathShortener()(render_prediction(p)[-1])
    lines = term.rewrap_all(raw, indent=CHECK_INDENT)
    head = "ok  " if p.ok else "FAIL"
    lines[0] = lines[0].replace(head, term.mark("pass" if p.ok else "fail", options), 1)
    return lines


FIX_INDENT = 11  # where the text of a fix line begins: "  <verb, 8 columns> "


def render_fix(r: FixReport) -> str:
    """The moves, rewrites or restores (planned with ``--dry-run``), the problems, and the outcome after."""
    verb = {"move": _("move"), "rewrite": _("rewrite"), "restore": _("restore")}
    lines = []
    for a in r.actions:
        past = {"move": _("moved"), "rewrite": _("rewrote"), "restore": _("restored")}[a.action]
        word = ljust(verb[a.action] if r.dry_run else past, 8)
        lines.append(f"  {word} {a.path}" + (f" -> {a.to}" if a.to else ""))
        if a.reason:
            lines.append(" " * FIX_INDENT + _("why: {reason}").format(reason=tr(a.reason)))
        for c in a.converted:
            lines.append(" " * FIX_INDENT + f"converted {c}")
        if a.proof:
            lines.append(" " * FIX_INDENT + f"proof: {a.proof}")
    for problem in r.problems:
        lines.append(f"  {ljust(_('problem'), 8)} {tr(problem)}")
    if not r.actions and not r.problems:
        lines.append(
            "  " + _("nothing to undo: no file of this run is in a ckpttool-quarantine folder")
            if r.undo
            else "  " + _("nothing to do: the trainer already resumes from the newest complete state")
        )
    for p in r.after:
        lines.append(f"  {ljust(_('after'), 8)} {p.trainer}: {p.outcome} — {tr(p.summary)}")
    if r.dry_run:
        lines.append(_("dry run: nothing was changed"))
    lines = term.rewrap_all((term.PathShortener()(line) for line in lines), indent=FIX_INDENT)
    lines.append(
        term.summary(
            [("fail", "fix") for _problem in r.problems] + [("fail", p.trainer) for p in r.after if not p.ok]
        )
    )
    return "\n".join(lines) + "\n"


class CheckStream:
    """Renders a growing CheckReport: :meth:`header` first, then :meth:`new_lines` each time the report grew
    (the predictions and checks not shown yet), then :meth:`footer`. Paths are shown relative to the run
    folder when one folder is checked, else to the current directory."""

    def __init__(self, targets: list[str]) -> None:
        folders = [t for t in targets if Path(t).is_dir()]
        self.shorten = term.PathShortener(folders[0] if len(folders) == 1 else None)
        self._shown: set[int] = set()

    def header(self, targets: list[str]) -> list[str]:
        """``check TARGETS`` (short paths) and a blank line."""
        return [*term.hang("check ", " ".join(term.relpath(t) for t in targets)), ""]

    def new_lines(self, r: CheckReport) -> list[str]:
        """The lines of the predictions and checks added since the last call."""
        preds = [p for p in r.predictions if id(p) not in self._shown]
        checks = [c for c in r.checks if id(c) not in self._shown]
        self._shown |= {id(x) for x in [*preds, *checks]}
        lines = [line for p in preds for line in prediction_lines(p, self.shorten)]
        return lines + render_checks(checks, self.shorten)

    def footer(self, r: CheckReport) -> list[str]:
        """``ready to resume`` (and how it was verified) or ``NOT ready to resume``, then the summary line."""
        if not r.ok:
            verdict = term.emphasis(_("NOT ready to resume"), "fail")
        elif r.level == "static":
            verdict = _("ready to resume (static checks passed; not verified by a run)")
        elif r.level is not None:
            level = {"model-run": _("model run"), "shadow-run": _("shadow run")}.get(
                r.level, r.level.replace("-", " ")
            )
            verdict = term.emphasis(
                _("ready to resume (verified by the {level})").format(level=level), "pass"
            )
        else:
            verdict = term.emphasis(_("ready to resume"), "pass")
        pairs = [("fail", "trainer") for p in r.predictions if not p.ok]
        return ["", verdict, check_summary(r.checks, pairs)]


def render_check(r: CheckReport) -> str:
    """What each trainer will do, each check with its status, then ``ready to resume`` or ``NOT ready to
    resume`` and the summary line."""
    stream = CheckStream(r.targets)
    return "\n".join(stream.header(r.targets) + stream.new_lines(r) + stream.footer(r)) + "\n"


def render_prune(p: PrunePlan, applied: bool) -> str:
    """The saves kept (and why) and deleted, with the bytes freed; ``applied`` False words it as a dry run."""
    lines = []
    for u in p.keep:
        lines.append(f"  keep    {', '.join(map(str, u.paths))}  ({p.reasons.get(str(u.head.path), '')})")
    for u in p.delete:
        lines.append(f"  {'deleted' if applied else 'delete '} {', '.join(map(str, u.paths))}")
    if p.every:
        lines.append(f"  --every {p.every} counts {p.unit_note}")
    lines = term.rewrap_all((term.PathShortener()(line) for line in lines), indent=10)
    freed = sum(c.size for u in p.delete for c in u.files)
    verb = "freed" if applied else "would free"
    lines.append(
        f"\n{len(p.delete)} checkpoint(s), {human_bytes(freed)} {verb}" + ("" if applied else " (dry run)")
    )
    return "\n".join(lines) + "\n"


def render_pack(r: PackReport) -> str:
    """The package's files (role, name, size, sha256 prefix, inspect summary), its problems and the
    verification."""
    lines = [f"package {r.package}"]
    for f in r.manifest.get("files", []):
        extra = f"  {f['inspect']['profile']}, verdict {f['inspect']['verdict']}" if "inspect" in f else ""
        lines.append(
            f"  {f['role']:<10} {f['name']}  {human_bytes(f['size'])}  sha256 {f['sha256'][:16]}…{extra}"
        )
    for p in r.problems:
        lines.append(f"  problem  {p}")
    lines = term.rewrap_all(term.PathShortener()(line) for line in lines)
    if r.verified is not None:
        lines.append("verified: sizes, sha256 and inspect summaries match" if r.verified else "NOT verified")
    failed = [("fail", "") for _ in r.problems] + ([("fail", "")] if r.verified is False else [])
    lines.append(term.summary(failed, named=False))
    return "\n".join(lines) + "\n"
