"""The rule language without a database: validation, the entry and keep bars, progress text."""

import pytest

from errors import ValidationError
from tiers.rules import DEFAULT_RULES, Rules, meets, progress, tier_for, validate


def _data(**requirements):
    requirements = {**{t: {"points_earned": 1} for t in ("engaged", "satisfied", "loyal", "advocate")},
                    **requirements}
    return {"requirements": requirements, "window_days": 365, "grace_days": 30, "keep_percent": 90}


def test_defaults_are_valid_and_climb():
    clean = validate(_data(**DEFAULT_RULES.requirements))
    assert clean["requirements"] == DEFAULT_RULES.requirements
    # every threshold of a higher tier is at least the one below it: the ladder climbs
    tiers = ["engaged", "satisfied", "loyal", "advocate"]
    for lower, higher in zip(tiers, tiers[1:], strict=False):
        for key, value in DEFAULT_RULES.requirements[lower].items():
            assert DEFAULT_RULES.requirements[higher].get(key, 0) >= value, (lower, higher, key)


@pytest.mark.parametrize(
    ("requirements", "field"),
    [
        ({"aware": {"points_earned": 1}}, "requirements.aware"),
        ({"gold": {"points_earned": 1}}, "requirements.gold"),
        ({"loyal": {"karma": 1}}, "requirements.loyal.karma"),
        ({"loyal": {"points_earned": -1}}, "requirements.loyal.points_earned"),
        ({"loyal": {"points_earned": 1.5}}, "requirements.loyal.points_earned"),
        ({"loyal": {"points_earned": "100"}}, "requirements.loyal.points_earned"),
        ({"loyal": {"points_earned": True}}, "requirements.loyal.points_earned"),
        ({"loyal": {"nps_promoter": 2}}, "requirements.loyal.nps_promoter"),
        ({"loyal": {"points_earned": 10**7 + 1}}, "requirements.loyal.points_earned"),
    ],
)
def test_invalid_rules_name_the_field(requirements, field):
    with pytest.raises(ValidationError) as err:
        validate(_data(**requirements))
    assert field in err.value.fields


def test_booleans_and_zero_thresholds_normalise():
    clean = validate(_data(loyal={"nps_promoter": True, "no_suspension": False, "active_weeks": 0}))
    assert clean["requirements"]["loyal"] == {"nps_promoter": 1}


@pytest.mark.parametrize("empty", [{}, {"active_weeks": 0}])
def test_a_tier_needs_at_least_one_requirement(empty):
    with pytest.raises(ValidationError) as err:
        validate(_data(advocate=empty))
    assert "requirements.advocate" in err.value.fields


@pytest.mark.parametrize(
    ("value", "threshold", "keep", "expected"),
    [
        (1000, 1000, None, True),
        (999, 1000, None, False),
        (900, 1000, 90, True),  # exactly 90 % stays
        (899, 1000, 90, False),
        (1, 1, 90, True),  # a yes/no requirement cannot be 90 % met
        (0, 1, 90, False),
        (9, 10, 90, True),
        (8, 10, 90, False),
        (3, 3, 100, True),
        (2, 3, 100, False),
    ],
)
def test_meets_boundaries(value, threshold, keep, expected):
    assert meets(value, threshold, keep) is expected


def _rules(**per_tier):
    return Rules(version=1, requirements=per_tier, keep_percent=90)


def test_tier_for_takes_the_highest_tier_met():
    rules = _rules(engaged={"active_weeks": 2}, satisfied={"active_weeks": 5}, loyal={"active_weeks": 10},
                   advocate={"active_weeks": 10, "referrals_converted": 1})
    assert tier_for({"active_weeks": 1}, rules) == "aware"
    assert tier_for({"active_weeks": 2}, rules) == "engaged"
    assert tier_for({"active_weeks": 9}, rules) == "satisfied"
    assert tier_for({"active_weeks": 10}, rules) == "loyal"
    # the keep bar: 9 of 10 is 90 %, enough to stay loyal but not to enter it
    assert tier_for({"active_weeks": 9}, rules, keep=True) == "loyal"
    assert tier_for({"active_weeks": 100, "referrals_converted": 1}, rules) == "advocate"


def test_progress_names_what_is_missing():
    rules = _rules(loyal={"points_earned": 2000, "referrals_converted": 1, "nps_promoter": 1, "active_weeks": 4})
    out = progress({"points_earned": 1880, "referrals_converted": 0, "nps_promoter": 0, "active_weeks": 5}, rules,
                   "satisfied")
    assert out["tier"] == "loyal"
    by_key = {i["requirement"]: i for i in out["requirements"]}
    assert by_key["points_earned"]["text"] == "120 more points"
    assert by_key["referrals_converted"]["text"] == "1 more converted referral"
    assert by_key["active_weeks"]["met"] is True
    assert out["summary"] == (
        "120 more points, 1 more converted referral, answer a survey's recommendation question with 9 or 10"
        " to reach loyal"
    )
    assert progress({}, rules, "advocate") is None
