"""Charts as server-side SVG (pygal), embedded as ``data:`` images, each with its numbers.

pygal renders offline (no CDN): its tooltip script is switched off (``js=[]``), and the SVG is
shown through ``<img>``, so its inline style stays inside the image and the page's
Content-Security-Policy needs no ``unsafe-inline``.  The ``rows`` of a ``Chart`` are the same
numbers as a table, shown beside every chart.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import pygal
from pygal.style import Style

WIDTH, HEIGHT = 640, 320
# Colours with enough contrast against white (WCAG AA for graphics: 3:1).
STYLE = Style(
    background="white", plot_background="white", foreground="#222", foreground_strong="#111",
    foreground_subtle="#555", colors=("#1f5fa8", "#b5470b", "#2e7d32", "#6a1b9a", "#8d6e00", "#00695c"),
    font_family="sans-serif",
)


@dataclass
class Chart:
    title: str
    x_title: str
    series_names: list[str]
    rows: list[tuple[str, list]]  # (x label, one value per series)
    svg: bytes
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def data_uri(self) -> str:
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg).decode()


def _config(chart_cls, title: str, **kw):
    return chart_cls(
        title=title, style=STYLE, width=WIDTH, height=HEIGHT, js=[], disable_xml_declaration=False,
        show_legend=kw.pop("show_legend", True), legend_at_bottom=True, print_values=False,
        truncate_label=-1, **kw,
    )


def bar(title: str, x_title: str, labels: Sequence[str], series: dict[str, Sequence], *, horizontal=False,
        stacked=False) -> Chart:
    """Bars per label; ``series`` maps a series name to one value per label."""
    cls = (pygal.StackedBar if stacked else pygal.HorizontalBar if horizontal else pygal.Bar)
    chart = _config(cls, title, show_legend=len(series) > 1)
    chart.x_labels = [str(label) for label in labels]
    for name, values in series.items():
        chart.add(str(name), [v if v is not None else None for v in values])
    rows = [(str(label), [series[name][i] for name in series]) for i, label in enumerate(labels)]
    return Chart(title, x_title, [str(n) for n in series], rows, chart.render())


def line(title: str, x_title: str, labels: Sequence[str], series: dict[str, Sequence]) -> Chart:
    chart = _config(pygal.Line, title, x_label_rotation=30, show_legend=len(series) > 1)
    chart.x_labels = [str(label) for label in labels]
    for name, values in series.items():
        chart.add(str(name), list(values))
    rows = [(str(label), [series[name][i] for name in series]) for i, label in enumerate(labels)]
    return Chart(title, x_title, [str(n) for n in series], rows, chart.render())


def pie(title: str, x_title: str, parts: dict[str, int], value_title: str) -> Chart:
    chart = _config(pygal.Pie, title, inner_radius=0.45)
    for name, value in parts.items():
        chart.add(str(name), value)
    rows = [(str(name), [value]) for name, value in parts.items()]
    return Chart(title, x_title, [value_title], rows, chart.render())
