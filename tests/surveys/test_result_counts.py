"""The results' maintained tallies (surveys/results.py) always equal a from-scratch scan of the
answers: randomised submissions, withdrawals, staff deletions and tier changes (hypothesis),
through the services on the real database."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from community.models import TIERS, User
from errors import Conflict, NotFound
from extensions import db
from surveys import results, services
from tests.surveys.helpers import client_id, make_survey

MEMBERS = 6

answer_sets = st.fixed_dictionaries(
    {
        "nps": st.integers(0, 10),
        "channel": st.sampled_from(["shop", "web", "phone"]),
        "rating": st.integers(1, 5),
        "grid": st.fixed_dictionaries({"fast": st.sampled_from(["disagree", "neutral", "agree"]),
                                       "friendly": st.sampled_from(["disagree", "neutral", "agree"])}),
    },
    optional={
        "features": st.lists(st.sampled_from(["points", "forums", "rewards"]), max_size=2, unique=True),
        "nick": st.text(alphabet="abc xyz", min_size=1, max_size=10),
    },
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(0, MEMBERS - 1), answer_sets),
        st.tuples(st.just("withdraw"), st.integers(0, MEMBERS - 1)),
        st.tuples(st.just("delete"), st.integers(0, MEMBERS - 1)),
        st.tuples(st.just("tier"), st.integers(0, MEMBERS - 1), st.sampled_from(TIERS)),
    ),
    min_size=1, max_size=25,
)


def _apply(op, survey_id: int, members: list[int], staff_id: int) -> None:
    kind, who = op[0], db.session.get(User, members[op[1]])
    try:
        if kind == "submit":
            body = dict(op[2])
            if body["nps"] <= 6:
                body["why_low"] = "slow"
            services.submit_response(who, survey_id, client_id(), body)
        elif kind == "withdraw":
            services.withdraw_response(who, survey_id)
        elif kind == "delete":
            response = services.my_response(who, survey_id)
            if response is None:
                return
            services.delete_response(staff_id, survey_id, response.id, "test")
        else:
            who.tier = op[2]  # later answers carry the new tier; counted ones keep theirs
        db.session.commit()
    except (Conflict, NotFound):
        db.session.rollback()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_maintained_results_equal_a_scan(make_member, ops):
    staff = make_member(roles=("marketer",))
    members = [make_member(tier=TIERS[i % len(TIERS)]).id for i in range(MEMBERS)]
    survey = make_survey(staff.id)
    for op in ops:
        _apply(op, survey.id, members, staff.id)
        assert results.verify(survey.id) == []
    assert services.compute_results(survey.id) == services.compute_results(survey.id, scan=True)


def test_rebuild_reproduces_the_maintained_tallies(make_member):
    staff = make_member(roles=("marketer",))
    survey = make_survey(staff.id)
    for i, tier in enumerate(TIERS):
        member = make_member(tier=tier)
        body = {"nps": i * 2, "channel": "web", "features": ["points"], "rating": 1 + i,
                "grid": {"fast": "agree", "friendly": "neutral"}}
        services.submit_response(member, survey.id, client_id(), body | ({"why_low": "x"} if i * 2 <= 6 else {}))
    db.session.commit()
    before = services.compute_results(survey.id)
    assert before["responses"] == len(TIERS)
    results.rebuild(survey.id)
    db.session.commit()
    assert services.compute_results(survey.id) == before
    assert results.verify(survey.id) == []
