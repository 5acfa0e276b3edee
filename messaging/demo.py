"""Demo: the demo accounts count as verified (they were created by the loader, not signed up),
and Carol reads her mail in Chinese, in Shanghai time."""

from __future__ import annotations

from . import preferences


def load(ctx: dict) -> None:
    for name, member in ctx.get("members", {}).items():
        prefs = preferences.member_preferences(member.id)
        prefs.email_verified = True
        if name == "carol":
            prefs.locale, prefs.time_zone = "zh-CN", "Asia/Shanghai"
