"""All tables: raw messages, cards, managers, card events and mailbox state (the one SQLModel table module)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, LargeBinary, Text, UniqueConstraint, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

RAW_STATUSES = ("new", "card", "skipped", "quarantined", "proof")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on every engine (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def bind_processor(self, dialect: Any) -> Any:
        # On SQLite, straight to the text SQLAlchemy's DATETIME stores (a test holds the two equal) in one
        # step instead of two: every message written binds several timestamps.
        if dialect.name == "sqlite":
            return sqlite_timestamp
        return super().bind_processor(dialect)


def sqlite_timestamp(value: datetime | None) -> str | None:
    """A timezone-aware datetime as SQLite keeps UTC timestamps: 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # what the pipeline writes: its text less the "+00:00", in one step
        return value.isoformat(" ", "microseconds")[:-6]
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _time(**kwargs: Any) -> Any:
    nullable = kwargs.pop("nullable", True)
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, **kwargs))


class RawMessage(SQLModel, table=True):
    """One e-mail as it arrived, and what became of it (its bytes are in raw_body)."""

    __tablename__ = "raw_message"
    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_raw_message_imap_uid"),
        Index("ix_raw_message_status_id", "status", "id"),
        Index("ix_raw_message_sender_sent", "sender_address", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    content_hash: str = Field(max_length=64, index=True)
    origin: str = Field(sa_column=Column(Text, nullable=False))
    mailbox: str | None = Field(default=None, max_length=200)
    folder: str | None = Field(default=None, max_length=500)
    uidvalidity: int | None = Field(default=None, sa_column=Column(BigInteger))
    uid: int | None = Field(default=None, sa_column=Column(BigInteger))
    size: int = 0
    subject: str | None = Field(default=None, sa_column=Column(Text))
    sender: str | None = Field(default=None, sa_column=Column(Text))
    sender_address: str | None = Field(default=None, max_length=320)
    date: datetime | None = _time()
    stored_at: datetime = _time(nullable=False, index=True)
    # When the sender sent it: the Date header, never later than stored_at (a backlog imported at once keeps
    # its real spread in time, which the per-sender storm limit counts by).
    sent_at: datetime | None = _time()
    status: str = Field(default="new", max_length=20)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    parser: str | None = Field(default=None, max_length=100)
    parser_version: str | None = Field(default=None, max_length=50)
    attempts: int = 0
    processed_at: datetime | None = _time()


class RawBody(SQLModel, table=True):
    """The bytes of a raw message, exactly as they arrived; none for a message whose bytes were not kept.

    Apart from raw_message because SQLite rewrites a whole row, its bytes included, whenever any column of it
    changes: a message's status is written twice while it is processed, and its bytes never change."""

    __tablename__ = "raw_body"

    raw_message_id: int = Field(foreign_key="raw_message.id", primary_key=True)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


UNCLAIMED_PG = "responsible IS NULL AND processed = false"
UNCLAIMED_SQLITE = "responsible IS NULL AND processed = 0"


class Card(SQLModel, table=True):
    """An interest card: the ten fields of ../shared/card.schema.json plus provenance and bookkeeping."""

    __tablename__ = "card"
    __table_args__ = (
        # In the feed's own order (open first, newest first), so its first page is read straight off the index.
        Index("ix_card_feed", "processed", text("occurred_at DESC"), text("id DESC")),
        Index("ix_card_responsible_feed", "responsible", "processed", text("occurred_at DESC"), text("id DESC")),
        Index("ix_card_source_occurred", "source_type", "occurred_at"),
        # The unclaimed queue alone, oldest first: `claim --next` reads its head without walking past the cards
        # already claimed (which ix_card_feed would, more of them with every claim).
        Index(
            "ix_card_unclaimed",
            "occurred_at",
            "id",
            postgresql_where=text(UNCLAIMED_PG),
            sqlite_where=text(UNCLAIMED_SQLITE),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    raw_message_id: int = Field(foreign_key="raw_message.id", unique=True)
    message_id: str = Field(sa_column=Column(Text, nullable=False))
    parser: str = Field(max_length=100)
    received_at: datetime = _time(nullable=False, index=True)
    source_url: str | None = Field(default=None, sa_column=Column(Text))
    occurred_at: datetime = _time(nullable=False, index=True)
    source_type: str = Field(max_length=50)
    author_name: str | None = Field(default=None, sa_column=Column(Text))
    author_url: str | None = Field(default=None, sa_column=Column(Text, index=True))
    author_photo_url: str | None = Field(default=None, sa_column=Column(Text))
    author_email: str | None = Field(default=None, max_length=320, index=True)
    author_phone: str | None = Field(default=None, max_length=32, index=True)
    action: str = Field(max_length=50)
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    product: str | None = Field(default=None, max_length=300, index=True)
    product_url: str | None = Field(default=None, sa_column=Column(Text))
    responsible: str | None = Field(default=None, max_length=100)
    processed: bool = False
    processed_at: datetime | None = _time()
    screenshot: str | None = Field(default=None, sa_column=Column(Text))
    reply_url: str | None = Field(default=None, sa_column=Column(Text))
    replied: bool = False
    subject: str | None = Field(default=None, sa_column=Column(Text))
    notes: str | None = Field(default=None, sa_column=Column(Text))
    assigned_at: datetime | None = _time()
    updated_at: datetime = _time(nullable=False)

    @property
    def ref(self) -> str:
        return f"INT-{self.id}"


class Event(SQLModel, table=True):
    """One change of a card: who did what, when and why. A card's events are its history."""

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_card_at", "card_id", "at"),
        Index("ix_event_kind_at", "kind", "at"),
        Index("ix_event_rule_id", "rule", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    card_id: int = Field(foreign_key="card.id")
    at: datetime = _time(nullable=False)
    kind: str = Field(max_length=40)
    actor: str | None = Field(default=None, max_length=100)
    manager: str | None = Field(default=None, max_length=100)
    rule: str | None = Field(default=None, max_length=60)
    detail: str | None = Field(default=None, sa_column=Column(Text))
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class Manager(SQLModel, table=True):
    """A person who works the queue, synced from the config's [[managers]]; kept when removed there."""

    __tablename__ = "manager"

    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(max_length=100, unique=True)
    display_name: str | None = Field(default=None, max_length=200)
    emails: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    groups: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    capacity: int | None = None
    active: bool = True
    away: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    in_config: bool = True
    created_at: datetime = _time(nullable=False)
    updated_at: datetime = _time(nullable=False)


class MailboxState(SQLModel, table=True):
    """Per mailbox folder: the UIDVALIDITY and last UID already stored, and the health of the last polls."""

    __tablename__ = "mailbox_state"

    mailbox: str = Field(primary_key=True, max_length=200)
    folder: str = Field(primary_key=True, max_length=500)
    uidvalidity: int | None = Field(default=None, sa_column=Column(BigInteger))
    last_uid: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    last_poll_at: datetime | None = _time()
    last_success_at: datetime | None = _time()
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_at: datetime | None = _time()


class PendingAction(SQLModel, table=True):
    """A post-action (seen, flag, keyword, move) owed to a message already stored; done after the commit."""

    __tablename__ = "pending_action"
    __table_args__ = (UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_pending_action_uid"),)

    id: int | None = Field(default=None, primary_key=True)
    mailbox: str = Field(max_length=200)
    folder: str = Field(max_length=500)
    uidvalidity: int = Field(sa_column=Column(BigInteger, nullable=False))
    uid: int = Field(sa_column=Column(BigInteger, nullable=False))
    action: str = Field(max_length=600)
    created_at: datetime = _time(nullable=False)


class AuthorOwner(SQLModel, table=True):
    """One owner per person: a profile link, e-mail or phone and the manager who works that person."""

    __tablename__ = "author_owner"
    __table_args__ = (Index("ix_author_owner_manager", "manager"),)

    identity: str = Field(sa_column=Column(Text, primary_key=True))
    manager: str = Field(max_length=100)
    card_id: int | None = Field(default=None, foreign_key="card.id")
    since: datetime = _time(nullable=False)


class Proof(SQLModel, table=True):
    """A reply screenshot: a stored image (content-addressed) or a link to a screenshot service."""

    __tablename__ = "proof"
    __table_args__ = (Index("ix_proof_card", "card_id"),)

    id: int | None = Field(default=None, primary_key=True)
    card_id: int = Field(foreign_key="card.id")
    kind: str = Field(max_length=10)  # file | url
    location: str = Field(sa_column=Column(Text, nullable=False))
    sha256: str | None = Field(default=None, max_length=64)
    content_type: str | None = Field(default=None, max_length=100)
    size: int | None = None
    added_by: str | None = Field(default=None, max_length=100)
    added_at: datetime = _time(nullable=False)
    raw_message_id: int | None = Field(default=None, foreign_key="raw_message.id")


class ReportRun(SQLModel, table=True):
    """One scheduled report: claimed before sending, so it goes out once per period even with two daemons."""

    __tablename__ = "report_run"

    period_key: str = Field(primary_key=True, max_length=40)  # e.g. day:2026-11-20
    status: str = Field(max_length=20)  # sending | sent | failed | interrupted
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=200)
    claimed_at: datetime | None = _time()
    sent_at: datetime | None = _time()
    next_attempt_at: datetime | None = _time()
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class Lease(SQLModel, table=True):
    """Who may do a job for now (poll a mailbox): taken when free or expired, renewed while working."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=300)
    holder: str = Field(max_length=300)
    acquired_at: datetime = _time(nullable=False)
    expires_at: datetime = _time(nullable=False)
