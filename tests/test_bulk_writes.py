"""Many rows at once: on SQLite straight through the driver, storing exactly what SQLAlchemy would store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, func, insert, text, update
from sqlalchemy.dialects import sqlite

from interestd.db import Database, insert_many, update_many_by_id
from interestd.models import Card, Event, RawMessage, sqlite_timestamp

MOMENTS = [
    datetime(2026, 11, 24, 5, 9, 11, 294189, tzinfo=UTC),
    datetime(2026, 11, 24, 5, 0, tzinfo=UTC),  # UTC without microseconds
    datetime(2026, 11, 24, 8, 9, 11, tzinfo=timezone(timedelta(hours=3))),  # no microseconds, Moscow time
    datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=45))),  # across a year boundary
    datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),  # a year of three digits
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


def test_sqlite_timestamps_are_the_text_sqlalchemy_stores() -> None:
    stored_by_sqlalchemy = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert stored_by_sqlalchemy is not None
    for moment in MOMENTS:
        expected = stored_by_sqlalchemy(moment.astimezone(UTC).replace(tzinfo=None))
        assert sqlite_timestamp(moment) == expected
    assert sqlite_timestamp(None) is None
    with pytest.raises(ValueError, match="naive"):
        sqlite_timestamp(datetime(2026, 11, 24, 5, 0))


def _raw_rows(session, count: int, start: int) -> list[int]:  # type: ignore[no-untyped-def]
    ids = []
    for number in range(start, start + count):
        row = RawMessage(
            message_id=f"<m{number}@x>", content_hash=f"{number:064d}", origin="test", stored_at=MOMENTS[0]
        )
        session.add(row)
        session.flush()
        ids.append(row.id)
    return ids


def _stored(session, table: str, ids: list[int], columns: list[str]) -> list[tuple]:  # type: ignore[no-untyped-def]
    """Each row exactly as SQLite holds it: the type and the literal of every column."""
    picked = ", ".join(f"typeof({name}), quote({name})" for name in columns)
    marks = ", ".join(str(i) for i in ids)
    rows = session.execute(text(f"SELECT {picked} FROM {table} WHERE id IN ({marks}) ORDER BY id"))
    return [tuple(zip(row[::2], row[1::2], strict=True)) for row in rows]


def test_rows_written_through_the_driver_are_stored_as_sqlalchemy_stores_them(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    with database.session(write=True) as session:
        first, second = _raw_rows(session, 5, 0), _raw_rows(session, 5, 10)
        cards = [
            {
                "message_id": f"<c{n}@x>",
                "parser": "vk",
                "received_at": MOMENTS[n % len(MOMENTS)],
                "occurred_at": MOMENTS[(n + 1) % len(MOMENTS)],
                "updated_at": MOMENTS[0],
                "source_type": "vk",
                "action": "comment",
                "text": "Здравствуйте!\n\tЦена?" if n % 2 else "",
                "author_name": None if n == 3 else "Анна",
                "processed": bool(n % 2),
                "notes": None,
            }
            for n in range(5)
        ]
        session.execute(
            insert(Card.__table__), [{**card, "raw_message_id": i} for card, i in zip(cards, first, strict=True)]
        )
        insert_many(
            session, Card.__table__, [{**card, "raw_message_id": i} for card, i in zip(cards, second, strict=True)]
        )
        card_ids = dict(session.execute(text("SELECT raw_message_id, id FROM card")).all())
        events = [
            {"kind": "created", "at": MOMENTS[n], "actor": "pipeline", "data": None if n % 2 else {"rule": "x", "n": n}}
            for n in range(5)
        ]
        session.execute(
            insert(Event.__table__), [{**e, "card_id": card_ids[i]} for e, i in zip(events, first, strict=True)]
        )
        insert_many(
            session, Event.__table__, [{**e, "card_id": card_ids[i]} for e, i in zip(events, second, strict=True)]
        )

        outcomes = [
            {
                "status": "card",
                "reason": None if n % 2 else "a note",
                "subject": None if n == 2 else f"Тема {n}",
                "sent_at": MOMENTS[n],
                "processed_at": MOMENTS[0],
            }
            for n in range(5)
        ]
        table = RawMessage.__table__
        values = {
            key: func.coalesce(bindparam(f"b_{key}", type_=table.c[key].type), table.c[key])
            if key == "subject"
            else bindparam(f"b_{key}", type_=table.c[key].type)
            for key in outcomes[0]
        }
        session.execute(
            update(table).where(table.c.id == bindparam("b_id")).values(values),
            [{"b_id": i, **{f"b_{k}": v for k, v in o.items()}} for o, i in zip(outcomes, first, strict=True)],
        )
        session.execute(text("UPDATE raw_message SET subject = 'kept' WHERE subject IS NULL"))
        update_many_by_id(
            session, table, [{"id": i, **o} for o, i in zip(outcomes, second, strict=True)], kept_when_none=("subject",)
        )

        card_columns = [c.name for c in Card.__table__.columns if c.name not in ("id", "raw_message_id", "message_id")]
        by_sqlalchemy = _stored(session, "card", [card_ids[i] for i in first], card_columns)
        assert by_sqlalchemy == _stored(session, "card", [card_ids[i] for i in second], card_columns)
        assert ("text", "'2026-11-24 05:09:11.294189'") in by_sqlalchemy[0]  # a timestamp, as text, in UTC
        event_columns = [c.name for c in Event.__table__.columns if c.name not in ("id", "card_id")]
        event_ids = dict(session.execute(text("SELECT card_id, id FROM event")).all())
        assert _stored(session, "event", [event_ids[card_ids[i]] for i in first], event_columns) == _stored(
            session, "event", [event_ids[card_ids[i]] for i in second], event_columns
        )
        raw_columns = [c.name for c in table.columns if c.name not in ("id", "message_id", "content_hash")]
        assert _stored(session, "raw_message", first, raw_columns) == _stored(
            session, "raw_message", second, raw_columns
        )
        assert session.scalar(text(f"SELECT subject FROM raw_message WHERE id = {second[2]}")) == "kept"
    database.dispose()
