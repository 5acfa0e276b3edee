"""The demo data tells the truth about itself (issue 12)."""

from __future__ import annotations

from surveys.demo import DEFINITION, SURVEY_DESCRIPTION

NUMBERS = {"five": 5, "six": 6, "seven": 7, "eight": 8}


def test_demo_survey_says_how_many_questions_it_has():
    count = sum(len(page["questions"]) for page in DEFINITION["pages"])
    (said,) = [n for word, n in NUMBERS.items() if f"{word} questions" in SURVEY_DESCRIPTION]
    assert said == count
