"""Words the console shows that come from data (states, kinds, actions …), marked for extraction.

Templates and views translate them at render time with ``_(value)``; listing them here puts them
in the catalogue (``pybabel extract -k N_``).  ``N_`` only marks: it returns its argument.
"""

from __future__ import annotations


def N_(text: str) -> str:  # noqa: N802  (the conventional name of a no-op gettext marker)
    return text


VOCABULARY = (
    # redemption states (rewards.models.STATES) and bulk actions
    N_("pending"), N_("awaiting_fulfilment"), N_("approved"), N_("shipped"), N_("completed"),
    N_("fulfilled"), N_("cancelled"), N_("rejected"), N_("refunded"),
    N_("approve"), N_("complete"), N_("reject"), N_("refund"), N_("ship"),
    # reward kinds (rewards.models.REWARD_KINDS)
    N_("coupon"), N_("physical"), N_("digital"), N_("donation"), N_("experience"),
    # flags, decisions, post and thread actions
    N_("open"), N_("agreed"), N_("disagreed"), N_("agree"), N_("disagree"),
    N_("hide"), N_("restore"), N_("delete"),
    N_("lock"), N_("unlock"), N_("pin"), N_("unpin"), N_("move"),
    # sanctions (forums.models.SANCTION_KINDS)
    N_("warn"), N_("silence"), N_("suspend"), N_("lift"),
    # referrals: statuses and reward statuses
    N_("signed_up"), N_("converted"), N_("held"), N_("none"), N_("rewarded"), N_("capped"),
    # surveys: statuses, question types, question actions; focus-group sign-ups
    N_("draft"), N_("published"), N_("closed"),
    N_("single_choice"), N_("multiple_choice"), N_("short_text"), N_("long_text"), N_("rating"),
    N_("nps"), N_("matrix"), N_("up"), N_("down"),
    N_("confirmed"), N_("waitlisted"), N_("attended"), N_("no_show"),
    # tier movements and tiers (community.models.TIERS)
    N_("promotion"), N_("demotion"),
    N_("aware"), N_("engaged"), N_("satisfied"), N_("loyal"), N_("advocate"),
    # roles (community.models.ROLES)
    N_("member"), N_("moderator"), N_("marketer"), N_("redemption_staff"), N_("admin"),
    # interaction kinds (points.services.INTERACTION_KINDS)
    N_("post"), N_("reply"), N_("reaction_received"), N_("survey_completed"), N_("focus_group_attended"),
    N_("referral_signup"), N_("referral_converted"), N_("purchase"), N_("profile_completed"),
    N_("daily_visit"),
    # flag reasons (forums.models.FLAG_REASONS) and post states
    N_("spam"), N_("abuse"), N_("off_topic"), N_("inappropriate"), N_("other"), N_("visible"),
    # points ledger entry kinds (points.models.ENTRY_KINDS)
    N_("award"), N_("hold"), N_("settle"), N_("release"), N_("reversal"), N_("expire"), N_("adjust"),
    # tier requirements (tiers.engine metrics)
    N_("points_earned"), N_("active_weeks"), N_("surveys_completed"), N_("promoter_answers"),
    N_("focus_groups_attended"), N_("referrals_converted"), N_("accepted_posts"),
    # pending award kinds (points.models.PendingAward.kind; the statuses are above)
    N_("interaction"), N_("adjustment"),
)
