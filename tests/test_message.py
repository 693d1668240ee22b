"""ParsedMessage from raw bytes: charsets, RFC 2047, HTML-only bodies, forwards, broken mail."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interestd.charsets import decode_bytes
from interestd.htmltext import html_to_text, normalise_text
from interestd.message import decode_header, parse_raw, quick_message_id

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RUSSIAN = "Здравствуйте! Хочу заказать диван «Осло», серый. Ёлка, щётка, ЭЮЯ"


def _letter(charset: str, declared: str | None, cte: str = "8bit", subject_charset: str | None = None) -> bytes:
    import base64
    import quopri

    text = RUSSIAN.replace("«", '"').replace("»", '"') if charset == "koi8_r" else RUSSIAN
    payload = text.encode(charset)
    if cte == "base64":
        payload = base64.encodebytes(payload)
    elif cte == "quoted-printable":
        payload = quopri.encodestring(payload)
    subject_charset = subject_charset or charset
    subject = "Заказ дивана".encode(subject_charset)
    name = "Ирина Ульменко".encode(subject_charset)
    label = {"cp1251": "windows-1251", "koi8_r": "koi8-r", "utf-8": "utf-8"}[subject_charset]
    subject_word = f"=?{label}?B?{base64.b64encode(subject).decode()}?="
    quoted_name = quopri.encodestring(name, header=True).decode().replace("=\n", "")
    name_word = f"=?{label}?Q?{quoted_name}?="
    content_type = f"text/plain; charset={declared}" if declared else "text/plain"
    head = (
        f"From: {name_word} <irina@example.ru>\r\nTo: shop@example.ru\r\nSubject: {subject_word}\r\n"
        f"Date: Fri, 20 Nov 2026 10:15:00 +0300\r\nMessage-ID: <x1@example.ru>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    )
    return head.encode("ascii") + payload


@pytest.mark.parametrize(
    ("charset", "declared", "cte"),
    [
        ("utf-8", "utf-8", "8bit"),
        ("utf-8", "utf-8", "base64"),
        ("cp1251", "windows-1251", "8bit"),
        ("cp1251", "windows-1251", "quoted-printable"),
        ("koi8_r", "koi8-r", "8bit"),
        ("koi8_r", "koi8-r", "base64"),
        # mislabelled and missing declarations, as real senders produce them
        ("cp1251", "koi8-r", "8bit"),
        ("koi8_r", "windows-1251", "8bit"),
        ("utf-8", "windows-1251", "8bit"),
        ("cp1251", "iso-8859-1", "8bit"),
        ("cp1251", None, "8bit"),
        ("utf-8", "uft-8", "quoted-printable"),
        ("cp1251", "windows-1252x", "8bit"),
    ],
)
def test_cyrillic_decodes_in_subject_sender_and_body(charset: str, declared: str | None, cte: str) -> None:
    message = parse_raw(_letter(charset, declared, cte))
    assert message.subject == "Заказ дивана"
    assert message.sender is not None
    assert message.sender.name == "Ирина Ульменко"
    assert message.sender.email == "irina@example.ru"
    expected = RUSSIAN.replace("«", '"').replace("»", '"') if charset == "koi8_r" else RUSSIAN
    assert message.text == expected


def test_raw_8bit_headers_are_decoded() -> None:
    raw = "From: Пётр Иванов <petr@example.ru>\r\nSubject: Вопрос о доставке\r\n\r\ntext\r\n".encode("cp1251")
    message = parse_raw(raw)
    assert message.subject == "Вопрос о доставке"
    assert message.sender is not None and message.sender.name == "Пётр Иванов"


def test_encoded_words_split_inside_a_character_are_joined() -> None:
    # A UTF-8 sequence cut between two encoded words, as some mailers fold long subjects.
    data = "Доставка".encode()
    first, second = data[:3], data[3:]
    import base64

    value = f"=?utf-8?B?{base64.b64encode(first).decode()}?= =?utf-8?B?{base64.b64encode(second).decode()}?="
    assert decode_header(value) == "Доставка"


def test_decode_bytes_prefers_valid_utf8_over_a_wrong_declaration() -> None:
    assert decode_bytes("Привет, мир".encode(), "windows-1251") == "Привет, мир"
    assert decode_bytes("café crème".encode("latin-1"), "iso-8859-1") == "café crème"


def test_a_declared_reading_with_russian_typography_is_taken_unscored(monkeypatch: pytest.MonkeyPatch) -> None:
    import interestd.charsets as charsets

    def no_scoring(text: str) -> float:
        raise AssertionError(f"scored: {text[:40]!r}")

    monkeypatch.setattr(charsets, "plausibility", no_scoring)
    # Guillemets, no-break spaces, degrees, ©, №: the marks of ordinary Russian text, not of a wrong reading.
    text = "В сообществе «Уютный дом»\u00a0новый отзыв: «Плед 150x200, стирка 40\u00b0» © 2026, № 5"
    assert decode_bytes(text.encode("cp1251"), "windows-1251") == text
    koi8 = "Ответ в\u00a0группе: стирка при 40\u00b0"
    assert decode_bytes(koi8.encode("koi8_r"), "koi8-r") == koi8


def test_a_declared_reading_with_other_odd_signs_is_still_scored_against_the_guesses() -> None:
    # KOI8-R bytes declared as windows-1251 read as wrongly-cased letters; latin-1 as accented runs: both lose.
    text = "Новое сообщение в\u00a0группе"
    assert decode_bytes(text.encode("koi8_r"), "windows-1251") == text
    quoted = "Новое сообщение «Доставка» в группе"
    assert decode_bytes(quoted.encode("cp1251"), "iso-8859-1") == quoted


def test_html_only_body_gives_clean_text() -> None:
    html = (
        "<html><head><style>p{color:red}</style><title>Заявка</title><script>alert(1)</script></head>"
        "<body><h1>Новая заявка</h1><table><tr><td>Имя</td><td>Иван</td></tr>"
        "<tr><td>Телефон</td><td>+7&nbsp;900&nbsp;123-45-67</td></tr></table>"
        "<p>Первый абзац<br>со строкой</p><p onclick='x()'>Второй&nbsp;абзац &mdash; конец</p>"
        "<div>Строка 1</div><div>Строка 2</div><!-- comment --></body></html>"
    )
    raw = (
        "From: site@example.ru\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + html
    ).encode()
    message = parse_raw(raw)
    assert message.plain is None
    assert message.text == (
        "Новая заявка\n\nИмя\tИван\nТелефон\t+7 900 123-45-67\n\nПервый абзац\nсо строкой\n\n"
        "Второй абзац — конец\n\nСтрока 1\nСтрока 2"
    )
    assert "alert" not in message.text and "color" not in message.text and "Заявка" not in message.text


def test_html_to_text_survives_nul_bytes_declarations_and_empty_documents() -> None:
    assert html_to_text('<?xml version="1.0" encoding="utf-8"?><p>ok\x00</p>') == "ok"
    assert html_to_text("   ") == ""
    assert html_to_text("<!-- only a comment -->") == ""


def test_html_text_is_the_same_whether_or_not_the_document_needed_cleaning() -> None:
    # Clean documents go to lxml as UTF-8 bytes, the others as cleaned text: the reading must not depend on it.
    # A <meta charset> must not make lxml decode the already decoded text a second time.
    clean = '<html><head><meta charset="windows-1251"></head><body><p>Заявка: Ёлка</p><p>Цена — 5 €</p></body></html>'
    expected = "Заявка: Ёлка\n\nЦена — 5 €"
    assert html_to_text(clean) == expected
    assert html_to_text(clean.replace("Ёлка", "Ёл\x07ка")) == expected  # a control character taken out
    assert html_to_text(clean.replace("Ёлка", "Ёл\ud800ка")) == expected  # a lone surrogate taken out
    assert html_to_text('<?xml version="1.0"?>' + clean) == expected
    assert html_to_text(clean.replace("windows-1251", "koi8-r")) == expected


_HIDING_STYLES = ("font-size:1px", "display:none", "max-height:0;overflow:hidden", "color:red", "")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("span", "div", "p", "td", "b")),
            st.sampled_from(_HIDING_STYLES),
            st.text(alphabet="ab Ёж\n", max_size=6),
            st.text(alphabet="cd Щ\n", max_size=6),
            st.integers(0, 2),
        ),
        max_size=12,
    )
)
def test_text_without_hidden_elements_is_the_text_of_a_copy_without_them(elements: list) -> None:
    """tree_to_text(also_hidden=...) leaves out what it is told is hidden, as dropping those elements from a
    copy of the tree and reading that does (nested elements, first children, tails)."""
    import copy

    from interestd.htmltext import drop_tree, parse_html, tree_to_text

    html, depth = "", 0
    for tag, style, text, tail, closes in elements:
        html += f'<{tag} style="{style}">{text}'
        depth += 1
        for _ in range(min(closes, depth)):
            html += f"</{tag}>{tail}"
            depth -= 1
    tree = parse_html("<body>" + html + "</body>")
    if tree is None:
        return

    def hidden(element: object) -> bool:
        style = element.get("style") or ""  # type: ignore[attr-defined]
        return element.tag in ("span", "div") and ("1px" in style or "max-height" in style)  # type: ignore[attr-defined]

    copied = copy.deepcopy(tree)
    for element in [element for element in copied.iter() if hidden(element) and element.getparent() is not None]:
        drop_tree(element)
    assert tree_to_text(tree, also_hidden=hidden) == tree_to_text(copied)


def test_inline_forward_gives_the_inner_author() -> None:
    message = parse_raw((FIXTURES / "parsers/email/gmail-inline-forward.eml").read_bytes())
    assert message.forward_kind == "inline"
    original = message.original
    assert original.sender is not None
    assert (original.sender.name, original.sender.email) == ("Сергей Дронов", "s.dronov@gmail.com")
    assert original.subject == "Вопрос по кухне"
    assert original.date is not None and original.date.isoformat() == "2026-11-20T09:02:00+03:00"


def test_attached_forward_gives_the_inner_author() -> None:
    message = parse_raw((FIXTURES / "parsers/email/thunderbird-attached-forward-koi8r.eml").read_bytes())
    assert message.forward_kind == "attached"
    original = message.original
    assert original.sender is not None and original.sender.email == "marina.k@mail.ru"
    assert original.sender.name == "Марина К."
    assert original.subject == "Заказ матраса"
    assert "ортопедический матрас" in original.text


def test_a_reply_quoting_an_outlook_block_is_not_taken_for_a_forward() -> None:
    message = parse_raw((FIXTURES / "parsers/email/outlook-cp1251-signature-quote.eml").read_bytes())
    assert message.forwarded is None
    assert message.original is message


def test_headers_read_decoded_in_order_with_repeats_and_by_prefix() -> None:
    raw = (
        b"Received: from a\r\n\tby b\r\nX-Telegram-Chat: =?utf-8?B?0KfQsNGCINC80LDQs9Cw0LfQuNC90LA=?=\r\n"
        b"From: =?koi8-r?B?6dfBzg==?= <ivan@example.ru>\r\nX-Telegram-User: @ivan\r\n"
        b"Received: from c\r\nSubject: =?windows-1251?B?z/Do4uXy?=\r\n\r\nbody\r\n"
    )
    message = parse_raw(raw)
    assert message.headers == (
        ("Received", "from a by b"),
        ("X-Telegram-Chat", "Чат магазина"),
        ("From", "Иван <ivan@example.ru>"),
        ("X-Telegram-User", "@ivan"),
        ("Received", "from c"),
        ("Subject", "Привет"),
    )
    assert message.header_all("RECEIVED") == ["from a by b", "from c"]
    assert message.header("subject") == message.subject == "Привет"
    assert message.headers_starting("x-telegram-") == [
        ("X-Telegram-Chat", "Чат магазина"),
        ("X-Telegram-User", "@ivan"),
    ]
    assert message.headers_starting("X-Missing-") == []
    assert message.raw_headers[1] == ("X-Telegram-Chat", "=?utf-8?B?0KfQsNGCINC80LDQs9Cw0LfQuNC90LA=?=")


def test_broken_message_parses_with_what_is_there() -> None:
    raw = (FIXTURES / "mail/broken-truncated.eml").read_bytes()
    message = parse_raw(raw)
    assert message.sender is None
    assert message.subject == "Заявка"
    assert message.message_id is None


def test_quick_message_id_reads_folded_headers_only() -> None:
    raw = b"Subject: a\r\nMessage-ID:\r\n <abc@example.ru>\r\n\r\nMessage-ID: <body@x>\r\n"
    assert quick_message_id(raw) == "<abc@example.ru>"
    assert quick_message_id(b"Subject: a\r\n\r\nMessage-ID: <body@x>\r\n") is None


def test_hidden_preheaders_are_not_text() -> None:
    html = (
        '<div style="display: none; max-height:0; mso-hide: all">Превью: Анна оставила комментарий</div>'
        "<p>Анна оставила комментарий</p><span hidden>скрыто</span><p>Текст</p>"
    )
    assert html_to_text(html) == "Анна оставила комментарий\n\nТекст"


def test_format_flowed_lines_are_joined() -> None:
    raw = (
        b"From: a@example.ru\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n"
        b"This line was wrapped by the \r\nsender's client.\r\n> quoted and \r\n> wrapped\r\n-- \r\nsig\r\n"
    )
    assert parse_raw(raw).plain == "This line was wrapped by the sender's client.\n>quoted and wrapped\n-- \nsig\n"


def test_find_phones_reads_international_and_local_numbers_but_not_order_numbers() -> None:
    from interestd.extract import find_phones

    text = "Звоните: +49 30 2589 4417 или 8 (917) 555-12-34; заказ №4812, ИНН 7701234567"
    assert find_phones(text) == ["+49 30 2589 4417", "8 (917) 555-12-34"]


def test_what_a_parser_derives_from_a_message_is_worked_out_once() -> None:
    message = parse_raw(b"From: a@example.ru\r\nSubject: x\r\n\r\nbody\r\n")
    calls: list[str] = []

    def lines(msg):  # type: ignore[no-untyped-def]
        calls.append(msg.subject)
        return tuple(msg.text.split("\n"))

    assert message.derived("test.lines", lines) == ("body",)
    assert message.derived("test.lines", lines) == ("body",)
    assert calls == ["x"]
    assert parse_raw(b"Subject: y\r\n\r\nother\r\n").derived("test.lines", lines) == ("other",)  # per message


def _normalised_line_by_line(text: str) -> str:
    """normalise_text as first written, one line and one cell at a time: the reference for the fast one."""
    from interestd.htmltext import _BLOCK_MARK, _BR_MARK, _CELL_MARK, _PARAGRAPH_MARK

    text = re.sub("[\u200b\u200c\u200d\u2060\ufeff\u00ad\u034f\u180e]", "", text)
    if _BLOCK_MARK in text or _PARAGRAPH_MARK in text or _BR_MARK in text:
        text = re.sub(r"[ \t\r\n\f\v]+", " ", text)
        text = re.sub("\x1d(?= *[\x1e\x1c])", "", text)
        text = re.sub(" *[\x1e\x1c][\x1e\x1c ]*", lambda run: "\n\n" if "\x1c" in run.group() else "\n", text)
        text = text.replace(_BR_MARK, "\n")
    text = re.sub(r"[ \t\r\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+", " ", text)
    lines = ["\t".join(cell.strip() for cell in line.split(_CELL_MARK) if cell.strip()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_TRICKY = "ab я\n\t\r\x0b\x0c\x1c\x1d\x1e\x1f\u00a0\u2003\u3000\x85\u2028\u1680\u200b\u00ad\ufeff"


@given(st.text(alphabet=_TRICKY, max_size=40))
@settings(max_examples=3000, deadline=None)
def test_normalise_text_keeps_lines_cells_and_spaces_as_the_line_by_line_definition(text: str) -> None:
    assert normalise_text(text) == _normalised_line_by_line(text)
