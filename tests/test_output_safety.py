"""Issue #13, output safety: CSV cells that no spreadsheet runs, calendar files without control
characters."""

from __future__ import annotations

import csv
import io

from community.services import audit
from csv_export import iter_csv
from extensions import db


def test_every_csv_cell_is_quoted_and_formulas_and_nul_are_defused():
    text = "".join(iter_csv(["=HYPERLINK(1)", "id"], [["x;=cmd", "\x00=1+1", "@SUM(A1)", "ok", None, -3, 7]]))
    header, row = text.splitlines()
    assert header == "\"'=HYPERLINK(1)\",\"id\""
    assert row.split(",")[0] == '"x;=cmd"'  # quoted: a ";" locale cannot split it into a formula cell
    parsed = next(csv.reader(io.StringIO(text.splitlines()[1])))
    assert parsed == ["x;=cmd", "'=1+1", "'@SUM(A1)", "ok", "", "-3", "7"]
    assert "\x00" not in text
    assert all(cell.startswith('"') and cell.endswith('"') for cell in row.split(","))


def test_audit_csv_export_is_defused_end_to_end(make_member, login):
    admin = make_member(roles=("admin",))
    audit(admin.id, "test.action", "user", admin.id, reason="=cmd|' /C calc'!A0;x;=y")
    db.session.commit()
    body = login(admin).get("/api/v1/admin/audit.csv").get_data(as_text=True)
    assert "\"'=cmd|' /C calc'!A0;x;=y\"" in body


def test_calendar_text_has_no_control_or_line_separator_characters(make_member, login):
    from tests.surveys.helpers import make_session

    session = make_session(
        title="Feedback\u2028BEGIN:VALARM\x0bx\x01",  # (PostgreSQL text cannot hold NUL at all)
        description="line one\u2029line two\x85three\r\nEND:VEVENT\x1b",
        online_url="https://meet.example/room\r\nATTACH:evil",
    )
    ics = login(make_member()).get(f"/api/v1/focus-groups/{session.id}/calendar.ics").get_data(as_text=True)
    unfolded = ics.replace("\r\n ", "")
    lines = unfolded.split("\r\n")
    assert not [c for c in unfolded if (ord(c) < 32 and c not in "\r\n\t") or c in "\u2028\u2029\x85\x7f"]
    assert "SUMMARY:Feedback\\nBEGIN:VALARMx" in lines
    assert any(line.startswith("DESCRIPTION:line one\\nline two\\nthree\\nEND:VEVENT\\n") for line in lines)
    assert not any(line.startswith(("BEGIN:VALARM", "END:VEVENT\\", "ATTACH")) for line in lines)
    assert "URL:https://meet.example/roomATTACH:evil" in lines
