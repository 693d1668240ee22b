"""A realistic benchmark mailbox: the parser fixtures as templates (every source, encoding and layout the
parsers handle), each copy made unique and sized like real notifications (3-60 KB, some with images)."""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "parsers"
_MESSAGE_ID = re.compile(rb"^Message-I[Dd]:[ \t]*<[^>\r\n]*>", re.MULTILINE | re.IGNORECASE)
_DATE = re.compile(rb"^Date:[ \t]*[^\r\n]*(?:\r?\n[ \t]+[^\r\n]*)*", re.MULTILINE | re.IGNORECASE)
MOSCOW = timezone(timedelta(hours=3))
_BOUNDARY = re.compile(rb'boundary="?([^";\r\n]+)"?', re.IGNORECASE)


def templates() -> list[bytes]:
    """Every fixture that becomes a card (near misses are not the common case in a real mailbox)."""
    found = []
    for path in sorted(FIXTURES.glob("*/*.eml")):
        if not path.stem.startswith("near-miss"):
            found.append(path.read_bytes())
    return found


def _with_image(raw: bytes, size: int, rng: random.Random) -> bytes:
    """The message with a JPEG-looking attachment that brings it to about `size` bytes (multipart/mixed)."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        head, separator, body = raw.partition(b"\n\n")
    content = [line for line in head.split(b"\n") if line.lower().startswith((b"content-type", b"content-transfer"))]
    others = b"\n".join(
        line
        for line in head.split(b"\n")
        if not line.lower().startswith((b"content-type", b"content-transfer", b" ", b"\t"))
    )
    missing = max(size - len(raw), 1024)
    image = b"\xff\xd8\xff\xe0" + rng.randbytes(missing * 3 // 4)
    encoded = base64.encodebytes(image).replace(b"\n", b"\r\n")
    boundary = f"bench-{rng.getrandbits(64):016x}".encode()
    inner_head = b"\r\n".join(line.rstrip(b"\r") for line in content) or b"Content-Type: text/plain; charset=utf-8"
    return (
        others.rstrip(b"\r\n")
        + b'\r\nContent-Type: multipart/mixed; boundary="'
        + boundary
        + b'"\r\n\r\n'
        + b"--"
        + boundary
        + b"\r\n"
        + inner_head
        + b"\r\n\r\n"
        + body
        + b"\r\n--"
        + boundary
        + b"\r\nContent-Type: image/jpeg; name=photo.jpg\r\nContent-Transfer-Encoding: base64\r\n"
        + b"Content-Disposition: attachment; filename=photo.jpg\r\n\r\n"
        + encoded
        + b"--"
        + boundary
        + b"--\r\n"
    )


def generate(count: int, *, seed: int = 7, image_share: float = 0.25, days: int = 30) -> Iterator[bytes]:
    """`count` unique messages cycling through the templates, sent over the last `days` days in order (as a
    shared mailbox fills); about a quarter carry an image (up to 60 KB)."""
    rng = random.Random(seed)
    bases = templates()
    end = datetime.now(MOSCOW).replace(microsecond=0)
    step = timedelta(days=days) / max(count, 1)
    for number in range(count):
        raw = bases[number % len(bases)]
        unique = f"<bench-{number}-{rng.getrandbits(32):08x}@bench.interestd>".encode()
        if _MESSAGE_ID.search(raw):
            raw = _MESSAGE_ID.sub(b"Message-ID: " + unique, raw, count=1)
        else:
            raw = b"Message-ID: " + unique + b"\r\n" + raw
        sent = format_datetime(end - step * (count - number) + timedelta(seconds=rng.randint(0, 59))).encode()
        raw = _with_date(raw, sent)
        if rng.random() < image_share:
            raw = _with_image(raw, rng.randint(15_000, 60_000), rng)
        elif len(raw) < 3000:
            raw = raw.replace(b"\r\n\r\n", b"\r\nX-Bench-Padding: " + b"p" * (3000 - len(raw)) + b"\r\n\r\n", 1)
        yield raw


def _with_date(raw: bytes, date: bytes) -> bytes:
    """The message with its own Date header (the header block's, never a forwarded message's) set to `date`."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        head, separator, body = raw.partition(b"\n\n")
    head, found = _DATE.subn(b"Date: " + date, head, count=1)
    if not found:
        head = b"Date: " + date + b"\r\n" + head
    return head + separator + body


def maildir_name(number: int, raw: bytes) -> str:
    """The file name Dovecot's own delivery gives a message (time, uniqueness, host, then its size and its size
    with CRLF line ends), flagged seen. The sizes matter beyond the server not having to stat the file: Dovecot
    hashes the name up to the ':', and that hash is decided by its last few characters, so names alike at the
    end (the same host) all collide without them. 10,000 such names made every SELECT cost the server 0.4 s of CPU."""
    virtual = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")
    return f"{1700000000 + number}.M{number}P1.bench,S={len(raw)},W={virtual}:2,S"


def write_maildir(folder: Path, count: int, *, seed: int = 7) -> int:
    """A Maildir of `count` messages; returns the bytes written."""
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    total = 0
    for number, raw in enumerate(generate(count, seed=seed)):
        (folder / "cur" / maildir_name(number, raw)).write_bytes(raw)
        total += len(raw)
    return total
