"""Every parser fixture gives its expected card, and is matched by its own parser only (the cross-match matrix).

Layout: tests/fixtures/parsers/<parser>/<case>.eml with <case>.json beside it:
    {"parser": "vk", "status": "card", "card": {<every card field>}, "notes": [...]}
A case named near-miss-*.eml looks like that parser's mail but must not be taken by it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from interestd.card import PARSED_FIELDS
from interestd.message import parse_raw
from interestd.pipeline import PipelineContext, evaluate
from interestd.registry import load_registry

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parsers"
CASES = sorted(FIXTURES.glob("*/*.eml"))
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CARD_FIELDS = PARSED_FIELDS
REGISTRY = load_registry()
CONTEXT = PipelineContext(registry=REGISTRY, phone_region="RU")


def _case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def expected_for(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


def card_as_dict(card) -> dict:  # type: ignore[no-untyped-def]
    values = {}
    for name in CARD_FIELDS:
        value = getattr(card, name)
        values[name] = value.isoformat() if isinstance(value, datetime) else value
    return values


@pytest.mark.parametrize("eml", CASES, ids=_case_id)
def test_fixture_gives_expected_card(eml: Path) -> None:
    expected = expected_for(eml)
    outcome = evaluate(eml.read_bytes(), CONTEXT, now=NOW)
    assert outcome.status == expected["status"], outcome.reason
    assert outcome.parser == expected.get("parser")
    if expected["status"] == "card":
        assert outcome.card is not None
        assert card_as_dict(outcome.card) == expected["card"]
        if "notes" in expected:
            assert sorted(outcome.card.notes) == sorted(expected["notes"])
    elif "reason_contains" in expected:
        assert expected["reason_contains"] in (outcome.reason or "")


@pytest.mark.parametrize("eml", CASES, ids=_case_id)
def test_fixture_is_matched_by_its_own_parser_only(eml: Path) -> None:
    """The cross-match matrix, one row per fixture."""
    message = parse_raw(eml.read_bytes()).original
    matched = [parser.name for parser in REGISTRY.parsers if parser.match(message)]
    folder = eml.parent.name
    if eml.stem.startswith("near-miss"):
        assert folder not in matched, f"{folder} takes a near miss"
    elif folder == "email":
        assert matched == [], f"a plain e-mail fixture is taken by {matched}"
    else:
        assert matched == [folder]


def test_every_parser_has_fixtures_and_a_near_miss() -> None:
    for name in REGISTRY.names:
        cases = list((FIXTURES / name).glob("*.eml"))
        real = [c for c in cases if not c.stem.startswith("near-miss")]
        near = [c for c in cases if c.stem.startswith("near-miss")]
        assert len(real) >= 4, f"{name}: at least four realistic fixtures are needed, found {len(real)}"
        assert near, f"{name}: a near-miss fixture is needed"


def _mime_facts(raw: bytes) -> set[str]:
    import email
    import re

    message = email.message_from_bytes(raw)
    facts: set[str] = set()
    types = []
    for part in message.walk():
        if part.is_multipart():
            continue
        types.append(part.get_content_type())
        if (part.get_content_charset() or "").lower() in ("windows-1251", "cp1251", "koi8-r"):
            facts.add("cyrillic-8bit")
        if str(part.get("Content-Transfer-Encoding", "")).strip().lower() in ("base64", "quoted-printable"):
            facts.add("encoded")
    if re.search(rb"=\?(?:windows-1251|koi8-r)\?", raw, re.IGNORECASE):
        facts.add("cyrillic-8bit")
    if "text/html" in types and "text/plain" not in types:
        facts.add("html-only")
    return facts


def test_every_parser_fixture_set_covers_the_encodings_real_mail_uses() -> None:
    """Per parser: a windows-1251 or KOI8-R message, a base64 or quoted-printable one, and an HTML-only one."""
    for name in REGISTRY.names:
        facts: set[str] = set()
        for case in (FIXTURES / name).glob("*.eml"):
            if not case.stem.startswith("near-miss"):
                facts |= _mime_facts(case.read_bytes())
        needed = {"cyrillic-8bit", "encoded", "html-only"}
        assert needed <= facts, f"{name} fixtures lack {sorted(needed - facts)}"
