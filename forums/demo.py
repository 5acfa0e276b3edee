"""Demo boards for ``make run``: a discussion forum, a bulletin board and an advocates-only board,
each with a thread or two.  Idempotent: boards are found by slug, threads only added to empty boards."""

from __future__ import annotations

from sqlalchemy import select

from extensions import db

from . import services
from .models import Board, Thread

BOARDS = [
    {"slug": "general", "name": "General discussion", "kind": "discussion", "position": 1,
     "description": "Talk about our products, share tips, ask the community."},
    {"slug": "announcements", "name": "Announcements", "kind": "bulletin", "members_can_reply": True, "position": 0,
     "description": "News from the team. Members may reply."},
    {"slug": "advocates", "name": "Advocates' lounge", "kind": "discussion", "min_tier": "advocate", "position": 2,
     "description": "For our advocates: early previews and referral ideas."},
]


def load(ctx: dict) -> None:
    members = ctx["members"]
    admin, mod = members["admin"], members["mod"]
    boards = {}
    for spec in BOARDS:
        board = db.session.scalar(select(Board).where(Board.slug == spec["slug"]))
        boards[spec["slug"]] = board or services.create_board(admin, spec)
    db.session.flush()

    def empty(slug):
        return db.session.scalar(select(Thread.id).where(Thread.board_id == boards[slug].id).limit(1)) is None

    if empty("announcements"):
        news = services.create_thread(
            members["marketing"], boards["announcements"].id, "Double points on your birthday",
            "<p>From this month, every member earns <strong>double points</strong> during their birthday week.</p>",
        )
        db.session.flush()
        services.reply(members["alice"], news.id, "<p>Lovely idea, thank you!</p>")
    if empty("general"):
        tips = services.create_thread(
            members["bob"], boards["general"].id, "What did you redeem your points for?",
            "<p>I swapped 100 points for a coffee voucher. Anyone tried the <em>tote bag</em>?</p>",
        )
        db.session.flush()
        first = tips.last_post_id
        services.reply(members["carol"], tips.id, "<p>The tote bag is great, sturdy and roomy.</p>",
                       quote_post_id=first)
        services.reply(members["dave"], tips.id, "<p>Coffee every time. See https://example.com/rewards</p>")
        services.like(members["carol"], first)
    if empty("advocates"):
        services.create_thread(
            mod, boards["advocates"].id, "Preview: the referral toolkit",
            "<ul><li>Share links</li><li>Thank-you rewards</li></ul><p>Tell us what you think.</p>",
        )
    db.session.flush()
