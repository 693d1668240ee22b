"""The queue at scale (a million cards over three years), claims racing on PostgreSQL, and CLI start-up."""

from __future__ import annotations

import io
import multiprocessing
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.measure import median, run_command

MANAGERS = [f"m{n:02d}" for n in range(8)]
SOURCES = [
    ("vk", "comment", "https://vk.com/wall-1_{n}?reply={m}"),
    ("vk", "message", "https://vk.com/gim1?sel={m}"),
    ("facebook", "comment", "https://www.facebook.com/100064/posts/{n}?comment_id={m}"),
    ("instagram", "comment", "https://www.instagram.com/p/C{n}/c/{m}/"),
    ("odnoklassniki", "comment", "https://ok.ru/group/5/topic/{n}"),
    ("site_form", "request", "mailto:client{m}@example.ru"),
    ("site_review", "review", "https://uyut-dom.ru/product/{n}#review-{m}"),
    ("site_comment", "comment", "https://uyut-dom.ru/blog/{n}#comment-{m}"),
    ("chat", "chat_message", "https://app.jivosite.com/chat/{m}"),
    ("email", "message", "mailto:client{m}@example.ru"),
    ("telegram", "comment", "https://t.me/uyutdom/{n}?comment={m}"),
]
PRODUCTS = [f"Товар {n}" for n in range(60)]
TEXT = "Здравствуйте! Подскажите, пожалуйста, есть ли в наличии и сколько стоит доставка в Казань? " * 2


def config_text(database: Path) -> str:
    team = "".join(f'[[managers]]\nlogin = "{login}"\n' for login in MANAGERS)
    return f'[database]\nurl = "sqlite:///{database}"\n' + team


def fill_queue(url: str, count: int, *, years: float = 3.0, seed: int = 3, now: datetime | None = None) -> None:
    """`count` cards spread over `years` up to now, as a queue worked for that long looks: nearly all old cards
    processed by one of eight managers, the last days' open; each with its message row and its events."""
    from sqlalchemy import insert

    from interestd.db import Database, upgrade
    from interestd.models import Card, Event, RawMessage

    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    span = timedelta(days=365 * years)
    database = Database(url)
    upgrade(database)
    chunk = 20_000
    try:
        for start in range(0, count, chunk):
            raws, cards, events = [], [], []
            for number in range(start, min(start + chunk, count)):
                occurred = now - span + span * (number / count) + timedelta(seconds=rng.randint(0, 600))
                received = occurred + timedelta(seconds=rng.randint(5, 300))
                source, action, link = SOURCES[rng.randrange(len(SOURCES))]
                author = rng.randrange(count // 3 + 1)
                message_id = f"<queue-{number}@bench.interestd>"
                old = now - received > timedelta(days=2)
                processed = old and rng.random() < 0.97
                manager = MANAGERS[rng.randrange(len(MANAGERS))] if processed or rng.random() < 0.5 else None
                answered = received + timedelta(minutes=rng.randint(3, 600)) if processed else None
                raws.append(
                    {
                        "id": number + 1,
                        "message_id": message_id,
                        "content_hash": f"{number:064x}",
                        "origin": "imap:default/INBOX",
                        "mailbox": "default",
                        "folder": "INBOX",
                        "uidvalidity": 1,
                        "uid": number + 1,
                        "size": 15_000,
                        "subject": f"Новый комментарий {number}",
                        "sender": "notify@example.ru",
                        "sender_address": "notify@example.ru",
                        "date": occurred,
                        "stored_at": received,
                        "sent_at": occurred,
                        "status": "card",
                        "attempts": 1,
                        "processed_at": received,
                    }
                )
                cards.append(
                    {
                        "id": number + 1,
                        "raw_message_id": number + 1,
                        "message_id": message_id,
                        "parser": source,
                        "received_at": received,
                        "source_url": link.format(n=number, m=author),
                        "occurred_at": occurred,
                        "source_type": source,
                        "author_name": f"Клиент {author}",
                        "author_url": f"https://vk.com/id{author}" if source == "vk" else None,
                        "author_photo_url": None,
                        "author_email": f"client{author}@example.ru" if source in ("site_form", "email") else None,
                        "author_phone": None,
                        "action": action,
                        "text": TEXT,
                        "product": PRODUCTS[rng.randrange(len(PRODUCTS))] if rng.random() < 0.6 else None,
                        "product_url": None,
                        "responsible": manager,
                        "processed": processed,
                        "processed_at": answered,
                        "screenshot": None,
                        "reply_url": link.format(n=number, m=author),
                        "replied": processed,
                        "subject": f"Новый комментарий {number}",
                        "notes": None,
                        "assigned_at": received if manager else None,
                        "updated_at": answered or received,
                    }
                )
                events.append(_event(number + 1, "created", received, actor="pipeline"))
                if manager:
                    events.append(_event(number + 1, "claimed", received, actor=manager, manager=manager))
                if processed:
                    events.append(_event(number + 1, "done", answered, actor=manager, manager=manager))
            with database.session(write=True) as session:
                session.execute(insert(RawMessage.__table__), raws)
                session.execute(insert(Card.__table__), cards)
                session.execute(insert(Event.__table__), events)
                session.commit()
    finally:
        database.dispose()


def _event(card_id: int, kind: str, at: Any, *, actor: str, manager: str | None = None) -> dict[str, Any]:
    return {
        "card_id": card_id,
        "kind": kind,
        "at": at,
        "actor": actor,
        "manager": manager,
        "detail": None,
        "data": None,
        "rule": None,
    }


@dataclass
class QueueTimes:
    """Median seconds of each manager command, in-process (the work) and as a fresh CLI process (what a
    manager waits for)."""

    work: dict[str, float]
    cli: dict[str, float]


def queue_commands(config: Path, *, repeats: int = 5) -> QueueTimes:
    from interestd.config import load_settings
    from interestd.report.delivery import make_report
    from interestd.services import card_by_ref, card_history, day_bounds, export_cards, feed, open_database
    from interestd.store import FeedFilter

    settings = load_settings(config, {**os.environ, "INTERESTD_DATABASE_URL": ""})
    database = open_database(settings)
    zone = settings.zone
    today = datetime.now(zone).date()
    day = today - timedelta(days=30)
    month_day = (today.replace(day=1) - timedelta(days=1)).replace(day=15)
    since, until = day_bounds(day, zone)
    with database.session() as session:
        newest = feed(session, FeedFilter(), limit=1)
    ref = newest[0].ref if newest else "INT-1"

    def run_feed() -> None:
        with database.session() as session:
            feed(session, FeedFilter(), limit=50)

    def run_mine() -> None:
        with database.session() as session:
            feed(session, FeedFilter(responsible=MANAGERS[1]), limit=50)

    def run_show() -> None:
        with database.session() as session:
            card_history(session, card_by_ref(session, ref))

    def run_export() -> None:
        with database.session() as session:
            export_cards(session, io.StringIO(), fmt="json", since=since, until=until)

    def run_report() -> None:
        with database.session() as session:
            make_report(session, settings, kind="month", day=month_day)

    actions = {
        "feed": run_feed,
        "feed --mine": run_mine,
        "show": run_show,
        "export one day": run_export,
        "month report": run_report,
    }
    work = {}
    for name, action in actions.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            action()
            times.append(time.perf_counter() - started)
        work[name] = median(times)
    database.dispose()

    base = [sys.executable, "-m", "interestd", "--config", str(config)]
    commands = {
        "feed": [*base, "feed"],
        "feed --mine": [*base, "--as", MANAGERS[1], "feed", "--mine"],
        "show": [*base, "show", ref],
        "export one day": [*base, "export", "--since", day.isoformat(), "--until", day.isoformat()],
        "month report": [*base, "report", "--period", "month", "--date", month_day.isoformat()],
    }
    env = {**os.environ, "INTERESTD_DATABASE_URL": ""}
    cli = {}
    for name, command in commands.items():
        times = []
        for _ in range(max(repeats // 2, 1)):
            run = run_command(command, env=env)
            if run.returncode != 0:
                raise RuntimeError(f"interestd {name} failed: {run.stderr.strip()[-300:]}")
            times.append(run.seconds)
        cli[name] = median(times)
    return QueueTimes(work, cli)


# --- claims racing on PostgreSQL ----------------------------------------------------------------------------


def postgres_url() -> str:
    return os.environ.get("INTERESTD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fresh_schema(url: str) -> tuple[str, str]:
    """A new empty schema in the PostgreSQL database; (url that uses it, schema name)."""
    import psycopg

    schema = f"bench_claims_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    return f"{url}?options=-csearch_path%3D{schema}", schema


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass
class ClaimRace:
    seconds: float
    claims: int
    conflicts: int
    doubles: int  # cards claimed by two managers (must be 0)
    unclaimed: int  # open cards left (must be 0)


def _claimer(config: str, url: str, login: str, barrier: Any, results: Any, seed: int, mode: str) -> None:
    from sqlalchemy import select

    from interestd import work
    from interestd.config import load_settings
    from interestd.db import Database
    from interestd.errors import ConflictError, NotFoundError
    from interestd.models import Card

    rng = random.Random(seed)
    settings = load_settings(Path(config), {**os.environ, "INTERESTD_DATABASE_URL": url})
    database = Database(url, busy_timeout=60)
    claims = conflicts = 0
    barrier.wait()
    try:
        while True:
            if mode == "next":  # `interestd claim --next`: the longest-waiting card this manager may take
                try:
                    with database.session(write=True) as session:
                        work.claim_next(session, settings, login)
                    claims += 1
                except NotFoundError:
                    break
                continue
            with database.session() as session:
                # `claim INT-n` from the top of `feed --unclaimed`: everyone looks at the same few cards.
                open_ids = list(
                    session.scalars(select(Card.id).where(Card.responsible.is_(None)).order_by(Card.id).limit(16))
                )
            if not open_ids:
                break
            try:
                with database.session(write=True) as session:
                    work.claim(session, settings, f"INT-{rng.choice(open_ids)}", login)
                claims += 1
            except ConflictError:
                conflicts += 1
    finally:
        database.dispose()
        results.put((claims, conflicts))


def claim_race(work_dir: Path, *, cards: int, processes: int, mode: str = "next") -> ClaimRace:
    """`processes` managers claim every card of a `cards`-long open queue at once, each taking the next card
    (mode "next") or racing for the cards at the top of the feed (mode "race"); doubles must be 0."""
    from sqlalchemy import func, select

    from interestd.db import Database
    from interestd.models import Card, Event

    base = postgres_url()
    url, schema = fresh_schema(base)
    team = [f"c{n:02d}" for n in range(processes)]
    config = work_dir / "claims.toml"
    config.write_text("".join(f'[[managers]]\nlogin = "{login}"\n' for login in team))
    config.chmod(0o600)
    try:
        fill_open_queue(url, cards)
        context = multiprocessing.get_context("fork")
        barrier = context.Barrier(processes + 1)
        results = context.Queue()
        workers = [
            context.Process(target=_claimer, args=(str(config), url, login, barrier, results, n, mode))
            for n, login in enumerate(team)
        ]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.perf_counter()
        outcomes = [results.get(timeout=600) for _ in workers]
        seconds = time.perf_counter() - started
        for worker in workers:
            worker.join(30)
        database = Database(url)
        with database.session() as session:
            per_card = (
                select(Event.card_id)
                .where(Event.kind == "claimed")
                .group_by(Event.card_id)
                .having(func.count(func.distinct(Event.manager)) > 1)
                .subquery()
            )
            doubles = session.scalar(select(func.count()).select_from(per_card)) or 0
            unclaimed = session.scalar(select(func.count()).select_from(Card).where(Card.responsible.is_(None))) or 0
        database.dispose()
        return ClaimRace(seconds, sum(c for c, _ in outcomes), sum(c for _, c in outcomes), doubles, unclaimed)
    finally:
        drop_schema(base, schema)


def fill_open_queue(url: str, count: int) -> None:
    """`count` open cards, none claimed, each from another person."""
    from sqlalchemy import String, cast, literal, update

    from interestd.db import Database
    from interestd.models import Card, Event

    fill_queue(url, count, years=0.001, now=datetime.now(UTC) + timedelta(days=3))
    database = Database(url)
    with database.session(write=True) as session:
        session.execute(
            update(Card).values(
                responsible=None,
                processed=False,
                processed_at=None,
                replied=False,
                assigned_at=None,
                author_url=literal("https://vk.com/id") + cast(Card.id, String),
                author_email=None,
            )
        )
        session.execute(Event.__table__.delete().where(Event.kind != "created"))
        session.commit()
    database.dispose()


# --- CLI start-up -------------------------------------------------------------------------------------------


def cli_start(work_dir: Path, *, repeats: int) -> dict[str, float]:
    """Median wall seconds of `interestd --help` and of `interestd feed` on an empty (initialised) database."""
    database = work_dir / "empty.db"
    config = work_dir / "empty.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{database}"\n')
    config.chmod(0o600)
    env = {**os.environ, "INTERESTD_DATABASE_URL": ""}
    base = [sys.executable, "-m", "interestd", "--config", str(config)]
    first = run_command([*base, "feed"], env=env)  # creates the database: not a cold start of the command
    if first.returncode != 0:
        raise RuntimeError(f"interestd feed failed: {first.stderr.strip()[-300:]}")
    found = {}
    for name, command in {"--help": [*base, "--help"], "feed (empty database)": [*base, "feed"]}.items():
        times = []
        for _ in range(repeats):
            run = run_command(command, env=env)
            if run.returncode != 0:
                raise RuntimeError(f"interestd {name} failed: {run.stderr.strip()[-300:]}")
            times.append(run.seconds)
        found[name] = median(times)
    return found
