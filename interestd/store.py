"""The only module that writes SQL: raw messages, cards and their events, mailbox state."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, case, delete, false, func, literal, or_, select, tuple_, update
from sqlmodel import Session

from interestd.card import PARSED_FIELDS, CardData
from interestd.db import insert_ignoring_duplicates, insert_many, update_many_by_id
from interestd.models import (
    AuthorOwner,
    Card,
    Event,
    Lease,
    MailboxState,
    Manager,
    PendingAction,
    Proof,
    RawBody,
    RawMessage,
    ReportRun,
    UTCDateTime,
    utcnow,
)

CARD_FIELDS = (*PARSED_FIELDS, "subject")


@dataclass(frozen=True, slots=True)
class RawItem:
    """Raw bytes from a source, with where they came from (IMAP coordinates when from a mailbox)."""

    origin: str
    data: bytes
    message_id: str
    content_hash: str
    mailbox: str | None = None
    folder: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    size: int | None = None  # the real size when `data` holds only the first bytes of a too-large message

    @property
    def real_size(self) -> int:
        return self.size if self.size is not None else len(self.data)


@dataclass(frozen=True, slots=True)
class PendingRaw:
    """A stored message about to be (re)processed, and the status it had when read (for optimistic updates)."""

    id: int
    raw: bytes | None
    attempts: int
    size: int
    status: str = "new"


# --- raw messages -------------------------------------------------------------------------------------------


def _raw_row(item: RawItem, *, now: datetime, status: str) -> dict[str, Any]:
    """A raw_message row for an item (its bytes go to raw_body)."""
    return {
        "message_id": item.message_id,
        "content_hash": item.content_hash,
        "origin": item.origin,
        "mailbox": item.mailbox,
        "folder": item.folder,
        "uidvalidity": item.uidvalidity,
        "uid": item.uid,
        "size": item.real_size,
        "stored_at": now,
        "status": status,
        "attempts": 0,
    }


def add_raw(session: Session, items: Sequence[RawItem], *, now: datetime | None = None) -> list[int]:
    """Store raw messages not seen before (by Message-ID / content); return the ids of the new rows."""
    if not items:
        return []
    now = now or utcnow()
    unique: dict[str, RawItem] = {}
    for item in items:
        unique.setdefault(item.message_id, item)  # the first of each Message-ID, in the order given
    table = RawMessage.__table__
    dialect = session.get_bind().dialect.name
    statement = insert_ignoring_duplicates(dialect, table).returning(table.c.id, table.c.message_id)
    rows = [_raw_row(item, now=now, status="new") for item in unique.values()]
    stored = session.execute(statement, rows).all()
    _add_bodies(session, [(raw_id, unique[message_id].data) for raw_id, message_id in stored])
    return sorted(raw_id for raw_id, _ in stored)


def _add_bodies(session: Session, bodies: Sequence[tuple[int, bytes]]) -> None:
    insert_many(session, RawBody.__table__, [{"raw_message_id": i, "raw": raw} for i, raw in bodies])


def add_quarantined_raw(
    session: Session, item: RawItem, reason: str, *, keep_bytes: bool, now: datetime | None = None
) -> int | None:
    """Store a message that will not be processed (too large, ...) straight as quarantined, with its reason."""
    now = now or utcnow()
    dialect = session.get_bind().dialect.name
    statement = insert_ignoring_duplicates(dialect, RawMessage.__table__).returning(RawMessage.__table__.c.id)
    row = session.execute(
        statement, [{**_raw_row(item, now=now, status="quarantined"), "reason": reason, "processed_at": now}]
    ).first()
    if row is None:
        return None
    if keep_bytes:
        _add_bodies(session, [(row[0], item.data)])
    return row[0]


def raw_bytes(session: Session, raw_id: int) -> bytes | None:
    """A stored message's bytes as they arrived; None when they were not kept."""
    return raw_bytes_of(session, [raw_id]).get(raw_id)


def raw_bytes_of(session: Session, raw_ids: Sequence[int]) -> dict[int, bytes]:
    """The bytes of these stored messages, by id (those whose bytes were not kept are left out)."""
    statement = select(RawBody.raw_message_id, RawBody.raw).where(RawBody.raw_message_id.in_(list(raw_ids)))
    return {raw_id: raw for raw_id, raw in session.execute(statement)}


def kept_raw_ids(session: Session, raw_ids: Sequence[int]) -> set[int]:
    """Which of these stored messages have their bytes kept."""
    statement = select(RawBody.raw_message_id).where(RawBody.raw_message_id.in_(list(raw_ids)))
    return set(session.scalars(statement))


def known_message_ids(session: Session, message_ids: Iterable[str]) -> set[str]:
    ids = list(set(message_ids))
    known: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        known.update(session.scalars(select(RawMessage.message_id).where(RawMessage.message_id.in_(chunk))))
    return known


def pending_raw(
    session: Session, *, limit: int, retried: bool | None = None, max_bytes: int | None = None
) -> list[PendingRaw]:
    """Messages waiting to be processed, oldest first; `retried` selects those a crash interrupted before.

    With `max_bytes`, stops before the raw bytes held would pass it (always at least one message).
    """
    statement = select(RawMessage.id, RawMessage.size, RawMessage.attempts).where(RawMessage.status == "new")
    if retried is True:
        statement = statement.where(RawMessage.attempts > 0)
    elif retried is False:
        statement = statement.where(RawMessage.attempts == 0)
    heads = session.execute(statement.order_by(RawMessage.id).limit(limit)).all()
    chosen, total = [], 0
    for head in heads:
        if chosen and max_bytes is not None and total + head.size > max_bytes:
            break
        chosen.append(head)
        total += head.size
    if not chosen:
        return []
    raws = raw_bytes_of(session, [head.id for head in chosen])
    return [PendingRaw(head.id, raws.get(head.id), head.attempts, head.size) for head in chosen]


def count_pending(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(RawMessage).where(RawMessage.status == "new")) or 0


def bump_attempts(session: Session, raw_ids: Sequence[int]) -> None:
    if raw_ids:
        session.execute(update(RawMessage).where(RawMessage.id.in_(raw_ids)).values(attempts=RawMessage.attempts + 1))


def set_raw_outcome(
    session: Session,
    raw_id: int,
    *,
    status: str,
    reason: str | None,
    parser: str | None = None,
    parser_version: str | None = None,
    meta: dict[str, Any] | None = None,
    now: datetime | None = None,
    only_if: str | None = None,
) -> bool:
    """Set a message's outcome; with `only_if`, only while its status is still that (False: someone was first)."""
    values: dict[str, Any] = {"status": status, "reason": reason, "processed_at": now or utcnow()}
    if parser is not None:
        values.update(parser=parser, parser_version=parser_version)
    if meta:
        values.update(meta)
    statement = update(RawMessage).where(RawMessage.id == raw_id)
    if only_if is not None:
        statement = statement.where(RawMessage.status == only_if)
    return bool(session.execute(statement.values(**values)).rowcount)


def earlier_from_sender(session: Session, raw_id: int, address: str, at: datetime, window: timedelta) -> int:
    """How many messages from `address` that came before this one were sent within `window` up to `at`."""
    return (
        session.scalar(
            select(func.count())
            .select_from(RawMessage)
            .where(
                RawMessage.sender_address == address,
                RawMessage.id < raw_id,
                RawMessage.sent_at >= at - window,
                RawMessage.sent_at <= at,
            )
        )
        or 0
    )


def sent_times(
    session: Session, addresses: Sequence[str], *, before_id: int, since: datetime
) -> dict[str, list[datetime]]:
    """When the messages from these senders stored before `before_id` were sent, from `since` on (the storm
    limit), by sender."""
    found: dict[str, list[datetime]] = {address: [] for address in addresses}
    for start in range(0, len(addresses), 500):
        statement = select(RawMessage.sender_address, RawMessage.sent_at).where(
            RawMessage.sender_address.in_(list(addresses[start : start + 500])),
            RawMessage.id < before_id,
            RawMessage.sent_at >= since,
        )
        for address, moment in session.execute(statement):
            if address in found and moment is not None:
                found[address].append(moment)
    return found


@dataclass(frozen=True, slots=True)
class RawHead:
    """What writing a message's outcome needs to know of its row: status now, Message-ID, when it was stored."""

    status: str
    message_id: str
    stored_at: datetime


def raw_heads(session: Session, raw_ids: Sequence[int]) -> dict[int, RawHead]:
    """The rows' status as it is now, locked until the transaction ends (PostgreSQL; SQLite has one writer)."""
    statement = (
        select(RawMessage.id, RawMessage.status, RawMessage.message_id, RawMessage.stored_at)
        .where(RawMessage.id.in_(list(raw_ids)))
        .with_for_update()
    )
    return {row.id: RawHead(row.status, row.message_id, row.stored_at) for row in session.execute(statement)}


def set_raw_outcomes(session: Session, outcomes: Sequence[dict[str, Any]]) -> None:
    """Write many outcomes in one statement (the rows were checked with raw_heads in this transaction).

    Each dict has id, status, reason, processed_at, sent_at and the columns of _KEPT_WHEN_NONE, where None keeps
    the value already there (as set_raw_outcome does for what it is not given).
    """
    update_many_by_id(session, RawMessage.__table__, outcomes, kept_when_none=_KEPT_WHEN_NONE)


_KEPT_WHEN_NONE = ("parser", "parser_version", "subject", "sender", "sender_address", "date")


def get_raw(session: Session, raw_id: int) -> RawMessage | None:
    return session.get(RawMessage, raw_id)


def list_raw(session: Session, *, statuses: Sequence[str], limit: int) -> list[RawMessage]:
    statement = select(RawMessage).where(RawMessage.status.in_(statuses)).order_by(RawMessage.id.desc()).limit(limit)
    return list(session.scalars(statement))


def raw_ids_by_status(session: Session, statuses: Sequence[str]) -> list[int]:
    return list(session.scalars(select(RawMessage.id).where(RawMessage.status.in_(statuses)).order_by(RawMessage.id)))


def raw_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(RawMessage.status, func.count()).group_by(RawMessage.status)).all()
    return {status: count for status, count in rows}


# --- cards --------------------------------------------------------------------------------------------------


def card_for_raw(session: Session, raw_id: int) -> Card | None:
    return session.scalars(select(Card).where(Card.raw_message_id == raw_id)).first()


def card_ids_for_raws(session: Session, raw_ids: Sequence[int]) -> dict[int, int]:
    """The card made from each of these messages, by message id (messages without one are left out)."""
    statement = select(Card.raw_message_id, Card.id).where(Card.raw_message_id.in_(list(raw_ids)))
    return {raw_id: card_id for raw_id, card_id in session.execute(statement)}


@dataclass(frozen=True, slots=True)
class NewCard:
    """A card to insert: the message it comes from, the parser, the parsed fields."""

    raw_id: int
    message_id: str
    parser: str
    data: CardData


def add_cards(session: Session, cards: Sequence[NewCard], *, now: datetime) -> list[int]:
    """Insert many cards and their "created" events in two statements; the new ids, in the order given."""
    if not cards:
        return []
    table = Card.__table__
    rows = [
        {
            "raw_message_id": card.raw_id,
            "message_id": card.message_id,
            "parser": card.parser,
            "received_at": now,
            "updated_at": now,
            "notes": "; ".join(card.data.notes) or None,
            "processed": False,
            "replied": False,
            **{name: getattr(card.data, name) for name in CARD_FIELDS},
        }
        for card in cards
    ]
    # One executemany, then the ids by message (INSERT ... RETURNING in parameter order goes row by row on SQLite).
    insert_many(session, table, rows)
    by_raw = card_ids_for_raws(session, [card.raw_id for card in cards])
    ids = [by_raw[card.raw_id] for card in cards]
    add_events(
        session,
        [
            {
                "card_id": card_id,
                "kind": "created",
                "actor": "pipeline",
                "detail": f"parsed by {card.parser}",
                "at": now,
            }
            for card_id, card in zip(ids, cards, strict=True)
        ],
    )
    return ids


def add_events(session: Session, events: Sequence[dict[str, Any]]) -> None:
    """Insert many events in one statement (keys: card_id, kind, at and any of actor, manager, detail, rule)."""
    if not events:
        return
    columns = ("card_id", "kind", "at", "actor", "manager", "detail", "data", "rule")
    rows = [{name: event.get(name) for name in columns} for event in events]
    insert_many(session, Event.__table__, rows)


def add_card(
    session: Session, *, raw_id: int, message_id: str, parser: str, data: CardData, now: datetime | None = None
) -> Card:
    now = now or utcnow()
    card = Card(
        raw_message_id=raw_id,
        message_id=message_id,
        parser=parser,
        received_at=now,
        updated_at=now,
        notes="; ".join(data.notes) or None,
        **{name: getattr(data, name) for name in CARD_FIELDS},
    )
    session.add(card)
    session.flush()
    add_event(session, card.id, "created", actor="pipeline", detail=f"parsed by {parser}", at=now)
    return card


def update_card_fields(
    session: Session, card: Card, *, parser: str, data: CardData, now: datetime | None = None
) -> list[str]:
    """Refresh a card's parsed fields in place (assignment, processing and history untouched); return changes."""
    now = now or utcnow()
    changed = [name for name in CARD_FIELDS if getattr(card, name) != getattr(data, name)]
    for name in changed:
        setattr(card, name, getattr(data, name))
    notes = "; ".join(data.notes) or None
    if card.parser != parser or card.notes != notes:
        card.parser, card.notes = parser, notes
    if changed or session.is_modified(card):
        card.updated_at = now
        add_event(
            session,
            card.id,
            "reparsed",
            actor="pipeline",
            detail=f"parsed again by {parser}: " + (", ".join(changed) if changed else "no field changed"),
            at=now,
        )
    return changed


def add_event(
    session: Session,
    card_id: int | None,
    kind: str,
    *,
    actor: str | None = None,
    manager: str | None = None,
    detail: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
    rule: str | None = None,
) -> None:
    assert card_id is not None
    session.add(
        Event(
            card_id=card_id,
            at=at or utcnow(),
            kind=kind,
            actor=actor,
            manager=manager,
            detail=detail,
            data=data,
            rule=rule,
        )
    )


def get_card(session: Session, card_id: int) -> Card | None:
    return session.get(Card, card_id)


def card_events(session: Session, card_id: int) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.card_id == card_id).order_by(Event.at, Event.id)))


@dataclass(frozen=True)
class FeedFilter:
    responsible: str | None = None
    unclaimed: bool = False
    source_type: str | None = None
    product: str | None = None
    include_processed: bool = True


def feed(session: Session, query: FeedFilter, *, limit: int) -> list[Card]:
    """Cards for the feed: unprocessed first, then newest first."""
    statement = select(Card)
    if query.responsible is not None:
        statement = statement.where(Card.responsible == query.responsible)
    if query.unclaimed:
        statement = statement.where(Card.responsible.is_(None))
    if query.source_type:
        statement = statement.where(Card.source_type == query.source_type)
    if query.product:
        statement = statement.where(func.lower(Card.product) == query.product.lower())
    if not query.include_processed:
        statement = statement.where(Card.processed.is_(False))
    statement = statement.order_by(Card.processed, Card.occurred_at.desc(), Card.id.desc()).limit(limit)
    return list(session.scalars(statement))


def iter_cards(
    session: Session, *, since: datetime | None, until: datetime | None, chunk: int = 1000
) -> Iterator[Card]:
    """Cards that occurred in [since, until), oldest first, read in keyset pages so memory stays flat."""
    last: tuple[datetime, int] | None = None
    while True:
        statement = select(Card)
        if since is not None:
            statement = statement.where(Card.occurred_at >= since)
        if until is not None:
            statement = statement.where(Card.occurred_at < until)
        if last is not None:
            statement = statement.where(
                tuple_(Card.occurred_at, Card.id) > tuple_(literal(last[0], type_=UTCDateTime()), literal(last[1]))
            )
        rows = list(session.scalars(statement.order_by(Card.occurred_at, Card.id).limit(chunk)))
        if not rows:
            return
        yield from rows
        last = (rows[-1].occurred_at, rows[-1].id or 0)
        session.expunge_all()


def count_cards(session: Session, *, processed: bool | None = None, unassigned: bool = False) -> int:
    statement = select(func.count()).select_from(Card)
    if processed is not None:
        statement = statement.where(Card.processed.is_(processed))
    if unassigned:
        statement = statement.where(Card.responsible.is_(None))
    return session.scalar(statement) or 0


def cards_by_author(
    session: Session, *, url: str | None, email: str | None, phone: str | None, exclude_id: int | None = None
) -> list[Card]:
    conditions = []
    if url:
        conditions.append(Card.author_url == url)
    if email:
        conditions.append(Card.author_email == email)
    if phone:
        conditions.append(Card.author_phone == phone)
    if not conditions:
        return []
    statement = select(Card).where(or_(*conditions))
    if exclude_id is not None:
        statement = statement.where(Card.id != exclude_id)
    return list(session.scalars(statement.order_by(Card.id)))


# --- mailbox state and owed post-actions --------------------------------------------------------------------


def folder_state(session: Session, mailbox: str, folder: str) -> MailboxState | None:
    return session.get(MailboxState, (mailbox, folder))


def all_folder_states(session: Session) -> list[MailboxState]:
    return list(session.scalars(select(MailboxState).order_by(MailboxState.mailbox, MailboxState.folder)))


def save_folder_position(session: Session, mailbox: str, folder: str, *, uidvalidity: int, last_uid: int) -> None:
    """Remember how far a folder has been stored; committed together with the messages it covers."""
    state = session.get(MailboxState, (mailbox, folder))
    if state is None:
        session.add(MailboxState(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, last_uid=last_uid))
    else:
        state.uidvalidity, state.last_uid = uidvalidity, last_uid
    session.flush()


def record_poll(session: Session, mailbox: str, folder: str, *, at: datetime, error: str | None) -> None:
    """Note a poll attempt of a folder: success (error None) or the one-line error."""
    state = session.get(MailboxState, (mailbox, folder))
    if state is None:
        state = MailboxState(mailbox=mailbox, folder=folder, last_uid=0)
        session.add(state)
    state.last_poll_at = at
    if error is None:
        state.last_success_at = at
    else:
        state.last_error, state.last_error_at = error[:2000], at
    session.flush()


def add_pending_actions(
    session: Session,
    mailbox: str,
    folder: str,
    uidvalidity: int,
    uids: Sequence[int],
    action: str,
    *,
    now: datetime | None = None,
) -> None:
    if not uids or action == "none":
        return
    now = now or utcnow()
    dialect = session.get_bind().dialect.name
    session.execute(
        insert_ignoring_duplicates(dialect, PendingAction.__table__),
        [
            {
                "mailbox": mailbox,
                "folder": folder,
                "uidvalidity": uidvalidity,
                "uid": uid,
                "action": action,
                "created_at": now,
            }
            for uid in uids
        ],
    )


def pending_actions(session: Session, mailbox: str, folder: str, uidvalidity: int) -> dict[str, list[int]]:
    """UIDs still owed a post-action in a folder, by action."""
    rows = session.execute(
        select(PendingAction.action, PendingAction.uid)
        .where(
            PendingAction.mailbox == mailbox, PendingAction.folder == folder, PendingAction.uidvalidity == uidvalidity
        )
        .order_by(PendingAction.uid)
    ).all()
    owed: dict[str, list[int]] = {}
    for action, uid in rows:
        owed.setdefault(action, []).append(uid)
    return owed


def clear_pending_actions(session: Session, mailbox: str, folder: str, uidvalidity: int, uids: Sequence[int]) -> None:
    """Forget post-actions that have been done."""
    session.execute(
        delete(PendingAction).where(
            PendingAction.mailbox == mailbox,
            PendingAction.folder == folder,
            PendingAction.uidvalidity == uidvalidity,
            PendingAction.uid.in_(list(uids)),
        )
    )


def drop_stale_pending_actions(session: Session, mailbox: str, folder: str, uidvalidity: int) -> int:
    """Forget post-actions owed under an older UIDVALIDITY: those UIDs no longer name the same messages."""
    result = session.execute(
        delete(PendingAction).where(
            PendingAction.mailbox == mailbox, PendingAction.folder == folder, PendingAction.uidvalidity != uidvalidity
        )
    )
    return result.rowcount or 0


# --- managers, ownership and the work on cards --------------------------------------------------------------


def sync_managers(session: Session, managers: Sequence[Any], *, now: datetime | None = None) -> int:
    """Make the manager table match the config; managers no longer configured stay, marked so. Returns changes."""
    now = now or utcnow()
    existing = {m.login: m for m in session.scalars(select(Manager))}
    changes = 0
    for spec in managers:
        values = {
            "display_name": spec.name,
            "emails": list(spec.emails),
            "groups": list(spec.groups),
            "capacity": spec.capacity,
            "active": spec.active,
            "in_config": True,
            "away": [{"from": p.start.isoformat(), "to": p.end.isoformat()} for p in spec.away],
        }
        row = existing.pop(spec.login, None)
        if row is None:
            session.add(Manager(login=spec.login, created_at=now, updated_at=now, **values))
            changes += 1
        elif any(getattr(row, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = now
            changes += 1
    for row in existing.values():
        if row.in_config:
            row.in_config, row.updated_at = False, now
            changes += 1
    session.flush()
    return changes


def managers_in_db(session: Session) -> list[Manager]:
    return list(session.scalars(select(Manager).order_by(Manager.login)))


def open_cards_by_manager(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Card.responsible, func.count())
        .where(Card.responsible.is_not(None), Card.processed.is_(False))
        .group_by(Card.responsible)
    ).all()
    return {login: count for login, count in rows}


def last_assigned_by_manager(session: Session) -> dict[str, datetime]:
    rows = session.execute(
        select(Card.responsible, func.max(Card.assigned_at))
        .where(Card.responsible.is_not(None))
        .group_by(Card.responsible)
    ).all()
    return {login: moment for login, moment in rows if moment is not None}


def last_manager_by_rule(session: Session, rule: str) -> str | None:
    return session.scalar(
        select(Event.manager).where(Event.rule == rule, Event.manager.is_not(None)).order_by(Event.id.desc()).limit(1)
    )


def owners_of(session: Session, identities: Sequence[str]) -> dict[str, AuthorOwner]:
    if not identities:
        return {}
    rows = session.scalars(select(AuthorOwner).where(AuthorOwner.identity.in_(list(identities))))
    return {row.identity: row for row in rows}


def take_ownership(
    session: Session, identities: Sequence[str], manager: str, card_id: int | None, *, now: datetime | None = None
) -> dict[str, str]:
    """Record `manager` as the owner of these identities where nobody owns them; return every identity's owner.

    The insert is the atomic step: of two managers claiming the same person at once, the second sees the first's
    row (PostgreSQL waits on the unique key; SQLite writers are serialised) and learns who has the person.
    """
    if not identities:
        return {}
    now = now or utcnow()
    connection = session.connection()
    rows = [{"identity": i, "manager": manager, "card_id": card_id, "since": now} for i in identities]
    return {identity: owner for identity, owner in connection.execute(_upsert_owner(connection.dialect.name), rows)}


@cache
def _upsert_owner(dialect: str) -> Any:
    """INSERT owners ... ON CONFLICT keep the owner there ... RETURNING every identity's owner: rows nobody owned
    are inserted, owned ones "updated" to themselves, and both come back (built once: it is on every claim)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    table = AuthorOwner.__table__
    return (
        dialect_insert(table)
        .on_conflict_do_update(index_elements=[table.c.identity], set_={"manager": table.c.manager})
        .returning(table.c.identity, table.c.manager)
    )


def move_ownership(
    session: Session, identities: Sequence[str], manager: str, card_id: int | None, *, now: datetime | None = None
) -> None:
    """Give these identities to `manager` (a reassignment or a forced claim)."""
    if not identities:
        return
    now = now or utcnow()
    session.execute(
        update(AuthorOwner)
        .where(AuthorOwner.identity.in_(list(identities)))
        .values(manager=manager, card_id=card_id, since=now)
    )
    take_ownership(session, identities, manager, card_id, now=now)


def drop_ownership(session: Session, identities: Sequence[str], manager: str) -> None:
    if identities:
        session.execute(
            delete(AuthorOwner).where(AuthorOwner.identity.in_(list(identities)), AuthorOwner.manager == manager)
        )


@dataclass
class ClaimedCard:
    """What claiming and assignment need of a card, as the claiming UPDATE returned it."""

    id: int
    source_type: str
    action: str
    product: str | None
    author_url: str | None
    author_email: str | None
    author_phone: str | None
    responsible: str | None

    @property
    def ref(self) -> str:
        return f"INT-{self.id}"


def claim_open_card(session: Session, card_id: int, manager: str, *, now: datetime) -> ClaimedCard | None:
    """The atomic claim in one statement: the card becomes `manager`'s only while nobody is responsible and it is
    not processed; None when it was not (a race lost, or nothing to claim: the caller looks why)."""
    table = Card.__table__
    statement = (
        update(table)
        .where(table.c.id == card_id, table.c.responsible.is_(None), table.c.processed.is_(False))
        .values(responsible=manager, assigned_at=now, updated_at=now)
        .returning(*_CLAIM_COLUMNS)
    )
    row = session.execute(statement).first()
    return ClaimedCard(*row) if row is not None else None


_CLAIM_COLUMNS = tuple(
    Card.__table__.c[name]
    for name in ("id", "source_type", "action", "product", "author_url", "author_email", "author_phone", "responsible")
)


def claim_next_open_card(
    session: Session, manager: str, *, now: datetime, skip: Sequence[int] = ()
) -> ClaimedCard | None:
    """Make the open card nobody has that has waited longest `manager`'s, in one statement; cards another
    transaction is claiming are passed over (PostgreSQL's SKIP LOCKED; SQLite has one writer at a time)."""
    parameters: dict[str, Any] = {"manager": manager, "now": now}
    if skip:
        parameters["skip"] = list(skip)
    row = session.connection().execute(_claim_next_template(bool(skip)), parameters).first()
    return ClaimedCard(*row) if row is not None else None


@cache
def _claim_next_template(skips: bool) -> Any:
    """Built once (it is on every `claim --next`: building it and its cache key anew took about a third of a
    claim's Python calls); the manager, the time and the cards passed over are parameters."""
    table = Card.__table__
    # `processed = false`, as ix_card_unclaimed's condition says it, so that both engines use that index.
    oldest = select(table.c.id).where(table.c.responsible.is_(None), table.c.processed == false())
    if skips:
        oldest = oldest.where(table.c.id.not_in(bindparam("skip", expanding=True)))
    oldest = oldest.order_by(table.c.occurred_at, table.c.id).limit(1).with_for_update(skip_locked=True)
    now = bindparam("now", type_=table.c.updated_at.type)
    return (
        update(table)
        .where(table.c.id == oldest.scalar_subquery(), table.c.responsible.is_(None))
        .values(responsible=bindparam("manager", type_=table.c.responsible.type), assigned_at=now, updated_at=now)
        .returning(*_CLAIM_COLUMNS)
    )


def claim_card(session: Session, card_id: int, manager: str, *, now: datetime, force: bool = False) -> bool:
    """The atomic claim: one UPDATE that only succeeds while nobody is responsible (or always, with force)."""
    statement = update(Card).where(Card.id == card_id)
    if not force:
        statement = statement.where(Card.responsible.is_(None))
    result = session.execute(statement.values(responsible=manager, assigned_at=now, updated_at=now))
    return bool(result.rowcount)


def set_responsible(session: Session, card_id: int, manager: str | None, *, now: datetime) -> None:
    session.execute(
        update(Card)
        .where(Card.id == card_id)
        .values(responsible=manager, assigned_at=now if manager else None, updated_at=now)
    )


def unassigned_since(session: Session, before: datetime, *, limit: int = 500) -> list[Card]:
    """Open cards nobody claimed that came in before `before` (the claim window has passed)."""
    return list(
        session.scalars(
            select(Card)
            .where(Card.responsible.is_(None), Card.processed.is_(False), Card.received_at < before)
            .order_by(Card.received_at)
            .limit(limit)
        )
    )


def mark_processed(session: Session, card_id: int, *, now: datetime, screenshot: str | None, replied: bool) -> None:
    values: dict[str, Any] = {"processed": True, "processed_at": now, "updated_at": now, "replied": replied}
    if screenshot is not None:
        values["screenshot"] = screenshot
    session.execute(update(Card).where(Card.id == card_id).values(**values))


def add_proof(
    session: Session,
    card_id: int,
    *,
    kind: str,
    location: str,
    added_by: str | None,
    now: datetime,
    sha256: str | None = None,
    content_type: str | None = None,
    size: int | None = None,
    raw_message_id: int | None = None,
) -> None:
    session.add(
        Proof(
            card_id=card_id,
            kind=kind,
            location=location,
            sha256=sha256,
            content_type=content_type,
            size=size,
            added_by=added_by,
            added_at=now,
            raw_message_id=raw_message_id,
        )
    )


def proofs_of(session: Session, card_id: int) -> list[Proof]:
    return list(session.scalars(select(Proof).where(Proof.card_id == card_id).order_by(Proof.id)))


# --- scheduled reports --------------------------------------------------------------------------------------


def claim_report(session: Session, period_key: str, who: str, *, now: datetime) -> bool:
    """Take the right to send a period's report: a new row, or a failed one whose retry time has come."""
    dialect = session.get_bind().dialect.name
    inserted = session.execute(
        insert_ignoring_duplicates(dialect, ReportRun.__table__).returning(ReportRun.__table__.c.period_key),
        [{"period_key": period_key, "status": "sending", "attempts": 0, "claimed_by": who, "claimed_at": now}],
    ).first()
    if inserted:
        return True
    retried = session.execute(
        update(ReportRun)
        .where(ReportRun.period_key == period_key, ReportRun.status == "failed", ReportRun.next_attempt_at <= now)
        .values(status="sending", claimed_by=who, claimed_at=now)
    )
    return bool(retried.rowcount)


def finish_report(
    session: Session, period_key: str, *, now: datetime, error: str | None, retry_at: datetime | None
) -> None:
    values: dict[str, Any] = {"attempts": ReportRun.attempts + 1}
    if error is None:
        values.update(status="sent", sent_at=now, last_error=None, next_attempt_at=None)
    else:
        values.update(status="failed" if retry_at else "gave_up", last_error=error[:2000], next_attempt_at=retry_at)
    session.execute(update(ReportRun).where(ReportRun.period_key == period_key).values(**values))


def report_run(session: Session, period_key: str) -> ReportRun | None:
    return session.get(ReportRun, period_key)


def interrupted_reports(session: Session, older_than: datetime) -> list[str]:
    """Reports left "sending" by a process that died: whether they went out is unknown."""
    keys = list(
        session.scalars(
            select(ReportRun.period_key).where(ReportRun.status == "sending", ReportRun.claimed_at < older_than)
        )
    )
    if keys:
        session.execute(update(ReportRun).where(ReportRun.period_key.in_(keys)).values(status="interrupted"))
    return keys


def latest_report_run(session: Session) -> ReportRun | None:
    return session.scalars(select(ReportRun).order_by(ReportRun.claimed_at.desc()).limit(1)).first()


# --- leases (one poller per mailbox across hosts) -----------------------------------------------------------


def acquire_lease(session: Session, name: str, holder: str, *, ttl: timedelta, now: datetime) -> bool:
    """Take or renew a lease: free, expired, or already ours. The insert or the guarded update is atomic."""
    dialect = session.get_bind().dialect.name
    inserted = session.execute(
        insert_ignoring_duplicates(dialect, Lease.__table__).returning(Lease.__table__.c.name),
        [{"name": name, "holder": holder, "acquired_at": now, "expires_at": now + ttl}],
    ).first()
    if inserted:
        return True
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(
            holder=holder,
            expires_at=now + ttl,
            acquired_at=case((Lease.holder == holder, Lease.acquired_at), else_=now),
        )
    )
    return bool(taken.rowcount)


def take_over_lease(
    session: Session, name: str, old_holder: str, holder: str, *, ttl: timedelta, now: datetime
) -> bool:
    """Take a lease from a holder known to be dead (only if it still holds it)."""
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == old_holder)
        .values(holder=holder, acquired_at=now, expires_at=now + ttl)
    )
    return bool(taken.rowcount)


def release_lease(session: Session, name: str, holder: str) -> None:
    session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


def lease(session: Session, name: str) -> Lease | None:
    return session.get(Lease, name)


def leases(session: Session) -> list[Lease]:
    return list(session.scalars(select(Lease).order_by(Lease.name)))
