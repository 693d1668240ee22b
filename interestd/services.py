"""What the CLI, the scheduler and the tests call: ingest, feed, show, export, mail lists, reparse."""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from sqlmodel import Session

from interestd import store
from interestd.config import Settings
from interestd.db import Database, check_schema
from interestd.errors import NotFoundError, UsageError
from interestd.models import Card, Event, RawMessage, utcnow
from interestd.safety import csv_cell

if TYPE_CHECKING:  # the pipeline is imported by the commands that process mail, not by every command
    from concurrent.futures import Future

    from interestd.pipeline import Evaluator, PipelineContext, ProcessSummary

EXPORT_KEYS = (
    "id",
    "ref",
    "message_id",
    "parser",
    "received_at",
    "source_url",
    "occurred_at",
    "source_type",
    "author_name",
    "author_url",
    "author_photo_url",
    "author_email",
    "author_phone",
    "action",
    "text",
    "product",
    "product_url",
    "responsible",
    "processed",
    "processed_at",
    "screenshot",
    "reply_url",
    "replied",
)
_REF = re.compile(r"^\s*(?:INT-?)?(\d+)\s*$", re.IGNORECASE)


def open_database(settings: Settings) -> Database:
    """The database of these settings, checked to have the schema this code needs (a new one is initialised),
    with the managers of the config synced into it."""
    from interestd.work import sync_managers

    database = Database(
        settings.database_url,
        busy_timeout=settings.database.busy_timeout.total_seconds(),
        pool_size=settings.database.pool_size,
    )
    try:
        check_schema(database)
        sync_managers(database, settings)
    except Exception:
        database.dispose()
        raise
    return database


def build_context(settings: Settings) -> PipelineContext:
    """The pipeline's view of the settings: parsers, phone region, limits."""
    from interestd.custom import build_custom_parsers
    from interestd.evaluation import StormRules
    from interestd.pipeline import PipelineContext
    from interestd.products import ProductRules
    from interestd.registry import load_registry
    from interestd.work import TeamRules

    return PipelineContext(
        registry=load_registry(build_custom_parsers(settings.custom_parsers)),
        products=ProductRules.from_settings(settings.products),
        team=TeamRules.from_settings(settings),
        storm=StormRules(
            limit=settings.limits.sender_limit,
            window_seconds=settings.limits.sender_window.total_seconds(),
            allow=tuple(settings.limits.sender_allow),
        ),
        phone_region=settings.general.phone_region,
        max_attempts=settings.limits.max_attempts,
        batch_size=settings.limits.batch_size,
        batch_bytes=settings.limits.batch_bytes,
    )


@contextlib.contextmanager
def evaluator_for(settings: Settings, context: PipelineContext, count: int) -> Iterator[Evaluator]:
    """How to evaluate `count` messages: worker processes (all cores, time and memory limits) for many, the
    process itself for a few (or when [limits] workers = 0)."""
    from interestd.pipeline import evaluate_serially

    pool = _worker_pool(settings, context, count)
    try:
        yield pool or evaluate_serially
    finally:
        if pool is not None:
            pool.close()


@contextlib.contextmanager
def evaluator_on_demand(settings: Settings, context: PipelineContext) -> Iterator[EvaluatorOnDemand]:
    """An evaluator for a poll, that does not know yet how much it will find (see EvaluatorOnDemand)."""
    evaluator = EvaluatorOnDemand(settings, context)
    try:
        yield evaluator
    finally:
        evaluator.close()


class EvaluatorOnDemand:
    """Evaluates in the process itself until a poll announces (PendingProcessor.expect) enough messages to
    pay for worker processes; from then on in the workers."""

    parallel = True  # evaluation runs beside the fetch, in a thread of its own (see PendingProcessor)

    def __init__(self, settings: Settings, context: PipelineContext) -> None:
        self.settings = settings
        self.context = context
        self.expected = 0
        self.pool: Any | None = None

    def expect(self, count: int) -> None:
        self.expected += count
        if self.pool is None:
            self.pool = _worker_pool(self.settings, self.context, self.expected)

    def __call__(self, rows: Sequence[Any], context: PipelineContext, now: datetime) -> list[Any]:
        from interestd.pipeline import evaluate_serially

        return (self.pool or evaluate_serially)(rows, context, now)

    def submit(self, rows: Sequence[Any], context: PipelineContext, now: datetime) -> Future[list[Any]] | None:
        """The workers' future outcomes, or None while there are no workers (see PendingProcessor._submit)."""
        return self.pool.submit(rows, context, now) if self.pool is not None else None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def _worker_pool(settings: Settings, context: PipelineContext, count: int) -> Any | None:
    """Worker processes for `count` messages, or None when the process itself should evaluate them."""
    from interestd.forking import POOL_FROM, uses_workers

    workers = settings.limits.worker_count
    if not uses_workers(settings, count):
        return None
    from interestd.workers import WorkerPool

    return WorkerPool(
        context,
        processes=min(workers, max(count // POOL_FROM, 1)),
        timeout=settings.limits.message_timeout.total_seconds(),
        memory_limit=settings.limits.worker_memory,
    )


# --- ingest -------------------------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    """The one-line result of an ingest: how many messages were new, duplicates, and what they became."""

    read: int = 0
    duplicates: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [
            f"{self.outcomes['card']} new cards",
            f"{self.duplicates} duplicates",
            f"{self.outcomes['skipped']} skipped",
            f"{self.outcomes['quarantined']} quarantined",
        ]
        if self.outcomes["proof"]:
            parts.append(f"{self.outcomes['proof']} reply proofs")
        if self.errors:
            parts.append(f"{len(self.errors)} unreadable files")
        return f"{self.read} messages read: " + ", ".join(parts)


def ingest_paths(
    database: Database,
    context: PipelineContext,
    paths: Sequence[Path],
    *,
    max_message_bytes: int,
    progress: Callable[[int], None] | None = None,
    evaluator: Evaluator | None = None,
) -> IngestSummary:
    """Store and process the mail in .eml files, folders, mbox files and Maildirs; idempotent."""
    from interestd.message import message_key, quick_message_id
    from interestd.pipeline import PendingProcessor, batch_limits, evaluate_serially
    from interestd.sources.files import check_paths, iter_messages

    path_list = list(paths)
    check_paths(path_list)
    summary = IngestSummary()
    batch: list[store.RawItem] = []
    oversized: list[tuple[store.RawItem, int]] = []
    held = 0  # bytes in `batch`
    limits = batch_limits(context.batch_size)
    limit = next(limits)

    def flush() -> None:
        nonlocal held, limit
        with database.session(write=True) as session:
            new_ids = store.add_raw(session, batch)
            summary.duplicates += len(batch) - len(new_ids)
            for item, size in oversized:
                reason = f"too large: {size} bytes (limit {max_message_bytes}); only the headers were kept"
                if store.add_quarantined_raw(session, item, reason, keep_bytes=True) is None:
                    summary.duplicates += 1
                else:
                    summary.outcomes["quarantined"] += 1
            session.commit()
        batch.clear()
        oversized.clear()
        held = 0
        limit = next(limits)
        # Worker processes evaluate what is stored while the next batch is read, and cards appear as a long
        # import goes on.
        processor.step()

    with PendingProcessor(database, context, evaluator=evaluator or evaluate_serially) as processor:
        for message in iter_messages(path_list, max_bytes=max_message_bytes, errors=summary.errors):
            summary.read += 1
            key, digest = message_key(message.data, quick_message_id(message.data))
            item = store.RawItem(
                origin=message.origin, data=message.data, message_id=key, content_hash=digest, size=message.size
            )
            if message.truncated:
                oversized.append((item, message.size))
            else:
                batch.append(item)
                held += len(item.data)
            if len(batch) + len(oversized) >= limit or held >= context.batch_bytes:
                flush()
            if progress is not None:
                progress(message.consumed)
        if batch or oversized:
            flush()
        summary.outcomes.update(processor.finish().counts)
    return summary


# --- reading cards ------------------------------------------------------------------------------------------


def parse_ref(ref: str) -> int:
    match = _REF.match(ref or "")
    if not match:
        raise UsageError(f"not a card reference: {ref!r} (expected INT-<number>)")
    return int(match.group(1))


def card_by_ref(session: Session, ref: str) -> Card:
    number = parse_ref(ref)
    card = store.get_card(session, number)
    if card is None:
        raise NotFoundError(f"no card INT-{number}")
    return card


def feed(session: Session, query: store.FeedFilter, *, limit: int = 50) -> list[Card]:
    return store.feed(session, query, limit=limit)


def card_history(session: Session, card: Card) -> list[Event]:
    assert card.id is not None
    return store.card_events(session, card.id)


def card_record(card: Card) -> dict[str, Any]:
    """A card with exactly the keys of card.schema.json (dates as ISO 8601 with offset, UTC)."""
    record: dict[str, Any] = {}
    for key in EXPORT_KEYS:
        value = card.ref if key == "ref" else getattr(card, key)
        record[key] = value.isoformat() if isinstance(value, datetime) else value
    return record


def event_record(event: Event) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "kind": event.kind,
        "actor": event.actor,
        "manager": event.manager,
        "rule": event.rule,
        "detail": event.detail,
    }


# --- export -------------------------------------------------------------------------------------------------


def export_cards(
    session: Session, out: TextIO, *, fmt: str, since: datetime | None = None, until: datetime | None = None
) -> int:
    """Write the cards that occurred in [since, until) as json, jsonl or csv; returns how many."""
    cards = store.iter_cards(session, since=since, until=until)
    if fmt == "jsonl":
        count = 0
        for card in cards:
            out.write(json.dumps(card_record(card), ensure_ascii=False) + "\n")
            count += 1
        return count
    if fmt == "json":
        out.write("[")
        count = 0
        for card in cards:
            out.write(("," if count else "") + "\n  " + json.dumps(card_record(card), ensure_ascii=False))
            count += 1
        out.write("\n]\n" if count else "]\n")
        return count
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=EXPORT_KEYS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        count = 0
        for card in cards:
            writer.writerow({key: csv_cell(value) for key, value in card_record(card).items()})
            count += 1
        return count
    raise UsageError(f"unknown export format {fmt!r} (json, jsonl or csv)")


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants where a calendar day in `zone` starts and ends."""
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)


def parse_date_option(value: str | None, zone: ZoneInfo, *, end: bool = False) -> datetime | None:
    """A --since/--until value: YYYY-MM-DD (a day in the configured zone) or a full ISO 8601 time."""
    if value is None:
        return None
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            start, finish = day_bounds(date.fromisoformat(text), zone)
            return finish if end else start
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not a date: {value!r} (use YYYY-MM-DD or an ISO 8601 time)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


# --- messages that did not become cards ---------------------------------------------------------------------

MAIL_STATUSES = ("new", "card", "skipped", "quarantined", "proof")


def mail_list(session: Session, *, statuses: Iterable[str], limit: int = 50) -> list[RawMessage]:
    chosen = list(statuses)
    unknown = [s for s in chosen if s not in MAIL_STATUSES]
    if unknown:
        raise UsageError(f"unknown status {unknown[0]!r} (one of {', '.join(MAIL_STATUSES)})")
    return store.list_raw(session, statuses=chosen, limit=limit)


def mail_by_id(session: Session, raw_id: int) -> RawMessage:
    raw = store.get_raw(session, raw_id)
    if raw is None:
        raise NotFoundError(f"no stored message {raw_id}")
    return raw


def mail_record(raw: RawMessage, *, raw_kept: bool, card_ref: str | None = None) -> dict[str, Any]:
    return {
        "id": raw.id,
        "status": raw.status,
        "reason": raw.reason,
        "message_id": raw.message_id,
        "subject": raw.subject,
        "sender": raw.sender,
        "date": raw.date.isoformat() if raw.date else None,
        "stored_at": raw.stored_at.isoformat(),
        "origin": raw.origin,
        "size": raw.size,
        "parser": raw.parser,
        "parser_version": raw.parser_version,
        "attempts": raw.attempts,
        "card": card_ref,
        "raw_kept": raw_kept,
    }


def mail_card_ref(session: Session, raw: RawMessage) -> str | None:
    card = store.card_for_raw(session, raw.id) if raw.id is not None else None
    return card.ref if card else None


# --- reparse ------------------------------------------------------------------------------------------------


def reparse(
    settings: Settings,
    database: Database,
    context: PipelineContext,
    *,
    statuses: Sequence[str] = ("quarantined",),
    refs: Sequence[str] = (),
) -> ProcessSummary:
    """Run stored messages through the current parsers again: the named ones (INT-n or message ids), else by status."""
    with database.session() as session:
        if refs:
            raw_ids = [_raw_id_for(session, ref) for ref in refs]
        else:
            unknown = [s for s in statuses if s not in MAIL_STATUSES]
            if unknown:
                raise UsageError(f"unknown status {unknown[0]!r} (one of {', '.join(MAIL_STATUSES)})")
            raw_ids = store.raw_ids_by_status(session, list(statuses))
    from interestd.pipeline import reprocess

    with evaluator_for(settings, context, len(raw_ids)) as evaluator:
        return reprocess(database, context, raw_ids, evaluator=evaluator)


def _raw_id_for(session: Session, ref: str) -> int:
    text = ref.strip()
    if text.upper().startswith("INT-"):
        return card_by_ref(session, text).raw_message_id
    if not text.isdigit():
        raise UsageError(f"not a card reference or message id: {ref!r}")
    return mail_by_id(session, int(text)).id or 0


# --- mailboxes ----------------------------------------------------------------------------------------------


def configured_mailboxes(settings: Settings, names: Sequence[str] = ()) -> list[Any]:
    """The mailboxes to work on: all configured ones, or those named; a clear error when there are none."""
    mailboxes = settings.all_mailboxes()
    if not mailboxes:
        raise UsageError("no mailbox is configured: add an [imap] section to the config (see config.example.toml)")
    if names:
        unknown = [name for name in names if settings.mailbox(name) is None]
        if unknown:
            raise NotFoundError(f"no mailbox named {unknown[0]!r} (configured: {', '.join(m.name for m in mailboxes)})")
        mailboxes = [m for m in mailboxes if m.name in names]
    return mailboxes


def poll_once(
    settings: Settings,
    database: Database,
    context: PipelineContext,
    names: Sequence[str] = (),
    *,
    ahead: Any | None = None,
) -> list[Any]:
    """One poll of every folder of every mailbox, with processing: exactly what the daemon's poll job does.
    `ahead` (imap.SessionsAhead) holds sessions opened while the command was starting."""
    from interestd.pipeline import process_pending
    from interestd.polling import KeptConnections, holder_name, poll_mailbox
    from interestd.work import assign_overdue

    results = []
    sessions = KeptConnections(ahead)
    with evaluator_on_demand(settings, context) as evaluator:
        try:
            for mailbox in configured_mailboxes(settings, names):
                results.append(
                    poll_mailbox(
                        database,
                        context,
                        mailbox,
                        settings.mailbox_password(mailbox),
                        max_message_bytes=settings.limits.max_message_bytes,
                        batch_bytes=settings.limits.batch_bytes,
                        holder=holder_name("cli"),
                        keep_lease=False,
                        evaluator=evaluator,
                        kept=sessions,
                    )
                )
        finally:
            sessions.close_all()  # one poll: no session outlives it
        # What is still waiting (stored by an earlier run that did not finish, or left by a poll that another
        # host holds) is processed too, as the daemon would.
        with database.session() as session:
            evaluator.expect(store.count_pending(session))
        left = process_pending(database, context, evaluator=evaluator)
    polled = [result for result in results if result.polled_by is None] or results
    if left.counts and polled:
        polled[0].processed.add(left)
    assign_overdue(database, settings)
    return results


def backfill(
    settings: Settings,
    database: Database,
    context: PipelineContext,
    *,
    since: date,
    names: Sequence[str] = (),
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Any]:
    """Import history since a date from every folder of the mailboxes, then process it."""
    from interestd.pipeline import process_pending
    from interestd.polling import backfill_mailbox

    results = []
    for mailbox in configured_mailboxes(settings, names):

        def report(done: int, total: int, name: str = mailbox.name) -> None:
            if progress is not None:
                progress(name, done, total)

        results.append(
            backfill_mailbox(
                database,
                mailbox,
                settings.mailbox_password(mailbox),
                since=since,
                max_message_bytes=settings.limits.max_message_bytes,
                batch_bytes=settings.limits.batch_bytes,
                progress=report,
            )
        )
    summary = process_pending(database, context)
    if results:
        results[-1].processed = summary
    return results


@dataclass
class FolderHealth:
    mailbox: str
    folder: str
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_uid: int
    healthy: bool


@dataclass
class StatusReport:
    """What `interestd status` shows: per-folder poll health, message counts, backlog; `healthy` for monitors."""

    folders: list[FolderHealth]
    counts: dict[str, int]
    unprocessed_cards: int
    unassigned_cards: int
    pending_messages: int
    healthy: bool
    problems: list[str]
    last_report: Any = None
    pollers: dict[str, tuple[str, datetime]] = field(default_factory=dict)


def status(settings: Settings, session: Session, *, now: datetime | None = None) -> StatusReport:
    """Health of the daemon as recorded in the database: unhealthy when a mailbox's last success is too old."""
    now = now or utcnow()
    states = {(s.mailbox, s.folder): s for s in store.all_folder_states(session)}
    folders, problems = [], []
    for mailbox in settings.all_mailboxes():
        limit = mailbox.interval * 3
        for folder in mailbox.folders:
            state = states.get((mailbox.name, folder))
            success = state.last_success_at if state else None
            healthy = success is not None and now - success <= limit
            if not healthy:
                when = f"last successful poll {success.isoformat(timespec='seconds')}" if success else "never polled"
                error = f": {state.last_error}" if state and state.last_error else ""
                problems.append(
                    f"{mailbox.name}/{folder}: {when}, more than 3 intervals ({limit}) ago{error}"
                    if success
                    else f"{mailbox.name}/{folder}: {when}{error}"
                )
            folders.append(
                FolderHealth(
                    mailbox.name,
                    folder,
                    state.last_poll_at if state else None,
                    success,
                    state.last_error if state else None,
                    state.last_error_at if state else None,
                    state.last_uid if state else 0,
                    healthy,
                )
            )
    counts = store.raw_counts(session)
    return StatusReport(
        folders=folders,
        counts=counts,
        unprocessed_cards=store.count_cards(session, processed=False),
        unassigned_cards=store.count_cards(session, processed=False, unassigned=True),
        pending_messages=counts.get("new", 0),
        healthy=not problems,
        problems=problems,
        last_report=store.latest_report_run(session),
        pollers={
            lease.name.removeprefix("mailbox:"): (lease.holder, lease.expires_at)
            for lease in store.leases(session)
            if lease.name.startswith("mailbox:") and lease.expires_at > now
        },
    )


# --- explaining one message (for writing and checking parsers) ----------------------------------------------


def explain_message(raw: bytes, context: PipelineContext, *, now: datetime | None = None) -> dict[str, Any]:
    """What the pipeline makes of one message and why: classification, the parsers that matched, the card."""
    from interestd.classify import classify
    from interestd.message import parse_raw
    from interestd.pipeline import evaluate

    now = now or utcnow()
    message = parse_raw(raw)
    original = message.original
    kind = classify(message)
    pick = context.registry.pick(original)
    outcome = evaluate(raw, context, now=now)
    card = outcome.card
    notes = list(card.notes) if card else []
    return {
        "subject": message.subject,
        "from": str(message.sender) if message.sender else None,
        "date": message.date.isoformat() if message.date else None,
        "forwarded": message.forward_kind,
        "original_from": str(original.sender) if original is not message and original.sender else None,
        "classified": kind.kind,
        "classified_reason": kind.reason,
        "considered": context.registry.names,
        "matched": list(pick.matched),
        "chosen": outcome.parser,
        "status": outcome.status,
        "reason": outcome.reason,
        "card": (
            {
                name: (value.isoformat() if isinstance(value, datetime) else value)
                for name, value in card.fields_dict().items()
            }
            if card
            else None
        ),
        "not_found": [note.removeprefix("not found: ") for note in notes if note.startswith("not found: ")],
        "notes": [note for note in notes if not note.startswith("not found: ")],
    }
