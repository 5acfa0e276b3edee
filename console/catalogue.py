"""Refresh the console's catalogue: extract, update the zh-CN ``.po``, compile the ``.mo``.

Run from the repository root: ``.venv/bin/python -m console.catalogue``; then translate the
entries left empty in ``console/translations/zh_Hans_CN/LC_MESSAGES/messages.po`` and run it
again (``tests/console/test_catalogue.py`` fails while one is empty or missing).
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.frontend import CommandLineInterface

ROOT = Path(__file__).resolve().parents[1]
DIR = ROOT / "console" / "translations"


def extract_args(output: str) -> list[str]:
    from .messages import EXTRACT_KEYWORDS

    keywords = [arg for k in EXTRACT_KEYWORDS for arg in ("-k", k)]
    return ["pybabel", "-q", "extract", "-F", str(ROOT / "console" / "babel.cfg"), *keywords, "--no-location",
            "--sort-output", "--omit-header", "-o", output, str(ROOT)]


def main() -> None:
    cli = CommandLineInterface()
    pot = str(DIR / "messages.pot")
    cli.run(extract_args(pot))
    cli.run(["pybabel", "-q", "update", "-i", pot, "-d", str(DIR), "-l", "zh_Hans_CN", "--no-fuzzy-matching"])
    cli.run(["pybabel", "-q", "compile", "-d", str(DIR)])


if __name__ == "__main__":
    sys.exit(main())
