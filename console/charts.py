"""Charts drawn directly as server-side SVG, embedded as ``data:`` images, each with its numbers.

Every chart is a small SVG document written here: grouped, horizontal and stacked bars, lines, a
donut and the forest plot (estimates with their intervals). Nothing loads from elsewhere and no
script runs: the SVG is shown through ``<img>``, so the page's Content-Security-Policy needs
neither inline script nor inline style. The ``rows`` of a ``Chart`` are the same numbers as a
table, shown beside every chart (``console/macros.html``); inside the SVG every mark has a
``<title>`` (label, series, value) and ``data-label``/``data-series``/``data-value`` attributes.

pygal drew the bar, line and donut charts until it became the cost of the pages that show them:
about 8 ms a chart (its option lookups and ElementTree serialisation), eight charts on a survey's
results, 14x the API call the page wraps. Writing the SVG directly takes well under a
millisecond a chart. SVGs are still kept in a small in-process cache keyed by everything drawn.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 640, 320
# Colours with enough contrast against white (WCAG AA for graphics: 3:1), text colours 4.5:1.
FOREGROUND, SUBTLE, GRID = "#222", "#555", "#ddd"
COLOURS = ("#1f5fa8", "#b5470b", "#2e7d32", "#6a1b9a", "#8d6e00", "#00695c")
FONT = 12  # px, the axis and legend text
TOP = 44  # below the title
LABEL_CHARS = 28  # axis labels longer than this are shortened (the table has them whole)
MAX_DOTS = 60  # a line of more values is drawn without a dot per value


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


def _q(text) -> str:
    """Text escaped for an SVG text node or a double-quoted attribute."""
    return escape(str(text), {'"': "&quot;"})


def _num(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value: float) -> str:
    """A value as a mark's title shows it: whole numbers without decimals."""
    return f"{int(value):,}" if value == int(value) and abs(value) < 1e15 else f"{value:,.4g}"


def _text_width(text: str, size: int = FONT) -> float:
    return len(text) * size * 0.6  # sans-serif averages a little under 0.6 em a character


def _short(text: str, chars: int = LABEL_CHARS) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "…"


def _scale(values: Sequence[float], integer: bool) -> tuple[float, float, list[float], int]:
    """A value axis from zero to the values (both ways if any is negative) in round steps: its
    low and high end, its ticks and the decimals a tick label needs."""
    lo, hi = min(0.0, *values), max(0.0, *values)
    if hi - lo < 1e-12:
        hi = lo + 1
    raw = (hi - lo) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(step, 1.0)
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    decimals = next((d for d in range(7) if abs(round(step, d) - step) < 1e-9 * step), 6)
    ticks = [start + i * step for i in range(round((end - start) / step) + 1)]
    return start, end, ticks, decimals


def _legend(names: Sequence[str], y: float) -> tuple[list[str], float]:
    """Swatches and names in rows from ``y`` down; returns the marks and the height used."""
    out, x, row = [], 16.0, 0
    for i, name in enumerate(names):
        label = _short(name, 40)
        w = 14 + 6 + _text_width(label) + 18
        if x + w > WIDTH - 16 and x > 16:
            x, row = 16.0, row + 1
        top = y + row * 20
        out.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="14" height="14" fill="{COLOURS[i % len(COLOURS)]}"/>'
                   f'<text x="{x + 20:.1f}" y="{top + 11.5:.1f}">{_q(label)}</text>')
        x += w
    return out, (row + 1) * 20 if names else 0


def _open(width: float, height: float, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="{FONT}" '
            f'fill="{FOREGROUND}" role="img"><title>{_q(title)}</title>',
            f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>',
            f'<text x="{width / 2:.1f}" y="24" text-anchor="middle" font-size="15">{_q(title)}</text>']


def _mark(shape: str, attrs: str, value: float, label: str, name: str | None = None) -> str:
    """One bar, point or slice with its numbers (a hover title in an SVG viewer, data attributes)."""
    series = f' data-series="{_q(name)}"' if name is not None else ""
    caption = f"{_q(label)} · {_q(name)}" if name is not None else _q(label)
    return (f'<{shape} {attrs} data-label="{_q(label)}"{series} data-value="{_fmt(value)}">'
            f'<title>{caption}: {_fmt(value)}</title></{shape}>')


def _columns(kind: str, title: str, labels: tuple, series: tuple) -> tuple[bytes, int]:
    """Vertical charts, one column of the plot per label: grouped bars (``bar``), stacked bars
    (``stacked``) or one line per series (``line``). Returns the SVG and its height."""
    names = [name for name, _values in series]
    values = [[_num(v) for v in vals] for _name, vals in series]
    n = len(labels)
    if kind == "stacked":
        ends = [sum(v[i] for v in values if v[i] and v[i] > 0) for i in range(n)]
        ends += [sum(v[i] for v in values if v[i] and v[i] < 0) for i in range(n)]
    else:
        ends = [v for vals in values for v in vals if v is not None]
    integer = all(v == int(v) for v in ends)
    lo, hi, ticks, decimals = _scale(ends or [0.0], integer)
    tick_labels = [f"{t:,.{decimals}f}" for t in ticks]
    left = 16 + max(_text_width(t) for t in tick_labels) + 8
    right, plot_h = 20, 200
    plot_w = WIDTH - left - right
    band = plot_w / max(n, 1)
    every = max(1, math.ceil(n / max(1, plot_w // 24)))  # a label per 24 px at most
    shown = [(i, _short(str(label))) for i, label in enumerate(labels) if i % every == 0]
    widest = max((_text_width(text) for _i, text in shown), default=0)
    rotate = widest > band * every - 6
    if rotate:  # the first label, turned, reaches left of its column
        left = max(left, 8 + widest * 0.87 - band / 2)
        plot_w = WIDTH - left - right
        band = plot_w / max(n, 1)
    label_h = (widest * 0.5 + FONT * 1.2 if rotate else FONT) + 12
    legend_y = TOP + plot_h + label_h + 10
    legend, legend_h = _legend(names, legend_y) if len(names) > 1 else ([], 0)
    height = int(legend_y + legend_h + 8)

    def y(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * plot_h

    out = _open(WIDTH, height, title)
    for t, text in zip(ticks, tick_labels, strict=True):
        out.append(f'<line x1="{left:.1f}" y1="{y(t):.1f}" x2="{WIDTH - right}" y2="{y(t):.1f}" stroke="{GRID}"/>'
                   f'<text x="{left - 8:.1f}" y="{y(t) + 4:.1f}" text-anchor="end" fill="{SUBTLE}">{text}</text>')
    base = y(0)
    for i, text in shown:
        cx, ty = left + band * (i + 0.5), TOP + plot_h + FONT + 6
        if rotate:
            out.append(f'<text x="{cx:.1f}" y="{ty:.1f}" text-anchor="end" '
                       f'transform="rotate(-30 {cx:.1f} {ty:.1f})">{_q(text)}</text>')
        else:
            out.append(f'<text x="{cx:.1f}" y="{ty:.1f}" text-anchor="middle">{_q(text)}</text>')
    if kind == "line":
        for j, (name, vals) in enumerate(zip(names, values, strict=True)):
            colour, run, runs = COLOURS[j % len(COLOURS)], [], []
            for i, v in enumerate(vals):
                if v is None:
                    runs, run = runs + [run], []
                else:
                    run.append((left + band * (i + 0.5), y(v)))
            for points in [*runs, run]:
                if len(points) > 1:
                    out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                               + " ".join(f"{px:.1f},{py:.1f}" for px, py in points) + '"/>')
            for i, v in enumerate(vals):
                # A dot per value on short series; on long ones (a year of days) only where a value
                # stands alone, so the SVG stays small (the table has every value).
                alone = (i == 0 or vals[i - 1] is None) and (i == n - 1 or vals[i + 1] is None)
                if v is not None and (n <= MAX_DOTS or alone):
                    attrs = f'cx="{left + band * (i + 0.5):.1f}" cy="{y(v):.1f}" r="3"'
                    out.append(_mark("circle", f'{attrs} fill="{colour}"', v, labels[i], name))
    else:
        group = band * (0.6 if kind == "stacked" else 0.8)
        width = group if kind == "stacked" else group / max(len(names), 1)
        for i, label in enumerate(labels):
            x0, up, down = left + band * i + (band - group) / 2, 0.0, 0.0
            for j, (name, vals) in enumerate(zip(names, values, strict=True)):
                v = vals[i]
                if v is None:
                    continue
                if kind == "stacked":
                    start = up if v >= 0 else down
                    up, down = (up + v, down) if v >= 0 else (up, down + v)
                    x, y1, y2 = x0, y(start), y(start + v)
                else:
                    x, y1, y2 = x0 + width * j, base, y(v)
                out.append(_mark("rect", f'x="{x:.1f}" y="{min(y1, y2):.1f}" width="{width:.1f}" '
                                 f'height="{abs(y2 - y1):.1f}" fill="{COLOURS[j % len(COLOURS)]}"', v, label, name))
    out.append(f'<line x1="{left:.1f}" y1="{base:.1f}" x2="{WIDTH - right}" y2="{base:.1f}" stroke="{FOREGROUND}"/>')
    out += legend
    out.append("</svg>")
    return "".join(out).encode(), height


def _rows(title: str, labels: tuple, series: tuple) -> tuple[bytes, int]:
    """Horizontal bars, one row of the plot per label (long answer texts read on the left)."""
    names = [name for name, _values in series]
    values = [[_num(v) for v in vals] for _name, vals in series]
    flat = [v for vals in values for v in vals if v is not None]
    lo, hi, ticks, decimals = _scale(flat or [0.0], all(v == int(v) for v in flat))
    texts = [_short(str(label)) for label in labels]
    left = 16 + max((_text_width(t) for t in texts), default=0) + 10
    right = 24
    row_h = max(28, 14 * len(names) + 12)
    plot_h = row_h * max(len(labels), 1)
    legend_y = TOP + plot_h + FONT + 24
    legend, legend_h = _legend(names, legend_y) if len(names) > 1 else ([], 0)
    height = int(legend_y + legend_h + 8)

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (WIDTH - left - right)

    out = _open(WIDTH, height, title)
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{TOP}" x2="{x(t):.1f}" y2="{TOP + plot_h}" stroke="{GRID}"/>'
                   f'<text x="{x(t):.1f}" y="{TOP + plot_h + FONT + 8}" text-anchor="middle" '
                   f'fill="{SUBTLE}">{t:,.{decimals}f}</text>')
    bar_h = (row_h - 10) / max(len(names), 1)
    for i, (label, text) in enumerate(zip(labels, texts, strict=True)):
        top = TOP + row_h * i
        out.append(f'<text x="{left - 8:.1f}" y="{top + row_h / 2 + 4:.1f}" text-anchor="end">{_q(text)}</text>')
        for j, (name, vals) in enumerate(zip(names, values, strict=True)):
            if vals[i] is not None:
                x1, x2 = x(0), x(vals[i])
                attrs = f'x="{min(x1, x2):.1f}" y="{top + 5 + bar_h * j:.1f}" width="{abs(x2 - x1):.1f}"'
                out.append(_mark("rect", f'{attrs} height="{bar_h:.1f}" fill="{COLOURS[j % len(COLOURS)]}"',
                                 vals[i], label, name))
    out.append(f'<line x1="{x(0):.1f}" y1="{TOP}" x2="{x(0):.1f}" y2="{TOP + plot_h}" stroke="{FOREGROUND}"/>')
    out += legend
    out.append("</svg>")
    return "".join(out).encode(), height


def _donut(title: str, labels: tuple, series: tuple) -> tuple[bytes, int]:
    """A ring of slices, one per series (its first value), starting at twelve o'clock; the
    legend gives each part's share."""
    names = [name for name, _values in series]
    parts = [max(_num(vals[0]) or 0.0, 0.0) for _name, vals in series]
    total = sum(parts)
    radius, inner = 110, 110 * 0.45
    cx, cy = WIDTH / 2, TOP + radius
    shares = [f"{name} ({p / total:.0%})" if total else f"{name} (0%)" for name, p in zip(names, parts, strict=True)]
    legend, legend_h = _legend(shares, cy + radius + 16)
    height = int(cy + radius + 16 + legend_h + 8)
    out = _open(WIDTH, height, title)
    out.append(f'<circle cx="{cx}" cy="{cy}" r="{(radius + inner) / 2}" fill="none" stroke="{GRID}" '
               f'stroke-width="{radius - inner}"/>')  # the empty ring under the slices (all zero: only it)
    angle = -math.pi / 2
    for j, (name, p) in enumerate(zip(names, parts, strict=True)):
        if p <= 0:
            continue
        end = angle + p / total * 2 * math.pi
        mid = (angle + end) / 2  # each arc through the middle spans at most half the ring

        def at(r: float, a: float) -> str:
            return f"{cx + r * math.cos(a):.2f},{cy + r * math.sin(a):.2f}"

        d = (f"M{at(radius, angle)} A{radius},{radius} 0 0 1 {at(radius, mid)} A{radius},{radius} 0 0 1 "
             f"{at(radius, end)} L{at(inner, end)} A{inner},{inner} 0 0 0 {at(inner, mid)} "
             f"A{inner},{inner} 0 0 0 {at(inner, angle)} Z")
        out.append(_mark("path", f'd="{d}" fill="{COLOURS[j % len(COLOURS)]}" stroke="white"', p, name))
        angle = end
    out += legend
    out.append("</svg>")
    return "".join(out).encode(), height


@functools.lru_cache(maxsize=512)
def _svg(kind: str, title: str, labels: tuple, series: tuple) -> tuple[bytes, int]:
    if kind == "pie":
        return _donut(title, labels, series)
    if kind == "hbar":
        return _rows(title, labels, series)
    return _columns(kind, title, labels, series)


def _chart(kind: str, title: str, x_title: str, labels: Sequence, series: dict[str, Sequence]) -> Chart:
    labels = tuple(str(label) for label in labels)
    frozen = tuple((str(name), tuple(values)) for name, values in series.items())
    rows = [(label, [values[i] for _name, values in frozen]) for i, label in enumerate(labels)]
    svg, height = _svg(kind, str(title), labels, frozen)
    return Chart(str(title), str(x_title), [name for name, _v in frozen], rows, svg, height=height)


def bar(title: str, x_title: str, labels: Sequence[str], series: dict[str, Sequence], *, horizontal=False,
        stacked=False) -> Chart:
    """Bars per label; ``series`` maps a series name to one value per label (None: no bar)."""
    return _chart("stacked" if stacked else "hbar" if horizontal else "bar", title, x_title, labels, series)


def line(title: str, x_title: str, labels: Sequence[str], series: dict[str, Sequence]) -> Chart:
    """A line per series over the labels (None: a gap in the line)."""
    return _chart("line", title, x_title, labels, series)


def pie(title: str, x_title: str, parts: dict[str, int], value_title: str) -> Chart:
    """Slices per part (a donut); its table has one row per part."""
    chart = _chart("pie", title, x_title, ["x"], {name: [value] for name, value in parts.items()})
    chart.rows = [(str(name), [value]) for name, value in parts.items()]
    chart.series_names = [str(value_title)]
    return chart


@functools.lru_cache(maxsize=256)
def _forest_svg(title: str, x_title: str, rows: tuple) -> bytes:
    """A forest plot: per row its label, a bar over the 95 % interval, a dot at the estimate, and
    the dashed zero line."""
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

    fg, accent, dot = FOREGROUND, COLOURS[0], COLOURS[1]
    out = _open(WIDTH, height, title)
    bottom = top + row_h * len(rows)
    for i in range(5):  # axis ticks
        v = lo_x + (hi_x - lo_x) * i / 4
        out.append(f'<line x1="{x(v):.1f}" y1="{top}" x2="{x(v):.1f}" y2="{bottom}" stroke="#ddd"/>'
                   f'<text x="{x(v):.1f}" y="{bottom + 18}" text-anchor="middle">{v:.3g}</text>')
    out.append(f'<line x1="{x(0):.1f}" y1="{top - 6}" x2="{x(0):.1f}" y2="{bottom}" stroke="{fg}" '
               f'stroke-dasharray="4 4"/>')
    for i, (label, effect, low, high) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        out.append(f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end">{_q(label)}</text>')
        if low is not None and high is not None:
            out.append(f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" stroke="{accent}" '
                       f'stroke-width="5" stroke-linecap="round"/>')
        if effect is not None:
            out.append(f'<circle cx="{x(effect):.1f}" cy="{y:.1f}" r="6" fill="{dot}" stroke="white"/>')
    centre = (left + WIDTH - right) / 2
    out.append(f'<text x="{centre}" y="{bottom + 42}" text-anchor="middle">{_q(x_title)}</text>')
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
