"""The numbers of the summary report, each from an SQL aggregate (never a Python loop over all cards)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, distinct, func, literal, select, type_coerce
from sqlmodel import Session

from interestd.db import seconds_between, utc_day
from interestd.models import Card, Event, MailboxState, RawMessage, UTCDateTime, utcnow

PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Period:
    """[start, end) in the report's zone; `key` names it (day:2026-11-20, week:2026-W47, month:2026-11)."""

    kind: str
    start: datetime
    end: datetime
    key: str

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()


def period_containing(kind: str, day: date, zone: ZoneInfo) -> Period:
    """The day, ISO week (Monday to Sunday) or calendar month that contains `day`."""
    if kind == "day":
        first, after, key = day, day + timedelta(days=1), f"day:{day.isoformat()}"
    elif kind == "week":
        first = day - timedelta(days=day.weekday())
        after = first + timedelta(days=7)
        year, week, _ = first.isocalendar()
        key = f"week:{year}-W{week:02d}"
    elif kind == "month":
        first = day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
        key = f"month:{first.year}-{first.month:02d}"
    else:
        raise ValueError(f"unknown period {kind!r}")
    start = datetime.combine(first, time.min, tzinfo=zone)
    end = datetime.combine(after, time.min, tzinfo=zone)
    return Period(kind, start, end, key)


def previous(period: Period) -> Period:
    return period_containing(period.kind, period.first_day - timedelta(days=1), period.start.tzinfo)  # type: ignore[arg-type]


def last_complete(kind: str, now: datetime, zone: ZoneInfo) -> Period:
    """The latest period that has ended by `now` (yesterday, last week, last month)."""
    current = period_containing(kind, now.astimezone(zone).date(), zone)
    return previous(current)


@dataclass(frozen=True)
class TotalRow:
    source_type: str
    action: str
    count: int
    previous: int
    last7: int
    last30: int

    @property
    def change(self) -> int:
        return self.count - self.previous


@dataclass(frozen=True)
class ManagerRow:
    login: str
    name: str | None
    assigned: int = 0
    claimed: int = 0
    processed: int = 0
    with_proof: int = 0
    claim_median: float | None = None
    claim_p90: float | None = None
    processed_median: float | None = None
    processed_p90: float | None = None
    open_backlog: int = 0
    oldest_ref: str | None = None
    oldest_at: datetime | None = None


@dataclass(frozen=True)
class QueueRow:
    ref: str
    received_at: datetime
    source_type: str
    action: str
    author: str | None
    excerpt: str
    responsible: str | None
    reply_url: str | None


@dataclass(frozen=True)
class SilentSource:
    source_type: str
    active_days: int
    last_seen: datetime | None


@dataclass
class ReportData:
    """Everything the report shows, computed for one period."""

    period: Period
    previous: Period
    generated_at: datetime
    totals: list[TotalRow] = field(default_factory=list)
    products: list[tuple[str, int]] = field(default_factory=list)
    without_product: int = 0
    managers: list[ManagerRow] = field(default_factory=list)
    queue: list[QueueRow] = field(default_factory=list)
    queue_total: int = 0
    skipped: list[tuple[str, int]] = field(default_factory=list)
    quarantined: list[tuple[str, int]] = field(default_factory=list)
    last_successful_poll: datetime | None = None
    silent: list[SilentSource] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(row.count for row in self.totals)

    @property
    def previous_total(self) -> int:
        return sum(row.previous for row in self.totals)


def _moment(value: datetime) -> Any:
    return literal(value, type_=UTCDateTime())


def build(
    session: Session,
    period: Period,
    *,
    queue_top: int = 20,
    silent_lookback_days: int = 28,
    silent_min_active_days: int = 7,
    managers: dict[str, str | None] | None = None,
    now: datetime | None = None,
) -> ReportData:
    """Compute the report for `period`."""
    dialect = session.get_bind().dialect.name
    data = ReportData(period=period, previous=previous(period), generated_at=now or utcnow())
    data.totals = _totals(session, period, data.previous)
    data.products, data.without_product = _products(session, period)
    data.managers = _managers(session, period, dialect, managers or {})
    data.queue, data.queue_total = _queue(session, queue_top)
    data.skipped = _reasons(session, period, "skipped")
    data.quarantined = _reasons(session, period, "quarantined")
    data.last_successful_poll = session.scalar(select(func.max(MailboxState.last_success_at)))
    data.silent = _silent(session, period, dialect, silent_lookback_days, silent_min_active_days)
    return data


def _totals(session: Session, period: Period, before: Period) -> list[TotalRow]:
    window_start = min(before.start, period.end - timedelta(days=30))

    def within(start: datetime, end: datetime) -> Any:
        return func.sum(case((and_(Card.occurred_at >= _moment(start), Card.occurred_at < _moment(end)), 1), else_=0))

    rows = session.execute(
        select(
            Card.source_type,
            Card.action,
            within(period.start, period.end),
            within(before.start, before.end),
            within(period.end - timedelta(days=7), period.end),
            within(period.end - timedelta(days=30), period.end),
        )
        .where(Card.occurred_at >= _moment(window_start), Card.occurred_at < _moment(period.end))
        .group_by(Card.source_type, Card.action)
    ).all()
    totals = [TotalRow(s, a, int(c or 0), int(p or 0), int(w or 0), int(m or 0)) for s, a, c, p, w, m in rows]
    return sorted(
        (row for row in totals if row.count or row.previous or row.last7 or row.last30),
        key=lambda row: (-row.count, -row.last30, row.source_type, row.action),
    )


def _products(session: Session, period: Period) -> tuple[list[tuple[str, int]], int]:
    in_period = and_(Card.occurred_at >= _moment(period.start), Card.occurred_at < _moment(period.end))
    rows = session.execute(
        select(Card.product, func.count()).where(in_period).group_by(Card.product).order_by(func.count().desc())
    ).all()
    named = [(product, count) for product, count in rows if product]
    without = sum(count for product, count in rows if not product)
    return named, without


def _managers(session: Session, period: Period, dialect: str, names: dict[str, str | None]) -> list[ManagerRow]:
    in_period = and_(Event.at >= _moment(period.start), Event.at < _moment(period.end))
    counts: dict[str, dict[str, int]] = {}
    rows = session.execute(
        select(Event.manager, Event.kind, func.count(distinct(Event.card_id)))
        .where(
            in_period,
            Event.manager.is_not(None),
            Event.kind.in_(("assigned", "reassigned", "claimed", "processed", "proof_attached")),
        )
        .group_by(Event.manager, Event.kind)
    ).all()
    for manager, kind, count in rows:
        counts.setdefault(manager, {})[kind] = count
    claim = _percentiles(session, dialect, period, kinds=("claimed", "assigned"))
    processed = _percentiles(session, dialect, period, kinds=("processed",))
    backlog = dict(
        session.execute(
            select(Card.responsible, func.count())
            .where(Card.processed.is_(False), Card.responsible.is_not(None))
            .group_by(Card.responsible)
        ).all()
    )
    oldest = _oldest_open(session)
    logins = sorted(set(counts) | set(backlog) | set(names))
    result = []
    for login in logins:
        kinds = counts.get(login, {})
        oldest_ref, oldest_at = oldest.get(login, (None, None))
        result.append(
            ManagerRow(
                login=login,
                name=names.get(login),
                assigned=kinds.get("assigned", 0) + kinds.get("reassigned", 0),
                claimed=kinds.get("claimed", 0),
                processed=kinds.get("processed", 0),
                with_proof=kinds.get("proof_attached", 0),
                claim_median=claim.get(login, (None, None))[0],
                claim_p90=claim.get(login, (None, None))[1],
                processed_median=processed.get(login, (None, None))[0],
                processed_p90=processed.get(login, (None, None))[1],
                open_backlog=int(backlog.get(login, 0)),
                oldest_ref=oldest_ref,
                oldest_at=oldest_at,
            )
        )
    return result


def _percentiles(
    session: Session, dialect: str, period: Period, *, kinds: tuple[str, ...]
) -> dict[str, tuple[float | None, float | None]]:
    """Per manager, the median and 90th percentile of seconds from a card's arrival to its first event of `kinds`.

    Nearest rank on the database's own ordering (window functions), so no durations are pulled into Python.
    """
    first = (
        select(Event.card_id, Event.manager, func.min(Event.at).label("at"))
        .where(Event.kind.in_(kinds), Event.manager.is_not(None))
        .group_by(Event.card_id, Event.manager)
        .subquery()
    )
    duration = seconds_between(first.c.at, Card.received_at, dialect).label("seconds")
    ranked = (
        select(
            first.c.manager.label("manager"),
            duration,
            func.row_number().over(partition_by=first.c.manager, order_by=duration).label("rank"),
            func.count().over(partition_by=first.c.manager).label("total"),
        )
        .join(Card, Card.id == first.c.card_id)
        .where(first.c.at >= _moment(period.start), first.c.at < _moment(period.end))
        .subquery()
    )
    # Nearest rank, ceil(p * n), in integer arithmetic (SQLite has no ceil() without its math extension).
    median_rank = (ranked.c.total + 1) // 2
    p90_rank = (ranked.c.total * 9 + 9) // 10
    rows = session.execute(
        select(
            ranked.c.manager,
            func.max(case((ranked.c.rank == median_rank, ranked.c.seconds))),
            func.max(case((ranked.c.rank == p90_rank, ranked.c.seconds))),
        ).group_by(ranked.c.manager)
    ).all()
    return {manager: (_float(median), _float(p90)) for manager, median, p90 in rows}


def _float(value: Any) -> float | None:
    # Whole seconds: SQLite's julianday arithmetic carries float noise in the microseconds.
    return None if value is None else float(max(round(float(value)), 0))


def _oldest_open(session: Session) -> dict[str, tuple[str, datetime]]:
    first = (
        select(Card.responsible.label("manager"), func.min(Card.received_at).label("at"))
        .where(Card.processed.is_(False), Card.responsible.is_not(None))
        .group_by(Card.responsible)
        .subquery()
    )
    rows = session.execute(
        select(first.c.manager, func.min(Card.id), first.c.at)
        .join(
            Card, and_(Card.responsible == first.c.manager, Card.received_at == first.c.at, Card.processed.is_(False))
        )
        .group_by(first.c.manager, first.c.at)
    ).all()
    return {manager: (f"INT-{card_id}", at) for manager, card_id, at in rows}


def _queue(session: Session, top: int) -> tuple[list[QueueRow], int]:
    total = session.scalar(select(func.count()).select_from(Card).where(Card.processed.is_(False))) or 0
    cards = (
        session.scalars(
            select(Card).where(Card.processed.is_(False)).order_by(Card.received_at, Card.id).limit(top)
        ).all()
        if top
        else []
    )
    rows = [
        QueueRow(
            card.ref,
            card.received_at,
            card.source_type,
            card.action,
            card.author_name or card.author_email or card.author_phone,
            _excerpt(card.text),
            card.responsible,
            card.reply_url,
        )
        for card in cards
    ]
    return rows, total


def _excerpt(text: str, width: int = 140) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _reasons(session: Session, period: Period, status: str) -> list[tuple[str, int]]:
    rows = session.execute(
        select(RawMessage.reason, func.count())
        .where(
            RawMessage.status == status,
            RawMessage.stored_at >= _moment(period.start),
            RawMessage.stored_at < _moment(period.end),
        )
        .group_by(RawMessage.reason)
        .order_by(func.count().desc())
        .limit(20)
    ).all()
    return [(reason or "(no reason)", count) for reason, count in rows]


def _silent(
    session: Session, period: Period, dialect: str, lookback_days: int, min_active_days: int
) -> list[SilentSource]:
    """Source types that brought mail on many days before the period and none in it: a broken notification."""
    window_start = period.start - timedelta(days=lookback_days)
    in_period = and_(Card.occurred_at >= _moment(period.start), Card.occurred_at < _moment(period.end))
    before = and_(Card.occurred_at >= _moment(window_start), Card.occurred_at < _moment(period.start))
    rows = session.execute(
        select(
            Card.source_type,
            func.count(distinct(case((before, utc_day(Card.occurred_at, dialect))))),
            func.sum(case((in_period, 1), else_=0)),
            type_coerce(func.max(case((before, Card.occurred_at))), UTCDateTime()),
        )
        .where(Card.occurred_at >= _moment(window_start), Card.occurred_at < _moment(period.end))
        .group_by(Card.source_type)
    ).all()
    silent = []
    for source_type, active_days, in_period_count, last_seen in rows:
        if (in_period_count or 0) == 0 and (active_days or 0) >= min_active_days:
            silent.append(SilentSource(source_type, int(active_days), last_seen))
    return sorted(silent, key=lambda s: -s.active_days)
