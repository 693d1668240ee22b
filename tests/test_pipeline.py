"""The pipeline on a real database (SQLite and PostgreSQL): store first, one outcome per message, nothing lost."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from sqlalchemy import func, select, update

from interestd import store
from interestd.card import CardDraft
from interestd.message import ParsedMessage
from interestd.models import Card, Event, RawMessage
from interestd.pipeline import process_pending
from interestd.registry import build_registry, discover
from interestd.services import ingest_paths, mail_list, reparse

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EMAIL_CASES = sorted((FIXTURES / "parsers" / "email").glob("*.eml"))
MAIL_CASES = sorted((FIXTURES / "mail").glob("*.eml"))


def _mailbox(tmp_path: Path, cases: list[Path]) -> Path:
    folder = tmp_path / "mailbox"
    folder.mkdir(exist_ok=True)
    for case in cases:
        shutil.copy(case, folder / case.name)
    return folder


def _ingest(app, *paths: Path):  # type: ignore[no-untyped-def]
    return ingest_paths(app.database, app.context, list(paths), max_message_bytes=app.settings.limits.max_message_bytes)


def _count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_reingesting_the_same_mail_stores_it_once(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _mailbox(tmp_path, EMAIL_CASES + MAIL_CASES)
    first = _ingest(app, folder)
    total = len(EMAIL_CASES) + len(MAIL_CASES)
    assert first.read == total and first.duplicates == 0
    assert first.outcomes["card"] == 5  # the five customer letters
    assert first.outcomes["skipped"] == 4  # newsletter, two auto-replies, DSN
    assert first.outcomes["quarantined"] == 1  # the truncated message without sender or text
    second = _ingest(app, folder)
    assert second.read == total and second.duplicates == total and sum(second.outcomes.values()) == 0
    assert _count(app, RawMessage) == total
    assert _count(app, Card) == 5
    assert _count(app, Event) == 5


def test_same_content_without_message_id_is_stored_once(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = b"From: client@example.ru\r\nSubject: no id\r\n\r\nHello, is the sofa in stock?\r\n"
    (tmp_path / "a.eml").write_bytes(raw)
    (tmp_path / "b.eml").write_bytes(raw)
    summary = _ingest(app, tmp_path / "a.eml", tmp_path / "b.eml")
    assert summary.outcomes["card"] == 1 and summary.duplicates == 1
    with app.session() as session:
        message_id = session.scalar(select(RawMessage.message_id))
    assert message_id.startswith("<sha256.") and message_id.endswith("@content.interestd>")


def test_auto_replies_and_bounces_are_skipped_with_their_reason(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _ingest(app, _mailbox(tmp_path, MAIL_CASES))
    with app.session() as session:
        skipped = {raw.origin.rsplit("/", 1)[-1]: raw.reason for raw in mail_list(session, statuses=["skipped"])}
    assert "auto-replied" in skipped["auto-reply-exchange-ru.eml"]
    assert "X-Autoreply" in skipped["auto-reply-x-autoreply.eml"]
    assert "delivery status" in skipped["dsn-postfix.eml"]


class ExplodingParser:
    """A parser with a bug: it takes mail whose subject says "диван" and raises."""

    name: ClassVar[str] = "exploding"
    priority: ClassVar[int] = 500
    version: ClassVar[str] = "0.1"

    def match(self, msg: ParsedMessage) -> bool:
        return "диван" in msg.subject.lower()

    def parse(self, msg: ParsedMessage) -> CardDraft:
        raise KeyError("layout changed")


class FixedParser(ExplodingParser):
    version: ClassVar[str] = "0.2"

    def parse(self, msg: ParsedMessage) -> CardDraft:
        return CardDraft(source_type="email", action="request", text=msg.text[:40], author_email=msg.sender_email)


def _with_parsers(app, *parsers):  # type: ignore[no-untyped-def]
    return replace(app.context, registry=build_registry([*parsers, *discover()]))


def test_a_parser_that_raises_quarantines_only_its_message(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    context = _with_parsers(app, ExplodingParser())
    summary = ingest_paths(app.database, context, [_mailbox(tmp_path, EMAIL_CASES)], max_message_bytes=10**7)
    assert summary.outcomes["quarantined"] == 1
    assert summary.outcomes["card"] == 4
    with app.session() as session:
        [quarantined] = mail_list(session, statuses=["quarantined"])
        kept = store.raw_bytes(session, quarantined.id)
    assert quarantined.origin.endswith("outlook-cp1251-signature-quote.eml")
    assert quarantined.reason == "exploding parser failed: KeyError: 'layout changed'"
    assert quarantined.parser == "exploding"
    assert kept == (FIXTURES / "parsers" / "email" / "outlook-cp1251-signature-quote.eml").read_bytes()


def test_reparse_after_a_fix_turns_the_quarantined_message_into_a_card(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken = _with_parsers(app, ExplodingParser())
    ingest_paths(app.database, broken, [_mailbox(tmp_path, EMAIL_CASES)], max_message_bytes=10**7)
    summary = reparse(app.settings, app.database, _with_parsers(app, FixedParser()), statuses=["quarantined"])
    assert summary.counts == {"card": 1}
    with app.session() as session:
        assert mail_list(session, statuses=["quarantined"]) == []
        card = session.scalars(select(Card).where(Card.parser == "exploding")).one()
        raw = store.get_raw(session, card.raw_message_id)
    assert card.author_email == "i.ulmenko@vektor-kzn.ru"
    assert raw is not None and raw.status == "card" and raw.parser_version == "0.2"


def test_reparse_updates_cards_in_place_keeping_assignment_and_history(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingest_paths(
        app.database, _with_parsers(app, FixedParser()), [_mailbox(tmp_path, EMAIL_CASES)], max_message_bytes=10**7
    )
    with app.session(write=True) as session:
        card = session.scalars(select(Card).where(Card.parser == "exploding")).one()
        session.execute(update(Card).where(Card.id == card.id).values(responsible="anna", processed=True))
        session.commit()
    summary = reparse(app.settings, app.database, app.context, refs=[card.ref])
    assert summary.counts == {"card": 1}
    with app.session() as session:
        again = session.get(Card, card.id)
        events = [e.kind for e in store.card_events(session, card.id)]
    assert again is not None
    assert again.parser == "email" and again.author_phone == "+79175551234"  # the real parser's fuller reading
    assert (again.responsible, again.processed) == ("anna", True)
    assert events == ["created", "reparsed"]


class HostileLinksParser:
    name: ClassVar[str] = "hostile"
    priority: ClassVar[int] = 500
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        return True

    def parse(self, msg: ParsedMessage) -> CardDraft:
        return CardDraft(
            source_type="site_form",
            action="request",
            text="hi",
            source_url="javascript:alert(document.cookie)",
            author_url=" JaVaScRiPt:alert(1)",
            author_photo_url="data:image/svg+xml;base64,PHN2Zz4=",
            product_url="vbscript:msgbox",
            reply_url="java\tscript:alert(1)",
            author_email="client@example.ru",
        )


def test_a_javascript_link_never_reaches_a_stored_url(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    context = _with_parsers(app, HostileLinksParser())
    ingest_paths(app.database, context, [EMAIL_CASES[0]], max_message_bytes=10**7)
    with app.session() as session:
        card = session.scalars(select(Card)).one()
    for field in ("source_url", "author_url", "author_photo_url", "product_url"):
        assert getattr(card, field) is None
    assert card.reply_url == "mailto:client@example.ru?subject=" + card.reply_url.split("subject=", 1)[1]
    assert card.notes is not None and "unsafe or invalid URL dropped from source_url" in card.notes


def test_a_message_that_keeps_killing_the_process_is_quarantined(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = b"From: client@example.ru\r\nSubject: poison\r\nMessage-ID: <poison@x>\r\n\r\nbody\r\n"
    item = store.RawItem(origin="test", data=raw, message_id="<poison@x>", content_hash="0" * 64)
    with app.session(write=True) as session:
        [raw_id] = store.add_raw(session, [item])
        # three earlier runs died while handling it
        session.execute(update(RawMessage).where(RawMessage.id == raw_id).values(attempts=3))
        session.commit()
    summary = process_pending(app.database, app.context)
    assert summary.counts == {"quarantined": 1}
    with app.session() as session:
        stored = store.get_raw(session, raw_id)
    assert stored is not None and stored.status == "quarantined"
    assert "did not finish 3 times" in (stored.reason or "")


def _table(app) -> list[tuple]:  # type: ignore[no-untyped-def]
    """Everything the pipeline decided, comparable across runs (ids, statuses, reasons, card fields)."""
    with app.session() as session:
        raws = session.execute(
            select(RawMessage.message_id, RawMessage.status, RawMessage.reason, RawMessage.parser).order_by(
                RawMessage.message_id
            )
        ).all()
        cards = session.execute(
            select(
                Card.message_id, Card.source_type, Card.action, Card.author_name, Card.text, Card.responsible
            ).order_by(Card.message_id)
        ).all()
    return [tuple(row) for row in raws] + [tuple(row) for row in cards]


def test_worker_processes_give_the_same_outcomes_as_the_process_itself(tmp_path: Path, database_url: str) -> None:
    """With a pool, batch N+1 is evaluated while batch N is written: nothing may differ from one-by-one."""
    from interestd.workers import WorkerPool
    from tests.conftest import fresh_database_url, make_app

    cases = sorted((FIXTURES / "parsers").glob("*/*.eml")) + MAIL_CASES
    team = '[[managers]]\nlogin = "anna"\nemails = ["anna@uyut-dom.ru"]\n[[managers]]\nlogin = "oleg"\n'
    config = '[limits]\nbatch_size = 7\n[assignment]\npolicy = "round_robin"\n' + team
    serial = make_app(tmp_path / "serial", database_url, config)
    _ingest(serial, _mailbox(tmp_path / "serial", cases))
    expected = _table(serial)
    serial.database.dispose()

    pooled = make_app(tmp_path / "pooled", fresh_database_url(database_url, tmp_path, "pooled"), config)
    with WorkerPool(pooled.context, processes=2, timeout=60) as pool:
        summary = ingest_paths(
            pooled.database,
            pooled.context,
            [_mailbox(tmp_path / "pooled", cases)],
            max_message_bytes=10**7,
            evaluator=pool,
        )
    assert sum(summary.outcomes.values()) == len(cases)
    assert _table(pooled) == expected
    with pooled.session() as session:
        assigned = session.scalars(select(Card.responsible)).all()
    assert set(assigned) == {"anna", "oleg"}  # round robin went on across batches
    pooled.database.dispose()


def test_an_import_evaluates_what_it_stored_while_it_reads_the_rest(tmp_path: Path, database_url: str) -> None:
    """Stored batches go to the evaluator at once, not after the whole import is read: the workers are busy
    while the next messages are read and stored, and cards appear as a long import goes on."""
    from tests.conftest import SignallingEvaluator, make_app

    app = make_app(tmp_path, database_url, "[limits]\nbatch_size = 5\n")
    cases = sorted((FIXTURES / "parsers").glob("*/*.eml"))
    assert len(cases) > 30
    evaluator = SignallingEvaluator()
    read = 0
    evaluated_while_reading: list[bool] = []

    def progress(_: int) -> None:
        nonlocal read
        read += 1
        if read == 20:  # four batches stored, many more to read
            evaluated_while_reading.append(evaluator.called.wait(20))

    summary = ingest_paths(
        app.database,
        app.context,
        [_mailbox(tmp_path, cases)],
        max_message_bytes=10**7,
        progress=progress,
        evaluator=evaluator,
    )
    assert evaluated_while_reading == [True]
    assert sum(summary.outcomes.values()) == len(cases) == evaluator.rows
    with app.session() as session:
        assert session.scalar(select(func.count()).where(RawMessage.status == "new")) == 0
    app.database.dispose()


def test_one_worker_pool_serves_several_polls_at_once(app) -> None:  # type: ignore[no-untyped-def]
    """The daemon polls each mailbox in a thread of its own, all handing batches to one pool: every batch gets
    its own messages' outcomes, in order."""
    import threading
    from datetime import UTC, datetime

    from interestd.pipeline import evaluate_serially
    from interestd.workers import WorkerPool

    cases = sorted((FIXTURES / "parsers").glob("*/*.eml"))
    rows = [store.PendingRaw(n, path.read_bytes(), 0, path.stat().st_size) for n, path in enumerate(cases)]
    now = datetime.now(UTC)
    expected = evaluate_serially(rows, app.context, now)
    halves = [rows[0::2], rows[1::2]]
    got: dict[int, list] = {}
    with WorkerPool(app.context, processes=2, timeout=60) as pool:

        def poll(number: int) -> None:
            got[number] = pool(halves[number], app.context, now)

        threads = [threading.Thread(target=poll, args=(number,)) for number in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert [outcome.card for outcome in got[0]] == [outcome.card for outcome in expected[0::2]]
    assert [outcome.card for outcome in got[1]] == [outcome.card for outcome in expected[1::2]]
    assert sum(outcome.card is not None for outcome in expected) > 30


def test_a_message_the_database_refuses_is_quarantined_alone(tmp_path: Path, sqlite_url: str) -> None:
    """The batch is written in a few statements; when the database refuses one card, the batch is written again
    message by message and only that message is quarantined, with the database's reason."""
    from sqlalchemy import text

    from tests.conftest import make_app

    app = make_app(tmp_path, sqlite_url)
    with app.database.session(write=True) as session:
        session.execute(
            text(
                "CREATE TRIGGER refuse_card BEFORE INSERT ON card WHEN NEW.text LIKE '%refuse me%' "
                "BEGIN SELECT RAISE(ABORT, 'card refused by a trigger'); END"
            )
        )
        session.commit()
    folder = tmp_path / "letters"
    folder.mkdir()
    for n in range(6):
        body = "please refuse me" if n == 3 else f"question {n}"
        (folder / f"{n}.eml").write_bytes(
            f"From: client{n}@example.ru\r\nSubject: q{n}\r\nMessage-ID: <q{n}@example.ru>\r\n\r\n{body}\r\n".encode()
        )
    summary = _ingest(app, folder)
    assert summary.outcomes == {"card": 5, "quarantined": 1}
    with app.session() as session:
        refused = session.scalars(select(RawMessage).where(RawMessage.status == "quarantined")).one()
        events = session.scalar(select(func.count()).select_from(Event))
    assert refused.message_id == "<q3@example.ru>"
    assert "card refused by a trigger" in (refused.reason or "")
    assert events == 5
    app.database.dispose()
