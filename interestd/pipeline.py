"""The message pipeline: raw bytes → parsed → classified → parser → normalised card → stored, one message at a time.

`evaluate` is pure (bytes in, Outcome out); `process_pending` applies outcomes to the store, each message in its
own savepoint, so one bad message is quarantined with its reason and the others go on.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from interestd import store
from interestd.db import Database, describe_error
from interestd.evaluation import Outcome, PipelineContext, evaluate
from interestd.models import utcnow
from interestd.work import assign_new, record_mail_proof

log = logging.getLogger(__name__)


@dataclass
class ProcessSummary:
    """How many messages ended in each status during one processing run."""

    counts: Counter[str] = field(default_factory=Counter)
    cards: list[int] = field(default_factory=list)

    def add(self, other: ProcessSummary) -> None:
        self.counts.update(other.counts)
        self.cards.extend(other.cards)


Evaluator = Callable[[Sequence[store.PendingRaw], PipelineContext, datetime], list[Outcome]]


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
    summary = ProcessSummary()
    # Messages whose processing was interrupted before (the process died) go one at a time, so the one
    # that kills the process is isolated and quarantined after max_attempts instead of taking others along.
    for retried, batch_size in ((True, 1), (False, context.batch_size)):
        while (limit is None or sum(summary.counts.values()) < limit) and not should_stop():
            size = batch_size if limit is None else min(batch_size, limit - sum(summary.counts.values()))
            with database.session(write=True) as session:
                rows = store.pending_raw(session, limit=size, retried=retried, max_bytes=context.batch_bytes)
                if not rows:
                    break
                store.bump_attempts(session, [row.id for row in rows])
                session.commit()
            summary.add(_process_rows(database, context, rows, evaluator=evaluator, clock=clock))
    return summary


def _process_rows(
    database: Database,
    context: PipelineContext,
    rows: Sequence[store.PendingRaw],
    *,
    evaluator: Evaluator,
    clock: Callable[[], datetime],
) -> ProcessSummary:
    summary = ProcessSummary()
    now = clock()
    exhausted = [row for row in rows if row.status == "new" and row.attempts >= context.max_attempts]
    live = [row for row in rows if row not in exhausted]
    outcomes = evaluator(live, context, now) if live else []
    with database.session(write=True) as session:
        for row in exhausted:
            reason = f"processing did not finish {row.attempts} times (the process died while handling it)"
            if store.set_raw_outcome(session, row.id, status="quarantined", reason=reason, now=now, only_if="new"):
                summary.counts["quarantined"] += 1
        for row, outcome in zip(live, outcomes, strict=True):
            status = apply_outcome(session, row, outcome, now=now, context=context)
            if status is not None:
                summary.counts[status] += 1
        session.commit()
    return summary


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
    meta = {key: value for key, value in outcome.meta.items() if key in ("subject", "sender", "sender_address", "date")}
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
        storm = _storm(session, row, meta.get("sender_address"), context)
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
        raw = store.get_raw(session, row.id)
        assert raw is not None
        card = store.add_card(
            session, raw_id=row.id, message_id=raw.message_id, parser=outcome.parser, data=outcome.card, now=now
        )
        if team.managers:
            assign_new(session, card, team, now=now)
    else:
        store.update_card_fields(session, existing, parser=outcome.parser, data=outcome.card, now=now)
    return "card"


def _storm(session: Any, row: store.PendingRaw, address: str | None, context: PipelineContext) -> str | None:
    """Why this message is part of a mail storm (too many from one sender), or None."""
    rules = context.storm
    managers = tuple(a for m in context.team.managers for a in m.emails)
    if rules.exempt(address, managers):
        return None
    assert address is not None
    window = timedelta(seconds=rules.window_seconds)
    earlier = store.earlier_from_sender(session, row.id, address, window)
    if earlier < rules.limit:
        return None
    return (
        f"mail storm: more than {rules.limit} messages from {address} within {window} "
        "([limits] sender_limit; notification senders go in sender_allow)"
    )


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
            rows = [
                store.PendingRaw(raw.id, raw.raw, 0, raw.size, raw.status)
                for raw in (store.get_raw(session, raw_id) for raw_id in chunk)
                if raw is not None and raw.id
            ]
        summary.add(_process_rows(database, context, rows, evaluator=evaluator, clock=clock))
    return summary
