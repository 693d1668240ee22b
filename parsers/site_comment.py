"""Site comments: WordPress new-comment and moderation notifications (English and Russian) become comment cards."""

from __future__ import annotations

from typing import ClassVar

from interestd_parsers._wordpress import build_draft, is_comment_notification, is_product_review, read_comment

from interestd.card import CardDraft
from interestd.errors import ParseError
from interestd.message import ParsedMessage

# A reply to another comment becomes action "reply"; a trackback or pingback (another site linking to the post)
# becomes a "mention" card whose author is the linking site. Comments on WooCommerce products are reviews: they are
# left to the site_review parser.


class SiteCommentParser:
    name: ClassVar[str] = "site_comment"
    priority: ClassVar[int] = 70
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        return is_comment_notification(msg) and not is_product_review(msg)

    def parse(self, msg: ParsedMessage) -> CardDraft:
        comment = read_comment(msg)
        if not (comment.text or comment.author_name or comment.permalink or comment.approve_url):
            raise ParseError("a WordPress comment notification without comment text, author or comment link")
        return build_draft(msg, comment, source_type="site_comment", action=_action(comment.kind, comment.is_reply))


def _action(kind: str, is_reply: bool) -> str:
    if kind in ("trackback", "pingback"):
        return "mention"
    return "reply" if is_reply else "comment"
