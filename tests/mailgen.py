"""Realistic test letters made on the fly (customer e-mails of the sizes and encodings the pipeline meets)."""

from __future__ import annotations

import base64
from email.header import Header

_TEXTS = (
    "Добрый день! Подскажите, есть ли диван «Осло» в сером велюре и сколько стоит доставка?",
    "Здравствуйте. Хочу заказать шкаф-купе 180 см, нужна сборка. Когда сможете привезти?",
    "Hello, do you ship the Oslo sofa to Almaty? Please send the price with delivery.",
)


def letter(n: int, *, size: int = 0, charset: str = "utf-8", subject: str | None = None) -> bytes:
    """Customer letter number n (unique Message-ID), padded to about `size` bytes with a signature block."""
    text = _TEXTS[n % len(_TEXTS)] + f"\nЗаказ {n}."
    if size:
        text += (
            "\n\n-- \n" + ("Рабочий телефон отдела закупок и адрес склада. " * (size // 90 + 1))[: max(size - 600, 0)]
        )
    safe_charset = charset if charset != "koi8-r" else "koi8-r"
    payload = text.replace("«", '"').replace("»", '"') if charset == "koi8-r" else text
    body = base64.encodebytes(payload.encode(safe_charset)).decode("ascii").replace("\n", "\r\n")
    name = Header(f"Клиент {n}", "utf-8").encode()
    subject_header = Header(subject or f"Вопрос о заказе {n}", "utf-8").encode()
    head = (
        f"Return-Path: <client{n}@example.ru>\r\n"
        f"Received: from mail.example.ru (mail.example.ru [127.0.0.5])\r\n\tby mx.shop.example (Postfix) with ESMTPS"
        f" id {n:08X}\r\n\tfor <zayavki@shop.example>; Fri, 20 Nov 2026 10:15:{n % 60:02d} +0300\r\n"
        f"From: {name} <client{n}@example.ru>\r\nTo: zayavki@shop.example\r\nSubject: {subject_header}\r\n"
        f"Date: Fri, 20 Nov 2026 10:{n % 60:02d}:00 +0300\r\nMessage-ID: <letter-{n}@example.ru>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    return head.encode("ascii") + body.encode("ascii")
