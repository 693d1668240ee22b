"""Odnoklassniki (OK.ru) group notifications (comments, messages, «Класс!», reshares, new members) as cards."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from interestd_parsers._vkok import (
    Anchor,
    anchors,
    body_lines,
    clean_url,
    contacts,
    date_near,
    domain_of,
    find_anchor_line,
    in_domains,
    is_usable_image,
    name_before_verb,
    path_and_query,
    strip_quoted,
    words_after,
)

from interestd.card import CardDraft
from interestd.errors import ParseError
from interestd.message import ParsedMessage

SENDER_DOMAINS = ("ok.ru", "odnoklassniki.ru")  # bezotveta@odnoklassniki.ru (older), bezotveta@ok.ru
LINK_HOSTS = ("ok.ru", "odnoklassniki.ru")

_ACTIONS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (action, re.compile(pattern, re.IGNORECASE))
    for action, pattern in (
        ("subscription", r"вступил|присоединил|нов\w* участни|\bjoined\b|new member"),
        ("like", r"\bкласс\b|\blike[sd]?\b"),
        ("repost", r"поделил|репост|\breshared?\b|\bshared\b"),
        ("reply", r"ответил\w* на|нов\w* ответ|\brepl(?:y|ied)\b"),
        ("message", r"сообщени|\bmessage"),
        ("comment", r"комментари|прокомментировал|\bcomment"),
    )
)
# OK mail that is no group event: the "while you were away" digest, gifts, friends, security, birthdays.
_NOT_AN_EVENT = re.compile(
    r"пока вас не было|while you were away|подар|\bgift|в друзья|friend request|as a friend|парол|password|"
    r"код\b|\bcode\b|\bвход\b|log ?in|восстанов|recover|подтвер|confirm|безопасност|security|"
    r"день рождени|birthday|рекоменд|recommend|"
    r"\d+\s+нов\w*\s+(?:событ|оповещ|уведомл)|new notifications",
    re.IGNORECASE,
)
_VERB = re.compile(
    r"прокомментировал|оставил\w* комментари|ответил|написал|отправил|постав\w* «?класс|поделил|вступил|"
    r"присоединил|commented|replied|wrote|sent|liked|shared|reshared|joined",
    re.IGNORECASE,
)
_STOP = re.compile(
    r"^(?:Ответить|Reply|Посмотреть|View\b|Открыть|Open\b|Перейти|Go to|Чтобы ответить|Чтобы посмотреть|"
    r"To reply|To view|Если указанная|If the link|Если вы не хотите|If you don't want|If you do not want|"
    r"Вы получили это письмо|You received this|С уважением|Best regards|Класс\b.*Поделиться|Like\b.*Share|"
    r"Тема:|Topic:|Фото:|Photo:|В ответ на|In reply to|--\s*$)",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"[«“\"]([^«»“”\"]{1,120})[»”\"]")
_KEEP_QUOTED = re.compile(r"^класс!?$", re.IGNORECASE)
_GROUP_OBJECT = re.compile(r"^/group/(\d+)/(topic|album|product|messages|video)(?:/\d+)*/?$")
_RESHARE = re.compile(r"^/profile/\d+/statuses/\d+/?$")
_PROFILE = re.compile(r"^/profile/\d+/?$|^/([a-z][a-z0-9_.]{2,40})/?$", re.IGNORECASE)
_NOT_PROFILE = re.compile(
    r"^(?:group|groups|messages|settings|notifications|dk|game|games|music|video|feed|help|about|regulations|"
    r"search|apps|app|mobile|web-api|res|discussions|guests|marks|friends|presents|payment|stickers|live)$",
    re.IGNORECASE,
)
_TEXT_ACTIONS = frozenset({"comment", "reply", "message"})


def clean_ok_url(href: str) -> str:
    """An OK link without its landref= and st.* tracking, or utm_* parameters."""
    return clean_url(href, lambda key: not (key == "landref" or key.startswith(("st.", "utm_", "_"))))


@dataclass(frozen=True, slots=True)
class _Author:
    name: str | None
    url: str | None
    photo: str | None


class OdnoklassnikiParser:
    """Notifications OK sends to a group's admins: who did what, the topic, photo or dialog, and the words."""

    name: ClassVar[str] = "odnoklassniki"
    priority: ClassVar[int] = 100
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        if not in_domains(domain_of(msg.sender_email), SENDER_DOMAINS):
            return False
        subject = _without_quoted(msg.subject)
        if _NOT_AN_EVENT.search(subject):
            return False
        return _action_of(subject) is not None or _action_from_links(_ok_anchors(msg)) is not None

    def parse(self, msg: ParsedMessage) -> CardDraft:
        links = _ok_anchors(msg)
        lines = body_lines(msg)
        author = _author(links)
        start = find_anchor_line(lines, author.name, _VERB)
        if author.name is None and start is not None:
            author = _Author(name_before_verb(lines[start], _VERB), author.url, author.photo)
        action = (
            _action_of(_without_quoted(msg.subject))
            or (_action_of(_without_quoted(lines[start])) if start is not None else None)
            or _action_from_links(links)
        )
        if action is None:
            raise ParseError("no group event (comment, message, like, reshare, member) found")

        text, when = "", None
        if start is not None:
            if action in _TEXT_ACTIONS:
                words = words_after(lines, start, stop=_STOP, headline=_VERB, reference=msg.date)
                text, when = words.text, words.when
            else:
                when = date_near(lines, start, msg.date)
        source = _source(action, links, author)
        if not (text or author.name or author.url or source):
            raise ParseError("neither the person, their words nor a link to the place was found")
        product = next((a for a in links if _object(a.href) == "product"), None)

        email, phone = contacts(text)
        draft = CardDraft(
            source_type="odnoklassniki",
            action=action,
            text=text,
            source_url=source,
            occurred_at=when or msg.date,
            author_name=author.name,
            author_url=author.url,
            author_photo_url=author.photo,
            author_email=email,
            author_phone=phone,
            product=(strip_quoted(product.text) or product.image_alt) if product else None,
            product_url=product.href if product else None,
            reply_url=source if action in _TEXT_ACTIONS else None,
        )
        draft.missing = [
            field
            for field in ("author_name", "author_url", "author_photo_url", "source_url")
            if getattr(draft, field) is None
        ]
        if action in _TEXT_ACTIONS and not text:
            draft.missing.insert(0, "text")
        return draft


def _ok_anchors(msg: ParsedMessage) -> list[Anchor]:
    """The message's links to OK, cleaned (worked out once: match() and parse() both read them)."""

    def compute(msg: ParsedMessage) -> list[Anchor]:
        return [a for a in anchors(msg, clean_ok_url) if in_domains(path_and_query(a.href)[0], LINK_HOSTS)]

    return list(msg.derived("ok.anchors", compute))


def _without_quoted(text: str) -> str:
    """The text without «quoted» names (a group called «Классная мебель» is no like), but «Класс!» kept."""
    return _QUOTED.sub(lambda m: m.group(0) if _KEEP_QUOTED.match(m.group(1).strip()) else " ", text)


def _action_of(text: str) -> str | None:
    for action, pattern in _ACTIONS:
        if pattern.search(text):
            return action
    return None


def _action_from_links(links: list[Anchor]) -> str | None:
    kinds = {_object(a.href) for a in links}
    if "messages" in kinds:
        return "message"
    return None


def _object(url: str) -> str | None:
    _, path, _ = path_and_query(url)
    match = _GROUP_OBJECT.match(path)
    if match:
        return match.group(2)
    if _RESHARE.match(path):
        return "reshare"
    if _is_profile(path):
        return "profile"
    return None


def _is_profile(path: str) -> bool:
    match = _PROFILE.match(path)
    return bool(match) and not (match.group(1) and _NOT_PROFILE.match(match.group(1)))


def _author(links: list[Anchor]) -> _Author:
    """The person: a profile link with their name; the avatar is the image in a link to the same profile."""
    # A group with a short name (ok.ru/uyutnydom) looks like a profile; its link text is the «quoted» group name.
    profiles = [a for a in links if _object(a.href) == "profile" and not a.text.strip().startswith(("«", "“", '"'))]
    for anchor in profiles:
        name = " ".join(anchor.text.split()) or None
        if name or anchor.image_alt:
            photo = next((b.image for b in profiles if b.href == anchor.href and is_usable_image(b.image)), None)
            text_name = next((" ".join(b.text.split()) for b in profiles if b.href == anchor.href and b.text), None)
            return _Author(text_name or anchor.image_alt, anchor.href, photo)
    return _Author(None, None, None)


def _source(action: str, links: list[Anchor], author: _Author) -> str | None:
    """The link to the exact place: the topic, photo or product commented, the dialog, the reshare."""
    by_kind: dict[str, list[str]] = {}
    for anchor in links:
        kind = _object(anchor.href)
        if kind:
            by_kind.setdefault(kind, []).append(anchor.href)
    order = {
        "message": ("messages",),
        "subscription": (),
        "repost": ("reshare", "topic", "album", "video", "product"),
    }.get(action, ("topic", "album", "video", "product", "messages"))
    for kind in order:
        if by_kind.get(kind):
            return by_kind[kind][0]
    return author.url if action == "subscription" else None
