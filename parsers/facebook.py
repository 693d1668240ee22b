"""The Facebook parser: Page notifications (comments, replies, messages, recommendations, mentions, reactions)."""

from __future__ import annotations

import re
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from interestd_parsers._meta import (
    CleanLink,
    avatar_url,
    domain_in,
    html_lines,
    notify_type,
    page_links,
    preheader,
    quoted_block,
    sender_domain,
    strip_quotes,
    type_verdict,
    visible_lines,
)

from interestd.card import CardDraft
from interestd.dates import parse_human_date
from interestd.errors import ParseError
from interestd.htmltext import tree_to_text
from interestd.message import ParsedMessage

FACEBOOK_DOMAINS = ("facebookmail.com", "business.facebook.com", "facebook.com")

_G = r"(?:\((?:а|и|-а)\)|а|и)?"  # Russian gender/plural endings Facebook writes: "(а)", "а", "и"
# Verb phrases right after the author's name, in the order they are tried (reply before comment, etc.).
_ACTIONS: tuple[tuple[str, str], ...] = (
    ("reply", rf"replied to (?:your|a|\S+'s) comment|ответил{_G} на (?:\S+ )?комментари"),
    ("mention", rf"mentioned|tagged|упомянул{_G}\b|отметил{_G} .{{1,60}}? в (?:публикации|комментарии|посте)"),
    ("comment", rf"(?:also )?commented on|прокомментировал{_G}|оставил{_G} комментарий"),
    (
        "message",
        rf"sent (?:a |you a |\S+ a )?(?:new )?message|messaged|отправил{_G} (?:\S+ )?сообщение|"
        rf"написал{_G} (?:вам|странице)",
    ),
    (
        "review",
        rf"recommends\b|recommended\b|reviewed\b|left a review|рекомендует\b|порекомендовал{_G}|оставил{_G} отзыв",
    ),
    ("like", rf"reacted\b|likes? your|liked\b|отреагировал{_G}|нравится ваш"),
    ("subscription", r"started following|now follows|likes? your page|подписал(?:ся|ась|ись|\(а\)сь)"),
)
_ACTION_RES = tuple((action, re.compile(pattern, re.IGNORECASE)) for action, pattern in _ACTIONS)
_HEADLINE = re.compile(
    r"^(?P<name>[^\n:\"«“<>]{2,80}?)\s+(?P<verb>" + "|".join(p for _, p in _ACTIONS) + ")",
    re.IGNORECASE,
)
# Wording that names the action without a name in front (subjects such as "New message for Уютный дом").
_LOOSE = (
    ("message", re.compile(r"\bnew message|новое сообщение|новые сообщения", re.IGNORECASE)),
    ("review", re.compile(r"\bnew (?:recommendation|review)|новая рекомендация|новый отзыв", re.IGNORECASE)),
)
_OTHERS = re.compile(r"\s+(?:and \d+ (?:others?|other people)|и ещё \d+.*|и еще \d+.*)$", re.IGNORECASE)
_PREHEADER_SAID = re.compile(r"^.{2,80}?\s(?:wrote|написал\S*|commented|прокомментировал\S*)\s*:\s*(?P<text>.+)$")
# Buttons and footer lines that end the person's words in the card layout.
_CARD_END = re.compile(
    r"^(?:reply|ответить|like|нравится|comment|комментировать|share|поделиться|view(?: on facebook| post| comment|"
    r" recommendation| message)?|посмотреть(?: на facebook| публикацию| комментарий| рекомендацию)?|open|открыть|"
    r"this message was sent.*|сообщение отправлено.*|meta platforms.*)$",
    re.IGNORECASE,
)
_REPLY_BY_MAIL = re.compile(r"\s*-?\s*(?:Reply to this email.*|Ответьте на это письмо.*)$", re.IGNORECASE)
_NOT_PROFILE = frozenset(
    "permalink.php story.php photo.php photo photos groups pages settings notifications messages o.php "
    "email_forward_notice login help privacy policies policy ads business watch events event.php marketplace "
    "hashtag reviews home.php friends bookmarks latest gaming stories reel reels share legal terms about careers "
    "checkpoint security hacked email unsubscribe media video.php profile.php n nd l.php".split()
)


class FacebookParser:
    """Facebook Page notifications from facebookmail.com and Meta Business Suite."""

    name: ClassVar[str] = "facebook"
    priority: ClassVar[int] = 100
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        if not domain_in(sender_domain(msg), FACEBOOK_DOMAINS):
            return False
        kind = notify_type(msg)
        if kind is not None:
            if kind.startswith("ig_"):
                return False  # Instagram notifications sent through Facebook's mailer
            verdict = type_verdict(kind)
            if verdict is not None:
                return verdict != "deny"
        return _action(msg.subject, visible_lines(msg)[:80], kind) is not None

    def parse(self, msg: ParsedMessage) -> CardDraft:
        lines = visible_lines(msg)
        headline_at, name = _headline(lines)
        if name is None:
            subject_match = _HEADLINE.match(msg.subject)
            name = _clean_name(subject_match.group("name")) if subject_match else None
        links = page_links(msg)
        action = (
            _action(msg.subject, lines[headline_at : headline_at + 1] if headline_at >= 0 else [], None)
            or _action(msg.subject, lines[:80], notify_type(msg))
            or _action_from_links(links)
        )
        if action is None:
            raise ParseError("a Facebook notification of a kind this parser does not know")
        author_url = _author_url(links, name)
        source_url = _source_url(action, links, author_url)
        text = "" if action in ("like", "subscription") else _text(msg, lines, headline_at, name)
        if not (text or name or source_url):
            raise ParseError("neither author, text nor a link found in the Facebook notification")
        draft = CardDraft(
            source_type="facebook",
            action=action,
            text=text,
            source_url=source_url,
            occurred_at=msg.date,  # body times are in the recipient's zone with no offset; Date is exact
            author_name=name,
            author_url=author_url,
            author_photo_url=avatar_url(msg.html_tree, author_url, name),
            reply_url=source_url,
        )
        draft.missing = _missing(draft)
        return draft


def _headline(lines: list[str]) -> tuple[int, str | None]:
    """The line "<Name> <verb> …" and the name in it; (-1, None) when there is none."""
    for index, line in enumerate(lines):
        found = _HEADLINE.match(line)
        if found:
            return index, _clean_name(found.group("name"))
    return -1, None


def _clean_name(name: str) -> str | None:
    name = _OTHERS.sub("", " ".join(name.split())).strip(" ,.")
    return name or None


def _action(subject: str, lines: list[str], kind: str | None) -> str | None:
    for text in (subject, *lines):
        found = _HEADLINE.match(text)
        if found:
            verb = found.group("verb")
            return next(action for action, pattern in _ACTION_RES if pattern.match(verb))
    for action, pattern in _LOOSE:
        if pattern.search(subject):
            return action
    verdict = type_verdict(kind) if kind else None
    return verdict if verdict not in (None, "deny") else None


def _action_from_links(links: list[CleanLink]) -> str | None:
    kinds = {_link_kind(link.url) for link in links}
    if "reply" in kinds:
        return "reply"
    if "comment" in kinds:
        return "comment"
    if "inbox" in kinds:
        return "message"
    return "review" if "reviews" in kinds else None


def _link_kind(url: str) -> str | None:
    """comment, reply, post, inbox or reviews for the links that address a place; None for the rest."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    segments = [segment for segment in parts.path.split("/") if segment]
    params = dict(parse_qsl(parts.query))
    if host == "m.me" or (host.endswith("facebook.com") and ("inbox" in segments or segments[:1] == ["messages"])):
        return "inbox"
    if host != "www.facebook.com" or not segments:
        return None
    if "reviews" in segments or "recommendations" in segments:
        return "reviews"
    first = segments[0].lower()
    is_post = first in ("permalink.php", "story.php", "photo.php", "photo", "watch") or any(
        segment in ("posts", "permalink", "videos") for segment in segments[1:]
    )
    if not is_post:
        return None
    if "reply_comment_id" in params:
        return "reply"
    return "comment" if "comment_id" in params else "post"


def _is_profile(url: str) -> bool:
    parts = urlsplit(url)
    if parts.hostname != "www.facebook.com":
        return False
    segments = [segment for segment in parts.path.split("/") if segment]
    if segments == ["profile.php"]:
        return "id=" in parts.query
    if len(segments) == 3 and segments[0] == "people":
        return True
    return len(segments) == 1 and segments[0].lower() not in _NOT_PROFILE and not segments[0].endswith(".php")


def _author_url(links: list[CleanLink], name: str | None) -> str | None:
    if name:
        for link in links:
            if link.text.casefold() == name.casefold() and _is_profile(link.url):
                return link.url
    for link in links:
        if link.role in ("actor_profile", "image") and link.text and _is_profile(link.url):
            return link.url
    return None


def _source_url(action: str, links: list[CleanLink], author_url: str | None) -> str | None:
    preferences = {
        "reply": ("reply", "comment", "post"),
        "comment": ("comment", "reply", "post"),
        "mention": ("comment", "post"),
        "review": ("post", "reviews"),
        "like": ("comment", "post"),
        "message": ("inbox",),
    }.get(action)
    if preferences is None:
        return author_url
    kinds = [(_link_kind(link.url), link.url) for link in links]
    for wanted in preferences:
        for kind, url in kinds:
            if kind == wanted:
                return url
    return None


def _text(msg: ParsedMessage, lines: list[str], headline_at: int, name: str | None) -> str:
    """What the person wrote: the mb_text block, else a quoted block, else the preheader's quote."""
    from_html = _mb_text(msg.html_tree)
    if from_html:
        return from_html
    for candidate_lines in (lines, html_lines(msg)):
        start = headline_at + 1 if candidate_lines is lines and headline_at >= 0 else 0
        quoted = quoted_block(candidate_lines, start)
        if quoted:
            return quoted
    hidden = _REPLY_BY_MAIL.sub("", preheader(msg.html_tree))
    said = _PREHEADER_SAID.match(hidden)
    if said:
        return strip_quotes(said.group("text"))
    if name and hidden.startswith(name + ":"):
        return strip_quotes(hidden[len(name) + 1 :])
    return _after_card(html_lines(msg) or lines, name, msg)


def _after_card(lines: list[str], name: str | None, msg: ParsedMessage) -> str:
    """The lines under the card's "<Name>" / "<time>" pair, up to the first button or footer line."""
    if not name:
        return ""
    for index, line in enumerate(lines):
        if line != name or index + 1 >= len(lines):
            continue
        start = index + 1
        if len(lines[start]) < 40 and parse_human_date(lines[start], reference=msg.date) is not None:
            start += 1
        collected: list[str] = []
        for candidate in lines[start : start + 40]:
            if _CARD_END.match(candidate.strip(" .")):
                break
            if candidate or collected:
                collected.append(candidate)
        return strip_quotes("\n".join(collected).strip())
    return ""


def _mb_text(tree: Any | None) -> str:
    if tree is None:
        return ""
    for element in tree.xpath("//*[contains(@class, 'mb_text')]"):
        text = tree_to_text(element).strip()
        if not text or any(_HEADLINE.match(line) for line in text.split("\n")[:1]):
            continue
        return strip_quotes(text)
    return ""


def _missing(draft: CardDraft) -> list[str]:
    wanted = ["author_name", "author_url", "author_photo_url", "source_url"]
    if draft.action not in ("like", "subscription"):
        wanted.append("text")
    return [field for field in wanted if not getattr(draft, field)]
