"""Human rendering of an InspectReport."""

from __future__ import annotations

from ckpttool.model import Safety, TensorInfo
from ckpttool.ops.inspect import InspectReport
from ckpttool.render import term
from ckpttool.render.grid import grid

FINDING_INDENT = 10  # where a finding's text begins: "  severity "
MARK = {"present": "present", "absent": "absent", "rebuilt": "rebuilt"}


def human_bytes(n: float) -> str:
    """``n`` bytes in B, KB, MB or GB (powers of 1024): ``512 B``, ``1.5 KB``, ``2048.0 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def render_safety(safety: Safety) -> list[str]:
    """The safety verdict first, with every global behind it (what torch.load with weights_only off does)."""
    lines = [f"  safety   {safety.verdict.upper()}: not every global this file names is known to be harmless"]
    for use in safety.blocking():
        lines.append(f"           {use.name}: {use.describe()} ({use.why})")
    names = " ".join(f"--allow-global {u.name}" for u in safety.blocking()[:3])
    lines.append(
        f"           gates (check, latest, verify-resume, diff, prune, pack) refuse it unless given {names}"
    )
    return lines


def render_inspect(r: InspectReport) -> str:
    """The ``inspect`` report as text: file, networks table, architectures, the pieces table, findings worth
    reading (info only for Adam steps, alignment and G/D stage), notes and the verdict; then the tensors when
    listed."""
    options = term.current()
    safety = render_safety(r.safety) if r.safety.verdict != "safe" else []
    lines = [term.relpath(r.path), *term.rewrap_all(safety)]
    lines += term.rewrap_all(
        [f"  format   {r.format}, {human_bytes(r.size)}", f"  profile  {r.profile}: {r.description}"]
    )
    if r.version:
        lines.append(f"  version  {r.version}")
    lines.append("")
    if r.networks:
        rows = [
            [
                n.label,
                n.path or "<root>",
                n.tensors,
                f"{n.numel:,}",
                human_bytes(n.nbytes),
                ", ".join(f"{k}×{v}" for k, v in n.dtypes.items()),
                ", ".join(n.devices),
            ]
            for n in r.networks
        ]
        headers = ["network", "key", "tensors", "values", "bytes", "dtypes", "device"]
        lines.append(term.fit_table(rows, headers, wrap_column=5))
        lines.append("")
    shorten = term.PathShortener()
    arch = [shorten(line) for line in render_architectures(r)] if r.architectures else []
    lines += term.rewrap_all(arch)
    rows = []
    for p in r.pieces:
        need = "yes" if p.required else ""
        text = p.detail or ""
        if p.consequence:
            text = (text + "; " if text else "") + p.consequence
        rows.append([p.name, MARK[p.status], need, p.where or "", text])
    lines.append(term.fit_table(rows, ["piece", "status", "needed", "where", "detail"]))
    lines.append("")
    findings = []
    for f in r.findings:
        if f.severity != "info" or f.code in (
            "adam-step",
            "optimizer-aligned",
            "optimizer-partial",
            "g-d-stage",
            "amp-skipped-steps",
        ):
            findings.append(f"  {f.severity:<7} {f.message}")
    for note in r.notes:
        findings.append(f"  note    {note}")
    if r.required_missing:
        findings.append(f"  error   required piece(s) absent: {', '.join(r.required_missing)}")
    if r.deep is not None:
        findings.append(f"  deep    {r.deep.bytes_read:,} bytes read")
        findings += [f"          {line}" for line in r.deep.checked]
    lines += term.rewrap_all(findings, indent=FINDING_INDENT)
    if options.quiet:  # the problems only: warnings, errors, a config mismatch
        problems = [line for line in arch + findings if _is_problem(line)]
        lines = [lines[0], *term.rewrap_all(safety + problems, indent=FINDING_INDENT)]
    lines.append("")
    lines += term.hang("verdict: ", verdict_line(r).removeprefix("verdict: "))
    lines.append(term.summary(inspect_problems(r)))
    if r.tensors is not None and not options.quiet:
        lines.append("")
        lines.append(render_tensors(r.tensors))
    return "\n".join(lines) + "\n"


def verdict_line(r: InspectReport) -> str:
    """The last line: the resume verdict, unless something the report found contradicts it (a config that does
    not fit, a required piece absent): then that, so the last line never says all is well on exit 1."""
    problems = r.contradictions()
    if not problems:
        return f"verdict: {r.verdict} — {r.verdict_reason}"
    config = any(a.check is not None and not a.check.ok for a in r.architectures)
    head = "config mismatch" if config else "problems"
    tail = "a trainer with this config cannot load it" if config else "see above"
    return f"verdict: {head} — {'; '.join(problems)}: {tail} (the file alone: {r.verdict})"


def _is_problem(line: str) -> bool:
    words = line.split()
    return bool(words) and (words[0].rstrip(":") in ("warning", "error", "safety") or "MISMATCH" in line)


def inspect_problems(r: InspectReport) -> list[tuple[str, str]]:
    """``(status, name)`` of each problem in ``r`` for the summary line: error findings, absent required pieces
    and config mismatches fail, warnings warn."""
    out: list[tuple[str, str]] = []
    for f in r.findings:
        if f.severity in ("error", "warning"):
            out.append(("fail" if f.severity == "error" else "warn", f.code))
    out += [("fail", piece) for piece in r.required_missing]
    out += [
        ("fail", f"config of {a.network}") for a in r.architectures if a.check is not None and not a.check.ok
    ]
    if r.safety.verdict != "safe":
        out.append(("warn", "safety"))
    return out


def _fmt_values(values: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def render_architectures(r: InspectReport) -> list[str]:
    """Lines for each matched architecture: family, version, tensors present, implied config, non-standard
    constants, shape conflicts and, when a config was checked, its mismatches (at most 40) and broken
    constraints."""
    lines = []
    for a in r.architectures:
        fp = a.fingerprint
        head = f"{a.network}: {fp.family}" + (f" {fp.version}" if fp.version else "")
        head += f" ({fp.title}); {fp.matched}/{fp.expected} expected tensors present"
        if fp.prefix:
            head += f" (every key wrapped in {fp.prefix!r})"
        if fp.unexpected:
            head += f", {len(fp.unexpected)} unexpected"
        lines.append(f"  architecture  {head}")
        if fp.version_from:
            lines.append(
                f"                version {fp.version} from {fp.version_from} (the shapes cannot tell it)"
            )
        if fp.peft is not None:
            base = sum(1 for x in fp.peft.adapters if f"{x.module}.weight" in fp.peft.plain)
            where = "with their base layers" if base else "without their base layers"
            lines.append(f"                {fp.peft.describe()}, {where}; read under the plain names")
        for label in fp.partial:
            lines.append(f"                partial file: {label}")
        if fp.also:
            lines.append(f"                the same tensors also fit: {', '.join(fp.also)}")
        if fp.inferred:
            lines.append(f"  implied config  {_fmt_values(fp.inferred)}")
        if fp.constants:
            consts = ", ".join(
                f"{k}={here} (real models: {real})" for k, (here, real) in fp.constants.items()
            )
            lines.append(f"  non-standard    {consts}")
        for c in fp.conflicts[:3]:
            lines.append(f"  warning  shapes disagree with the spec: {c}")
        for c in fp.lora_problems[:3]:
            lines.append(f"  warning  LoRA adapters: {c}")
        for note in a.notes:
            lines.append(f"  note     {note}")
        if len(fp.conflicts) > 3:
            lines.append(f"           ... {len(fp.conflicts) - 3} more disagreements")
        if a.check is not None:
            ck = a.check
            if ck.ok:
                lines.append(f"  config check  {a.config_source}: every tensor shape agrees")
            else:
                lines.append(f"  config check  {a.config_source}: MISMATCH")
                for key, e in ck.key_summary.items():
                    lines.append(
                        f"    {key}: config {e['config']}, checkpoint {e['checkpoint']} "
                        f"({e['tensors']} tensor(s))"
                    )
                for m in ck.mismatches[:40]:
                    lines.append(f"    {m.sentence(ck.values)}")
                if len(ck.mismatches) > 40:
                    lines.append(f"    ... {len(ck.mismatches) - 40} more (see --json)")
                if ck.missing:
                    lines.append(
                        f"    {len(ck.missing)} tensor(s) the config implies are missing, e.g. {ck.missing[0]}"
                    )
                if ck.unexpected:
                    lines.append(
                        f"    {len(ck.unexpected)} tensor(s) the config does not imply, e.g. {ck.unexpected[0]}"
                    )
            for v in ck.violations:
                lines.append(f"    warning: the config breaks a model constraint: {v}")
    lines.append("")
    return lines


def render_tensors(tensors: list[TensorInfo]) -> str:
    """Every tensor (path, dtype, shape, size) in one table per module prefix (the first two key parts)."""
    groups: dict[str, list[TensorInfo]] = {}
    for t in tensors:
        parts = t.path.split(".")
        prefix = ".".join(parts[:2]) if len(parts) > 2 else parts[0]
        groups.setdefault(prefix, []).append(t)
    out = []
    for prefix, items in groups.items():
        out.append(f"{prefix}  ({len(items)} tensors, {human_bytes(sum(t.nbytes for t in items))})")
        rows = [
            [t.path, t.dtype, "×".join(map(str, t.shape)) or "scalar", human_bytes(t.nbytes)] for t in items
        ]
        out.append(grid(rows))
    return "\n".join(out)
