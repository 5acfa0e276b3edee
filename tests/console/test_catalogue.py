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


def test_every_extracted_msgid_is_in_the_catalogue_and_translated(tmp_path):
    """The console's texts and every domain's literal error messages (extracted by the error
    classes' names, ``console.messages.EXTRACT_KEYWORDS``) each have a zh-CN translation: a new
    message in any domain fails here until ``python -m console.catalogue`` ran and it was translated."""
    from babel.messages.frontend import CommandLineInterface

    from console.catalogue import extract_args

    pot = tmp_path / "messages.pot"
    CommandLineInterface().run(extract_args(str(pot)))
    with open(pot, "rb") as f:
        extracted = {m.id for m in read_po(f) if m.id}
    with open(DIR / "messages.po", "rb") as f:
        po = {m.id: m.string for m in read_po(f) if m.id}
    assert len(extracted) > 800  # the console and the error messages of every domain
    missing = sorted(str(m) for m in extracted if not po.get(m))
    assert not missing, f"untranslated or missing in the catalogue: {missing[:20]}"


def test_f_string_messages_have_a_translated_pattern():
    """Messages services build with f-strings cannot be extracted; the visible ones are matched
    by format strings (console.messages.PATTERNS), each translated with the same placeholders."""
    import re

    from console.messages import PATTERNS, _regex

    with open(DIR / "messages.po", "rb") as f:
        po = {m.id: m.string for m in read_po(f) if m.id}
    for msgid in PATTERNS:
        assert po.get(msgid), msgid
        assert sorted(re.findall(r"%\(\w+\)s", msgid)) == sorted(re.findall(r"%\(\w+\)s", po[msgid])), msgid
    example = "Only a draft can be published; this survey is closed."
    assert _regex(PATTERNS[7]).fullmatch(example)["status"] == "closed"
