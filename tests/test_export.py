"""Export prints cards with exactly the keys of ../shared/card.schema.json, and validates against it."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from interestd.services import EXPORT_KEYS, export_cards, ingest_paths, parse_date_option

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT.parent / "shared" / "card.schema.json"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def schema() -> dict:
    if not SCHEMA_PATH.exists():
        pytest.fail(f"the export contract {SCHEMA_PATH} is missing")
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _fill(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    shutil.copytree(FIXTURES / "parsers" / "email", folder)
    ingest_paths(app.database, app.context, [folder], max_message_bytes=10**7)


def _export(app, fmt: str, **kwargs) -> str:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    with app.session() as session:
        export_cards(session, out, fmt=fmt, **kwargs)
    return out.getvalue()


def test_export_keys_are_the_schemas_keys(schema: dict) -> None:
    assert set(EXPORT_KEYS) == set(schema["properties"])


def test_json_export_validates_against_the_schema(app, tmp_path: Path, schema: dict) -> None:  # type: ignore[no-untyped-def]
    _fill(app, tmp_path)
    cards = json.loads(_export(app, "json"))
    assert len(cards) == 5
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for card in cards:
        validator.validate(card)
        assert list(card) == list(EXPORT_KEYS)
        assert card["ref"] == f"INT-{card['id']}"
    occurred = [card["occurred_at"] for card in cards]
    assert occurred == sorted(occurred, key=datetime.fromisoformat)


def test_jsonl_and_csv_carry_the_same_cards(app, tmp_path: Path, schema: dict) -> None:  # type: ignore[no-untyped-def]
    _fill(app, tmp_path)
    as_json = json.loads(_export(app, "json"))
    lines = [json.loads(line) for line in _export(app, "jsonl").splitlines()]
    assert lines == as_json
    for card in lines:
        jsonschema.validate(card, schema)
    rows = list(csv.DictReader(io.StringIO(_export(app, "csv"))))
    assert [row["ref"] for row in rows] == [card["ref"] for card in as_json]
    assert list(rows[0]) == list(EXPORT_KEYS)


def test_export_filters_by_the_day_the_interest_occurred(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _fill(app, tmp_path)
    zone = __import__("zoneinfo").ZoneInfo("Europe/Moscow")
    since = parse_date_option("2026-11-20", zone)
    until = parse_date_option("2026-11-20", zone, end=True)
    cards = json.loads(_export(app, "json", since=since, until=until))
    assert since == datetime(2026, 11, 19, 21, 0, tzinfo=UTC)
    assert {card["author_email"] for card in cards} == {
        "i.ulmenko@vektor-kzn.ru",
        "p.ignatiev@kafe-venezia.ru",
        "elena.vorontsova@mail.ru",
        "s.dronov@gmail.com",
    }
    assert json.loads(_export(app, "json", until=since))[0]["author_email"] == "marina.k@mail.ru"


def test_csv_cells_cannot_become_formulas(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = (
        b"From: =?utf-8?B?PWNtZHwnL0MgY2FsYyc=?= <client@example.ru>\r\nSubject: hi\r\n"
        b"Message-ID: <f@x>\r\n\r\n@SUM(A1:A9) please call\r\n"
    )
    path = tmp_path / "formula.eml"
    path.write_bytes(raw)
    ingest_paths(app.database, app.context, [path], max_message_bytes=10**7)
    row = next(csv.DictReader(io.StringIO(_export(app, "csv"))))
    assert row["author_name"] == "'=cmd|'/C calc'"
    assert row["text"] == "'@SUM(A1:A9) please call"
