"""The message pipeline: raw bytes → parsed → classified → parser → normalised card → stored, one message at a time.

`evaluate` is pure (bytes in, Outcome out); `process_pending` applies outcomes to the store, each message in its
own savepoint, so one bad message is quarantined with its reason and the others go on.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from interestd import store
from interestd.db import Database, describe_error
from interestd.evaluation import Outcome, PipelineContext, evaluate
from interestd.models import utcnow
from interestd.work import TeamLoad, assign_new, record_mail_proof

log = logging.getLogger(__name__)


@dataclass
class ProcessSummary:
    """How many messages ended in each status during one processing run."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, other: ProcessSummary) -> None:
        self.counts.update(other.counts)


Evaluator = Callable[[Sequence[store.PendingRaw], PipelineContext, datetime], list[Outcome]]


# The first batches a poll or an import stores are small: the workers wait for the first batch stored, and
# one of batch_size messages would keep them waiting for its whole fetch (or read) and transaction.
FIRST_BATCHES = (100, 300)


def batch_limits(batch_size: int) -> Iterator[int]:
    """How many messages each batch stored takes, batch after batch: FIRST_BATCHES (those smaller than
    `batch_size`), then `batch_size` from then on."""
    for size in FIRST_BATCHES:
        if size < batch_size:
            yield size
    while True:
        yield batch_size


def evaluate_serially(rows: Sequence[store.PendingRaw], context: PipelineContext, now: datetime) -> list[Outcome]:
    return [evaluate(row.raw, context, now=now) for row in rows]


def process_pending(
    database: Database,
    context: PipelineContext,
    *,
    evaluator: Evaluator = evaluate_serially,
    clock: Callable[[], datetime] = utcnow,
    limit: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ProcessSummary:
    """Process every stored message with status `new`, in batches; returns what became of them."""
    with PendingProcessor(
        database, context, evaluator=evaluator, clock=clock, limit=limit, should_stop=should_stop
    ) as processor:
        return processor.finish()


class PendingProcessor:
    """Processes the stored messages with status `new`, batch by batch, oldest first.

    `finish()` processes all of them. A poll or an import that is still storing messages calls `step()` after
    each stored batch: with an evaluator that works in other processes (`parallel`), that starts evaluating
    what is stored while the next batch is fetched, and writes what is evaluated, never waiting for the
    workers. In `finish()` the next batch is evaluated while this one's outcomes are written, so neither the
    workers nor the database wait for the other. A message is always stored (and committed) before it is
    evaluated, so nothing fetched is lost if the process dies.
    """

    # Batches handed to a parallel evaluator before the oldest is written: the second waits in line, so the
    # workers go straight on to it while the first is written (or while the next batch is still being fetched).
    IN_FLIGHT = 2

    def __init__(
        self,
        database: Database,
        context: PipelineContext,
        *,
        evaluator: Evaluator = evaluate_serially,
        clock: Callable[[], datetime] = utcnow,
        limit: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.database = database
        self.context = context
        self.evaluator = evaluator
        self.clock = clock
        self.limit = limit
        self.should_stop = should_stop
        self.summary = ProcessSummary()
        self._parallel = bool(getattr(evaluator, "parallel", False))
        self._taken = 0
        self._interrupted_done = False
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: deque[tuple[list[store.PendingRaw], datetime, Future[list[Outcome]]]] = deque()

    def __enter__(self) -> PendingProcessor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the evaluation thread. Batches still in evaluation are not written: their messages stay `new` and
        are taken one at a time by the next run, as after a crash."""
        for _, _, future in self._in_flight:
            future.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._in_flight.clear()

    def expect(self, count: int) -> None:
        """`count` more messages are about to be stored: an evaluator that starts workers on demand may start them."""
        prepare = getattr(self.evaluator, "expect", None)
        if prepare is not None:
            prepare(count)

    def step(self) -> None:
        """Without waiting for evaluation: hand what is stored to the evaluator, and write the batches evaluated."""
        if not self._parallel:
            return  # the process itself evaluates: everything is done in finish()
        self._process_interrupted()
        self._fill()
        while self._in_flight and self._in_flight[0][2].done():
            self._write_oldest()

    def finish(self) -> ProcessSummary:
        """Process everything still waiting (or until should_stop says so); returns the counts of the whole run."""
        self._process_interrupted()
        if not self._parallel:
            while rows := self._next_batch(False, self.context.batch_size):
                self.summary.add(
                    _process_rows(self.database, self.context, rows, evaluator=self.evaluator, clock=self.clock)
                )
            return self.summary
        self._fill()
        while self._in_flight:
            self._write_oldest()
        return self.summary

    def _fill(self) -> None:
        """Hand batches to the evaluator until IN_FLIGHT are there or nothing is left."""
        while len(self._in_flight) < self.IN_FLIGHT:
            rows = self._next_batch(False, self.context.batch_size)
            if not rows:
                return
            now = self.clock()
            live = [row for row in rows if row.attempts < self.context.max_attempts]
            self._in_flight.append((rows, now, self._submit(live, now)))

    def _submit(self, live: list[store.PendingRaw], now: datetime) -> Future[list[Outcome]]:
        # A pool that takes batches as they come (WorkerPool.submit) streams them through its workers with no
        # pause between one batch and the next; any other evaluator runs in a thread of its own.
        submit = getattr(self.evaluator, "submit", None)
        future = submit(live, self.context, now) if submit is not None else None
        if future is not None:
            return future
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="interestd-evaluate")
        return self._executor.submit(self.evaluator, live, self.context, now)

    def _write_oldest(self) -> None:
        """Write the oldest batch in flight (waiting for its evaluation), after handing the next one over: batches
        are written in the order they were stored, while the workers go on."""
        rows, now, future = self._in_flight.popleft()
        outcomes = future.result()
        self._fill()
        self.summary.add(_write_rows(self.database, self.context, rows, outcomes, now=now))

    def _process_interrupted(self) -> None:
        # Messages whose processing was interrupted before (the process died) go one at a time, so the one
        # that kills the process is isolated and quarantined after max_attempts instead of taking others along.
        if self._interrupted_done:
            return
        self._interrupted_done = True
        while rows := self._next_batch(True, 1):
            self.summary.add(
                _process_rows(self.database, self.context, rows, evaluator=self.evaluator, clock=self.clock)
            )

    def _next_batch(self, retried: bool, batch_size: int) -> list[store.PendingRaw]:
        if (self.limit is not None and self._taken >= self.limit) or self.should_stop():
            return []
        size = batch_size if self.limit is None else min(batch_size, self.limit - self._taken)
        with self.database.session(write=True) as session:
            rows = store.pending_raw(session, limit=size, retried=retried, max_bytes=self.context.batch_bytes)
            if rows:
                store.bump_attempts(session, [row.id for row in rows])
                session.commit()
        self._taken += len(rows)
        return rows


def _process_rows(
    database: Database,
    context: PipelineContext,
    rows: Sequence[store.PendingRaw],
    *,
    evaluator: Evaluator,
    clock: Callable[[], datetime],
) -> ProcessSummary:
    now = clock()
    live = [row for row in rows if row.attempts < context.max_attempts]
    outcomes = evaluator(live, context, now) if live else []
    return _write_rows(database, context, rows, outcomes, now=now)


def _write_rows(
    database: Database,
    context: PipelineContext,
    rows: Sequence[store.PendingRaw],
    outcomes: Sequence[Outcome],
    *,
    now: datetime,
) -> ProcessSummary:
    """Write the outcomes of the rows evaluated; rows that reached max_attempts (no outcome) are quarantined."""
    summary = ProcessSummary()
    live = [row for row in rows if row.attempts < context.max_attempts]
    with database.session(write=True) as session:
        for row in rows:
            if row.attempts < context.max_attempts:
                continue
            reason = f"processing did not finish {row.attempts} times (the process died while handling it)"
            if store.set_raw_outcome(session, row.id, status="quarantined", reason=reason, now=now, only_if="new"):
                summary.counts["quarantined"] += 1
        summary.counts.update(write_outcomes(session, live, outcomes, now=now, context=context))
        session.commit()
    return summary


def write_outcomes(
    session: Any,
    rows: Sequence[store.PendingRaw],
    outcomes: Sequence[Outcome],
    *,
    now: datetime,
    context: PipelineContext,
) -> Counter[str]:
    """Write a batch's outcomes: in a few statements for the whole batch when all goes well, else message by
    message, each in its own savepoint, so a message the database refuses is quarantined alone."""
    if not rows:
        return Counter()
    try:
        with session.begin_nested():
            return _write_batch(session, rows, outcomes, now=now, context=context)
    except Exception as exc:
        log.info("writing %d outcomes at once failed (%s); writing them one by one", len(rows), describe_error(exc))
    counts: Counter[str] = Counter()
    for row, outcome in zip(rows, outcomes, strict=True):
        status = apply_outcome(session, row, outcome, now=now, context=context)
        if status is not None:
            counts[status] += 1
    return counts


def _write_batch(
    session: Any,
    rows: Sequence[store.PendingRaw],
    outcomes: Sequence[Outcome],
    *,
    now: datetime,
    context: PipelineContext,
) -> Counter[str]:
    raw_ids = [row.id for row in rows]
    heads = store.raw_heads(session, raw_ids)  # locked: nobody else writes these rows until we commit
    existing = store.card_ids_for_raws(session, raw_ids)
    sent: dict[int, datetime] = {}
    earliest: dict[str, datetime] = {}  # per sender in this batch: how far back the storm limit must look
    for row, outcome in zip(rows, outcomes, strict=True):
        if row.id in heads:
            sent[row.id] = moment = sent_time(outcome.meta.get("date"), heads[row.id].stored_at)
            address = outcome.meta.get("sender_address")
            if address and (address not in earliest or moment < earliest[address]):
                earliest[address] = moment
    storm = _StormCount(session, context, first_id=min(raw_ids), earliest=earliest)
    counts: Counter[str] = Counter()
    updates: list[dict[str, Any]] = []
    new_cards: list[store.NewCard] = []
    one_by_one: list[tuple[store.PendingRaw, Outcome]] = []
    for row, outcome in zip(rows, outcomes, strict=True):
        head = heads.get(row.id)
        if head is None or head.status != row.status:
            continue  # another process wrote this message's outcome first
        address = outcome.meta.get("sender_address")
        if row.id in existing or outcome.status == "proof":
            one_by_one.append((row, outcome))  # a card parsed again, a reply proof: written message by message
            storm.note(address, sent[row.id])
            continue
        if outcome.status == "card" and outcome.card is not None and outcome.parser is not None:
            excess = storm.excess(address, sent[row.id])
            if excess:
                outcome = Outcome(
                    "skipped", excess, parser=outcome.parser, parser_version=outcome.parser_version, meta=outcome.meta
                )
        storm.note(address, sent[row.id])
        updates.append(
            {
                "id": row.id,
                "status": outcome.status,
                "reason": outcome.reason,
                "parser": outcome.parser,
                "parser_version": outcome.parser_version,
                **{key: outcome.meta.get(key) for key in _META_COLUMNS},
                "sent_at": sent[row.id],
                "processed_at": now,
            }
        )
        if outcome.status == "card" and outcome.card is not None and outcome.parser is not None:
            new_cards.append(store.NewCard(row.id, head.message_id, outcome.parser, outcome.card))
        counts[outcome.status] += 1
    store.set_raw_outcomes(session, updates)
    card_ids = store.add_cards(session, new_cards, now=now)
    if context.team.managers and card_ids:
        load = TeamLoad(session)
        for card_id, new in zip(card_ids, new_cards, strict=True):
            data = new.data
            card = store.ClaimedCard(
                card_id,
                data.source_type,
                data.action,
                data.product,
                data.author_url,
                data.author_email,
                data.author_phone,
                responsible=None,
            )
            assign_new(session, card, context.team, now=now, load=load)
    for row, outcome in one_by_one:
        status = _write_outcome(session, row, outcome, now=now, context=context)
        if status is not None:
            counts[status] += 1
    return counts


_META_COLUMNS = ("subject", "sender", "sender_address", "date")


def sent_time(date: datetime | None, stored_at: datetime) -> datetime:
    """When a message was sent, as far as it can be trusted: its Date header, but never after it was stored."""
    if date is None:
        return stored_at
    return min(date.astimezone(UTC), stored_at)


class _StormCount:
    """The per-sender limit over one batch: earlier messages read from the database in one query, this batch's
    counted in memory."""

    def __init__(self, session: Any, context: PipelineContext, *, first_id: int, earliest: dict[str, datetime]) -> None:
        self.rules = context.storm
        self.managers = tuple(a for m in context.team.managers for a in m.emails)
        self.window = timedelta(seconds=self.rules.window_seconds)
        self.batch: dict[str, list[datetime]] = {}
        watched = [address for address in earliest if not self.rules.exempt(address, self.managers)]
        self.stored: dict[str, list[datetime]] = {}
        if watched:
            since = min(earliest[address] for address in watched) - self.window
            self.stored = store.sent_times(session, watched, before_id=first_id, since=since)

    def excess(self, address: str | None, at: datetime) -> str | None:
        if self.rules.exempt(address, self.managers):
            return None
        assert address is not None
        start = at - self.window
        earlier = sum(1 for moment in self.stored.get(address, ()) if start <= moment <= at)
        earlier += sum(1 for moment in self.batch.get(address, ()) if start <= moment <= at)
        return storm_reason(self.rules, address, earlier)

    def note(self, address: str | None, at: datetime) -> None:
        if address:
            self.batch.setdefault(address, []).append(at)


def storm_reason(rules: Any, address: str, earlier: int) -> str | None:
    """Why a message is part of a mail storm, given how many came from its sender just before it; None if not."""
    if earlier < rules.limit:
        return None
    window = timedelta(seconds=rules.window_seconds)
    return (
        f"mail storm: more than {rules.limit} messages from {address} within {window} "
        "([limits] sender_limit; notification senders go in sender_allow)"
    )


def apply_outcome(
    session: Any, row: store.PendingRaw, outcome: Outcome, *, now: datetime, context: PipelineContext
) -> str | None:
    """Write one outcome in a savepoint; a database error quarantines just this message.

    Returns the status written, or None when another process handled the message first.
    """
    try:
        with session.begin_nested():
            return _write_outcome(session, row, outcome, now=now, context=context)
    except Exception as exc:
        log.error("message %s could not be stored: %s", row.id, describe_error(exc))
        with session.begin_nested():
            reason = f"could not be stored: {describe_error(exc)}"[:1000]
            if store.set_raw_outcome(session, row.id, status="quarantined", reason=reason, now=now, only_if=row.status):
                return "quarantined"
        return None


def _write_outcome(
    session: Any, row: store.PendingRaw, outcome: Outcome, *, now: datetime, context: PipelineContext
) -> str | None:
    # The status changes only if it is still what it was when the message was read: when two processes
    # handle the same message, the second one's update touches no row and it writes nothing else.
    meta = {key: value for key, value in outcome.meta.items() if key in _META_COLUMNS}
    head = store.raw_heads(session, [row.id]).get(row.id)
    if head is None:
        return None
    meta["sent_at"] = sent_time(meta.get("date"), head.stored_at)
    team = context.team
    existing = store.card_for_raw(session, row.id)
    if existing is not None and (outcome.status != "card" or outcome.card is None):
        # Reparsing never takes a card away from the people working it: the card stays, the news is noted.
        reason = f"reparse gave {outcome.status}: {outcome.reason}"
        if not store.set_raw_outcome(
            session, row.id, status="card", reason=reason, meta=meta, now=now, only_if=row.status
        ):
            return None
        store.add_event(
            session,
            existing.id,
            "reparsed",
            actor="pipeline",
            detail=f"parsed again: now {outcome.status} ({outcome.reason}); card kept",
            at=now,
        )
        return "card"
    if outcome.status == "proof" and outcome.proof is not None:
        status, reason = record_mail_proof(session, team, row.id, outcome.proof, now=now)
        outcome = Outcome(status, reason, meta=outcome.meta)
    if outcome.status == "card" and existing is None:
        storm = _storm(session, row, meta.get("sender_address"), meta["sent_at"], context)
        if storm:
            outcome = Outcome(
                "skipped", storm, parser=outcome.parser, parser_version=outcome.parser_version, meta=outcome.meta
            )
    if not store.set_raw_outcome(
        session,
        row.id,
        status=outcome.status,
        reason=outcome.reason,
        parser=outcome.parser,
        parser_version=outcome.parser_version,
        meta=meta,
        now=now,
        only_if=row.status,
    ):
        return None
    if outcome.status != "card" or outcome.card is None or outcome.parser is None:
        return outcome.status
    if existing is None:
        card = store.add_card(
            session, raw_id=row.id, message_id=head.message_id, parser=outcome.parser, data=outcome.card, now=now
        )
        if team.managers:
            assign_new(session, card, team, now=now)
    else:
        store.update_card_fields(session, existing, parser=outcome.parser, data=outcome.card, now=now)
    return "card"


def _storm(
    session: Any, row: store.PendingRaw, address: str | None, at: datetime, context: PipelineContext
) -> str | None:
    """Why this message is part of a mail storm (too many from one sender), or None."""
    rules = context.storm
    managers = tuple(a for m in context.team.managers for a in m.emails)
    if rules.exempt(address, managers):
        return None
    assert address is not None
    window = timedelta(seconds=rules.window_seconds)
    return storm_reason(rules, address, store.earlier_from_sender(session, row.id, address, at, window))


def reprocess(
    database: Database,
    context: PipelineContext,
    raw_ids: Sequence[int],
    *,
    evaluator: Evaluator = evaluate_serially,
    clock: Callable[[], datetime] = utcnow,
) -> ProcessSummary:
    """Run stored messages through the current parsers again, updating their cards in place."""
    summary = ProcessSummary()
    for start in range(0, len(raw_ids), context.batch_size):
        chunk = raw_ids[start : start + context.batch_size]
        with database.session() as session:
            stored = [raw for raw in (store.get_raw(session, raw_id) for raw_id in chunk) if raw is not None and raw.id]
            data = store.raw_bytes_of(session, [raw.id for raw in stored if raw.id])
            rows = [store.PendingRaw(raw.id, data.get(raw.id), 0, raw.size, raw.status) for raw in stored if raw.id]
        summary.add(_process_rows(database, context, rows, evaluator=evaluator, clock=clock))
    return summary
