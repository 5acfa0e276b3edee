"""The compiled zh-CN catalogue (.mo, what Flask-Babel loads) matches its source (.po)."""

from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

DIR = Path(__file__).resolve().parents[2] / "console" / "translations" / "zh_Hans_CN" / "LC_MESSAGES"


def test_mo_is_compiled_from_po():
    with open(DIR / "messages.po", "rb") as f:
        po = {m.id: m.string for m in read_po(f) if m.id}
    with open(DIR / "messages.mo", "rb") as f:
        mo = {m.id: m.string for m in read_mo(f) if m.id}
    assert po == mo, "run: .venv/bin/pybabel compile -d console/translations"
    assert all(po.values()), "untranslated entries"
