"""The Telegram parser: messages and channel comments that a forwarding bot or userbot relays to the mailbox."""

from __future__ import annotations

import re
from datetime import datetime
from typing import ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from interestd.card import CardDraft
from interestd.dates import parse_human_date
from interestd.errors import ParseError
from interestd.extract import find_phones
from interestd.message import ParsedMessage

_SUBJECT_MARKERS = re.compile(
    r"^(?:(?:new\s+)?telegram message from\s+(?P<en_name>\S.*)"
    r"|(?:new\s+)?(?:message|comment) (?:in|from|via|on) (?:a\s+)?telegram\b.*"
    r"|(?:новое\s+)?сообщение (?:в|из|через) telegram\b(?:.*?\bот\s+(?P<ru_name>\S.*))?"
    r"|(?:новый\s+)?комментарий (?:в|из|к посту в) telegram.*"
    r"|\[telegram\].*)$",
    re.IGNORECASE,
)
_LABELS: dict[str, tuple[str, ...]] = {
    "name": ("from", "от", "от кого", "отправитель", "автор", "name", "имя", "sender", "author"),
    "username": ("username", "user name", "имя пользователя", "логин", "ник", "никнейм", "юзернейм", "telegram"),
    "user_id": ("user id", "id", "id пользователя", "from id", "telegram id"),
    "chat": ("chat", "чат", "канал", "channel", "группа", "group", "диалог", "источник", "source"),
    "date": ("date", "дата", "время", "time", "дата и время"),
    "link": ("link", "ссылка", "message link", "ссылка на сообщение", "пост", "post", "публикация", "url"),
    "reply": ("reply", "ответить", "ответить в обсуждении", "ответить в telegram", "reply in telegram", "ответ"),
    "text": ("text", "message", "сообщение", "текст", "текст сообщения", "комментарий", "comment"),
    "phone": ("phone", "phone number", "телефон"),
}
_LOOKUP = {label: canonical for canonical, labels in _LABELS.items() for label in labels}
_LABEL_LINE = re.compile(r"^(?P<label>[A-Za-zА-Яа-яёЁ][A-Za-zА-Яа-яёЁ .\-]{0,30}?)\s*:\s*(?P<value>.*)$")
_ORIGINAL = re.compile(r"^-{3,}\s*original message\s*-{3,}$", re.IGNORECASE)
_FOOTER = re.compile(
    r"^(?:--\s*|_{3,}|письмо отправлено.*|это письмо.*|this (?:e-?mail|message) was sent.*|sent by .*|"
    r"отправлено ботом.*)$",
    re.IGNORECASE,
)
_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")
_NAME_WITH_USER = re.compile(r"^(?P<name>.*?)[\s,]*\(?@(?P<user>[A-Za-z][A-Za-z0-9_]{3,31})\)?$")
_TME_PROFILE = re.compile(r"^(?:https?://)?(?:t\.me|telegram\.me)/(?P<user>[A-Za-z][A-Za-z0-9_]{3,31})/?$")
_TME_MESSAGE = re.compile(
    r"https?://(?:t\.me|telegram\.me)/(?:c/\d+|[A-Za-z][A-Za-z0-9_]{3,31})/\d+(?:/\d+)?(?:\?[^\s<>\"'»)]*)?"
)
_COMMENT_WORDS = re.compile(r"коммент|обсужден|comment|discussion", re.IGNORECASE)
_KEEP_QUERY = ("comment", "thread", "single")


class TelegramParser:
    """Telegram messages relayed by mail-forwarding bots; Telegram itself sends no notification mail.

    Shapes read (recognised by the subject or by X-Telegram-* headers, never by the mere word "Telegram"):
    - the Telethon "Telegram → Gmail forwarder": subject "Telegram message from <Name>", body "From:",
      "Username: @…", "Date: <ISO 8601>", a blank line, then the text (or "---- Original message ----" and the text);
    - bots writing "label: value" lines in Russian or English ("От:", "Username:", "Чат:", "Дата:", "Сообщение:"),
      as plain text or an HTML table;
    - channel-comment forwarders: "Канал:", "Пост: https://t.me/<channel>/<id>", "Автор: Name (@user)",
      "Комментарий:", and a https://t.me/<channel>/<id>?comment=<id> link.
    """

    name: ClassVar[str] = "telegram"
    priority: ClassVar[int] = 90
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        if _telegram_headers(msg):
            return True
        if not _SUBJECT_MARKERS.match(msg.subject.strip()):
            return False
        fields, _ = _read_body(_lines(msg))
        return bool(fields) or bool(_TME_MESSAGE.search(msg.text))

    def parse(self, msg: ParsedMessage) -> CardDraft:
        lines = _lines(msg)
        fields, text = _read_body(lines)
        headers = _telegram_headers(msg)
        name, username = _person(fields, headers, msg.subject)
        links = _links(fields, lines, headers)
        is_comment = bool(_COMMENT_WORDS.search(" ".join((msg.subject, fields.get("chat", ""))))) or any(
            "comment=" in link or "thread=" in link for link in links
        )
        source_url = _pick_link(links, prefer_comment=is_comment)
        profile = f"https://t.me/{username}" if username else None
        if not (text or name or username):
            raise ParseError("no sender and no text in the Telegram relay mail")
        phone = fields.get("phone") if find_phones(fields.get("phone", "")) else None
        if phone is None:
            phones = find_phones(text)
            phone = phones[0] if phones else None
        draft = CardDraft(
            source_type="telegram",
            action="comment" if is_comment else "message",
            text=text,
            source_url=source_url,
            occurred_at=_when(fields.get("date"), msg),
            author_name=name or (f"@{username}" if username else None),
            author_url=profile,
            author_phone=phone,
            reply_url=(source_url or profile) if is_comment else (profile or source_url),
        )
        draft.missing = [
            field
            for field, value in (
                ("author_name", draft.author_name),
                ("author_url", profile),
                ("text", text),
                ("source_url", source_url if is_comment else "n/a"),
            )
            if not value
        ]
        return draft


def _telegram_headers(msg: ParsedMessage) -> dict[str, str]:
    return {name.lower(): value.strip() for name, value in msg.headers_starting("x-telegram-")}


def _lines(msg: ParsedMessage) -> list[str]:
    body = msg.plain if msg.plain and msg.plain.strip() else msg.html_text
    return [line.replace("\t", " ").strip() for line in (body or "").split("\n")]


def _read_body(lines: list[str]) -> tuple[dict[str, str], str]:
    """The label fields and the free text of the relay mail."""
    fields: dict[str, str] = {}
    text: list[str] = []
    preamble: list[str] = []  # lines above the first label: a title, or the whole text when there are no labels
    state = "header"
    for line in lines:
        if _FOOTER.match(line):
            break
        if _ORIGINAL.match(line):
            text, state = [], "verbatim"
            continue
        if state == "verbatim":
            text.append(line)
            continue
        label = _LABEL_LINE.match(line)
        canonical = _LOOKUP.get(" ".join(label.group("label").lower().split())) if label else None
        value = label.group("value").strip() if label else ""
        if canonical in ("link", "reply") and state == "text" and value.startswith("http"):
            fields.setdefault(canonical, value)
            continue
        if canonical == "text" and not any(text):
            text, state = ([value] if value else []), "text"
            continue
        if state == "header" and canonical is not None:
            fields.setdefault(canonical, value)
            continue
        if state == "header" and not line:
            state = "text" if fields else "header"
            continue
        if state == "header" and not fields:
            preamble.append(line)
            continue
        state = "text"
        if line or text:
            text.append(line)
    if not fields and not any(text):
        text = preamble
    return fields, "\n".join(text).strip()


def _person(fields: dict[str, str], headers: dict[str, str], subject: str) -> tuple[str | None, str | None]:
    """(display name, username) from the From/Author line, the Username line, the headers, the subject."""
    name = fields.get("name", "").strip() or None
    username = _username(fields.get("username", "")) or _username(headers.get("x-telegram-username", ""))
    if name:
        combined = _NAME_WITH_USER.match(name)
        if combined:
            name = combined.group("name").strip(" ,—-") or None
            username = username or combined.group("user")
    if name is None:
        marker = _SUBJECT_MARKERS.match(subject.strip())
        name = (marker.group("en_name") or marker.group("ru_name")) if marker else None
        name = name.strip() if name else None
    if name and re.fullmatch(r"id:?\s*\d+", name):
        name = None  # the forwarder's stand-in when the sender has neither a name nor a username
    return name, username


def _username(value: str) -> str | None:
    value = value.strip()
    profile = _TME_PROFILE.match(value)
    if profile:
        return profile.group("user")
    value = value.lstrip("@")
    return value if _USERNAME.match(value) else None


def _links(fields: dict[str, str], lines: list[str], headers: dict[str, str]) -> list[str]:
    found = [fields.get("reply", ""), fields.get("link", ""), *lines]
    links = [_clean_tme(match.group(0)) for text in found for match in _TME_MESSAGE.finditer(text)]
    chat = headers.get("x-telegram-chat", "").lstrip("@")
    message_id = headers.get("x-telegram-message-id", "")
    if not links and _USERNAME.match(chat) and message_id.isdigit():
        links.append(f"https://t.me/{chat}/{message_id}")
    return list(dict.fromkeys(links))


def _clean_tme(url: str) -> str:
    parts = urlsplit(url.rstrip(".,;"))
    kept = [(key, value) for key, value in parse_qsl(parts.query) if key in _KEEP_QUERY]
    return f"https://t.me{parts.path}" + (f"?{urlencode(kept)}" if kept else "")


def _pick_link(links: list[str], *, prefer_comment: bool) -> str | None:
    if prefer_comment:
        for link in links:
            if "comment=" in link or "thread=" in link:
                return link
    return links[0] if links else None


def _when(value: str | None, msg: ParsedMessage) -> datetime | None:
    """The Date line: ISO 8601 with its own offset when given, else a local time in the zone of the Date header."""
    if value:
        try:
            stated = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            stated = None
        if stated is not None and stated.tzinfo is not None:
            return stated
        parsed = parse_human_date(value, reference=msg.date)
        if parsed is not None:
            return parsed
    return msg.date
