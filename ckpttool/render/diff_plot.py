"""``diff --values --plot FILE``: the per-module relative change as a horizontal bar chart, largest on top.

``.html`` is one self-contained file (inline SVG, no script, no stylesheet or image from elsewhere, names
escaped); ``.png`` is drawn by matplotlib (the optional extra ``ckpttool[plot]``) through its Agg canvas, without
pyplot, so no global backend is chosen for the caller. Both are written atomically and never over an existing
file without ``force`` (and with it only over a file of the same kind).
"""

from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

from ckpttool.errors import UsageError
from ckpttool.ops.diff import DiffReport
from ckpttool.outputs import atomic_write, check_output
from ckpttool.render.diff_values_table import fmt_rel

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HTML_MARK = '<meta name="generator" content="ckpttool diff --plot">'
FROM_ZERO = "all zeros in A: relative change infinite, drawn at full length"
PLOT_INSTALL = "pip install 'ckpttool[plot]'"


@dataclass(frozen=True)
class Bar:
    """One module's bar: its label (``G: enc_p.encoder.attn_layers.0`` when several networks were compared),
    relative change (``math.inf`` when A was all zeros) and how many tensors and values it holds."""

    label: str
    rel: float
    tensors: int
    numel: int


@dataclass(frozen=True)
class Chart:
    """The bars to draw (ranked, at most ``top``), a title, and how many moved modules were left out."""

    bars: list[Bar]
    title: str
    left_out: int

    @property
    def caption(self) -> str:
        """What the chart shows and leaves out, in one line."""
        more = f"; {self.left_out} more modules moved less (not shown)" if self.left_out else ""
        return f"relative change ‖B−A‖/‖A‖ per module, concatenated parameters{more}"


def chart_of(report: DiffReport, top: int) -> Chart:
    """The modules that moved, ranked across the compared networks, the first ``top`` of them (0: all)."""
    several = len(report.networks) > 1
    bars = []
    for net in report.networks:
        for m in net.modules():
            if m.moved:
                label = m.module or "(top level)"
                bars.append(
                    Bar(f"{net.name}: {label}" if several else label, m.rel_change, m.tensors, m.numel)
                )
    bars.sort(key=lambda b: (-b.rel, b.label))
    shown = bars[: top or None]
    title = f"{Path(report.path_a).name} → {Path(report.path_b).name}"
    return Chart(shown, title, len(bars) - len(shown))


def _finite_max(chart: Chart) -> float:
    finite = [b.rel for b in chart.bars if math.isfinite(b.rel)]
    return max(finite, default=0.0) or 1.0


def html_chart(chart: Chart) -> str:
    """The chart as a self-contained HTML page with an inline SVG (each bar has a tooltip with its numbers)."""
    row, label_w, bar_w, pad = 22, 380, 460, 12
    top_y = 64
    height = top_y + row * max(1, len(chart.bars)) + 40
    width = label_w + bar_w + 110
    scale = _finite_max(chart)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        HTML_MARK,
        f"<title>{html.escape(chart.title)}</title>",
        "<style>body{font-family:sans-serif;margin:16px}svg text{font-size:12px}</style>",
        "</head><body>",
        f"<h2>{html.escape(chart.title)}</h2>",
        f"<p>{html.escape(chart.caption)}</p>",
        *(
            [f'<p style="color:#c0392b">red: {FROM_ZERO}</p>']
            if any(math.isinf(b.rel) for b in chart.bars)
            else []
        ),
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
    ]
    if not chart.bars:
        out.append(f'<text x="{pad}" y="{top_y}">no module moved</text>')
    for i, b in enumerate(chart.bars):
        y = top_y + i * row
        frac = 1.0 if math.isinf(b.rel) else b.rel / scale
        w = max(1.0, frac * bar_w)
        colour = "#c0392b" if math.isinf(b.rel) else "#2e6da4"
        tip = f"{b.label}: {fmt_rel(b.rel)} ({b.tensors} tensors, {b.numel} values)"
        out += [
            f"<g><title>{html.escape(tip)}</title>",
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(b.label)}</text>',
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{colour}"></rect>',
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{html.escape(fmt_rel(b.rel))}</text></g>',
        ]
    axis_y = top_y + row * max(1, len(chart.bars)) + 4
    out += [
        f'<line x1="{label_w}" y1="{top_y}" x2="{label_w}" y2="{axis_y}" stroke="#555"></line>',
        f'<text x="{label_w}" y="{axis_y + 16}">0</text>',
        f'<text x="{label_w + bar_w}" y="{axis_y + 16}" text-anchor="end">{scale:.3g}</text>',
        "</svg>",
        "</body></html>",
    ]
    return "\n".join(out) + "\n"


def png_chart(chart: Chart) -> bytes:
    """The chart as PNG bytes (matplotlib's Agg canvas). UsageError naming ``ckpttool[plot]`` without
    matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(
            f"--plot FILE.png needs matplotlib: {PLOT_INSTALL} (or write --plot FILE.html, which needs nothing)"
        ) from None
    n = max(1, len(chart.bars))
    fig = Figure(figsize=(10, 1.4 + 0.28 * n), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    scale = _finite_max(chart)
    labels = [b.label for b in chart.bars]
    widths = [scale if math.isinf(b.rel) else b.rel for b in chart.bars]
    colours = ["#c0392b" if math.isinf(b.rel) else "#2e6da4" for b in chart.bars]
    bars = ax.barh(range(len(labels)), widths, color=colours)
    ax.set_yticks(range(len(labels)), labels=labels, fontsize=8)
    ax.set_ylim(n - 0.4, -0.6)  # largest on top, no empty band above or below
    ax.bar_label(bars, labels=[fmt_rel(b.rel) for b in chart.bars], padding=3, fontsize=8)
    ax.set_xlim(0, scale * 1.15)
    ax.set_xlabel("relative change ‖B−A‖/‖A‖ (module's parameters concatenated)")
    ax.set_title(
        chart.title + (f"\n{chart.left_out} more modules moved less (not shown)" if chart.left_out else "")
    )
    if not chart.bars:
        ax.text(0.5, 0.5, "no module moved", ha="center", va="center", transform=ax.transAxes)
    if any(math.isinf(b.rel) for b in chart.bars):
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color="#c0392b", label=FROM_ZERO)], loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _is_png(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(PNG_MAGIC)) == PNG_MAGIC


def _is_our_html(path: Path) -> bool:
    with path.open("rb") as fh:
        return HTML_MARK.encode() in fh.read(4096)


def check_plot_target(out: str | Path, inputs: list[str], force: bool) -> Path:
    """Check ``out`` before any work: a ``.html`` or ``.png`` name, matplotlib importable for ``.png``, not an
    input, not an existing file without ``force`` (with it: only a chart of the same kind). UsageError or
    OutputExists (exit 2)."""
    import importlib.util

    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".png"):
        raise UsageError(f"{path}: --plot writes .html or .png, not {suffix or 'a file without a suffix'!r}")
    if suffix == ".png" and importlib.util.find_spec("matplotlib") is None:
        raise UsageError(
            f"--plot FILE.png needs matplotlib: {PLOT_INSTALL} (or write --plot FILE.html, which needs nothing)"
        )
    return check_output(path, inputs, force, _is_png if suffix == ".png" else _is_our_html)


def write_plot(report: DiffReport, out: str | Path, *, top: int, force: bool, inputs: list[str]) -> Path:
    """Draw the per-module chart of ``report`` (compared with values; the first ``top`` moved modules, 0: all)
    to ``out`` (``.html`` or ``.png``), atomically; errors as :func:`check_plot_target`."""
    path = check_plot_target(out, inputs, force)
    suffix = path.suffix.lower()
    same_kind = _is_png if suffix == ".png" else _is_our_html
    chart = chart_of(report, top)
    data = png_chart(chart) if suffix == ".png" else html_chart(chart).encode("utf-8")

    def verify(tmp: Path) -> None:
        if not same_kind(tmp):
            raise UsageError(f"{path}: the chart written is not a valid {suffix[1:]} file")

    atomic_write(path, lambda fh: fh.write(data), verify)
    return path
