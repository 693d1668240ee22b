"""Pieces the VK and Odnoklassniki parsers share: cleaned links, the body's lines, and the person's words in them."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

import lxml.etree

from interestd.dates import parse_human_date
from interestd.extract import find_emails, find_phones
from interestd.htmltext import element_text, normalise_text
from interestd.message import ParsedMessage

# The marker a mail client writes above an inline forward, and the header lines that follow it.
_FORWARD_MARKER = re.compile(
    r"^[ \t>]*(?:[-=_]{2,}\s*(?:Forwarded message|Пересылаемое сообщение|Перенаправленное сообщение|"
    r"Переадресованное сообщение|Пересланное сообщение)\s*[-=_]*|Begin forwarded message:|"
    r"Начало переадресованного сообщения:|-{3,}\s*(?:Original Message|Исходное сообщение)\s*-{3,})\s*$",
    re.IGNORECASE,
)
_FORWARD_FIELD = re.compile(
    r"^\*?(?:from|to|cc|date|sent|subject|от|от кого|кому|копия|дата|отправлено|тема)\*?\s*:", re.IGNORECASE
)
# A line that only states when something happened: "сегодня в 10:15", "20 ноя в 10:15", "20.11.2026 10:14".
_DATE_LINE = re.compile(
    r"^(?:сегодня|вчера|today|yesterday|\d{1,2}\s+[A-Za-zА-Яа-яёЁ]{3,9}\.?(?:\s+\d{4})?(?:\s*г\.?)?"
    r"|[A-Za-z]{3,9}\.?\s+\d{1,2}(?:,\s*\d{4})?|\d{1,2}\.\d{1,2}\.\d{2,4})"
    r",?\s*(?:(?:в|at)\s*)?\d{1,2}:\d{2}(?:\s*[AaPp]\.?[Mm]\.?)?$",
    re.IGNORECASE,
)
_GMAIL_IMAGE_PROXY = re.compile(r"^https?://[a-z0-9-]+\.googleusercontent\.com/.*?#(https?://.+)$", re.IGNORECASE)
_PLAIN_LINK = re.compile(
    r"(?:(?P<label>[^\s<>][^<>\n]{0,80}?)\s*)?<(?P<url>https?://[^>\s]+)>|(?P<bare>https?://[^\s<>\"']+)"
)
_NAME_WORD = re.compile(r"^[A-ZА-ЯЁ][a-zа-яё'’.-]*(?:-[A-ZА-ЯЁ][a-zа-яё'’]*)?$")
_IMAGE_LABEL = re.compile(r"\[(?:image|изображение)\s*:([^\]]*)\]", re.IGNORECASE)
_LINK_MARKS = re.compile(r"\s*<(?:https?|mailto):[^<>\s]*>|\[(?:image|изображение)\s*:[^\]]*\]", re.IGNORECASE)
_IMAGES = lxml.etree.XPath(".//img[@src]")
# Hosts whose links wrap the real target (redirectors, auto-login links, Gmail's image proxy).
_WRAPPER_MARKS = ("away.php", "/login", "/dk", "google")


@dataclass(frozen=True, slots=True)
class Anchor:
    """A link of the notification: visible text, cleaned target and the image it wraps (an avatar, a product)."""

    text: str
    href: str
    image: str | None = None
    image_alt: str | None = None


def domain_of(address: str | None) -> str:
    return address.rsplit("@", 1)[-1].lower() if address and "@" in address else ""


def in_domains(domain: str, roots: Iterable[str]) -> bool:
    return any(domain == root or domain.endswith("." + root) for root in roots)


def unwrap(href: str) -> str:
    """The real target of a link: redirectors, auto-login links and Gmail's image proxy undone."""
    href = href.strip()
    if not any(mark in href for mark in _WRAPPER_MARKS):
        return href
    proxied = _GMAIL_IMAGE_PROXY.match(href)
    if proxied:
        return proxied.group(1)
    for _ in range(3):  # wrappers can nest (a Gmail redirect around vk.com/away.php)
        try:
            parts = urlsplit(href)
        except ValueError:
            return href
        host = (parts.hostname or "").lower()
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if host.endswith("vk.com") or host.endswith("vk.ru"):
            if parts.path == "/away.php" and query.get("to"):
                href = query["to"]
                continue
            if parts.path == "/login" and query.get("to"):
                href = _vk_login_target(parts.scheme, host, query["to"]) or href
                return href
        if host in ("ok.ru", "m.ok.ru", "odnoklassniki.ru") and parts.path == "/dk" and query.get("st.link"):
            href = query["st.link"]
            continue
        if host.endswith("google.com") and parts.path == "/url" and query.get("q"):
            href = query["q"]
            continue
        return href
    return href


def _vk_login_target(scheme: str, host: str, encoded: str) -> str | None:
    # vk.com/login?u=2&to=<base64 of the path>, with '-' standing in for the '=' padding.
    data = encoded.replace("-", "=")
    try:
        path = base64.b64decode(data + "=" * (-len(data) % 4), validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not path or any(ch.isspace() for ch in path):
        return None
    return f"{scheme or 'https'}://{host}/{path.lstrip('/')}"


def clean_url(href: str, keep: Callable[[str], bool]) -> str:
    """`href` unwrapped, with only the query parameters `keep` accepts and without the fragment."""
    url = unwrap(href)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme not in ("http", "https"):
        return url
    pairs = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if keep(key)]
    query = "&".join(f"{quote(key, safe='')}={quote(value, safe='-_.~')}" for key, value in pairs)
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path, query, ""))


@lru_cache(maxsize=1024)
def path_and_query(url: str) -> tuple[str, str, Mapping[str, str]]:
    """(host without "m."/"www.", path, query parameters) of a URL; memoised, as the parsers ask several times
    per link (so the parameters are read-only)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", "", MappingProxyType({})
    host = (parts.hostname or "").lower()
    for prefix in ("m.", "www."):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    return host, unquote(parts.path), MappingProxyType(dict(parse_qsl(parts.query, keep_blank_values=True)))


def anchors(msg: ParsedMessage, clean: Callable[[str], str]) -> list[Anchor]:
    """Every link of the message, cleaned; from the HTML when there is some, else from the plain text."""
    tree = msg.html_tree
    if tree is not None:
        return [_html_anchor(element, clean) for element in tree.iter("a") if element.get("href")]
    found = []
    for match in _PLAIN_LINK.finditer(msg.plain or ""):
        url = match.group("url") or match.group("bare")
        label = (match.group("label") or "").strip(" :-–—\t")
        image = _IMAGE_LABEL.fullmatch(label)
        if image:
            found.append(Anchor(text="", href=clean(url), image_alt=image.group(1).strip() or None))
        else:
            found.append(Anchor(text=label, href=clean(url)))
    return found


def _html_anchor(element: Any, clean: Callable[[str], str]) -> Anchor:
    text = normalise_text(element_text(element)).replace("\n", " ")
    images = _IMAGES(element)
    src = unwrap(images[0].get("src")) if images else None
    alt = (images[0].get("alt") or "").strip() or None if images else None
    return Anchor(text=text, href=clean(element.get("href")), image=src, image_alt=alt)


def body_lines(msg: ParsedMessage) -> list[str]:
    """The readable lines of the notification itself: for an inline forward, those after the forward header."""
    if msg.html_tree is not None:
        # The HTML's text leaves hidden blocks out (preheaders repeat the person's words before their name).
        lines = [line.strip() for line in msg.html_text.split("\n")]
    else:
        # A client's text rendering of HTML mail marks links "<https://…>" and images "[image: alt]".
        lines = [_LINK_MARKS.sub("", line).strip() for line in (msg.plain or msg.text).split("\n")]
    start = 0
    for index, line in enumerate(lines):
        if _FORWARD_MARKER.match(line):
            start = index + 1
    if start:
        while start < len(lines) and (not lines[start] or _FORWARD_FIELD.match(lines[start])):
            start += 1
    return [line for line in lines[start:] if line]


def date_of(line: str, reference: datetime | None) -> datetime | None:
    """The time a date-only line states, read in the zone of `reference`; None for any other line."""
    if len(line) > 48 or not _DATE_LINE.match(line):
        return None
    return parse_human_date(line, reference=reference)


def find_anchor_line(lines: list[str], name: str | None, headline: re.Pattern[str]) -> int | None:
    """Index of the line that introduces the person (their name, or failing that the action's headline)."""
    if name:
        named = [index for index, line in enumerate(lines) if name in line]
        with_verb = [index for index in named if headline.search(lines[index])]
        if with_verb or named:
            return (with_verb or named)[0]
    for index, line in enumerate(lines):
        if headline.search(line):
            return index
    return None


def name_before_verb(line: str, verb: re.Pattern[str]) -> str | None:
    """The person's name when a line reads "<Name> <verb> …" and no profile link named them."""
    match = verb.search(line)
    if not match:
        return None
    words = line[: match.start()].strip(" \t:—-").split()
    if 1 <= len(words) <= 4 and all(_NAME_WORD.match(word) for word in words):
        return " ".join(words)
    return None


@dataclass(frozen=True, slots=True)
class Words:
    """What the person wrote, and the time stated beside it (None when the body states none)."""

    text: str
    when: datetime | None


def words_after(
    lines: list[str],
    start: int,
    *,
    stop: re.Pattern[str],
    headline: re.Pattern[str],
    reference: datetime | None,
) -> Words:
    """The person's text: the lines after the introducing line and its date line, up to a stop."""
    following = lines[start + 1 :]
    when, begin = None, 0
    for index, line in enumerate(following[:3]):
        when = date_of(line, reference)
        if when is not None:
            # Words after the date: the lines before it are the headline wrapped. Else the words came first.
            after = following[index + 1] if index + 1 < len(following) else ""
            if index == 0 or (after and not stop.search(after)):
                begin = index + 1
            break
    collected: list[str] = []
    for offset, line in enumerate(following[begin:]):
        stamp = date_of(line, reference)
        if stamp is not None:
            when = when or stamp
            if collected:
                break
            continue
        if stop.search(line):
            if not collected and len(line) <= 25:
                continue  # a button ("Ответить") laid out beside the name, before the words
            break
        if offset == 0 and begin == 0 and len(line) <= 120 and headline.search(line):
            continue  # the verb line under a name-only line ("прокомментировала запись")
        collected.append(line)
    return Words(text=unquote_text("\n".join(collected)), when=when)


def date_near(lines: list[str], start: int, reference: datetime | None, span: int = 4) -> datetime | None:
    """A date line just after the introducing line (for like / new-member notices, which carry no text)."""
    for line in lines[start + 1 : start + 1 + span]:
        stamp = date_of(line, reference)
        if stamp is not None:
            return stamp
    return None


def unquote_text(text: str) -> str:
    """Text without the guillemets a template wraps it in («…»), when one pair really wraps the whole of it."""
    text = text.strip()
    if len(text) >= 2 and text[0] == "«" and text[-1] == "»" and _balanced(text[1:-1]):
        return text[1:-1].strip()
    return text


def _balanced(inner: str) -> bool:
    """Whether the «» inside are paired («Лён» in «…»), not the closing and opening of two quotes."""
    depth = 0
    for char in inner:
        depth += 1 if char == "«" else -1 if char == "»" else 0
        if depth < 0:
            return False
    return depth == 0


def strip_quoted(value: str) -> str:
    """A name without the one pair of quotes around it: «Уютный дом» → Уютный дом, «Плед «Облако»» → Плед «Облако»."""
    value = value.strip()
    if len(value) >= 2 and value[0] in '«“"' and value[-1] in '»”"' and _balanced(value[1:-1]):
        return value[1:-1].strip()
    return value


def is_usable_image(src: str | None) -> bool:
    return src is not None and src.lower().startswith(("http://", "https://"))


def contacts(text: str) -> tuple[str | None, str | None]:
    """(e-mail, phone) the person left in their own words, if any."""
    emails = find_emails(text)
    phones = find_phones(text)
    return (emails[0] if emails else None, phones[0] if phones else None)
