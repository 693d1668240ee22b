"""ParsedMessage: one e-mail's decoded headers, body text, HTML, attachments and forwarded original, from raw bytes.

Built on the standard library's `email` parser (compat32 policy: tolerant and fast) with our own charset
handling, because notification mail is often mislabelled (cp1251 declared as latin-1, KOI8-R headers in
8-bit, UTF-8 declared as cp1251) and the stock decoders either fail or produce mojibake there.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import quopri
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, TypeVar

from interestd import mime
from interestd.charsets import decode_bytes
from interestd.htmltext import Link, html_to_text, links_of, parse_html, tree_to_text
from interestd.mime import MAX_DEPTH, MAX_PARTS

T = TypeVar("T")

MAX_ATTACHMENT_KEEP = 10 * 1024 * 1024  # bytes of one attachment kept in memory for proof images

_ENCODED_WORD = re.compile(r"=\?([^?\s]+?)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")
_FOLDING = re.compile(r"\r?\n[ \t]+")
_ANGLE_ID = re.compile(r"<([^<>\s]+)>")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MESSAGE_ID_FIELD = re.compile(rb"(?i)message-id[ \t]*:[ \t]*((?:.*)(?:\r?\n[ \t]+.*)*)")


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox from an address header: display name (decoded) and the address itself."""

    name: str | None
    email: str | None

    def __str__(self) -> str:
        if self.name and self.email:
            return f"{self.name} <{self.email}>"
        return self.email or self.name or ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A non-body MIME part: file name, type and (up to MAX_ATTACHMENT_KEEP) its decoded bytes."""

    filename: str | None
    content_type: str
    size: int
    data: bytes
    content_id: str | None = None


@dataclass(frozen=True)
class ParsedMessage:
    """Everything parsers and classifiers read from one e-mail; pure data, built by parse_raw()."""

    message_id: str | None
    subject: str
    sender: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    date: datetime | None
    raw_headers: tuple[tuple[str, str], ...]  # as written in the message: see `headers` for decoded values
    plain: str | None
    html: str | None
    attachments: tuple[Attachment, ...] = ()
    forwarded: ParsedMessage | None = None
    defects: tuple[str, ...] = ()
    size: int = 0
    content_type: str = "text/plain"
    forward_kind: str | None = None  # "attached" | "inline" when this message forwards `forwarded`
    # Raw values by lower-case name, and those decoded so far: most headers (Received, DKIM-Signature ...) are
    # never read, so a value is decoded on first use.
    _header_index: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)
    _decoded: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)
    _derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def derived(self, key: str, compute: Callable[[ParsedMessage], T]) -> T:
        """`compute(self)`, worked out once per message: for what a parser reads both in match() and parse().
        (Parsers are pure functions of the message, so what they derive from it never changes.)"""
        if key not in self._derived:
            self._derived[key] = compute(self)
        return self._derived[key]  # type: ignore[no-any-return]

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), decoded; None when absent."""
        values = self._values(name.lower())
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        """Every value of a header (case-insensitive), decoded, in order."""
        return list(self._values(name.lower()))

    def headers_starting(self, prefix: str) -> list[tuple[str, str]]:
        """(name, decoded value) of the headers whose name starts with `prefix` (case-insensitive), in order."""
        prefix = prefix.lower()
        if not any(key.startswith(prefix) for key in self._header_index):
            return []
        return [(name, value) for name, value in self.headers if name.lower().startswith(prefix)]

    @cached_property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Every header as (name, decoded value), in the message's order."""
        taken: dict[str, int] = {}
        decoded = []
        for name, _ in self.raw_headers:
            key = name.lower()
            position = taken.get(key, 0)
            taken[key] = position + 1
            decoded.append((name, self._values(key)[position]))
        return tuple(decoded)

    def _values(self, key: str) -> list[str]:
        values = self._decoded.get(key)
        if values is None:
            values = self._decoded[key] = [decode_header(value) for value in self._header_index.get(key, ())]
        return values

    @property
    def sender_email(self) -> str | None:
        return self.sender.email.lower() if self.sender and self.sender.email else None

    @cached_property
    def html_tree(self) -> Any | None:
        """The parsed HTML body (lxml), built once on first use."""
        return parse_html(self.html) if self.html else None

    @cached_property
    def html_text(self) -> str:
        """Readable text of the HTML body ("" when there is none)."""
        tree = self.html_tree
        return tree_to_text(tree) if tree is not None else ""

    @cached_property
    def text(self) -> str:
        """The best body text: the plain part, or the HTML's text when the plain part is missing or a stub."""
        plain = (self.plain or "").strip()
        if self.html and (not plain or _looks_like_stub(plain)):
            return self.html_text
        return plain

    @cached_property
    def links(self) -> tuple[Link, ...]:
        """Links of the HTML body, or the bare URLs of the plain body when there is no HTML."""
        if self.html_tree is not None:
            return links_of(self.html_tree)
        return tuple(Link(text=url, href=url) for url in re.findall(r"https?://[^\s<>\"')\]]+", self.plain or ""))

    @property
    def original(self) -> ParsedMessage:
        """The message that counts: the forwarded original (followed to the end), else this one."""
        message = self
        while message.forwarded is not None:
            message = message.forwarded
        return message

    @property
    def images(self) -> tuple[Attachment, ...]:
        return tuple(a for a in self.attachments if a.content_type.startswith("image/"))


def parse_raw(raw: bytes) -> ParsedMessage:
    """Parse raw RFC 5322 bytes into a ParsedMessage. Never raises for malformed mail; records defects instead."""
    return _from_part(mime.parse(raw), size=len(raw), depth=0)


def message_key(raw: bytes, message_id: str | None) -> tuple[str, str]:
    """(dedup key, content hash): the Message-ID when there is one, else a stable id made from the content."""
    digest = hashlib.sha256(raw).hexdigest()
    return (message_id or f"<sha256.{digest[:40]}@content.interestd>", digest)


def quick_message_id(raw: bytes) -> str | None:
    """The Message-ID of raw bytes, read from the header block only (cheap: for dedup before parsing)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = raw if end < 0 else raw[:end]
    # The field name is looked for in a lower-cased copy (memchr-fast), not by a case-insensitive pattern
    # tried at every position of the header block: the poll runs this on every message it fetches.
    lowered = head.lower()
    position = lowered.find(b"message-id")
    while position >= 0:
        if position == 0 or lowered[position - 1] == 0x0A:  # at the start of a line
            match = _MESSAGE_ID_FIELD.match(head, position)
            if match:
                return normalise_message_id(match.group(1).decode("ascii", "replace"))
        position = lowered.find(b"message-id", position + 1)
    return None


def normalise_message_id(value: str | None) -> str | None:
    if not value:
        return None
    value = _FOLDING.sub(" ", value).strip()
    match = _ANGLE_ID.search(value)
    if match:
        value = f"<{match.group(1)}>"
    elif value:
        value = f"<{value.split()[0].strip('<>')}>"
    value = _CONTROL_CHARS.sub("", value)
    return value[:900] if len(value) > 2 else None


def _from_part(message: mime.Part, *, size: int, depth: int) -> ParsedMessage:
    defects: list[str] = list(message.defects)
    index = message.header_index()

    body = _Body()
    _collect(message, body, depth=depth, defects=defects)

    subject = _first(index, "subject")
    dates = index.get("date")
    date = _parse_date(dates[0] if dates else None, defects)
    message_id = _first(index, "message-id")
    parsed = ParsedMessage(
        message_id=normalise_message_id(decode_header(message_id) if message_id else None),
        subject=_single_line(decode_header(subject)) if subject else "",
        sender=_first_address(index, "from"),
        reply_to=_addresses(index, "reply-to"),
        to=_addresses(index, "to") + _addresses(index, "cc"),
        date=date,
        raw_headers=tuple(message.headers),
        plain="\n\n".join(body.plain) if body.plain else None,
        html="\n".join(body.html) if body.html else None,
        attachments=tuple(body.attachments),
        forwarded=body.forwarded,
        defects=tuple(defects),
        size=size,
        content_type=message.content_type,
        forward_kind="attached" if body.forwarded is not None else None,
        _header_index=index,
    )
    if parsed.forwarded is None and depth < MAX_DEPTH:
        from interestd.forwards import inline_forward

        inner = inline_forward(parsed)
        if inner is not None:
            object.__setattr__(parsed, "forwarded", inner)
            object.__setattr__(parsed, "forward_kind", "inline")
    return parsed


@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    forwarded: ParsedMessage | None = None
    parts_seen: int = 0


def _collect(root: mime.Part, body: _Body, *, depth: int, defects: list[str]) -> None:
    # An explicit stack instead of recursion: hostile mail nests multiparts hundreds deep.
    stack: list[tuple[mime.Part, int]] = [(root, depth)]
    while stack:
        part, level = stack.pop()
        body.parts_seen += 1
        if body.parts_seen > MAX_PARTS:
            defects.append("TooManyParts")
            return
        if part is not root:
            defects.extend(d for d in part.defects if d not in defects)
        content_type = part.content_type
        if part.multipart:
            if level >= MAX_DEPTH:
                defects.append("NestedTooDeep")
                continue
            children = part.children
            if content_type == "message/rfc822":
                inner = children[0] if children else None
                if inner is not None and body.forwarded is None and level + 1 < MAX_DEPTH:
                    body.forwarded = _from_part(inner, size=0, depth=level + 1)
                elif inner is not None:
                    defects.append("NestedTooDeep" if level + 1 >= MAX_DEPTH else "ExtraAttachedMessage")
                continue
            if content_type == "multipart/alternative":
                # Prefer each kind once; alternatives are the same content in other forms.
                children = _alternatives(children)
            stack.extend((child, level + 1) for child in reversed(children))
            continue
        if "NestedTooDeep" in part.defects and (
            content_type.startswith("multipart/") or content_type == "message/rfc822"
        ):
            continue  # left unparsed at the depth limit: its contents are ignored, as the defect says
        filename = _filename(part)
        is_body_text = content_type in ("text/plain", "text/html") and part.disposition != "attachment" and not filename
        if is_body_text:
            text = decode_bytes(_payload_bytes(part, defects), part.params.get("charset") or None)
            if content_type == "text/plain" and part.params.get("format", "").lower() == "flowed":
                text = unflow(text, delete_space=part.params.get("delsp", "").lower() == "yes")
            (body.plain if content_type == "text/plain" else body.html).append(text)
        elif content_type == "text/rfc822-headers" or content_type.startswith("message/"):
            raw = part.body if content_type == "message/rfc822" else _payload_bytes(part, defects)
            body.attachments.append(Attachment(filename, content_type, len(raw), raw[:MAX_ATTACHMENT_KEEP]))
        else:
            data = _payload_bytes(part, defects)
            content_id = part.get("Content-ID")
            body.attachments.append(
                Attachment(
                    filename=filename,
                    content_type=content_type,
                    size=len(data),
                    data=data[:MAX_ATTACHMENT_KEEP],
                    content_id=content_id.strip(" <>") if content_id else None,
                )
            )


def _alternatives(children: list[mime.Part]) -> list[mime.Part]:
    chosen: dict[str, mime.Part] = {}
    others = []
    for child in children:
        kind = child.content_type
        if kind in ("text/plain", "text/html"):
            chosen.setdefault(kind, child)
        elif child.multipart:
            # multipart/related wrapping the HTML counts as the HTML alternative.
            others.append(child)
    return list(chosen.values()) + others


def _payload_bytes(part: mime.Part, defects: list[str]) -> bytes:
    """The decoded bytes of a leaf part (base64 / quoted-printable undone, leniently; 8-bit bytes as they came)."""
    data = part.payload()
    for name in part.defects:
        if name not in defects:
            defects.append(name)
    return data


def unflow(text: str, *, delete_space: bool = False) -> str:
    """Undo format=flowed (RFC 3676): lines ending in a space continue on the next line of the same quote depth."""
    out: list[str] = []
    current: str | None = None
    current_depth = 0
    for raw_line in text.replace("\r\n", "\n").split("\n"):
        depth = len(raw_line) - len(raw_line.lstrip(">"))
        line = raw_line[depth:]
        if line.startswith(" "):  # space-stuffing
            line = line[1:]
        if current is not None and depth != current_depth:
            out.append(">" * current_depth + current)
            current = None
        flowed = line.endswith(" ") and line.rstrip() != "--"
        if flowed and delete_space:
            line = line[:-1]
        current = line if current is None else current + line
        current_depth = depth
        if not flowed:
            out.append(">" * depth + current)
            current = None
    if current is not None:
        out.append(">" * current_depth + current)
    return "\n".join(out)


def _filename(part: mime.Part) -> str | None:
    name = part.filename
    return decode_header(name) if name else None


def decode_header(value: str) -> str:
    """Decode a raw header value: RFC 2047 words (joined across adjacent words) and raw 8-bit text."""
    if "\n" not in value and "\r" not in value and "=?" not in value and value.isascii():
        return value  # most header values: plain ASCII on one line
    value = _FOLDING.sub(" ", value).replace("\r", "").replace("\n", " ")
    if "=?" not in value:
        return _decode_raw(value)
    out: list[str] = []
    position = 0
    pending: list[tuple[str, bytes]] = []  # adjacent encoded words waiting to be decoded together

    def flush() -> None:
        if not pending:
            return
        groups: list[tuple[str, bytearray]] = []
        for charset, data in pending:
            if groups and groups[-1][0] == charset:
                groups[-1][1].extend(data)
            else:
                groups.append((charset, bytearray(data)))
        out.extend(decode_bytes(bytes(data), charset) for charset, data in groups)
        pending.clear()

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        if between and not (pending and between.isspace()):
            flush()
            out.append(_decode_raw(between))
        charset, kind, encoded = match.group(1).lower(), match.group(2).upper(), match.group(3)
        try:
            if kind == "B":
                data = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
            else:
                data = quopri.decodestring(encoded.replace("_", " ").encode("ascii", "surrogateescape"), header=False)
        except (ValueError, binascii.Error):
            flush()
            out.append(match.group(0))
        else:
            pending.append((charset, data))
        position = match.end()
    flush()
    out.append(_decode_raw(value[position:]))
    return "".join(out)


def _decode_raw(value: str) -> str:
    if value.isascii():
        return value
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value  # already text
    return decode_bytes(raw, None)


def _single_line(value: str) -> str:
    return " ".join(value.split())


def _first(index: dict[str, list[str]], name: str) -> str | None:
    values = index.get(name)
    return values[0] if values else None


def _addresses(index: dict[str, list[str]], key: str) -> tuple[Address, ...]:
    raw_values = index.get(key)
    if not raw_values:
        return ()
    pairs = _simple_addresses(raw_values)
    if pairs is None:
        try:
            pairs = email.utils.getaddresses(raw_values)
        except Exception:
            return ()
    found = []
    for display, address in pairs:
        display_name = _single_line(decode_header(display)).strip(' "') or None
        address = _decode_raw(address).strip() or None
        if address and "@" not in address:
            address = None
        if display_name or address:
            found.append(Address(display_name, address))
    return tuple(found)


# One mailbox as most mail writes it: `addr@host`, `Name <addr@host>` or `"Name" <addr@host>`, with no comment,
# group, quoted comma or second address; anything else goes to the standard (slower, complete) parser.
_SIMPLE_ADDRESS = re.compile(r'\s*(?:"([^"\\,;:<>()]*)"|([^"\\,;:<>()@]*?))\s*<([^<>\s,;:()"\\]+@[^<>\s,;:()"\\]+)>\s*')
_BARE_ADDRESS = re.compile(r'\s*([^<>\s,;:()"\\]+@[^<>\s,;:()"\\]+)\s*')


def _simple_addresses(values: list[str]) -> list[tuple[str, str]] | None:
    found = []
    for value in values:
        value = _FOLDING.sub(" ", value)
        match = _SIMPLE_ADDRESS.fullmatch(value)
        if match:
            found.append(((match.group(1) if match.group(1) is not None else match.group(2)).strip(), match.group(3)))
            continue
        match = _BARE_ADDRESS.fullmatch(value)
        if not match:
            return None
        found.append(("", match.group(1)))
    return found


def _first_address(index: dict[str, list[str]], key: str) -> Address | None:
    found = _addresses(index, key)
    return found[0] if found else None


def _parse_date(value: Any, defects: list[str]) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(_FOLDING.sub(" ", value).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append("InvalidDateHeader")
        return None
    if parsed is None:
        return None
    # The sender's own offset is kept: times written in the body (forwards, notifications) are in that zone.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _looks_like_stub(plain: str) -> bool:
    """A plain part that only asks to view the HTML version (some senders add one for form's sake)."""
    if len(plain) > 300:
        return False
    lowered = plain.lower()
    return any(
        marker in lowered
        for marker in (
            "html",
            "view this email in your browser",
            "не поддерживает",
            "включите отображение",
            "to view this message",
            "this message requires",
        )
    )


def body_from_html(html: str) -> str:
    """Readable text of an HTML snippet (convenience for parsers)."""
    return html_to_text(html)
