"""Charts as server-side SVG (pygal), embedded as ``data:`` images, each with its numbers.

pygal renders offline (no CDN): its tooltip script is switched off (``js=[]``), and the SVG is
shown through ``<img>``, so its inline style stays inside the image and the page's
Content-Security-Policy needs no ``unsafe-inline``.  The ``rows`` of a ``Chart`` are the same
numbers as a table, shown beside every chart.

Rendering costs pygal about 10 ms a chart, so SVGs are kept in a small in-process cache keyed by
everything drawn (kind, title, labels, numbers): a page viewed again with the same numbers
reuses them, and any change of a number draws a new chart.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

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


_KINDS = {"bar": pygal.Bar, "hbar": pygal.HorizontalBar, "stacked": pygal.StackedBar, "line": pygal.Line,
          "pie": pygal.Pie}


@functools.lru_cache(maxsize=512)
def _svg(kind: str, title: str, labels: tuple, series: tuple) -> bytes:
    extra = {"x_label_rotation": 30} if kind == "line" else {"inner_radius": 0.45} if kind == "pie" else {}
    chart = _config(_KINDS[kind], title, show_legend=len(series) > 1 or kind == "pie", **extra)
    if kind != "pie":
        chart.x_labels = list(labels)
    for name, values in series:
        chart.add(name, list(values) if kind != "pie" else values[0])
    return chart.render()


def _chart(kind: str, title: str, x_title: str, labels: Sequence, series: dict[str, Sequence]) -> Chart:
    labels = tuple(str(label) for label in labels)
    frozen = tuple((str(name), tuple(values)) for name, values in series.items())
    rows = [(label, [values[i] for _name, values in frozen]) for i, label in enumerate(labels)]
    return Chart(str(title), str(x_title), [name for name, _v in frozen], rows, _svg(kind, str(title), labels, frozen))


def bar(title: str, x_title: str, labels: Sequence[str], series: dict[str, Sequence], *, horizontal=False,
        stacked=False) -> Chart:
    """Bars per label; ``series`` maps a series name to one value per label."""
    return _chart("stacked" if stacked else "hbar" if horizontal else "bar", title, x_title, labels, series)


def line(title: str, x_title: str, labels: Sequence[str], series: dict[str, Sequence]) -> Chart:
    return _chart("line", title, x_title, labels, series)


def pie(title: str, x_title: str, parts: dict[str, int], value_title: str) -> Chart:
    """Slices per part; its table has one row per part."""
    chart = _chart("pie", title, x_title, ["x"], {name: [value] for name, value in parts.items()})
    chart.rows = [(str(name), [value]) for name, value in parts.items()]
    chart.series_names = [str(value_title)]
    return chart


@functools.lru_cache(maxsize=256)
def _forest_svg(title: str, x_title: str, rows: tuple) -> bytes:
    """A forest plot drawn directly as SVG (pygal's XY chart took ~50 ms for these few marks): per
    row its label, a bar over the 95 % interval, a dot at the estimate, and the dashed zero line."""
    left, right, top, row_h = 190, 24, 44, 40
    height = top + row_h * len(rows) + 56
    xs = [v for _label, e, lo, hi in rows for v in (e, lo, hi) if v is not None] or [0.0]
    lo_x, hi_x = min(0.0, *xs), max(0.0, *xs)
    if hi_x - lo_x < 1e-12:
        lo_x, hi_x = lo_x - 1, hi_x + 1
    pad = (hi_x - lo_x) * 0.08
    lo_x, hi_x = lo_x - pad, hi_x + pad

    def x(v: float) -> float:
        return left + (v - lo_x) / (hi_x - lo_x) * (WIDTH - left - right)

    fg, accent, dot = STYLE.foreground, STYLE.colors[0], STYLE.colors[1]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13" fill="{fg}">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>']
    bottom = top + row_h * len(rows)
    for i in range(5):  # axis ticks
        v = lo_x + (hi_x - lo_x) * i / 4
        out.append(f'<line x1="{x(v):.1f}" y1="{top}" x2="{x(v):.1f}" y2="{bottom}" stroke="#ddd"/>'
                   f'<text x="{x(v):.1f}" y="{bottom + 18}" text-anchor="middle">{v:.3g}</text>')
    out.append(f'<line x1="{x(0):.1f}" y1="{top - 6}" x2="{x(0):.1f}" y2="{bottom}" stroke="{fg}" '
               f'stroke-dasharray="4 4"/>')
    for i, (label, effect, low, high) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        out.append(f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
        if low is not None and high is not None:
            out.append(f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" stroke="{accent}" '
                       f'stroke-width="5" stroke-linecap="round"/>')
        if effect is not None:
            out.append(f'<circle cx="{x(effect):.1f}" cy="{y:.1f}" r="6" fill="{dot}" stroke="white"/>')
    centre = (left + WIDTH - right) / 2
    out.append(f'<text x="{centre}" y="{bottom + 42}" text-anchor="middle">{escape(x_title)}</text>')
    out.append("</svg>")
    return "".join(out).encode()


def forest(title: str, x_title: str, rows: Sequence[tuple[str, float | None, float | None, float | None]],
           label_title: str, headings: Sequence[str]) -> Chart:
    """Estimates with their confidence intervals drawn: ``rows`` are (label, estimate, low, high)
    on the ``x_title`` axis; the table beside it heads the labels ``label_title`` and the three
    numbers ``headings``."""
    frozen = tuple((str(label), *(None if v is None else float(v) for v in values)) for label, *values in rows)
    svg = _forest_svg(str(title), str(x_title), frozen)
    table = [(label, [None if v is None else round(v, 4) for v in values]) for label, *values in frozen]
    return Chart(str(title), str(label_title), [str(h) for h in headings], table, svg,
                 height=44 + 40 * len(rows) + 56)


def clear_cache() -> None:
    _forest_svg.cache_clear()
    _svg.cache_clear()
