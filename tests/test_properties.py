"""Property-based: realistic fixtures, cut, spliced, bit-flipped and re-encoded, always get exactly one outcome."""

from __future__ import annotations

import base64
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from interestd.evaluation import PipelineContext, evaluate
from interestd.models import RawMessage
from interestd.registry import load_registry

FIXTURES = sorted((Path(__file__).resolve().parent / "fixtures").glob("**/*.eml"))
SAMPLES = [path.read_bytes() for path in FIXTURES]
CONTEXT = PipelineContext(registry=load_registry())
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OUTCOMES = ("card", "skipped", "quarantined", "proof")


@st.composite
def mutated_mail(draw: st.DrawFn) -> bytes:
    """A fixture put through a few of the things transport and hostile senders do to mail."""
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["cut", "splice", "flip", "reencode", "line_endings", "insert"]))
        if kind == "cut" and data:
            data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
        elif kind == "splice":
            other = draw(st.sampled_from(SAMPLES))
            start = draw(st.integers(min_value=0, max_value=len(other)))
            at = draw(st.integers(min_value=0, max_value=len(data)))
            data[at:at] = other[start : start + draw(st.integers(min_value=1, max_value=4000))]
        elif kind == "flip" and data:
            for _ in range(draw(st.integers(min_value=1, max_value=40))):
                position = draw(st.integers(min_value=0, max_value=len(data) - 1))
                data[position] ^= draw(st.integers(min_value=1, max_value=255))
        elif kind == "reencode":
            head, separator, body = bytes(data).partition(b"\r\n\r\n")
            if not separator:
                head, separator, body = bytes(data).partition(b"\n\n")
            codec = draw(st.sampled_from(["base64", "utf-16", "cp1251", "koi8_r"]))
            if codec == "base64":
                body = base64.encodebytes(body)
            else:
                body = body.decode("utf-8", "replace").encode(codec, "replace")
            data = bytearray(head + separator + body)
        elif kind == "line_endings":
            data = bytearray(bytes(data).replace(b"\r\n", draw(st.sampled_from([b"\n", b"\r", b"\r\r\n"]))))
        elif kind == "insert":
            at = draw(st.integers(min_value=0, max_value=len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=200))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_mail())
def test_every_mutated_message_gets_one_outcome_and_nothing_raises(raw: bytes) -> None:
    outcome = evaluate(raw, CONTEXT, now=NOW)
    assert outcome.status in OUTCOMES
    if outcome.status == "card":
        assert outcome.card is not None and outcome.parser is not None
        for url in (outcome.card.source_url, outcome.card.reply_url, outcome.card.author_url):
            assert url is None or url.startswith(("http://", "https://", "mailto:", "tel:"))
    else:
        assert outcome.reason


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(mutated_mail(), min_size=1, max_size=12))
def test_nothing_is_lost_when_mutated_mail_is_ingested(messages: list[bytes]) -> None:
    from interestd.config import load_settings
    from interestd.services import build_context, ingest_paths, open_database

    folder = Path(tempfile.mkdtemp(prefix="interestd-property-"))
    try:
        for index, raw in enumerate(messages):
            (folder / f"{index:02d}.eml").write_bytes(raw)
        settings_ = load_settings(None, environ={"HOME": str(folder), "XDG_DATA_HOME": str(folder / "data")})
        database = open_database(settings_)
        summary = ingest_paths(database, build_context(settings_), [folder], max_message_bytes=10**7)
        with database.session() as session:
            stored = session.scalar(select(func.count()).select_from(RawMessage))
            waiting = session.scalar(select(func.count()).select_from(RawMessage).where(RawMessage.status == "new"))
        database.dispose()
        assert summary.read == len(messages)
        assert stored + summary.duplicates == len(messages)  # each message stored, or recognised as one stored
        assert waiting == 0  # and each stored one has its outcome
        assert sum(summary.outcomes.values()) == stored
    finally:
        shutil.rmtree(folder, ignore_errors=True)
