"""Inline forwards: the "Forwarded message" block a mail client writes into the body, read back as a message."""

from __future__ import annotations

import email.utils
import re
from typing import TYPE_CHECKING

from interestd.dates import parse_human_date

if TYPE_CHECKING:
    from interestd.message import ParsedMessage

_FORWARD_MARKER = re.compile(
    r"^[ \t>]*[-=_]{2,}\s*(?:Forwarded message|Forwarded Message|Пересылаемое сообщение|Перенаправленное сообщение"
    r"|Переадресованное сообщение|Пересланное сообщение|Message transféré|Weitergeleitete Nachricht)\s*[-=_]*\s*$"
    r"|^[ \t>]*(?:Begin forwarded message|Начало переадресованного сообщения|Начало пересылаемого сообщения)\s*:\s*$",
    re.IGNORECASE | re.MULTILINE,
)
# Outlook writes the same block for replies and forwards: it counts only when the subject says forward.
_ORIGINAL_MARKER = re.compile(
    r"^[ \t>]*(?:-{3,}\s*(?:Original Message|Исходное сообщение)\s*-{3,}|_{10,})\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_FORWARD_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:fwd?|fw|пересл|переслано|перес|tr|wg)\s*(?:\[\d+\])?\s*:", re.IGNORECASE
)
_END_MARKER = re.compile(
    r"^[ \t>]*-{2,}\s*(?:End forwarded message|Конец пересылаемого сообщения|Конец перенаправленного сообщения)"
    r"\s*-{2,}\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_FIELDS = {
    "from": "from",
    "от": "from",
    "от кого": "from",
    "отправитель": "from",
    "sender": "from",
    "date": "date",
    "sent": "date",
    "дата": "date",
    "отправлено": "date",
    "время": "date",
    "subject": "subject",
    "тема": "subject",
    "to": "to",
    "кому": "to",
    "cc": "cc",
    "копия": "cc",
    "reply-to": "reply-to",
    "ответить": "reply-to",
}
_FIELD_LINE = re.compile(r"^[ \t>]*\*?(?P<key>[A-Za-zА-Яа-яёЁ][A-Za-zА-Яа-яёЁ -]{0,15}?)\*?\s*:\*?\s*(?P<value>.*)$")
# Yandex Mail: `20.11.2026, 10:15, "ВКонтакте" <admin@notify.vk.com>:`
_YANDEX_LINE = re.compile(r"^[ \t>]*(?P<date>\d{1,2}\.\d{1,2}\.\d{4},?\s+\d{1,2}:\d{2}),?\s+(?P<from>.+?):\s*$")
_MAILTO_BRACKET = re.compile(r"\[mailto:([^\]]+)\]", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*(?:(?:fwd?|fw|пересл|переслано|tr|wg)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def inline_forward(message: ParsedMessage) -> ParsedMessage | None:
    """The message forwarded inline in `message`'s body, or None when the body holds no forward block."""
    from interestd.message import Address, ParsedMessage

    body = message.text
    if not body:
        return None
    marker = _FORWARD_MARKER.search(body)
    if marker is None and _FORWARD_SUBJECT.match(message.subject):
        marker = _ORIGINAL_MARKER.search(body)
    if marker is None:
        return None
    lines = body[marker.end() :].lstrip("\r\n").split("\n")
    fields: dict[str, str] = {}
    consumed = 0
    for consumed, line in enumerate(lines):
        if not line.strip():
            if fields:
                break
            continue
        yandex = _YANDEX_LINE.match(line) if not fields else None
        if yandex:
            fields["date"], fields["from"] = yandex.group("date"), yandex.group("from")
            consumed += 1
            break
        match = _FIELD_LINE.match(line)
        key = _FIELDS.get(match.group("key").strip().lower()) if match else None
        if not match or key is None:
            if fields:
                break
            return None  # a marker not followed by the usual header lines: leave it alone
        fields.setdefault(key, match.group("value").strip())
    else:
        consumed = len(lines)
    if "from" not in fields:
        return None
    rest = "\n".join(lines[consumed:])
    end = _END_MARKER.search(rest)
    inner_text = (rest[: end.start()] if end else rest).strip()

    sender = _address(fields["from"], Address)
    reference = message.date
    date = parse_human_date(fields.get("date", ""), reference=reference) if fields.get("date") else None
    subject = fields.get("subject") or _FORWARD_PREFIX.sub("", message.subject)
    headers = tuple((name.title(), value) for name, value in fields.items())
    return ParsedMessage(
        message_id=None,
        subject=" ".join(subject.split()),
        sender=sender,
        reply_to=(),
        to=(),
        date=date,
        raw_headers=headers,
        plain=inner_text,
        html=message.html,
        attachments=message.attachments,
        defects=(),
        size=0,
        content_type="text/plain",
        _header_index=(index := {name.lower(): [value] for name, value in headers}),
        _decoded=dict(index),  # already text
    )


def _address(value: str, address_type: type) -> object:
    value = _MAILTO_BRACKET.sub(r"<\1>", value).replace("&lt;", "<").replace("&gt;", ">")
    name, addr = email.utils.parseaddr(value)
    if not addr or "@" not in addr:
        match = re.search(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", value)
        addr = match.group(0) if match else ""
        name = value.replace(addr, "").strip(" <>\"'") if addr else value.strip(" \"'")
    return address_type(name.strip(" \"'") or None, addr or None)
