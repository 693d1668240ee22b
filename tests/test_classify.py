"""Auto-replies, bounces and interestd's own mail are recognised before any parser sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from interestd.classify import classify
from interestd.message import parse_raw

MAIL = Path(__file__).resolve().parent / "fixtures" / "mail"
PARSER_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parsers"


def _message(headers: str, body: str = "text") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode()


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("auto-reply-exchange-ru.eml", "auto_reply", "Auto-Submitted: auto-replied"),
        ("auto-reply-x-autoreply.eml", "auto_reply", "X-Autoreply"),
        ("dsn-postfix.eml", "bounce", "delivery status notification"),
    ],
)
def test_fixture_mail_is_classified(name: str, kind: str, reason: str) -> None:
    result = classify(parse_raw((MAIL / name).read_bytes()))
    assert result.kind == kind
    assert result.reason is not None and reason in result.reason


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ("From: a@example.ru\nSubject: Out of Office: Re: order", "auto_reply"),
        ("From: a@example.ru\nSubject: Автоответ: Re: заказ", "auto_reply"),
        ("From: a@example.ru\nSubject: Re: order\nPrecedence: auto_reply", "auto_reply"),
        ("From: MAILER-DAEMON@mx.example.ru\nSubject: Mail delivery failed: returning message to sender", "bounce"),
        ("From: robot@example.ru\nReturn-Path: <>\nSubject: Недоставленное сообщение", "bounce"),
        ("From: zayavki@example.ru\nX-Interestd-Report: daily\nSubject: Сводка за 20.11", "own_report"),
        ("From: anna@example.ru\nSubject: Ответ клиенту [INT-42]", "reply_proof"),
        ("From: client@example.ru\nSubject: Нужен диван", "interest"),
    ],
)
def test_headers_decide_the_kind(headers: str, kind: str) -> None:
    assert classify(parse_raw(_message(headers))).kind == kind


def test_robot_mail_is_marked_automated_but_not_skipped_here() -> None:
    result = classify(parse_raw(_message("From: news@example.ru\nSubject: Digest\nPrecedence: bulk")))
    assert result.kind == "interest" and result.automated
    person = classify(parse_raw(_message("From: client@example.ru\nSubject: Question")))
    assert not person.automated


def test_proof_reference_is_read_from_the_subject() -> None:
    assert classify(parse_raw(_message("From: a@x.ru\nSubject: Fwd: [int-7] скрин"))).ref == 7


def test_customer_letters_are_interest() -> None:
    for case in (PARSER_FIXTURES / "email").glob("*.eml"):
        if not case.stem.startswith("near-miss"):
            assert classify(parse_raw(case.read_bytes())).kind == "interest", case.name
