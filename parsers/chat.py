"""Web-chat offline / missed-chat mails (JivoChat, tawk.to, Chatra, Tidio, Chaport) become "message" cards."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from interestd.card import CardDraft, normalise_email
from interestd.dates import parse_human_date
from interestd.errors import ParseError
from interestd.message import ParsedMessage

# The vendors' layouts are proprietary and change, so the parser does not depend on one: it recognises the vendor by
# the sender's domain, then reads "Label: value" lines (or label and value table cells) with a Russian/English label
# dictionary. The visitor's words come from the "Message" field, or — in transcript-style mails such as Chatra's
# "[Visitor] (new)" — from the visitor's own turns only, never the operator's or bot's greeting.

_VENDOR_DOMAINS = re.compile(
    r"(?:^|\.)(?:jivo\.ru|jivosite\.ru|jivosite\.com|jivochat\.com|jivochat\.ru|tawk\.to|chatra\.io|chatra\.com"
    r"|tidio\.com|tidio\.net|tidiomail\.com|chaport\.com)$",
    re.IGNORECASE,
)
# Where the operator apps live: a link there is the conversation itself.
_APP_HOSTS = re.compile(
    r"^(?:app\.jivosite\.com|app\.jivo\.ru|app\.jivochat\.com|admin\.jivosite\.ru|dashboard\.tawk\.to|app\.chatra\.io"
    r"|app\.chatra\.com|www\.tidio\.com|panel\.tidio\.com|app\.chaport\.com)$",
    re.IGNORECASE,
)
_NOT_CONVERSATION = re.compile(r"/(?:settings|unsubscribe|notifications|reports?|billing|account|pricing)\b", re.I)
_MESSAGE_MAIL = re.compile(
    r"offline|missed|new message|new chat|unread|unanswered|message from|new ticket|сообщени|офлайн|оффлайн"
    r"|пропущенн|новый (?:чат|диалог)|обращени|\(new\)",
    re.IGNORECASE,
)
_NOT_MESSAGE_MAIL = re.compile(
    r"invoice|receipt|payment|billing|subscription|trial|report|statistic|digest|newsletter|webinar|password"
    r"|сч[её]т|оплат|тариф|отч[её]т|статистик|вебинар|пробн\w+ период|подписк|дайджест|новост|пароль",
    re.IGNORECASE,
)
# Labels the vendors (and their Russian localisations) put before the visitor's fields, "|"-separated.
_LABELS: dict[str, tuple[str, ...]] = {
    canonical: tuple(labels.split("|"))
    for canonical, labels in {
        "name": "имя|ваше имя|имя посетителя|имя клиента|посетитель|клиент|name|your name|visitor|visitor name"
        "|full name",
        "email": "e-mail|email|почта|эл. почта|электронная почта|email address|visitor email",
        "phone": "телефон|тел.|номер телефона|phone|phone number|mobile",
        "message": "сообщение|текст сообщения|вопрос|текст|message|offline message|question",
        "page": "страница|адрес страницы|страница сайта|со страницы|page|page url|url|current page|visited page"
        "|website page",
        "time": "время|дата|дата и время|time|date|sent at",
        # Fields that only end a message block.
        "other": "город|страна|местоположение|регион|ip|ip-адрес|браузер|устройство|ос|источник|канал|location|city"
        "|country|visitor ip|ip address|browser|device|os|source|referrer|channel|visitor info"
        "|информация о посетителе|утм-метки|utm",
    }.items()
}
_LABEL_OF = {label: canonical for canonical, labels in _LABELS.items() for label in labels}
_LABEL_LINE = re.compile(r"^\s*(?P<label>[^:\t]{1,40}?)\s*(?::|\t)\s*(?P<value>.*)$")
_FOOTER = re.compile(
    r"^(?:Ответить|Reply|Open chat|Open conversation|Открыть (?:диалог|чат)|Перейти (?:к диалогу|в чат|в диалог)"
    r"|View (?:conversation|message|chat)|Go to (?:conversation|a dialog page|dialog)|Вы получили это письмо"
    r"|You (?:have )?received this|Это письмо|This email|--\s*$)",
    re.IGNORECASE,
)
_REPLY_LINK = re.compile(
    r"^(?:Ответить|Reply|Open chat|Open conversation|Открыть (?:диалог|чат)|Перейти (?:к диалогу|в чат|в диалог)"
    r"|View (?:conversation|message|chat)|Go to (?:conversation|a dialog page|dialog)|Answer)",
    re.IGNORECASE,
)
_CHATRA_VISITOR = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*\(new\)\s*$", re.MULTILINE)
_SPEAKER = re.compile(r"^(?P<who>[^:\t]{1,60}?),?\s+\(?(?P<time>\d{1,2}[:.]\d{2}(?:\s?[AaPp]\.?[Mm]\.?)?)\)?\s*$")
_CONTACT_FIELDS = frozenset({"name", "email", "phone"})
_VISITOR_WORDS = frozenset({"visitor", "посетитель", "клиент", "гость", "guest"})
_URL = re.compile(r"https?://[^\s<>\"']+")
_TRACKING = re.compile(
    r"^(?:utm_\w+|yclid|gclid|fbclid|_openstat|from_email|mc_[ce]id|_hsenc|_hsmi|roistat\w*)$", re.IGNORECASE
)


@dataclass
class _Fields:
    values: dict[str, str] = field(default_factory=dict)
    message: str | None = None


class ChatParser:
    name: ClassVar[str] = "chat"
    priority: ClassVar[int] = 80
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        domain = (msg.sender_email or "").rpartition("@")[2]
        if not _VENDOR_DOMAINS.search(domain):
            return False
        if _NOT_MESSAGE_MAIL.search(msg.subject):
            return False
        text = msg.text or ""
        if _CHATRA_VISITOR.search(text):
            return True
        fields = _labels_present(text)
        # A vendor's newsletter may speak of "messages" too: a visitor's own fields must be there as well.
        if "message" in fields:
            return True
        return bool(_MESSAGE_MAIL.search(msg.subject)) and bool(fields & _CONTACT_FIELDS or _reply_to_visitor(msg))

    def parse(self, msg: ParsedMessage) -> CardDraft:
        lines = (msg.text or "").replace("\r\n", "\n").split("\n")
        found = _read_fields(lines)
        name = found.values.get("name") or _chatra_visitor(msg.text or "") or _reply_to_name(msg)
        text = found.message or _visitor_turns(lines, name)
        email_address = _email(found.values.get("email")) or _reply_to_visitor(msg)
        phone = found.values.get("phone")
        source_url = _page_url(msg, found.values.get("page"))
        if not (text or name or email_address or phone):
            raise ParseError("a chat notification without the visitor's message, name or contacts")
        draft = CardDraft(
            source_type="chat",
            action="message",
            text=text or "",
            source_url=source_url,
            occurred_at=_occurred(msg, found.values.get("time")),
            author_name=name,
            author_email=email_address,
            author_phone=phone,
            reply_url=_conversation_link(msg),
        )
        for field_name, value in (("text", text), ("author_name", name), ("source_url", source_url)):
            if not value:
                draft.missing.append(field_name)
        if not (email_address or phone):
            draft.missing.append("author_email")
        return draft


def _label(text: str) -> str | None:
    return _LABEL_OF.get(re.sub(r"\s+", " ", text.strip(" *•-:\t")).lower())


def _labels_present(text: str) -> set[str]:
    return {label for label in (_field_at(line)[0] for line in text.split("\n")) if label}


def _field_at(line: str) -> tuple[str | None, str]:
    """(canonical label, value) of a "Label: value" / "Label<TAB>value" / bare "Label" line, else (None, "")."""
    bare = _label(line)
    if bare:
        return bare, ""
    match = _LABEL_LINE.match(line)
    if match and not match.group("label").lower().startswith("http"):
        canonical = _label(match.group("label"))
        if canonical:
            return canonical, match.group("value").strip()
    return None, ""


def _read_fields(lines: list[str]) -> _Fields:
    found = _Fields()
    index = 0
    while index < len(lines):
        canonical, value = _field_at(lines[index])
        index += 1
        if canonical is None or canonical == "other":
            continue
        if canonical == "message":
            block, index = _block(lines, index, value)
            found.message = found.message or block
            continue
        if not value:
            while index < len(lines) and not lines[index].strip():
                index += 1
            if index < len(lines) and _field_at(lines[index])[0] is None:
                value = lines[index].strip()
                index += 1
        if value and canonical not in found.values:
            found.values[canonical] = value
    return found


def _block(lines: list[str], index: int, first: str) -> tuple[str | None, int]:
    """A message's lines: up to the next known label, a footer or button line."""
    collected = [first] if first else []
    while index < len(lines):
        line = lines[index].strip()
        if _field_at(line)[0] is not None or _FOOTER.match(line):
            break
        collected.append(line)
        index += 1
    text = "\n".join(collected).strip()
    return text or None, index


def _chatra_visitor(text: str) -> str | None:
    match = _CHATRA_VISITOR.search(text)
    return match.group("name").strip() if match else None


def _visitor_turns(lines: list[str], visitor: str | None) -> str | None:
    """In a transcript ("Name, 9:03 AM" then the words), the visitor's own turns, joined."""
    turns: list[str] = []
    speaker: str | None = None
    for raw in lines:
        line = raw.strip()
        match = _SPEAKER.match(line)
        if match:
            speaker = match.group("who").strip()
            continue
        if not line or _field_at(line)[0] is not None or _FOOTER.match(line) or _CHATRA_VISITOR.match(line):
            if line:
                speaker = None
            continue
        if speaker and (speaker == visitor or speaker.lower() in _VISITOR_WORDS):
            turns.append(line)
    return "\n".join(turns) or None


def _email(value: str | None) -> str | None:
    if not value:
        return None
    match = re.search(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", value)
    return match.group(0) if match else None


def _reply_to_visitor(msg: ParsedMessage) -> str | None:
    """Tidio and others put the visitor in Reply-To; a vendor relay or robot address is not the visitor."""
    for address in msg.reply_to:
        candidate = address.email or ""
        domain = candidate.rpartition("@")[2]
        if normalise_email(candidate) and not _VENDOR_DOMAINS.search(domain):
            return candidate
    return None


def _reply_to_name(msg: ParsedMessage) -> str | None:
    visitor = _reply_to_visitor(msg)
    for address in msg.reply_to:
        if visitor and address.email == visitor and address.name and "@" not in address.name:
            return address.name
    return None


def _page_url(msg: ParsedMessage, value: str | None) -> str | None:
    """The page field: a URL as written, or the link whose text is the page title shown in the mail."""
    if not value:
        return None
    url = _URL.search(value)
    if url:
        return strip_tracking(url.group(0))
    for link in msg.links:
        if link.text.strip() == value.strip() and link.href.startswith(("http://", "https://")):
            return strip_tracking(link.href)
    return None


def _conversation_link(msg: ParsedMessage) -> str | None:
    for link in msg.links:
        href = link.href.strip()
        if not href.startswith(("http://", "https://")):
            continue
        parts = urlsplit(href)
        if _NOT_CONVERSATION.search(f"{parts.path}#{parts.fragment}"):
            continue
        if _REPLY_LINK.match(link.text.strip()) or _APP_HOSTS.match(parts.hostname or ""):
            return strip_tracking(href)
    return None


def _occurred(msg: ParsedMessage, value: str | None) -> datetime | None:
    if value:
        found = parse_human_date(value, reference=msg.date)  # the body's times are in the Date header's zone
        if found is not None:
            return found
    return msg.date


def strip_tracking(url: str) -> str:
    """The URL without advertising and mail-tracking parameters; the fragment (an app's route) is kept."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(key)]
    return urlunsplit(parts._replace(query=urlencode(kept, safe=":/,")))
