"""The console in zh-CN: every role's pages, rendered on the demo data without a browser, show no
English text the catalogue knows a translation for (headings, table headers, labels, filter
options, empty states, buttons, chart titles, flash messages, attributes such as aria-label)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import select

from extensions import db
from tests.console.test_browser import _awaiting_redemption

PO = Path(__file__).resolve().parents[2] / "console" / "translations" / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"
ATTRIBUTES = ("aria-label", "placeholder", "title", "alt", "data-confirm")
# Demo content that happens to spell a msgid: the demo survey's matrix scale labels.
DEMO_DATA = {"Agree", "Disagree"}
CJK = re.compile(r"[\u4e00-\u9fff]")


def _catalogue() -> dict[str, str]:
    with open(PO, "rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id}


def _english_msgids() -> set[str]:
    """Msgids whose rendered form can be recognised: without placeholders, and translated to
    something other than themselves ("CSV" and "NPS" stay "CSV" and "NPS"; "nps" is also a demo
    question id)."""
    return {k for k, v in _catalogue().items() if "%(" not in k and v.lower() != k.lower()}


class _Texts(HTMLParser):
    """Visible text nodes (not script/style) and the attributes a user or screen reader meets."""

    def __init__(self):
        super().__init__()
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in ATTRIBUTES and value:
                self.texts.append(value.strip())

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.texts.append(" ".join(data.split()))


def _texts(html: str) -> list[str]:
    parser = _Texts()
    parser.feed(html)
    return parser.texts


def _untranslated(html: str, english: set[str]) -> list[str]:
    """Text nodes that are an English msgid, or have one as a part between " · ", " — " or
    brackets (not ":" — demo titles such as "Preview: the referral toolkit" are data)."""
    found = []
    for text in _texts(html):
        for piece in re.split(r"\s*[·—()]\s*", text):
            piece = piece.strip(" .,:;")
            if piece in DEMO_DATA:
                continue
            if piece in english or f"{piece}." in english:
                found.append(text)
                break
    return found


def test_every_msgid_is_translated_and_keeps_its_placeholders():
    catalogue = _catalogue()
    assert len(catalogue) > 400  # the whole console, not only its navigation
    assert all(catalogue.values()), [k for k, v in catalogue.items() if not v]
    for msgid, msgstr in catalogue.items():
        assert sorted(re.findall(r"%\(\w+\)s", msgid)) == sorted(re.findall(r"%\(\w+\)s", msgstr)), msgid


def _zh_client(app, email):
    client = app.test_client()
    resp = client.post("/api/v1/auth/login", json={"email": email, "password": "demo-password-1"})
    assert resp.status_code == 200, resp.get_json()
    token = resp.get_json()["csrf_token"]
    client.post("/console/language", data={"csrf_token": token, "lang": "zh_CN"})
    client.token = token
    return client


@pytest.fixture
def demo(app, make_member):
    from demo import load_demo
    from forums.models import Thread
    from rewards.models import Reward
    from surveys.models import FocusGroupSession, Survey

    load_demo()
    db.session.commit()
    redemption = _awaiting_redemption(make_member)  # the demo has none: the queue's table shows
    return {
        "survey": db.session.scalar(select(Survey.id)),
        "reward": db.session.scalar(select(Reward.id)),
        "redemption": redemption.id,
        "session": db.session.scalar(select(FocusGroupSession.id)),
        "thread": db.session.scalar(select(Thread.id)),
    }


def test_each_roles_pages_in_zh_cn_show_no_english_the_catalogue_translates(app, demo):
    from community.models import User

    member_id = db.session.scalar(select(User.id).where(User.email == "mod@example.com"))
    s, r = demo["survey"], demo["reward"]
    pages = {
        "mod@example.com": ["/console/", "/console/moderation/flags", "/console/moderation/flags?status=agreed",
                            "/console/moderation/audit", f"/console/moderation/threads/{demo['thread']}",
                            f"/console/moderation/members/{member_id}/sanctions"],
        "redeem@example.com": ["/console/", "/console/redemptions", "/console/redemptions/stock",
                               f"/console/redemptions/{demo['redemption']}"],
        "marketing@example.com": ["/console/", "/console/surveys", f"/console/surveys/{s}",
                                  f"/console/surveys/{s}/preview", f"/console/surveys/{s}/results",
                                  "/console/focus-groups", f"/console/focus-groups/{demo['session']}",
                                  "/console/rules", "/console/campaigns", "/console/rewards",
                                  f"/console/rewards/{r}", "/console/referrals", "/console/tiers"],
        "admin@example.com": ["/console/", "/console/members", f"/console/members/{member_id}", "/console/audit",
                              "/console/jobs", "/console/members/999999"],
    }
    english = _english_msgids()
    for email, urls in pages.items():
        client = _zh_client(app, email)
        for url in urls:
            resp = client.get(url)
            assert resp.status_code in (200, 404), (email, url, resp.status_code)
            html = resp.get_data(as_text=True)
            assert '<html lang="zh-CN">' in html, url
            assert _untranslated(html, english) == [], (email, url)
            assert CJK.search(html), url


def test_key_pages_have_chinese_headings_and_table_headers(app, demo):
    client = _zh_client(app, "admin@example.com")
    members = client.get("/console/members").get_data(as_text=True)
    assert "<h1>会员</h1>" in members
    for header in ("名称", "邮箱", "会员等级", "角色", "注册时间"):
        assert f'<th scope="col">{header}</th>' in members
    assert "管理员" in members  # role names in the table are translated too
    jobs = client.get("/console/jobs").get_data(as_text=True)
    assert "<h1>后台任务</h1>" in jobs and '<th scope="col">队列</th>' in jobs

    client = _zh_client(app, "redeem@example.com")
    queue = client.get("/console/redemptions").get_data(as_text=True)
    assert "<h1>兑换队列</h1>" in queue and '<th scope="col">奖品</th>' in queue
    assert '<option value="">任意</option>' in queue  # filter options
    assert ">待处理</option>" in queue  # a state in the filter

    client = _zh_client(app, "marketing@example.com")
    rules = client.get("/console/rules").get_data(as_text=True)
    assert "<h1>积分规则</h1>" in rules and '<th scope="col">每日上限</th>' in rules
    results = client.get(f"/console/surveys/{demo['survey']}/results").get_data(as_text=True)
    assert "<h2>按会员等级</h2>" in results and "各等级答卷数" in results  # a chart title
    resp = client.post("/console/surveys", data={"csrf_token": client.token, "title": "调查"}, follow_redirects=True)
    assert "问卷草稿已创建。" in resp.get_data(as_text=True)  # a flash message

    client = _zh_client(app, "mod@example.com")
    flags = client.get("/console/moderation/flags").get_data(as_text=True)
    assert "<h1>审核队列</h1>" in flags and "快捷键" in flags


def test_english_stays_english(app, demo):
    client = app.test_client()
    client.post("/api/v1/auth/login", json={"email": "admin@example.com", "password": "demo-password-1"})
    members = client.get("/console/members").get_data(as_text=True)
    assert "<h1>Members</h1>" in members and '<th scope="col">Joined</th>' in members
    assert not CJK.search(members.replace("简体中文", ""))


def test_analytics_pages_in_zh_cn(app, demo):
    from community.models import User
    from tests.console.test_analytics_pages import seed_analytics

    admin_id = db.session.scalar(select(User.id).where(User.email == "admin@example.com"))
    seeded = seed_analytics(admin_id)
    english = _english_msgids()
    urls = ["/console/analytics/segments", f"/console/analytics/segments/{seeded['segment']}",
            "/console/analytics/kpis", "/console/analytics/kpis/purchases?period=week&breakdown=tier",
            "/console/analytics/reviews", f"/console/analytics/reviews/{seeded['review']}",
            "/console/analytics/experiments", f"/console/analytics/experiments/{seeded['experiment']}",
            f"/console/analytics/experiments/{seeded['draft']}"]
    for email in ("marketing@example.com", "admin@example.com"):
        client = _zh_client(app, email)
        for url in urls:
            resp = client.get(url)
            assert resp.status_code == 200, (url, resp.status_code)
            html = resp.get_data(as_text=True)
            assert _untranslated(html, english) == [], (email, url)
    member = client.get(f"/console/members/{seeded['tagged']}").get_data(as_text=True)
    assert "<h2>分群</h2>" in member and _untranslated(member, english) == []
    assert "<h1>指标看板</h1>" in client.get("/console/analytics/kpis").get_data(as_text=True)


def test_service_errors_and_the_tier_sentence_read_in_zh_cn(app, demo):
    """Messages the domains raise in English are shown translated: a literal one (extracted by the
    error class), one a service builds with an f-string (matched by its pattern, its words
    translated), marshmallow's field messages; the tier-progress sentence; the API envelope by
    Accept-Language."""
    from community.models import User

    client = _zh_client(app, "marketing@example.com")
    survey = demo["survey"]
    resp = client.post(f"/console/surveys/{survey}/publish", data={"csrf_token": client.token},
                       follow_redirects=True)
    flash = resp.get_data(as_text=True).split('class="flashes"')[1].split("</div>")[0]
    assert "只有草稿可以发布；此问卷的状态为" in flash and "Only a draft" not in flash, flash
    assert "draft" not in flash.split("状态为")[1]  # the survey's status word is translated too
    resp = client.post("/console/campaigns", data={"csrf_token": client.token}, follow_redirects=True)
    flash = resp.get_data(as_text=True).split('class="flashes"')[1].split("</div>")[0]
    assert "表单有错误" in flash or CJK.search(flash), flash
    assert "Missing data for required field." not in flash and "Not a valid" not in flash, flash
    resp = client.get("/console/analytics/segments/999999")
    assert resp.status_code == 404 and "没有此分群。" in resp.get_data(as_text=True)

    admin = _zh_client(app, "admin@example.com")
    member_id = db.session.scalar(select(User.id).where(User.email == "mod@example.com"))
    page = admin.get(f"/console/members/{member_id}").get_data(as_text=True)
    sentence = page.split("<h2>等级进度</h2>")[1].split("</p>")[0] if "<h2>等级进度</h2>" in page else page
    assert "to reach" not in sentence and "more" not in sentence and ("即可升至" in sentence or "即将升至" in sentence)

    api = app.test_client()
    api.post("/api/v1/auth/login", json={"email": "admin@example.com", "password": "demo-password-1"})
    body = api.get("/api/v1/analytics/segments/999999", headers={"Accept-Language": "zh-CN"}).get_json()
    assert body["error"]["message"] == "没有此分群。" and body["error"]["code"] == "not_found"
    body = api.get("/api/v1/analytics/segments/999999").get_json()
    assert body["error"]["message"] == "No such segment."  # English stays the default
