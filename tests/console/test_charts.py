"""The console's charts, drawn directly as SVG (``console/charts.py``): the marks carry the
numbers they were given, in proportion, the table beside each chart holds the same numbers, text
is escaped, and nothing in an SVG runs or loads anything."""

from __future__ import annotations

import base64
import html
import re
import xml.etree.ElementTree as ET

import pytest

from console import charts
from extensions import db

NS = {"s": "http://www.w3.org/2000/svg"}


def _svg(chart: charts.Chart) -> ET.Element:
    root = ET.fromstring(chart.svg)  # noqa: S314 (our own output) well-formed XML, or this raises
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert int(root.get("width")) == chart.width and int(root.get("height")) == chart.height
    assert chart.data_uri == "data:image/svg+xml;base64," + base64.b64encode(chart.svg).decode()
    return root


def _marks(root: ET.Element, shape: str) -> list[ET.Element]:
    return [m for m in root.iter(f"{{{NS['s']}}}{shape}") if m.get("data-value") is not None]


def _value(mark: ET.Element) -> float:
    return float(mark.get("data-value").replace(",", ""))


def _f(mark: ET.Element, attr: str) -> float:
    return float(mark.get(attr))


def test_bars_have_heights_in_proportion_and_the_table_the_same_numbers():
    chart = charts.bar("Members per tier", "Tier", ["aware", "engaged", "loyal"], {"Members": [100, 50, 0]})
    assert chart.rows == [("aware", [100]), ("engaged", [50]), ("loyal", [0])]
    assert chart.series_names == ["Members"] and chart.x_title == "Tier"
    bars = _marks(_svg(chart), "rect")
    assert [(b.get("data-label"), b.get("data-series"), _value(b)) for b in bars] == [
        ("aware", "Members", 100), ("engaged", "Members", 50), ("loyal", "Members", 0)]
    heights = [_f(b, "height") for b in bars]
    assert heights[0] > 100 and heights[1] == pytest.approx(heights[0] / 2, abs=0.15) and heights[2] == 0
    # All bars stand on the same baseline; left to right in the labels' order.
    assert len({round(_f(b, "y") + _f(b, "height"), 1) for b in bars}) == 1
    assert [_f(b, "x") for b in bars] == sorted(_f(b, "x") for b in bars)
    assert [t.findtext("s:title", namespaces=NS) for t in bars][0] == "aware · Members: 100"


def test_grouped_bars_per_series_negative_values_hang_below_zero_and_none_draws_no_bar():
    chart = charts.bar("NPS by tier", "Tier", ["aware", "engaged", "loyal"],
                       {"NPS": [-20, None, 40], "Last year": [10, 5, None]})
    bars = _marks(_svg(chart), "rect")
    assert sorted((b.get("data-label"), b.get("data-series"), _value(b)) for b in bars) == [
        ("aware", "Last year", 10), ("aware", "NPS", -20), ("engaged", "Last year", 5), ("loyal", "NPS", 40)]
    by = {(b.get("data-label"), b.get("data-series")): b for b in bars}
    negative, positive = by["aware", "NPS"], by["loyal", "NPS"]
    assert _f(negative, "y") == pytest.approx(_f(positive, "y") + _f(positive, "height"), abs=0.15)  # zero line
    assert _f(negative, "height") == pytest.approx(_f(positive, "height") / 2, abs=0.15)
    assert chart.rows[1] == ("engaged", [None, 5])
    legend = [t.text for t in _svg(chart).iter(f"{{{NS['s']}}}text")]
    assert "NPS" in legend and "Last year" in legend  # two series: a legend


def test_stacked_bars_add_up_per_label():
    chart = charts.bar("Agree?", "Statement", ["fast", "friendly"],
                       {"disagree": [10, 20], "neutral": [30, 5], "agree": [60, 25]}, stacked=True)
    bars = _marks(_svg(chart), "rect")
    assert len(bars) == 6
    fast = sorted((b for b in bars if b.get("data-label") == "fast"), key=lambda b: -_f(b, "y"))
    assert [b.get("data-series") for b in fast] == ["disagree", "neutral", "agree"]  # bottom to top
    for lower, upper in zip(fast, fast[1:], strict=False):
        assert _f(upper, "y") + _f(upper, "height") == pytest.approx(_f(lower, "y"), abs=0.15)
    total = {label: sum(_f(b, "height") for b in bars if b.get("data-label") == label)
             for label in ("fast", "friendly")}
    assert total["friendly"] == pytest.approx(total["fast"] / 2, abs=0.3)
    assert chart.rows == [("fast", [10, 30, 60]), ("friendly", [20, 5, 25])]


def test_horizontal_bars_have_widths_in_proportion_and_long_answers_shortened_only_on_the_axis():
    long = "phone, with an answer text far longer than any axis can hold"
    chart = charts.bar("Channel", "Answer", ["shop", "web", long], {"Responses": [120, 60, 3]}, horizontal=True)
    root = _svg(chart)
    bars = _marks(root, "rect")
    assert [b.get("data-label") for b in bars] == ["shop", "web", long]
    assert _f(bars[1], "width") == pytest.approx(_f(bars[0], "width") / 2, abs=0.15)
    assert [_f(b, "y") for b in bars] == sorted(_f(b, "y") for b in bars)  # top to bottom
    texts = [t.text for t in root.iter(f"{{{NS['s']}}}text")]
    assert long not in texts and any(t and t.startswith("phone, with") and t.endswith("…") for t in texts)
    assert chart.rows[2] == (long, [3])  # the table has it whole
    taller = charts.bar("Many", "Answer", [f"option {i}" for i in range(20)], {"n": list(range(20))}, horizontal=True)
    assert taller.height > chart.height  # a row per answer


def test_lines_have_a_point_per_value_and_a_gap_where_a_value_is_missing():
    labels = [f"2026-0{m}-01" for m in range(1, 7)]
    chart = charts.line("Purchases", "Period starting", labels,
                        {"All": [5, 6, 7, 8, 9, 10], "loyal": [1, 2, None, 4, 5, 6]})
    root = _svg(chart)
    points = _marks(root, "circle")
    assert len(points) == 11
    assert [_value(p) for p in points if p.get("data-series") == "loyal"] == [1, 2, 4, 5, 6]
    all_points = [p for p in points if p.get("data-series") == "All"]
    assert [p.get("data-label") for p in all_points] == labels
    ys = [_f(p, "cy") for p in all_points]
    assert ys == sorted(ys, reverse=True)  # rising values are drawn higher
    assert ys[0] - ys[1] == pytest.approx(ys[1] - ys[2], abs=0.15)  # on a linear axis
    polylines = root.findall("s:polyline", NS)
    assert len(polylines) == 3  # one for "All", two for "loyal" around its gap
    assert chart.rows[2] == ("2026-03-01", [7, None])


def test_a_long_daily_series_labels_only_some_days():
    labels = [f"day {i}" for i in range(365)]
    root = _svg(charts.line("Daily", "Day", labels, {"v": [i % 17 for i in range(365)]}))
    axis = [t.text for t in root.iter(f"{{{NS['s']}}}text") if t.text and t.text.startswith("day ")]
    assert 5 <= len(axis) <= 30 and axis[0] == "day 0"
    assert len(root.findall("s:polyline", NS)) == 1
    assert _marks(root, "circle") == []  # no dot per day: the SVG stays small, the table has the values
    gappy = _svg(charts.line("Daily", "Day", labels, {"v": [None if i == 99 or i == 101 else i for i in range(365)]}))
    assert [(m.get("data-label"), _value(m)) for m in _marks(gappy, "circle")] == [("day 100", 100)]  # alone
    assert len(charts.line("Daily", "Day", labels, {str(k): list(range(365)) for k in range(6)}).svg) < 60_000


def test_the_donut_has_a_slice_per_part_and_its_share_in_the_legend():
    chart = charts.pie("NPS groups", "Group", {"Promoters": 50, "Passives": 30, "Detractors": 20, "None": 0},
                       "Responses")
    assert chart.rows == [("Promoters", [50]), ("Passives", [30]), ("Detractors", [20]), ("None", [0])]
    assert chart.series_names == ["Responses"]
    root = _svg(chart)
    slices = _marks(root, "path")
    assert [(s.get("data-label"), _value(s)) for s in slices] == [("Promoters", 50), ("Passives", 30),
                                                                  ("Detractors", 20)]
    texts = [t.text for t in root.iter(f"{{{NS['s']}}}text")]
    assert {"Promoters (50%)", "Passives (30%)", "Detractors (20%)", "None (0%)"} <= set(texts)
    whole = _marks(_svg(charts.pie("One", "Group", {"All": 3, "Other": 0}, "Responses")), "path")
    assert len(whole) == 1 and whole[0].get("d").count("A") == 4  # a full ring, drawn as half arcs
    assert _marks(_svg(charts.pie("Empty", "Group", {"A": 0, "B": 0}, "Responses")), "path") == []


def test_member_supplied_text_is_escaped_and_nothing_in_an_svg_runs_or_loads():
    hostile = '<script>alert("x")</script> & "quoted"'
    drawn = [
        charts.bar(hostile, "Answer", [hostile, "b"], {hostile: [1, 2]}, horizontal=True),
        charts.bar(hostile, "Answer", [hostile], {"n": [1]}),
        charts.bar(hostile, "Answer", [hostile], {"a": [1], hostile: [2]}, stacked=True),
        charts.line(hostile, "Day", [hostile, "b"], {hostile: [1, 2], "b": [2, 1]}),
        charts.pie(hostile, "Group", {hostile: 1, "b": 2}, "Responses"),
        charts.forest(hostile, "Effect", [(hostile, 0.1, -0.2, 0.4)], "Metric", ["e", "lo", "hi"]),
    ]
    for chart in drawn:
        root = _svg(chart)
        assert b"<script" not in chart.svg and b"href" not in chart.svg and b" on" not in chart.svg
        assert root.findtext("s:title", namespaces=NS) == hostile
        assert all(not el.tag.endswith(("script", "foreignObject", "image", "style")) for el in root.iter())
        assert hostile in [t.text for t in root.iter(f"{{{NS['s']}}}text")]


def test_empty_and_constant_data_draw_an_axis():
    for chart in (charts.bar("Empty", "X", [], {"n": []}), charts.bar("Zeros", "X", ["a", "b"], {"n": [0, 0]}),
                  charts.line("Flat", "X", ["a", "b"], {"n": [None, None]})):
        root = _svg(chart)
        assert [t.text for t in root.iter(f"{{{NS['s']}}}text")][0] == chart.title


def test_decimal_and_float_values_are_drawn_and_fractional_ticks_labelled():
    from decimal import Decimal

    chart = charts.line("Average", "Week", ["a", "b", "c"], {"avg": [Decimal("0.5"), 0.25, Decimal("1.75")]})
    root = _svg(chart)
    assert [_value(p) for p in _marks(root, "circle")] == [0.5, 0.25, 1.75]
    ticks = [t.text for t in root.iter(f"{{{NS['s']}}}text") if t.get("text-anchor") == "end" and t.text]
    assert "0.5" in ticks or "0.50" in ticks


def test_a_chart_is_drawn_once_for_the_same_numbers_and_again_when_one_changes():
    charts.clear_cache()
    first = charts.bar("T", "X", ["a"], {"n": [1]})
    assert charts.bar("T", "X", ["a"], {"n": [1]}).svg is first.svg
    assert charts.bar("T", "X", ["a"], {"n": [2]}).svg != first.svg


# --------------------------------------------------------------------------- on a page


FIGURE = re.compile(r'<figure class="chart">(.*?)</figure>', re.S)


def _figures(page: str) -> list[tuple[ET.Element, list[str], list[tuple[str, list[str]]]]]:
    """Per chart on a page: its SVG, the table's column headings and rows (label, cells)."""
    out = []
    for body in FIGURE.findall(page):
        uri = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', body).group(1)
        svg = ET.fromstring(base64.b64decode(uri))  # noqa: S314 (our own output)
        headings = [html.unescape(h) for h in re.findall(r'<th scope="col">(.*?)</th>', body)]
        rows = [(html.unescape(label), [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", cells)])
                for label, cells in re.findall(r'<tr><th scope="row">(.*?)</th>(.*?)</tr>', body)]
        out.append((svg, headings, rows))
    return out


def test_survey_results_charts_draw_the_numbers_of_the_results_api_and_their_tables_match(app, make_member, login):
    from community.models import TIERS
    from surveys import services
    from tests.surveys.helpers import client_id, make_survey

    staff = make_member(roles=("marketer",))
    survey = make_survey(staff.id)
    for i in range(7):
        body = {"nps": (i * 3) % 11, "channel": ["shop", "web", "phone"][i % 3 if i < 5 else 0],
                "features": [["points"], ["forums", "rewards"], []][i % 3], "rating": 1 + i % 5,
                "grid": {"fast": ["agree", "neutral"][i % 2], "friendly": "disagree" if i < 2 else "agree"}}
        member = make_member(tier=TIERS[i % 3])
        services.submit_response(member, survey.id, client_id(), body | ({"why_low": "x"} if body["nps"] <= 6 else {}))
    db.session.commit()
    client = login(staff)
    api = client.get(f"/api/v1/admin/surveys/{survey.id}/results").get_json()
    assert api["responses"] == 7
    page = client.get(f"/console/surveys/{survey.id}/results")
    assert page.status_code == 200
    figures = _figures(page.get_data(as_text=True))
    assert len(figures) == 8  # nps, its groups, channel, features, rating, grid; responses and NPS by tier
    for svg, headings, rows in figures:
        series = headings[1:]
        marks = {(m.get("data-label"), m.get("data-series")): _value(m) for m in svg.iter()
                 if m.get("data-value") is not None}
        assert rows and series
        for label, cells in rows:
            assert len(cells) == len(series)
            for name, cell in zip(series, cells, strict=True):
                drawn = marks.get((label, name), marks.get((label, None)))  # a donut's slice has no series
                if cell == "—" or (float(cell) == 0 and (label, None) not in marks and (label, name) not in marks):
                    assert drawn is None  # no value, or a zero slice of a donut: nothing drawn
                else:
                    assert drawn == float(cell), (label, name)
    # The charts are the API's numbers: each choice question's answers, the groups of NPS, the
    # matrix per row and column, the responses and the NPS per tier.
    drawn = {svg.find("s:title", NS).text: {(m.get("data-label"), m.get("data-series")): _value(m)
                                            for m in svg.iter() if m.get("data-value") is not None}
             for svg, _h, _r in figures}
    by_question = {q["id"]: q for q in api["questions"]}
    for qid in ("nps", "channel", "features", "rating"):
        q = by_question[qid]
        assert drawn[q["text"]] == {(o["value"], "Responses"): o["count"] for o in q["options"]}, qid
    assert {label: v for (label, _s), v in drawn["Where do you shop?"].items()} == {"shop": 4, "web": 2, "phone": 1}
    nps = by_question["nps"]["nps"]
    assert drawn["NPS: promoters, passives, detractors"] == {
        ("Promoters (9-10)", None): nps["promoters"], ("Passives (7-8)", None): nps["passives"],
        ("Detractors (0-6)", None): nps["detractors"]} == {
        ("Promoters (9-10)", None): 1, ("Passives (7-8)", None): 1, ("Detractors (0-6)", None): 5}
    assert drawn["Do you agree?"] == {(row["row"], o["value"]): o["count"] for row in by_question["grid"]["rows"]
                                      for o in row["options"]}
    assert drawn["Responses by tier"] == {(t["tier"], "Responses"): t["responses"] for t in api["tiers"]}
    assert drawn["NPS by tier"] == {(t["tier"], "NPS"): t["nps"]["score"] for t in api["tiers"]
                                    if t.get("nps") and t["nps"]["score"] is not None}
    assert drawn["NPS by tier"][("engaged", "NPS")] == -100  # drawn below the zero line


def _contrast_with_white(colour: str) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    return 1.05 / (luminance + 0.05)


def test_colours_have_enough_contrast_against_the_white_background():
    assert all(_contrast_with_white(c) >= 3 for c in charts.COLOURS)  # WCAG 2.1 1.4.11, graphics
    for text in (charts.FOREGROUND, charts.SUBTLE):
        assert _contrast_with_white(text if len(text) == 7 else "#" + "".join(ch * 2 for ch in text[1:])) >= 4.5
