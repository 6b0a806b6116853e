"""The drift report as one self-contained HTML page: the table, the topic shares of each window, and each
distribution's plot (inline SVG)."""

from __future__ import annotations

from datetime import datetime

from jinja2 import Environment
from markupsafe import Markup

from llmdock.evaluate.report_svg import strip_plot
from llmdock.monitor.drift import DriftRow

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llmdock drift: {{ model }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 980px; color: #1d2733; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0 2rem; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #dde3ea; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.drift td { background: #fdecec; } .muted { color: #6b7785; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2733; } svg .plot-title { font-weight: 600; }
svg .axis, svg .tick { stroke: #b8c2cc; } svg .whisker { stroke: #7d93b2; } svg .dot { opacity: .6; }
svg .box { fill: #dfe7f1; stroke: #7d93b2; } svg .median { stroke: #1d2733; stroke-width: 2; }
</style></head><body>
<h1>Drift of {{ model }}</h1>
<p class="muted">reference {{ reference }} ({{ ref_n }} traces) · current {{ current }} ({{ cur_n }} traces) ·
p-values adjusted for {{ rows|length }} tests (Benjamini-Hochberg) · drift when adjusted p &lt; {{ alpha }}</p>
<table><thead><tr><th>statistic</th><th>test</th><th>reference</th><th>current</th>
<th>statistic</th><th>p</th><th>adjusted p</th><th>drift</th></tr></thead><tbody>
{% for r in rows %}<tr class="{{ 'drift' if r.drifted else '' }}"><td>{{ r.name }}</td><td>{{ r.test }}</td>
<td>{{ r.reference }}</td><td>{{ r.current }}</td><td class="num">{{ '%.4g' % r.statistic }}</td>
<td class="num">{{ '%.3g' % r.p_value }}</td><td class="num">{{ '%.3g' % r.adjusted_p }}</td>
<td>{{ 'yes' if r.drifted else 'no' }}</td></tr>
{% endfor %}</tbody></table>
{% for name, shares in mixes %}<h2>{{ name }}</h2>
<table><thead><tr><th>topic (its most particular words)</th><th>reference</th><th>current</th></tr></thead><tbody>
{% for topic, a, b in shares %}<tr><td>{{ topic }}</td><td class="num">{{ '%.1f%%' % (100 * a) }}</td>
<td class="num">{{ '%.1f%%' % (100 * b) }}</td></tr>
{% endfor %}</tbody></table>
{% endfor %}
{% for plot in plots %}{{ plot }}{% endfor %}
<p class="muted">Embedding plots show each trace's distance from the reference window's mean embedding.
Generated {{ generated }} by llmdock monitor drift.</p>
</body></html>
"""


def render(
    model: str, rows: list[DriftRow], *, reference: str, current: str, ref_n: int, cur_n: int, alpha: float
) -> str:
    plots = [
        Markup(strip_plot(r.name, [("reference", r.samples[0]), ("current", r.samples[1])]))
        for r in rows
        if r.samples[0] and r.samples[1]
    ]
    template = Environment(autoescape=True).from_string(PAGE)
    return template.render(
        model=model,
        rows=rows,
        mixes=[(r.name, _shares(*r.mix)) for r in rows if r.mix[0]],
        plots=plots,
        reference=reference,
        current=current,
        ref_n=ref_n,
        cur_n=cur_n,
        alpha=alpha,
        generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    )


def _shares(ref: dict[str, int], cur: dict[str, int]) -> list[tuple[str, float, float]]:
    """Each category's share of the reference and of the current window, the reference's largest first."""
    a, b = sum(ref.values()) or 1, sum(cur.values()) or 1
    names = sorted(set(ref) | set(cur), key=lambda n: -ref.get(n, 0))
    return [(n, ref.get(n, 0) / a, cur.get(n, 0) / b) for n in names]
