"""Reviews: WooCommerce product reviews and Google Business Profile review notifications become review cards."""

from __future__ import annotations

import re
from typing import ClassVar

from interestd_parsers._wordpress import (
    build_draft,
    is_comment_notification,
    is_product_review,
    read_comment,
    strip_tracking,
)

from interestd.card import CardDraft
from interestd.errors import ParseError
from interestd.message import ParsedMessage

# WooCommerce sends no mail of its own for a review: it arrives as the ordinary WordPress comment notification,
# recognised by the product-reviews admin link or the product permalink. Google's "<Name> left a review for
# <Business>" mail is read from its plain-text part (the layout public parsers rely on), the HTML part being the
# fallback. Neither mail carries the star rating in a field the card has, so the rating is not kept.

_GOOGLE_SENDERS = frozenset({"businessprofile-noreply@google.com", "googlemybusiness-noreply@google.com"})
_GOOGLE_SUBJECT = re.compile(r"^(?P<name>.+?)\s+left a review for\s+(?P<business>.+?)\s*$", re.IGNORECASE)
_GOOGLE_NEW_REVIEW = re.compile(r"You got a new (?:\d-star )?review", re.IGNORECASE)
_READ_REVIEW = re.compile(r"^\s*(?:Read review|See review|View review)\s*$", re.IGNORECASE)
_REPLY_REVIEW = re.compile(r"^\s*(?:Reply to review|Reply)\s*$", re.IGNORECASE)
_HTML_BUTTONS = re.compile(r"^(?:Reply to review|Read review|Reply)\b", re.IGNORECASE)
_BRACKETED_URL = re.compile(r"^\s*<(?P<url>https?://[^>\s]+)>\s*$")


class SiteReviewParser:
    name: ClassVar[str] = "site_review"
    priority: ClassVar[int] = 75
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        if _is_google_review(msg):
            return True
        return is_comment_notification(msg) and is_product_review(msg)

    def parse(self, msg: ParsedMessage) -> CardDraft:
        if _is_google_review(msg):
            return _google(msg)
        comment = read_comment(msg)
        if not (comment.text or comment.author_name or comment.permalink or comment.approve_url):
            raise ParseError("a WooCommerce review notification without review text, author or review link")
        return build_draft(msg, comment, source_type="site_review", action="reply" if comment.is_reply else "review")


def _google_sender(msg: ParsedMessage) -> bool:
    addresses = [msg.sender_email or ""] + [(a.email or "").lower() for a in msg.reply_to]
    return any(address in _GOOGLE_SENDERS for address in addresses)


def _is_google_review(msg: ParsedMessage) -> bool:
    if not _google_sender(msg):
        return False
    return bool(_GOOGLE_SUBJECT.match(msg.subject) or _GOOGLE_NEW_REVIEW.search(msg.plain or msg.text or ""))


def _google(msg: ParsedMessage) -> CardDraft:
    subject = _GOOGLE_SUBJECT.match(msg.subject)
    found = _google_plain(msg.plain or "") or _google_html(msg, subject.group("name") if subject else None)
    name, text, read_url, reply_url = found or (None, None, None, None)
    read_url = read_url or _link(msg, _READ_REVIEW)
    reply_url = reply_url or _link(msg, _REPLY_REVIEW)
    draft = CardDraft(
        source_type="site_review",
        action="review",
        text=text or "",
        source_url=strip_tracking(read_url),
        occurred_at=msg.date,
        # The subject cuts long names short; the body has the full one.
        author_name=name or (subject.group("name") if subject else None),
        author_photo_url=_avatar(msg, name),
        product=subject.group("business") if subject else None,
        reply_url=strip_tracking(reply_url or read_url),
    )
    for field_name in ("author_name", "source_url", "product"):
        if not getattr(draft, field_name):
            draft.missing.append(field_name)
    if text is None:
        draft.missing.append("text")
    if draft.author_name is None and draft.source_url is None and not draft.text:
        raise ParseError("a Google review notification without reviewer, review text or review link")
    return draft


def _google_plain(plain: str) -> tuple[str | None, str | None, str | None, str | None] | None:
    """Read review / <url> / blank / Name / blank / text… / blank / Reply to review / <url>."""
    lines = plain.replace("\r\n", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if _READ_REVIEW.match(line)), None)
    if start is None:
        return None
    index = start + 1
    read_url = None
    if index < len(lines) and _BRACKETED_URL.match(lines[index]):
        read_url = _BRACKETED_URL.match(lines[index]).group("url")  # type: ignore[union-attr]
        index += 1
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index >= len(lines) or _REPLY_REVIEW.match(lines[index]):
        return None
    name = lines[index].strip()
    end = next((i for i in range(index + 1, len(lines)) if _REPLY_REVIEW.match(lines[i])), None)
    if end is None:
        return None
    text = "\n".join(lines[index + 1 : end]).strip()
    reply = _BRACKETED_URL.match(lines[end + 1]) if end + 1 < len(lines) else None
    return name, text, read_url, reply.group("url") if reply else None


def _google_html(msg: ParsedMessage, subject_name: str | None) -> tuple[str | None, str | None, None, None] | None:
    """HTML only: the reviewer's line (it starts with the subject's, possibly cut, name) down to "Reply to review"."""
    if not subject_name:
        return None
    lines = [line.strip() for line in msg.html_text.split("\n")]
    prefix = subject_name.rstrip(".… ")
    start = next((i for i, line in enumerate(lines) if line.startswith(prefix) and "review" not in line.lower()), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if _HTML_BUTTONS.match(lines[i])), len(lines))
    return lines[start], "\n".join(lines[start + 1 : end]).strip(), None, None


def _link(msg: ParsedMessage, pattern: re.Pattern[str]) -> str | None:
    for link in msg.links:
        if pattern.match(link.text) and link.href.startswith(("http://", "https://")):
            return link.href
    return None


def _avatar(msg: ParsedMessage, name: str | None) -> str | None:
    tree = msg.html_tree
    if tree is None:
        return None
    for image in tree.iter("img"):
        src = image.get("src") or ""
        if "googleusercontent.com" in src and (not name or (image.get("alt") or "").strip() in ("", name)):
            return src
    return None
