"""Configuration without code: product rules and custom parsers, and `interestd parse` that shows their work."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from interestd.config import load_settings
from interestd.errors import ConfigError
from interestd.pipeline import evaluate
from interestd.services import build_context, explain_message

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parsers"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

QUIZ_MAIL = (
    "From: =?utf-8?B?0JrQstC40Lcg0JrRg9GF0L3QuA==?= <robot@marquiz.ru>\r\n"
    "To: zayavki@uyut-dom.ru\r\nSubject: =?utf-8?B?0J3QvtCy0LDRjyDQt9Cw0Y/QstC60LAg0YEg0LrQstC40LfQsA==?=\r\n"
    "Date: Fri, 20 Nov 2026 10:15:00 +0300\r\nMessage-ID: <quiz-1@marquiz.ru>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "<html><body><h2>Квиз: Подбор кухни</h2><table>"
    "<tr><td>Имя</td><td>Ольга Белова</td></tr><tr><td>Телефон</td><td>8 912 345-67-89</td></tr>"
    "<tr><td>Страница</td><td>https://uyut-dom.ru/kuhni?utm_source=vk</td></tr>"
    "<tr><td>Дата</td><td>20.11.2026 10:14</td></tr></table>"
    "<p class='answer'>Угловая кухня, 3 метра, фасады белые</p><p class='answer'>Бюджет до 300 тыс.</p>"
    "</body></html>"
).encode()

QUIZ_CONFIG = """
[[custom_parsers]]
name = "kitchen_quiz"
source_type = "site_form"
action = "request"
match_from = "@marquiz\\\\.ru"
match_body = "^Квиз:"
[custom_parsers.fields]
author_name = { label = ["Имя"] }
author_phone = { label = ["Телефон"] }
source_url = { label = ["Страница"] }
occurred_at = { label = ["Дата"] }
text = { css = "p.answer" }
product = { value = "Кухня на заказ" }
author_email = { regex = "E-mail:\\\\s*(\\\\S+@\\\\S+)" }
"""


def _context(tmp_path: Path, config: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "config.toml"
    path.write_text(config, encoding="utf-8")
    return build_context(load_settings(path, environ=dict(os.environ)))


def test_a_custom_parser_from_the_config_builds_the_card(tmp_path: Path) -> None:
    context = _context(tmp_path, QUIZ_CONFIG)
    outcome = evaluate(QUIZ_MAIL, context, now=NOW)
    assert (outcome.status, outcome.parser, outcome.parser_version) == ("card", "kitchen_quiz", "config")
    card = outcome.card
    assert card is not None
    assert (card.source_type, card.action, card.product) == ("site_form", "request", "Кухня на заказ")
    assert (card.author_name, card.author_phone) == ("Ольга Белова", "+79123456789")
    assert card.source_url == "https://uyut-dom.ru/kuhni?utm_source=vk"
    assert card.text == "Угловая кухня, 3 метра, фасады белые\nБюджет до 300 тыс."
    assert card.occurred_at == datetime(2026, 11, 20, 7, 14, tzinfo=UTC)
    assert card.reply_url == "tel:+79123456789"
    assert card.notes == ("not found: author_email",)


def test_without_the_custom_parser_the_same_mail_is_a_robots_mail(tmp_path: Path) -> None:
    outcome = evaluate(QUIZ_MAIL, _context(tmp_path, ""), now=NOW)
    assert outcome.parser != "kitchen_quiz"


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ('[[custom_parsers]]\nname = "x"\n', "custom_parsers[1]: Value error, a custom parser needs match_from"),
        ('[[custom_parsers]]\nname = "x"\nmatch_subject = "(("\n', "custom_parsers[1].match_subject: invalid regex"),
        (
            '[[custom_parsers]]\nname = "x"\nmatch_subject = "a"\n[custom_parsers.fields]\nphone = { label = ["T"] }\n',
            "unknown card field 'phone'",
        ),
        (
            '[[custom_parsers]]\nname = "x"\nmatch_subject = "a"\n[custom_parsers.fields]\ntext = { css = "p[[" }\n',
            "invalid CSS selector",
        ),
        (
            '[[custom_parsers]]\nname = "x"\nmatch_subject = "a"\n[custom_parsers.fields]\n'
            'text = { regex = "a", css = "p" }\n',
            "give exactly one of label, regex, css or value",
        ),
        ('[[products]]\nname = "Диван"\n', "a product rule needs url_prefixes, pages or keywords"),
    ],
)
def test_bad_custom_parsers_and_product_rules_are_config_errors(tmp_path: Path, config: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _context(tmp_path, config)
    assert error.replace("Value error, ", "") in str(caught.value)


def test_a_custom_parser_cannot_take_a_built_in_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the name 'vk' is taken by an installed parser"):
        _context(tmp_path, '[[custom_parsers]]\nname = "vk"\nmatch_subject = "a"\n')


PRODUCTS = """
[[products]]
name = "Плед Облако"
url = "https://uyut-dom.ru/catalog/pled-oblako"
url_prefixes = ["https://uyut-dom.ru/catalog/pled"]
[[products]]
name = "Кухня Рива"
url = "https://uyut-dom.ru/catalog/kuhnya-riva"
keywords = ["рива"]
[[products]]
name = "Мебель для кафе"
pages = ["Кофейни Венеция — официальный паблик"]
"""


def test_product_rules_fill_the_product_a_parser_could_not_name(tmp_path: Path) -> None:
    context = _context(tmp_path, PRODUCTS)
    forward = evaluate((FIXTURES / "email" / "gmail-inline-forward.eml").read_bytes(), context, now=NOW).card
    assert forward is not None
    assert (forward.product, forward.product_url) == ("Кухня Рива", "https://uyut-dom.ru/catalog/kuhnya-riva")
    chairs = evaluate((FIXTURES / "email" / "thebat-koi8r-quoted-printable.eml").read_bytes(), context, now=NOW).card
    assert chairs is not None and chairs.product is None
    market = evaluate((FIXTURES / "vk" / "market-comment-en.eml").read_bytes(), context, now=NOW).card
    assert market is not None and market.product == "Плед «Облако» 150×200"  # the parser's own product wins


def test_a_page_name_in_the_notification_names_the_product(tmp_path: Path) -> None:
    context = _context(tmp_path, '[[products]]\nname = "Пледы"\npages = ["уютный дом"]\n')
    card = evaluate((FIXTURES / "vk" / "wall-comment-ru.eml").read_bytes(), context, now=NOW).card
    assert card is not None and card.product == "Пледы"


def test_parse_command_explains_the_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_cli import run

    path = tmp_path / "quiz.eml"
    path.write_bytes(QUIZ_MAIL)
    config = tmp_path / "config.toml"
    config.write_text(QUIZ_CONFIG, encoding="utf-8")
    code, out, _ = run(capsys, "--config", str(config), "parse", str(path))
    assert code == 0
    assert "matched:    kitchen_quiz" in out and "outcome:    card by kitchen_quiz" in out
    assert "not found:  author_email" in out
    assert "considered: facebook, instagram, odnoklassniki, vk, kitchen_quiz, telegram" in out
    code, out, _ = run(capsys, "--config", str(config), "parse", "--json", str(path))
    explained = json.loads(out)
    assert explained["card"]["author_name"] == "Ольга Белова" and explained["not_found"] == ["author_email"]
    code, _, err = run(capsys, "parse", str(tmp_path / "missing.eml"))
    assert code == 2 and "cannot read" in err


def test_explain_shows_forwards_and_skips(tmp_path: Path) -> None:
    context = _context(tmp_path, "")
    forwarded = explain_message((FIXTURES / "email" / "gmail-inline-forward.eml").read_bytes(), context, now=NOW)
    assert forwarded["forwarded"] == "inline" and forwarded["original_from"] == "Сергей Дронов <s.dronov@gmail.com>"
    newsletter = explain_message((FIXTURES / "email" / "near-miss-newsletter.eml").read_bytes(), context, now=NOW)
    assert newsletter["status"] == "skipped" and newsletter["card"] is None
