"""The Instagram parser: notifications to a business account (comments, mentions, direct messages, likes)."""

from __future__ import annotations

import re
from typing import ClassVar
from urllib.parse import urlsplit

from interestd_parsers._meta import (
    CleanLink,
    avatar_url,
    domain_in,
    notify_type,
    page_links,
    sender_domain,
    strip_quotes,
    type_verdict,
    visible_lines,
)

from interestd.card import CardDraft
from interestd.errors import ParseError
from interestd.message import ParsedMessage

INSTAGRAM_DOMAINS = ("mail.instagram.com", "instagram.com")
_META_SENDER_DOMAINS = (*INSTAGRAM_DOMAINS, "facebookmail.com")  # Instagram mail comes from either

_G = r"(?:\((?:-?а|и)\)|а|и)?"  # Russian endings Instagram writes: "(-а)", "(а)", "а"
_ACTIONS: tuple[tuple[str, str], ...] = (
    ("reply", rf"replied to your comment|ответил{_G} на ваш комментарий"),
    ("mention", rf"mentioned you|tagged you|упомянул{_G} вас|отметил{_G} вас"),
    (
        "comment",
        rf"commented on your (?:post|photo|video|reel)|commented:|left a comment|"
        rf"прокомментировал{_G} ваш\S* [^\s:.]+|оставил{_G} комментарий",
    ),
    (
        "message",
        rf"sent you (?:a )?message(?: request)?|wants to send you a message|отправил{_G} вам сообщение|"
        r"хочет отправить вам сообщение",
    ),
    (
        "like",
        r"liked your (?:post|photo|video|reel|comment)|likes your|понравил\S* ваш\S* [^\s:.]+|нравится ваш\S* [^\s:.]+",
    ),
    ("subscription", rf"started following you|подписал(?:ся|ась|{_G}сь)? на вас"),
)
_ACTION_RES = tuple((action, re.compile(pattern, re.IGNORECASE)) for action, pattern in _ACTIONS)
_HEADLINE = re.compile(
    r"^(?:Пользователю |Пользователь )?@?(?P<name>[A-Za-z0-9._]{1,30})\s+(?P<verb>"
    + "|".join(p for _, p in _ACTIONS)
    + r")(?P<rest>.*)$",
    re.IGNORECASE,
)
_USERNAME = re.compile(r"^[A-Za-z0-9._]{1,30}$")
# Lines that end the person's words: buttons, the footer, Meta's address.
_STOP = re.compile(
    r"^(?:reply|ответить|view|посмотреть|open|открыть|see (?:post|comment|message)|view (?:post|comment|message)|"
    r"посмотреть (?:публикацию|комментарий|сообщение)|like|нравится|send message|отправить сообщение|©.*|"
    r"this (?:message|email) was sent.*|это (?:сообщение|письмо) (?:было )?отправлено.*|unsubscribe|"
    r"отписаться.*|from meta|meta platforms.*|instagram)$",
    re.IGNORECASE,
)
_RESERVED = frozenset("p reel reels tv stories explore direct accounts emails legal about developer _n _u web".split())


class InstagramParser:
    """Instagram notifications from mail.instagram.com (X-Facebook-Notify: ig_…)."""

    name: ClassVar[str] = "instagram"
    priority: ClassVar[int] = 100
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        domain = sender_domain(msg)
        if not domain_in(domain, _META_SENDER_DOMAINS):
            return False  # the headers are read only for mail from Meta's senders
        kind = notify_type(msg)
        from_instagram = domain_in(domain, INSTAGRAM_DOMAINS) or (kind is not None and kind.startswith("ig_"))
        if not from_instagram:
            return False
        if kind is not None:
            verdict = type_verdict(kind)
            if verdict is not None:
                return verdict != "deny"
        return _action(msg.subject, visible_lines(msg)[:80]) is not None

    def parse(self, msg: ParsedMessage) -> CardDraft:
        lines = visible_lines(msg)
        at = _headline_index(lines)
        found = _HEADLINE.match(lines[at]) if at >= 0 else _HEADLINE.match(msg.subject)
        action = _action(msg.subject, [lines[at]] if at >= 0 else lines[:80])
        if action is None:
            verdict = type_verdict(notify_type(msg) or "")
            action = verdict if verdict not in (None, "deny") else None
        if action is None:
            raise ParseError("an Instagram notification of a kind this parser does not know")
        username = found.group("name") if found else None
        links = page_links(msg)
        author_url = _author_url(links, username)
        source_url = _source_url(action, links, author_url)
        text = "" if action in ("like", "subscription") else _text(found, lines, at)
        if not (text or username or source_url):
            raise ParseError("neither author, text nor a link found in the Instagram notification")
        draft = CardDraft(
            source_type="instagram",
            action=action,
            text=text,
            source_url=source_url,
            occurred_at=msg.date,  # Instagram writes no time in the body; Date is the moment it was sent
            author_name=username,
            author_url=author_url,
            author_photo_url=avatar_url(msg.html_tree, author_url, username),
            reply_url=source_url,
        )
        wanted = ["author_name", "author_url", "author_photo_url", "source_url"]
        if action not in ("like", "subscription"):
            wanted.append("text")
        draft.missing = [field for field in wanted if not getattr(draft, field)]
        return draft


def _headline_index(lines: list[str]) -> int:
    return next((index for index, line in enumerate(lines) if _HEADLINE.match(line)), -1)


def _action(subject: str, lines: list[str]) -> str | None:
    for text in (*lines, subject):
        found = _HEADLINE.match(text)
        if found:
            verb = found.group("verb")
            return next(action for action, pattern in _ACTION_RES if pattern.match(verb))
    return None


def _text(found: re.Match[str] | None, lines: list[str], at: int) -> str:
    """The words after "commented on your post:", else the lines below the headline up to a button or footer."""
    rest = found.group("rest").strip() if found else ""
    if rest.startswith(":"):
        inline = strip_quotes(rest[1:])
        if inline:
            return inline
    if at < 0:
        return ""
    collected: list[str] = []
    for line in lines[at + 1 : at + 40]:
        if _STOP.match(line.strip(" .")):
            break
        if line or collected:
            collected.append(line)
    return strip_quotes("\n".join(collected).strip())


def _profile_name(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.hostname != "www.instagram.com":
        return None
    segments = [segment for segment in parts.path.split("/") if segment]
    if len(segments) == 1 and segments[0].lower() not in _RESERVED and _USERNAME.match(segments[0]):
        return segments[0]
    return None


def _author_url(links: list[CleanLink], username: str | None) -> str | None:
    if not username:
        return None
    for link in links:
        found = _profile_name(link.url)
        if found and found.lower() == username.lower():
            return f"https://www.instagram.com/{found}/"
    return f"https://www.instagram.com/{username}/"


def _link_kind(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.hostname not in ("www.instagram.com", "business.facebook.com"):
        return None
    segments = [segment for segment in parts.path.split("/") if segment]
    if parts.hostname == "business.facebook.com":
        return "inbox" if "inbox" in segments else None
    if segments[:1] == ["direct"]:
        return "inbox"
    if segments[:1] in (["p"], ["reel"], ["tv"]) and len(segments) >= 2:
        return "comment" if len(segments) >= 4 and segments[2] == "c" else "post"
    return None


def _source_url(action: str, links: list[CleanLink], author_url: str | None) -> str | None:
    preferences = {
        "comment": ("comment", "post"),
        "reply": ("comment", "post"),
        "mention": ("comment", "post"),
        "like": ("post", "comment"),
        "message": ("inbox",),
    }.get(action)
    if preferences is None:
        return author_url
    for wanted in preferences:
        for link in links:
            if _link_kind(link.url) == wanted:
                return link.url
    return None
