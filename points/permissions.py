"""Named permissions of the points domain (admins hold every permission)."""

from community.permissions import define

MANAGE_RULES = define("points.manage_rules", ["marketer"])  # earning rules and campaigns
READ_LEDGER = define("points.read_ledger", ["redemption_staff"])  # a member's balance and history
ADJUST = define("points.adjust", [])  # manual adjustments and reversals (admins only)
REPORTS = define("points.reports", ["marketer"])  # liability and referral funnel
REVIEW_REFERRALS = define("points.review_referrals", ["marketer"])  # held referral rewards
INTEGRATE = define("points.integrate", [])  # external purchase/refund events (admin API tokens)
REVIEW_AWARDS = define("points.review_awards", ["marketer"])  # four-eyes: large pending awards
