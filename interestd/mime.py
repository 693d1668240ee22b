"""MIME structure from raw bytes: header fields, multipart splitting, transfer decoding. Tolerant and fast.

The standard library's parser reads a message line by line in Python, so a notification with a 50 KB photo
costs it hundreds of lines of work for bytes nobody reads. Here boundaries are found with bytes.find, headers
are read once, and a part's body is decoded only when asked for. What it tolerates is what the standard
parser (compat32) tolerates: bare LF line ends, an mbox "From " line, a header block without the blank line
after it, a missing closing boundary, broken base64; each is recorded as a defect, none raises.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import quopri
import re
from dataclasses import dataclass, field

MAX_DEPTH = 20  # nested multiparts / attached messages followed; deeper parts are left as they are
MAX_PARTS = 500  # MIME parts looked at per message

_HEADER_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # printable ASCII but the colon (RFC 5322 field name)


@dataclass(slots=True)
class Part:
    """One MIME entity: its header fields (values as the compat32 policy gives them: the bytes read as ASCII
    with surrogate escapes, folding kept), its body bytes still transfer-encoded, and its children."""

    headers: list[tuple[str, str]]
    body: bytes
    children: list[Part] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    content_type: str = "text/plain"
    params: dict[str, str] = field(default_factory=dict)
    multipart: bool = False  # a multipart/* or message/rfc822 whose children were parsed
    _index: dict[str, list[str]] | None = None  # headers by lower-case name, built on first lookup

    def header_index(self) -> dict[str, list[str]]:
        """Raw header values by lower-case name, in order (built once; not to be changed by callers)."""
        index = self._index
        if index is None:
            index = self._index = {}
            for key, value in self.headers:
                index.setdefault(key.lower(), []).append(value)
        return index

    def get_all(self, name: str) -> list[str]:
        return self.header_index().get(name.lower(), [])

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def param(self, name: str, header: str = "Content-Type") -> str:
        """A parameter of a structured header (RFC 2231 continuations and charsets undone); "" when absent."""
        if header.lower() == "content-type":
            return self.params.get(name, "")
        value = self.get(header)
        return parameters(value)[1].get(name, "") if value else ""

    @property
    def disposition(self) -> str:
        value = self.get("Content-Disposition")
        return value.split(";", 1)[0].strip().lower() if value else ""

    @property
    def filename(self) -> str | None:
        return self.param("filename", "Content-Disposition") or self.params.get("name") or None

    def payload(self) -> bytes:
        """The body with its Content-Transfer-Encoding undone (leniently; problems become defects)."""
        encoding = (self.get("Content-Transfer-Encoding") or "").strip().lower()
        if encoding == "base64":
            return _base64(self.body, self.defects)
        if encoding == "quoted-printable":
            return quopri.decodestring(self.body)
        return self.body


def parse(raw: bytes, *, depth: int = 0) -> Part:
    """The MIME tree of a message (never raises for malformed input; parts beyond the limits stay leaves)."""
    budget = [MAX_PARTS]
    if b"\n" not in raw and b"\r" in raw:
        raw = raw.replace(b"\r", b"\r\n")  # old Mac line ends: bare CR only
    return _entity(raw, depth=depth, budget=budget, default_type="text/plain")


def _entity(raw: bytes, *, depth: int, budget: list[int], default_type: str) -> Part:
    budget[0] -= 1
    if raw.startswith(b"From ") and depth == 0:  # an mbox separator line, not a header
        end = raw.find(b"\n")
        raw = raw[end + 1 :] if end >= 0 else b""
    headers, body, defects = _split_headers(raw)
    part = Part(headers, body, defects=defects)
    kind, params = parameters(part.get("Content-Type") or "")
    if "/" not in kind or kind.count("/") != 1 or not all(kind.split("/")):
        if kind:
            part.defects.append("InvalidContentType")
        kind = default_type
    part.content_type, part.params = kind, params
    if kind.startswith("multipart/"):
        _split_multipart(part, depth=depth, budget=budget)
    elif kind == "message/rfc822":
        if depth + 1 >= MAX_DEPTH:
            part.defects.append("NestedTooDeep")
        elif budget[0] <= 0:
            part.defects.append("TooManyParts")
        else:
            # An attached message is (almost always) not transfer-encoded; when it is, decode it first.
            inner = (
                part.payload()
                if (part.get("Content-Transfer-Encoding") or "").strip().lower()
                in (
                    "base64",
                    "quoted-printable",
                )
                else part.body
            )
            part.children = [_entity(inner, depth=depth + 1, budget=budget, default_type="text/plain")]
            part.multipart = True
    return part


# A header field: its name, and its value without the blanks after the colon (continuation lines kept).
_FIELD = re.compile(r"([\x21-\x39\x3b-\x7e]+)[ \t]*:[ \t]*([^\n]*\n(?:[ \t][^\n]*\n)*)")
_FIELDS = re.compile(r"(?:[\x21-\x39\x3b-\x7e]+[ \t]*:[^\n]*\n(?:[ \t][^\n]*\n)*)*")


_BLANK_LINE = re.compile(rb"\n\r?\n")


def _split_headers(raw: bytes) -> tuple[list[tuple[str, str]], bytes, list[str]]:
    """The header fields and the body; a line that is no header ends the block early (a defect)."""
    # The common case in C: a well-formed block up to its blank line, read with one regular expression.
    if raw[:1] not in (b"\n", b"\r"):
        blank = _BLANK_LINE.search(raw)  # one pass, stopping at the first (not one scan per line ending)
        if blank is not None:
            end = blank.start()
            head = raw[: end + 1]
            body = raw[blank.end() :]
            text = head.decode("ascii", "surrogateescape")
            if _FIELDS.fullmatch(text):  # nothing but header fields: read them all in one go
                return [(name, value.rstrip("\r\n")) for name, value in _FIELD.findall(text)], body, []
    return _split_headers_slowly(raw)


def _split_headers_slowly(raw: bytes) -> tuple[list[tuple[str, str]], bytes, list[str]]:
    headers: list[tuple[str, str]] = []
    defects: list[str] = []
    position = 0
    length = len(raw)
    name: str | None = None
    value_lines: list[bytes] = []

    def finish() -> None:
        if name is not None:
            text = b"".join(value_lines).decode("ascii", "surrogateescape")
            headers.append((name, text.lstrip(" \t").rstrip("\r\n")))

    while position < length:
        end = raw.find(b"\n", position)
        line_end = length if end < 0 else end + 1
        line = raw[position:line_end]
        stripped = line.rstrip(b"\r\n")
        if not stripped:  # the blank line: the body follows
            position = line_end
            finish()
            return headers, raw[position:], defects
        if line[:1] in (b" ", b"\t"):
            if name is None:
                defects.append("FirstHeaderLineIsContinuation")
            else:
                value_lines.append(line)
            position = line_end
            continue
        colon = stripped.find(b":")
        if colon > 0 and _HEADER_NAME.fullmatch(stripped[:colon].rstrip(b" \t")):
            finish()
            name = stripped[:colon].rstrip(b" \t").decode("ascii")
            value_lines = [line[colon + 1 :]]
            position = line_end
            continue
        # Not a header: the block ended without its blank line, and this line starts the body.
        defects.append("MissingHeaderBodySeparator")
        finish()
        return headers, raw[position:], defects
    finish()
    return headers, b"", defects


def _split_multipart(part: Part, *, depth: int, budget: list[int]) -> None:
    boundary = part.params.get("boundary", "")
    if not boundary:
        part.defects.append("NoBoundaryInMultipart")
        return
    if depth + 1 >= MAX_DEPTH:
        part.defects.append("NestedTooDeep")
        return
    delimiter = b"--" + boundary.encode("ascii", "surrogateescape")
    body = part.body
    starts = _delimiter_lines(body, delimiter)
    if not starts:
        part.defects.append("StartBoundaryNotFound")
        return
    default_type = "message/rfc822" if part.content_type == "multipart/digest" else "text/plain"
    closed = False
    for (_, content_start, is_close), following in zip(starts, [*starts[1:], None], strict=True):
        if is_close:
            closed = True
            break
        if budget[0] <= 0:
            part.defects.append("TooManyParts")
            break
        end = following[0] if following is not None else len(body)
        chunk = body[content_start:end]
        part.children.append(_entity(chunk, depth=depth + 1, budget=budget, default_type=default_type))
    if not closed:
        part.defects.append("CloseBoundaryNotFound")
    part.multipart = True


def _delimiter_lines(body: bytes, delimiter: bytes) -> list[tuple[int, int, bool]]:
    """Each delimiter line: (where the line break before it starts, where the part after it starts, closing?).

    A delimiter counts only at the start of a line and followed by "--", blanks or the line end, as RFC 2046
    says; the line break before it belongs to the delimiter, not to the part.
    """
    found: list[tuple[int, int, bool]] = []
    search = 0
    size = len(delimiter)
    while True:
        at = body.find(delimiter, search)
        if at < 0:
            return found
        search = at + size
        if at > 0 and body[at - 1 : at] != b"\n":
            continue
        rest_end = body.find(b"\n", search)
        line_end = len(body) if rest_end < 0 else rest_end + 1
        tail = body[search:line_end].rstrip(b"\r\n")
        closing = tail.startswith(b"--")
        if closing:
            tail = tail[2:]
        if tail.strip(b" \t"):
            continue  # another boundary that merely starts like this one
        before = at
        if before > 0 and body[before - 1 : before] == b"\n":
            before -= 1
            if before > 0 and body[before - 1 : before] == b"\r":
                before -= 1
        found.append((before, line_end, closing))
        if closing:
            return found
        search = line_end


def parameters(value: str) -> tuple[str, dict[str, str]]:
    """A structured header's main value (lower case) and its parameters (names lower case, values unquoted,
    RFC 2231 continuations joined and their charset decoded)."""
    value = value.replace("\r", "").replace("\n", "")
    pieces = _split_semicolons(value)
    main = pieces[0].strip().lower() if pieces else ""
    raw_params: list[tuple[str, str]] = []
    for piece in pieces[1:]:
        name, equals, param_value = piece.partition("=")
        name = name.strip().lower()
        if not equals or not name:
            continue
        param_value = param_value.strip()
        if len(param_value) >= 2 and param_value[0] == param_value[-1] == '"':
            param_value = param_value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        raw_params.append((name, param_value))
    if not any("*" in name for name, _ in raw_params):
        return main, dict(reversed(raw_params))  # the first of repeated parameters wins, as in compat32
    params: dict[str, str] = {}
    try:
        # decode_params wants the main value first and quoted values as they came.
        decoded = email.utils.decode_params([(main, "")] + [(n, f'"{v}"') for n, v in raw_params])
    except Exception:
        decoded = [(main, ""), *raw_params]
    for name, param_value in decoded[1:]:
        if name in params:
            continue
        try:
            text = email.utils.collapse_rfc2231_value(param_value, errors="replace")
        except Exception:
            text = param_value if isinstance(param_value, str) else str(param_value)
        params[name] = str(text).strip('"')
    return main, params


# A semicolon, or a quoted string (escapes inside it; one left open runs to the end) whose semicolons do not count.
_SEMICOLON_OR_QUOTED = re.compile(r';|"(?:[^"\\]|\\[\s\S])*(?:"|\\?\Z)')


def _split_semicolons(value: str) -> list[str]:
    """Split at semicolons outside quoted strings."""
    if '"' not in value:
        return value.split(";")
    pieces, start = [], 0
    for match in _SEMICOLON_OR_QUOTED.finditer(value):
        if match.group() == ";":
            pieces.append(value[start : match.start()])
            start = match.end()
    pieces.append(value[start:])
    return pieces


def _base64(data: bytes, defects: list[str]) -> bytes:
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        pass
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    defects.append("InvalidBase64")
    cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
    try:
        return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        return b""
