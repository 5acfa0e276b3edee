"""Demo journeys for ``make run``: the programme documents' touches as ready templates.

Welcome, +7 days after a purchase, birthday with double points (the journey greets, grants the
member a 2x earning multiplier for the rest of their birthday on their own clock, ``until:
end_of_local_day``, and adds a gift; the points demo's "Birthday double points" campaign does the
same for the UTC day, and multipliers do not stack), 30-day win-back,
renewal countdown at -180/-90/-45/0 days, a contract anniversary whose thank-you is an A/B test of
two messages (on the members' ``contract_on``, set here for three demo members with their
``renewal_on``), and a satisfaction survey with a gift for completing
it, with their message templates in en and zh-CN.  The journeys that
send only are active; the two that award points stay drafts until someone other than their
author activates them (four eyes).  Idempotent: loading twice changes nothing.
"""

from __future__ import annotations

from sqlalchemy import select

from extensions import db

from . import services
from .models import Journey, JourneyTemplate

DAY = 24 * 60

TEMPLATES = [
    ("welcome", "community", "Welcome to Kinship", "欢迎加入 Kinship",
     "Thank you for joining. Here is how to earn points, join the forums and redeem rewards.",
     "感谢您的加入。在这里了解如何赚取积分、参与论坛和兑换奖励。"),
    ("welcome-tips", "community", "Getting the most out of Kinship", "充分利用 Kinship",
     "A few tips: complete your profile, say hello in the forums, and answer our short surveys.",
     "几点建议：完善个人资料、在论坛打个招呼，并参与我们的简短问卷。"),
    ("purchase-thanks", "marketing", "Thank you for your purchase", "感谢您的购买",
     "Thank you! Your points are on their way.", "谢谢！您的积分即将到账。"),
    ("purchase-followup", "marketing", "How is it going?", "使用得怎么样？",
     "It has been a week since your purchase. Here are some usage tips, and we are here if you need help.",
     "距离您购买已经一周了。这里有一些使用小贴士，如需帮助请随时联系我们。"),
    ("birthday", "marketing", "Happy birthday!", "生日快乐！",
     "Happy birthday from all of us. Everything you earn today counts double, and a gift is in your account.",
     "我们全体祝您生日快乐。今天赚取的积分加倍，礼物已存入您的账户。"),
    ("winback", "marketing", "We miss you", "我们想念您",
     "It has been a month. Come back this week for a special offer.", "已经一个月没见了。本周回来可享特别优惠。"),
    ("renewal-180", "marketing", "Your renewal in six months", "您的续约还有六个月",
     "Your renewal date is six months away. Let us plan the year ahead together.",
     "距离您的续约日期还有六个月。让我们一起规划来年。"),
    ("renewal-90", "marketing", "Your renewal in three months", "您的续约还有三个月",
     "Three months to your renewal: here is what you got this year.", "距离续约还有三个月：这是您今年的收获。"),
    ("renewal-45", "marketing", "Your renewal in 45 days", "您的续约还有 45 天",
     "45 days to your renewal. Reply to talk to your account manager.",
     "距离续约还有 45 天。回复即可联系您的客户经理。"),
    ("renewal-0", "marketing", "Your renewal is today", "您的续约日就是今天",
     "Today is your renewal date. Thank you for another year with us.", "今天是您的续约日。感谢您又一年的陪伴。"),
    ("contract-anniversary", "marketing", "A year together", "携手又一年",
     "It is the anniversary of your contract. Thank you for another year with us.",
     "今天是您签约的周年纪念日。感谢您又一年的陪伴。"),
    ("contract-anniversary-story", "marketing", "Your year with Kinship", "您与 Kinship 的这一年",
     "One more year since you signed: here is what you earned, redeemed and shared this year.",
     "自您签约以来又过了一年：这是您今年赚取、兑换和分享的一切。"),
    ("survey-thanks", "research", "Thank you for your feedback", "感谢您的反馈",
     "Thank you for answering our survey. A gift of points is in your account.",
     "感谢您参与我们的问卷。积分礼物已存入您的账户。"),
]


def _steps_renewal() -> list[dict]:
    return [
        {"id": "r180", "type": "action", "action": "send", "template": "renewal-180", "next": "w90"},
        {"id": "w90", "type": "wait", "delay_minutes": 90 * DAY, "until_local_time": "10:00", "next": "r90"},
        {"id": "r90", "type": "action", "action": "send", "template": "renewal-90", "next": "w45"},
        {"id": "w45", "type": "wait", "delay_minutes": 45 * DAY, "until_local_time": "10:00", "next": "r45"},
        {"id": "r45", "type": "action", "action": "send", "template": "renewal-45", "next": "call"},
        {"id": "call", "type": "action", "action": "task", "title": "Call this customer about their renewal",
         "next": "w0"},
        {"id": "w0", "type": "wait", "delay_minutes": 45 * DAY, "until_local_time": "10:00", "next": "r0"},
        {"id": "r0", "type": "action", "action": "send", "template": "renewal-0"},
    ]


def journeys(survey_id: int | None) -> list[tuple[str, str, dict, bool]]:
    everyone = {"type": "everyone"}
    items = [
        ("Welcome", "Welcome on sign-up, tips two days later.", {
            "trigger": {"type": "event", "event": "member.registered"}, "audience": everyone,
            "entry": {"rule": "once"}, "goal": {"event": "purchase.recorded", "within_days": 30},
            "steps": [{"id": "welcome", "type": "action", "action": "send", "template": "welcome", "next": "wait"},
                      {"id": "wait", "type": "wait", "delay_minutes": 2 * DAY, "until_local_time": "10:00",
                       "next": "tips"},
                      {"id": "tips", "type": "action", "action": "send", "template": "welcome-tips"}]}, True),
        ("After purchase", "Thanks at once, a follow-up with tips 7 days after a purchase.", {
            "trigger": {"type": "event", "event": "purchase.recorded"}, "audience": everyone,
            "entry": {"rule": "reentry_after", "days": 7},
            "goal": {"event": "purchase.recorded", "within_days": 30},
            "steps": [{"id": "thanks", "type": "action", "action": "send", "template": "purchase-thanks",
                       "next": "wait"},
                      {"id": "wait", "type": "wait", "delay_minutes": 7 * DAY, "until_local_time": "10:00",
                       "next": "followup"},
                      {"id": "followup", "type": "action", "action": "send", "template": "purchase-followup"}]},
         True),
        ("Birthday", "Birthday greeting, double points for the rest of the member's birthday in their own "
                     "time zone, and a gift.", {
            "trigger": {"type": "date", "field": "birthday", "offset_days": 0}, "audience": everyone,
            "entry": {"rule": "per_occurrence"}, "goal": {"event": "purchase.recorded", "within_days": 7},
            "steps": [{"id": "double", "type": "action", "action": "points_multiplier", "multiplier": 2,
                       "until": "end_of_local_day", "next": "gift"},
                      {"id": "gift", "type": "action", "action": "award_points", "points": 100, "next": "morning"},
                      # 09:00 on the birthday on the member's clock (the scan runs by the UTC date).
                      {"id": "morning", "type": "wait", "until_local_time": "09:00", "on_entry_day": True,
                       "next": "greet"},
                      {"id": "greet", "type": "action", "action": "send", "template": "birthday"}]}, False),
        ("Win-back", "An offer after 30 days without activity; a task if it did not work.", {
            "trigger": {"type": "inactivity", "days": 30}, "audience": everyone,
            "entry": {"rule": "reentry_after", "days": 90},
            "goal": {"event": "purchase.recorded", "within_days": 14},
            "steps": [{"id": "offer", "type": "action", "action": "send", "template": "winback", "next": "wait"},
                      {"id": "wait", "type": "wait", "delay_minutes": 14 * DAY, "next": "back"},
                      {"id": "back", "type": "condition", "condition": "purchased_since_entry", "then": "done",
                       "else": "tag"},
                      {"id": "tag", "type": "action", "action": "tag", "tag": "winback-lapsed"},
                      {"id": "done", "type": "exit"}]}, True),
        ("Renewal countdown", "Touches 180, 90, 45 and 0 days before the renewal date, and a call at 45.", {
            "trigger": {"type": "date", "field": "renewal_on", "offset_days": -180}, "audience": everyone,
            "entry": {"rule": "per_occurrence"}, "goal": None, "steps": _steps_renewal()}, True),
        ("Contract anniversary", "A thank-you on each yearly anniversary of the contract, two messages A/B tested.", {
            "trigger": {"type": "date", "field": "contract_on", "offset_days": 0}, "audience": everyone,
            "entry": {"rule": "per_occurrence"}, "goal": {"event": "purchase.recorded", "within_days": 30},
            "steps": [{"id": "wait", "type": "wait", "until_local_time": "10:00", "on_entry_day": True,
                       "next": "thanks"},
                      {"id": "thanks", "type": "action", "action": "send", "variants": [
                          {"id": "short", "weight": 1, "template": "contract-anniversary"},
                          {"id": "story", "weight": 1, "template": "contract-anniversary-story"}]}]}, True),
    ]
    if survey_id is not None:
        items.append(("Satisfaction survey", "A survey 3 days after a fulfilled redemption; a gift for answering.", {
            "trigger": {"type": "event", "event": "redemption.fulfilled"}, "audience": everyone,
            "entry": {"rule": "reentry_after", "days": 90}, "goal": None,
            "steps": [{"id": "wait", "type": "wait", "delay_minutes": 3 * DAY, "until_local_time": "10:00",
                       "next": "invite"},
                      {"id": "invite", "type": "action", "action": "invite_survey", "survey_id": survey_id,
                       "next": "later"},
                      {"id": "later", "type": "wait", "delay_minutes": 7 * DAY, "next": "answered"},
                      {"id": "answered", "type": "condition", "condition": "answered_survey",
                       "survey_id": survey_id, "then": "gift", "else": "end"},
                      {"id": "gift", "type": "action", "action": "award_points", "points": 50, "next": "thanks"},
                      {"id": "thanks", "type": "action", "action": "send", "template": "survey-thanks"},
                      {"id": "end", "type": "exit"}]}, False))
    return items


# Demo members' dates on their record (set by staff with PATCH /api/v1/admin/users/{id}/dates):
# (member, renewal in N days, contract signed N years ago today).
MEMBER_DATES = [("alice", 90, 1), ("bob", 180, 2), ("carol", None, 3)]


def _member_dates(members: dict) -> None:
    from datetime import timedelta

    from community.models import utcnow

    today = utcnow().date()
    for name, renew_in, years in MEMBER_DATES:
        member = members.get(name)
        if member is None or member.renewal_on is not None or member.contract_on is not None:
            continue
        member.renewal_on = today + timedelta(days=renew_in) if renew_in is not None else None
        try:
            member.contract_on = today.replace(year=today.year - years)
        except ValueError:  # 29 February: the anniversary is kept on the 28th in other years
            member.contract_on = today.replace(year=today.year - years, day=28)


def load(ctx: dict) -> None:
    marketing = ctx.get("members", {}).get("marketing")
    author = marketing.id if marketing is not None else None
    _member_dates(ctx.get("members", {}))
    for key, category, subject_en, subject_zh, body_en, body_zh in TEMPLATES:
        if db.session.scalar(select(JourneyTemplate.id).where(JourneyTemplate.key == key)) is None:
            services.create_template(author, {"key": key, "category": category,
                                              "subject": {"en": subject_en, "zh-CN": subject_zh},
                                              "body": {"en": body_en, "zh-CN": body_zh}})
    db.session.flush()
    from surveys.demo import SURVEY_TITLE
    from surveys.models import Survey

    survey_id = db.session.scalar(select(Survey.id).where(Survey.title == SURVEY_TITLE))
    for name, description, definition, activate in journeys(survey_id):
        if db.session.scalar(select(Journey.id).where(Journey.name == name)) is not None:
            continue
        journey = services.create(author, {"name": name, "description": description, "definition": definition})
        if activate:
            services.set_status(author, journey.id, "activate")
    db.session.flush()
