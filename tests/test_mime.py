"""The MIME reader: structure, tolerance of broken mail, parameters, transfer decoding."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from interestd import mime
from interestd.message import parse_raw


def _multipart(boundary: str, parts: list[str], *, close: bool = True, newline: str = "\r\n") -> bytes:
    body = "".join(f"--{boundary}{newline}{part}{newline}" for part in parts)
    if close:
        body += f"--{boundary}--{newline}"
    head = f'From: a@example.ru{newline}Content-Type: multipart/mixed; boundary="{boundary}"{newline}{newline}'
    return (head + "preamble" + newline + body + "epilogue" + newline).encode()


def test_parts_are_split_at_delimiter_lines_only() -> None:
    # "--b1x" starts like the boundary "--b1" but is another line; a delimiter inside a line is text.
    raw = _multipart("b1", ["Content-Type: text/plain\r\n\r\none --b1 inside\r\n--b1x not a delimiter", "\r\ntwo"])
    tree = mime.parse(raw)
    assert [child.body for child in tree.children] == [b"one --b1 inside\r\n--b1x not a delimiter", b"two"]
    assert tree.children[1].content_type == "text/plain"  # the default when a part has no Content-Type
    assert tree.defects == []


def test_a_missing_closing_delimiter_keeps_the_last_part() -> None:
    tree = mime.parse(_multipart("zz", ["\r\nfirst", "\r\nsecond"], close=False))
    assert [child.body for child in tree.children] == [b"first", b"second\r\nepilogue\r\n"]
    assert "CloseBoundaryNotFound" in tree.defects


def test_bare_lf_bare_cr_and_an_mbox_from_line() -> None:
    lf = mime.parse(_multipart("q", ["Content-Type: text/html\n\n<p>x</p>"], newline="\n"))
    assert lf.children[0].content_type == "text/html" and lf.children[0].body == b"<p>x</p>"
    cr = parse_raw(b"From: a@example.ru\rSubject: old mac\r\rbody\r")
    assert cr.subject == "old mac" and cr.text == "body"
    mbox = parse_raw(b"From a@example.ru Fri Nov 20 10:00:00 2026\nSubject: from mbox\n\nhello\n")
    assert mbox.subject == "from mbox" and mbox.headers[0][0] == "Subject"


def test_a_header_block_without_its_blank_line() -> None:
    part = mime.parse(b"Subject: hi\r\nthis line is no header\r\nmore\r\n")
    assert part.headers == [("Subject", "hi")]
    assert part.body == b"this line is no header\r\nmore\r\n"
    assert "MissingHeaderBodySeparator" in part.defects


def test_folded_headers_keep_their_folding_for_the_decoder() -> None:
    part = mime.parse(b"Subject: =?utf-8?B?0J/RgNC40LLQtdGC?=\r\n =?utf-8?B?LCDQvNC40YA=?=\r\nX-A:b\r\n\r\n")
    assert part.get("subject") == "=?utf-8?B?0J/RgNC40LLQtdGC?=\r\n =?utf-8?B?LCDQvNC40YA=?="
    assert part.get("X-A") == "b"
    assert parse_raw(b"Subject: =?utf-8?B?0J/RgNC40LLQtdGC?=\r\n =?utf-8?B?LCDQvNC40YA=?=\r\n\r\n").subject == (
        "Привет, мир"
    )


def test_parameters_quoted_repeated_and_rfc2231() -> None:
    assert mime.parameters('Text/Plain; charset="UTF-8"; format=flowed') == (
        "text/plain",
        {"charset": "UTF-8", "format": "flowed"},
    )
    assert mime.parameters('multipart/mixed; boundary="a;b\\"c"; boundary=second')[1] == {"boundary": 'a;b"c'}
    kind, params = mime.parameters(
        "attachment; filename*0*=utf-8''%D0%A1%D0%BA%D1%80%D0%B8%D0%BD; filename*1*=%D1%88%D0%BE%D1%82.png"
    )
    assert kind == "attachment" and params["filename"] == "Скриншот.png"


def test_transfer_encodings_are_undone_leniently() -> None:
    picture = bytes(range(256)) * 4
    encoded = base64.encodebytes(picture)
    part = mime.parse(b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded)
    assert part.payload() == picture
    broken = mime.parse(b"Content-Transfer-Encoding: BASE64\r\n\r\n" + encoded[:-3] + b"*!\r\n")
    assert len(broken.payload()) > 1000
    qp = mime.parse(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=D0=9F=D1=80=D0=B8=\r\n=D0=B2=D0=B5=D1=82")
    assert qp.payload().decode() == "Привет"


def test_attached_messages_and_limits() -> None:
    inner = b"From: client@example.ru\r\nSubject: inner\r\n\r\nquestion\r\n"
    raw = _multipart(
        "m", ["Content-Type: text/plain\r\n\r\nsee below", "Content-Type: message/rfc822\r\n\r\n" + inner.decode()]
    )
    tree = mime.parse(raw)
    attached = tree.children[1]
    assert attached.multipart and attached.children[0].get("Subject") == "inner"
    assert parse_raw(raw).forwarded is not None and parse_raw(raw).forwarded.subject == "inner"
    many = _multipart("p", ["\r\nx"] * (mime.MAX_PARTS + 50))
    assert "TooManyParts" in mime.parse(many).defects


def test_a_multipart_without_a_boundary_or_its_first_delimiter_is_one_leaf() -> None:
    no_boundary = mime.parse(b"Content-Type: multipart/mixed\r\n\r\nplain words\r\n")
    assert not no_boundary.multipart and "NoBoundaryInMultipart" in no_boundary.defects
    unopened = mime.parse(b'Content-Type: multipart/mixed; boundary="x"\r\n\r\nno delimiter here\r\n')
    assert not unopened.multipart and "StartBoundaryNotFound" in unopened.defects


def test_the_fast_header_reader_agrees_with_the_line_by_line_one() -> None:
    """Header blocks are read with one regular expression when well formed, line by line otherwise: on real
    and damaged headers (random bytes turned into line breaks, colons, blanks, NULs) both give the same."""
    import random
    from pathlib import Path

    from tests.hostile import CORPUS

    fixtures = Path(__file__).resolve().parent / "fixtures"
    cases = [path.read_bytes()[:4000] for path in sorted(fixtures.rglob("*.eml"))]
    cases += [make()[:4000] for make in CORPUS.values()]
    rng = random.Random(5)
    for raw in cases:
        assert mime._split_headers(raw) == mime._split_headers_slowly(raw)
        for _ in range(10):
            damaged = bytearray(raw)
            for _ in range(rng.randint(1, 5)):
                damaged[rng.randrange(len(damaged))] = rng.choice(b"\r\n :\t\x00aZ")
            assert mime._split_headers(bytes(damaged)) == mime._split_headers_slowly(bytes(damaged))


def _split_semicolons_by_characters(value: str) -> list[str]:
    """The definition: walk the characters, a quote toggles quoting, a backslash escapes inside quotes."""
    pieces, current, quoted, escaped = [], [], False, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return pieces


@given(st.text(alphabet=st.sampled_from(list('ab;"\\= \n\u00e9')), max_size=40))
@settings(max_examples=2000, deadline=None)
def test_parameters_split_at_semicolons_outside_quotes_as_the_character_walk_does(value: str) -> None:
    assert mime._split_semicolons(value) == _split_semicolons_by_characters(value)
