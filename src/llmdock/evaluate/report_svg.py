"""The report's plots as inline SVG, drawn by hand (no plotting library, nothing loaded from elsewhere).

Every function returns an ``<svg>`` element as a string with each text from the data escaped here, so the
page template may insert it unescaped. Three kinds: a strip plot with a box per series (a metric's
distribution), bars with 95 % CI error bars, and a forest plot of paired deltas with their p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

from llmdock.evaluate.stats import Estimate

WIDTH = 640
LABEL_W = 170  # left column: the series' names
VALUE_W = 150  # right column: the numbers
ROW_H = 26
TOP = 30  # title
BOTTOM = 24  # axis tick labels
MAX_POINTS = 400  # per series in a strip plot; more are thinned evenly
COLOURS = ("#3b6ea8", "#d08c2e", "#4c9a5b", "#b5475b", "#7a5ca8", "#5f8f99")


@dataclass(frozen=True, slots=True)
class Delta:
    """One row of a forest plot."""

    label: str
    delta: Estimate
    p_value: float
    significant: bool


def fmt(value: float, signed: bool = False) -> str:
    """A number as the report prints it: 3 decimals (none from 1000 on); an en dash for NaN."""
    if value is None or not math.isfinite(value):
        return "\u2013"  # an en dash
    digits = 0 if abs(value) >= 1000 else 3
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start", room: int = 26) -> str:
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>'
        f"<title>{escape(text)}</title>{escape(_clip(text, room))}</text>"
    )


def _clip(text: str, n: int = 26) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _svg(title: str, height: float, body: list[str], kind: str) -> str:
    return (
        f'<svg class="plot {kind}" viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" '
        f'height="{height:.0f}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        + _text(4, 18, title, "plot-title", room=90)
        + "".join(body)
        + "</svg>"
    )


class Scale:
    """Maps data values onto the plot's middle column, with a few round ticks."""

    def __init__(self, low: float, high: float) -> None:
        if not (math.isfinite(low) and math.isfinite(high)):
            low, high = 0.0, 1.0
        if high <= low:
            low, high = low - 0.5, high + 0.5
        self.low, self.high = low, high
        self.x0, self.x1 = LABEL_W, WIDTH - VALUE_W

    def __call__(self, value: float) -> float:
        value = min(max(value, self.low), self.high)
        return self.x0 + (value - self.low) / (self.high - self.low) * (self.x1 - self.x0)

    def ticks(self) -> list[float]:
        raw = (self.high - self.low) / 4
        step = 10 ** math.floor(math.log10(raw))
        step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
        first = math.ceil(self.low / step) * step
        return [first + i * step for i in range(int((self.high - first) / step + 1e-9) + 1)]

    def axis(self, top: float, bottom: float) -> list[str]:
        parts = []
        for tick in self.ticks():
            x = self(tick)
            parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{bottom:.1f}"/>')
            label = f"{tick:g}" if abs(tick) >= 1e-9 else "0"
            parts.append(_text(x, bottom + 14, label, "tick", "middle"))
        return parts


def unit_scale(values: Sequence[float]) -> Scale:
    """0..1 when every value lies in it (scores, rates), else the values' own range with some room."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Scale(0.0, 1.0)
    low, high = min(finite), max(finite)
    if low >= 0.0 and high <= 1.0:
        return Scale(0.0, 1.0)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    return Scale(min(low - pad, 0.0) if low >= 0 else low - pad, high + pad)


def strip_plot(title: str, series: Sequence[tuple[str, Sequence[float]]]) -> str:
    """Each series' values as jittered dots over a box (quartiles, median, whiskers at the extremes)."""
    series = [(name, [v for v in values if math.isfinite(v)]) for name, values in series]
    scale = unit_scale([v for _, values in series for v in values])
    body: list[str] = []
    bottom = TOP + ROW_H * len(series)
    body += scale.axis(TOP, bottom)
    for i, (name, values) in enumerate(series):
        mid = TOP + ROW_H * i + ROW_H / 2
        colour = COLOURS[i % len(COLOURS)]
        body.append(_text(LABEL_W - 8, mid + 4, name, "series", "end"))
        if not values:
            body.append(_text(scale.x0 + 4, mid + 4, "no values", "muted"))
            continue
        x = np.asarray(values, dtype=float)
        q1, med, q3 = (float(v) for v in np.percentile(x, [25, 50, 75]))
        lo, hi = float(x.min()), float(x.max())
        body.append(
            f'<line class="whisker" x1="{scale(lo):.1f}" x2="{scale(hi):.1f}" y1="{mid:.1f}" y2="{mid:.1f}"/>'
            f'<rect class="box" x="{scale(q1):.1f}" y="{mid - 8:.1f}" '
            f'width="{max(scale(q3) - scale(q1), 1):.1f}" height="16"/>'
            f'<line class="median" x1="{scale(med):.1f}" x2="{scale(med):.1f}" '
            f'y1="{mid - 8:.1f}" y2="{mid + 8:.1f}"/>'
        )
        step = max(1, math.ceil(x.size / MAX_POINTS))
        for j, value in enumerate(x[::step].tolist()):
            jitter = ((j * 0.618034) % 1.0 - 0.5) * 14  # deterministic: the same run draws the same dots
            body.append(
                f'<circle class="dot" cx="{scale(value):.1f}" cy="{mid + jitter:.1f}" r="2.5" '
                f'fill="{colour}"/>'
            )
        summary = f"median {fmt(med)} (n={x.size})"
        body.append(_text(scale.x1 + 8, mid + 4, summary, "value", room=30))
    return _svg(title, bottom + BOTTOM, body, "strip")


def bar_plot(title: str, series: Sequence[tuple[str, Estimate]]) -> str:
    """Each series' mean as a bar from zero, with its 95 % CI as an error bar and the numbers beside it."""
    scale = unit_scale([v for _, e in series for v in (0.0, e.low, e.high, e.mean)])
    body: list[str] = []
    bottom = TOP + ROW_H * len(series)
    body += scale.axis(TOP, bottom)
    for i, (name, est) in enumerate(series):
        mid = TOP + ROW_H * i + ROW_H / 2
        body.append(_text(LABEL_W - 8, mid + 4, name, "series", "end"))
        if est.empty or not math.isfinite(est.mean):
            body.append(_text(scale.x0 + 4, mid + 4, "no values", "muted"))
            continue
        x0, xm = scale(max(scale.low, 0.0)), scale(est.mean)
        colour = COLOURS[i % len(COLOURS)]
        body.append(
            f'<rect class="bar" x="{min(x0, xm):.1f}" y="{mid - 8:.1f}" width="{abs(xm - x0):.1f}" '
            f'height="16" fill="{colour}"/>'
        )
        body += _error_bar(scale, est, mid)
        body.append(
            _text(
                scale.x1 + 8, mid + 4, f"{fmt(est.mean)} [{fmt(est.low)}, {fmt(est.high)}]", "value", room=30
            )
        )
    return _svg(title, bottom + BOTTOM, body, "bars")


def _error_bar(scale: Scale, est: Estimate, mid: float) -> list[str]:
    if not (math.isfinite(est.low) and math.isfinite(est.high)):
        return []
    lo, hi = scale(est.low), scale(est.high)
    return [
        f'<line class="ci" x1="{lo:.1f}" x2="{hi:.1f}" y1="{mid:.1f}" y2="{mid:.1f}"/>'
        f'<line class="ci" x1="{lo:.1f}" x2="{lo:.1f}" y1="{mid - 5:.1f}" y2="{mid + 5:.1f}"/>'
        f'<line class="ci" x1="{hi:.1f}" x2="{hi:.1f}" y1="{mid - 5:.1f}" y2="{mid + 5:.1f}"/>'
    ]


def forest_plot(title: str, rows: Sequence[Delta]) -> str:
    """Paired differences B - A: a dot at the mean, its 95 % CI, a line at zero; p-values on the right."""
    bound = max(
        (abs(v) for r in rows for v in (r.delta.low, r.delta.high, r.delta.mean) if math.isfinite(v)),
        default=1.0,
    )
    scale = Scale(-(bound * 1.1 or 1.0), bound * 1.1 or 1.0)
    body: list[str] = []
    bottom = TOP + ROW_H * len(rows)
    body += scale.axis(TOP, bottom)
    body.append(f'<line class="zero" x1="{scale(0):.1f}" x2="{scale(0):.1f}" y1="{TOP}" y2="{bottom:.1f}"/>')
    for i, row in enumerate(rows):
        mid = TOP + ROW_H * i + ROW_H / 2
        cls = "significant" if row.significant else "plain"
        body.append(_text(LABEL_W - 8, mid + 4, row.label, "series", "end"))
        body += _error_bar(scale, row.delta, mid)
        if math.isfinite(row.delta.mean):
            body.append(
                f'<circle class="delta {cls}" cx="{scale(row.delta.mean):.1f}" cy="{mid:.1f}" r="4.5"/>'
            )
        mark = " *" if row.significant else ""
        body.append(
            _text(
                scale.x1 + 8, mid + 4, f"{fmt(row.delta.mean, True)}  p={row.p_value:.3g}{mark}", cls, room=30
            )
        )
    return _svg(title, bottom + BOTTOM, body, "forest")
