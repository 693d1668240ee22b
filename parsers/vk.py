"""VKontakte community notifications (comments, replies, messages, posts, likes, reposts, new members) as cards."""

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

SENDER_DOMAINS = ("vk.com", "vk.ru")  # admin@notify.vk.com, notify@vk.com, and the vk.ru mirrors
LINK_HOSTS = ("vk.com", "vk.ru")
# Query parameters that address the exact place; everything else (from_email, hash, utm_*, ...) is tracking.
PLACE_PARAMETERS = frozenset({"reply", "thread", "w", "z", "sel", "msgid", "post"})

# Checked in this order on the subject, then on the line that introduces the person.
_ACTIONS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (action, re.compile(pattern, re.IGNORECASE))
    for action, pattern in (
        (
            "subscription",
            r"вступил|подписал(?:ся|ась)|нов\w* (?:участник|подписчик)|\bjoined\b"
            r"|new (?:member|subscriber)",
        ),
        ("request", r"предложил|предложен|suggest"),
        ("like", r"понравил|нравится|оценил|\blike[sd]?\b"),
        ("repost", r"поделил|репост|рассказал\w* о запис|\bshared\b|\brepost"),
        ("reply", r"ответил\w* на|нов\w* ответ|\brepl(?:y|ied)\b"),
        ("message", r"сообщени|\bmessage"),
        ("comment", r"комментари|прокомментировал|\bcomment"),
        ("mention", r"нов\w* запис\w* на стене|опубликовал\w* запись|написал\w* на стене|posted on|new post|wall post"),
    )
)
# Mail from VK that is no community event: login codes, security, digests, news, gifts, birthdays.
_NOT_AN_EVENT = re.compile(
    r"код\b|\bcode\b|парол|password|\bвход\b|войти|log ?in|sign[- ]?in|безопасност|security|восстанов|recover|"
    r"подтвер|confirm|verif|дайджест|digest|что нового|what'?s new|пропустил|you missed|while you were away|"
    r"\d+\s+нов\w*\s+уведомлени|new notifications|рекоменд|recommend|статистик|statistic|еженедельн|weekly|"
    r"подар|\bgift|день рождени|birthday|\bблог|\bblog",
    re.IGNORECASE,
)
_VERB = re.compile(
    r"прокомментировал|оставил\w* комментари|ответил|написал|отправил|предложил|опубликовал|понравил|оценил|"
    r"поделил|рассказал|вступил|подписал|commented|replied|wrote|sent|suggested|posted|liked|shared|joined|"
    r"subscribed",
    re.IGNORECASE,
)
_STOP = re.compile(
    r"^(?:Ответить|Reply|Открыть|Open\b|Перейти|Go to|View\b|Посмотреть|Показать|Show\b|Запись:|К записи|Post:|"
    r"Товар:|Product:|Фото:|Photo:|Видео:|Video:|В ответ на|In reply to|Вы получили|Вы получаете|You received|"
    r"You are receiving|You're receiving|Отписаться|Unsubscribe|ВКонтакте ©|VK ©|Опубликовать|Отклонить|"
    r"Publish|Decline|Настройки уведомлений|Notification settings|Чтобы ответить|To reply)",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"[«“\"]([^«»“”\"]{1,120})[»”\"]")
_OWN_WALL = re.compile(r"^/wall\d+_")  # a user's own wall: where their repost lives
_POST = re.compile(r"^/(wall|photo|video|topic|clip)(-?\d+)_(\d+)$")
_PRODUCT_PATH = re.compile(r"^/product-?\d+_\d+$")
_PRODUCT_PARAM = re.compile(r"^product-?\d+_\d+")
_DIALOG = re.compile(r"^/(?:gim\d+|im)$")
_PROFILE = re.compile(r"^/(id\d+|[A-Za-z][A-Za-z0-9_.]{2,31})/?$")
_NOT_PROFILE = re.compile(
    r"^(?:id0|(?:gim|club|public|event|app|write)\d*|wall|im|feed|settings|login|blog|support|terms|privacy|about|"
    r"market|images|video|videos|photos|audio|audios|music|friends|groups|apps|search|notifications|docs|mail|help|"
    r"legal|dev|ads|business|press|jobs|security|restore|join|stats|bugs|mobile|people|communities|services|clips|"
    r"vkpay|away\.php|page|pages|note|notes|widget_community\.php|shop|edit)$",
    re.IGNORECASE,
)
_DEFAULT_AVATAR = re.compile(r"/images/(?:camera|deactivated|community)_\d+|/images/question_", re.IGNORECASE)
_GENERIC_PRODUCT_TEXT = re.compile(
    r"^(?:товар\w*|product|item|посмотреть.*|view.*|перейти.*|открыть.*|go to.*|open.*|)$", re.IGNORECASE
)
_TEXT_ACTIONS = frozenset({"comment", "reply", "message", "request", "mention"})


def clean_vk_url(href: str) -> str:
    return clean_url(href, lambda key: key in PLACE_PARAMETERS)


@dataclass(frozen=True, slots=True)
class _Author:
    name: str | None
    url: str | None
    photo: str | None


class VkParser:
    """Notifications VK sends to a community's admins: who did what, the exact comment or dialog, and the words."""

    name: ClassVar[str] = "vk"
    priority: ClassVar[int] = 100
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        if not in_domains(domain_of(msg.sender_email), SENDER_DOMAINS):
            return False
        subject = _without_quoted(msg.subject)
        if _NOT_AN_EVENT.search(subject):
            return False
        return _action_of(subject) is not None or _action_from_links(_vk_anchors(msg)) is not None

    def parse(self, msg: ParsedMessage) -> CardDraft:
        links = _vk_anchors(msg)
        lines = body_lines(msg)
        author = _author(links, _community_names(msg.subject))
        start = find_anchor_line(lines, author.name, _VERB)
        if author.name is None and start is not None:
            author = _Author(name_before_verb(lines[start], _VERB), author.url, author.photo)
        action = (
            _action_of(_without_quoted(msg.subject))
            or (_action_of(lines[start]) if start is not None else None)
            or _action_from_links(links)
        )
        if action is None:
            raise ParseError("no community event (comment, message, post, like, repost, member) found")

        text, when = "", None
        if start is not None:
            if action in _TEXT_ACTIONS:
                words = words_after(lines, start, stop=_STOP, headline=_VERB, reference=msg.date)
                text, when = words.text, words.when
            else:
                when = date_near(lines, start, msg.date)
        product = _product(links)
        source = _source(action, links, author)
        if not (text or author.name or author.url or source):
            raise ParseError("neither the person, their words nor a link to the place was found")

        email, phone = contacts(text)
        draft = CardDraft(
            source_type="vk",
            action=action,
            text=text,
            source_url=source,
            occurred_at=when or msg.date,
            author_name=author.name,
            author_url=author.url,
            author_photo_url=author.photo,
            author_email=email,
            author_phone=phone,
            product=(product.text or None) if product else None,
            product_url=product.href if product else None,
            reply_url=source if action in _TEXT_ACTIONS else None,
        )
        draft.missing = _missing(draft, action)
        return draft


def _vk_anchors(msg: ParsedMessage) -> list[Anchor]:
    """The message's links to VK, cleaned (worked out once: match() and parse() both read them)."""

    def compute(msg: ParsedMessage) -> list[Anchor]:
        return [a for a in anchors(msg, clean_vk_url) if in_domains(path_and_query(a.href)[0], LINK_HOSTS)]

    return list(msg.derived("vk.anchors", compute))


def _without_quoted(text: str) -> str:
    """The text without «quoted» names: a community called «Новости» must not read as a news mail."""
    return _QUOTED.sub(" ", text)


def _community_names(subject: str) -> set[str]:
    return {match.group(1).strip() for match in _QUOTED.finditer(subject)}


def _action_of(text: str) -> str | None:
    for action, pattern in _ACTIONS:
        if pattern.search(text):
            return action
    return None


def _action_from_links(links: list[Anchor]) -> str | None:
    kinds = [_kind(anchor.href) for anchor in links]
    if "thread" in kinds:
        return "reply"
    if "comment" in kinds or "product" in kinds:
        return "comment"
    if "dialog" in kinds:
        return "message"
    return None


def _kind(url: str) -> str | None:
    _, path, query = path_and_query(url)
    if _DIALOG.match(path) and query.get("sel"):
        return "dialog"
    if _PRODUCT_PARAM.match(query.get("w", "")) or _PRODUCT_PATH.match(path):
        return "product"
    if _POST.match(path) or query.get("w", "").startswith("wall"):
        if query.get("reply") and query.get("thread"):
            return "thread"
        return "comment" if query.get("reply") else "post"
    if _is_profile(path):
        return "profile"
    return None


def _is_profile(path: str) -> bool:
    match = _PROFILE.match(path)
    return bool(match) and not _NOT_PROFILE.match(match.group(1))


def _author(links: list[Anchor], community: set[str]) -> _Author:
    """The person: the profile link around an avatar (with the name from its twin text link), else the first one."""
    profiles = [a for a in links if _kind(a.href) == "profile" and not _is_community(a, community)]
    for anchor in profiles:
        if anchor.image:
            name = next((b.text for b in profiles if b.href == anchor.href and b.text and not b.image), None)
            return _Author(_name(name or anchor.image_alt), anchor.href, _avatar(anchor.image))
    for anchor in profiles:
        if anchor.text:
            photo = next((b.image for b in profiles if b.href == anchor.href and b.image), None)
            return _Author(_name(anchor.text), anchor.href, _avatar(photo))
    return _Author(None, None, None)


def _is_community(anchor: Anchor, community: set[str]) -> bool:
    label = strip_quoted(anchor.text or anchor.image_alt or "")
    return bool(label) and (label in community or anchor.text.strip().startswith(("«", "“", '"')))


def _name(value: str | None) -> str | None:
    value = " ".join((value or "").split())
    return value or None


def _avatar(src: str | None) -> str | None:
    if not is_usable_image(src) or _DEFAULT_AVATAR.search(src or ""):
        return None
    return src


def _product(links: list[Anchor]) -> Anchor | None:
    products = [a for a in links if _kind(a.href) == "product"]
    if not products:
        return None
    for anchor in products:
        name = strip_quoted(anchor.text)
        if name and not _GENERIC_PRODUCT_TEXT.match(name):
            return Anchor(text=name, href=products[0].href)
    alt = next((a.image_alt for a in products if a.image_alt), None)
    return Anchor(text=strip_quoted(alt or ""), href=products[0].href)


def _source(action: str, links: list[Anchor], author: _Author) -> str | None:
    """The link to the exact place the event happened."""
    by_kind: dict[str, list[str]] = {}
    for anchor in links:
        kind = _kind(anchor.href)
        if kind:
            by_kind.setdefault(kind, []).append(anchor.href)

    def first(*kinds: str) -> str | None:
        for kind in kinds:
            if by_kind.get(kind):
                return by_kind[kind][0]
        return None

    if action == "message":
        return first("dialog", "comment", "post")
    if action == "subscription":
        return author.url or first("dialog")
    if action == "repost":
        own = [url for url in by_kind.get("post", []) if _OWN_WALL.match(path_and_query(url)[1])]
        return own[0] if own else first("post")
    if action in ("like", "request", "mention"):
        return first("post", "product", "comment")
    if action == "reply":
        return first("thread", "comment", "product", "post")
    return first("comment", "thread", "product", "post")


def _missing(draft: CardDraft, action: str) -> list[str]:
    missing = []
    if action in _TEXT_ACTIONS and not draft.text:
        missing.append("text")
    for field in ("author_name", "author_url", "author_photo_url", "source_url"):
        if getattr(draft, field) is None:
            missing.append(field)
    if draft.product_url and not draft.product:
        missing.append("product")
    return missing
