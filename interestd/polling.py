"""One poll of one mailbox: fetch what is new in each folder exactly once, commit it, then do the post-actions.

The order is what makes it safe: raw messages and the folder's new position are committed in one transaction;
post-actions owed for them are recorded in that same transaction and done only afterwards (and redone at the
next poll if the process died in between). A crash anywhere loses nothing and, with Message-ID dedup, stores
nothing twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from interestd import store
from interestd.config import LimitsSettings, MailboxSettings
from interestd.db import Database
from interestd.errors import InterestdError, MailboxError
from interestd.message import message_key, quick_message_id
from interestd.models import utcnow
from interestd.pipeline import (
    Evaluator,
    PendingProcessor,
    PipelineContext,
    ProcessSummary,
    batch_limits,
    evaluate_serially,
)
from interestd.sources import imap

log = logging.getLogger(__name__)

RESCAN_MARGIN = timedelta(days=2)  # after a UIDVALIDITY change, look back this far before the last good poll
MIN_LEASE = timedelta(seconds=5)
BATCH_BYTES: int = LimitsSettings.model_fields["batch_bytes"].default  # when the caller gives none


def lease_ttl(settings: MailboxSettings) -> timedelta:
    """How long a poller's hold on a mailbox lasts without renewal: one interval (at least a few seconds)."""
    return max(settings.interval, MIN_LEASE)


def take_lease(
    database: Database, settings: MailboxSettings, holder: str, *, clock: Callable[[], datetime] = utcnow
) -> tuple[bool, Any]:
    """Take or renew the right to poll a mailbox; (taken, the lease row as it is now)."""
    name = f"mailbox:{settings.name}"
    with database.session(write=True) as session:
        now = clock()
        taken = store.acquire_lease(session, name, holder, ttl=lease_ttl(settings), now=now)
        current = store.lease(session, name)
        if not taken and current is not None and holder_is_dead(current.holder):
            # A process of this host that died (kill -9, a crash) still holds it: no need to wait it out.
            taken = store.take_over_lease(session, name, current.holder, holder, ttl=lease_ttl(settings), now=now)
            current = store.lease(session, name)
        session.commit()
        return taken, current


def holder_name(kind: str = "") -> str:
    """This process as a lease holder: [kind:]host:pid."""
    return f"{kind + ':' if kind else ''}{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(holder: str) -> bool:
    """True when the holder is a process of this host that no longer exists."""
    parts = holder.rsplit(":", 2)
    if len(parts) < 2 or not parts[-1].isdigit():
        return False
    host = parts[-2]
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(parts[-1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def give_up_lease(database: Database, settings: MailboxSettings, holder: str) -> None:
    with database.session(write=True) as session:
        store.release_lease(session, f"mailbox:{settings.name}", holder)
        session.commit()


@dataclass
class FolderResult:
    """What one poll did in one folder."""

    folder: str
    fetched: int = 0
    new: int = 0
    duplicates: int = 0
    too_large: int = 0
    actions: int = 0
    rescanned: bool = False
    first_run: bool = False


@dataclass
class PollResult:
    """What one poll of a mailbox did; `error` is set when it failed (what was committed before stays)."""

    mailbox: str
    folders: list[FolderResult] = field(default_factory=list)
    processed: ProcessSummary = field(default_factory=ProcessSummary)
    error: str | None = None
    seconds: float = 0.0
    polled_by: str | None = None  # another poller holds the mailbox: nothing was done
    lease_expires: datetime | None = None

    @property
    def fetched(self) -> int:
        return sum(f.fetched for f in self.folders)

    @property
    def new(self) -> int:
        return sum(f.new for f in self.folders)

    def line(self) -> str:
        """One log line, key=value, with no message contents."""
        counts = self.processed.counts
        parts = [
            f"mailbox={self.mailbox}",
            f"ok={0 if self.error else 1}",
            f"fetched={self.fetched}",
            f"new={self.new}",
            f"duplicates={sum(f.duplicates for f in self.folders)}",
            f"cards={counts['card']}",
            f"skipped={counts['skipped']}",
            f"quarantined={counts['quarantined'] + sum(f.too_large for f in self.folders)}",
            f"proofs={counts['proof']}",
            f"actions={sum(f.actions for f in self.folders)}",
            f"seconds={self.seconds:.2f}",
        ]
        if self.error:
            parts.append(f'error="{self.error}"')
        return "poll " + " ".join(parts)


StopCheck = Callable[[], bool]


def _never() -> bool:
    return False


class KeptConnections:
    """The daemon's logged-in IMAP connections, one per mailbox, kept from one poll to the next.

    A poll that finds nothing then costs one NOOP and one STATUS on the folder it left selected: no login, and
    nothing that grows with the folder (a new session's first look at a folder reads its whole index). A
    connection is kept only after a poll without error, and one that no longer answers is replaced.
    """

    def __init__(self, ahead: imap.SessionsAhead | None = None) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[tuple[object, ...], Any]] = {}
        self._ahead = ahead  # sessions being opened for the first poll (poll --once)

    @staticmethod
    def _identity(settings: MailboxSettings) -> tuple[object, ...]:
        return (settings.host, settings.effective_port, settings.security, settings.user, settings.ca_file)

    def take(self, settings: MailboxSettings) -> Any | None:
        """The mailbox's kept (or opened ahead) connection, still usable, or None; raises the MailboxError that
        kept a session opened ahead from logging in."""
        with self._lock:
            entry = self._kept.pop(settings.name, None)
        if entry is None:
            return self._ahead.take(settings) if self._ahead is not None else None
        identity, connection = entry
        if identity != self._identity(settings) or not imap.still_usable(connection):
            imap.close(connection)  # the mailbox was reconfigured, or the server closed it
            return None
        return connection

    def keep(self, settings: MailboxSettings, connection: Any) -> None:
        with self._lock:
            old = self._kept.pop(settings.name, None)
            self._kept[settings.name] = (self._identity(settings), connection)
        if old is not None:
            imap.close(old[1])

    def drop(self, name: str) -> None:
        with self._lock:
            entry = self._kept.pop(name, None)
        if entry is not None:
            imap.close(entry[1])

    def close_all(self) -> None:
        with self._lock:
            entries = list(self._kept.values())
            self._kept.clear()
        for _, connection in entries:
            imap.close(connection)
        if self._ahead is not None:
            self._ahead.close_all()

    def __len__(self) -> int:
        return len(self._kept)


def poll_mailbox(
    database: Database,
    context: PipelineContext,
    settings: MailboxSettings,
    password: str | None,
    *,
    max_message_bytes: int,
    batch_bytes: int = BATCH_BYTES,
    should_stop: StopCheck = _never,
    process: bool = True,
    clock: Callable[[], datetime] = utcnow,
    holder: str | None = None,
    keep_lease: bool = True,
    evaluator: Evaluator = evaluate_serially,
    kept: KeptConnections | None = None,
) -> PollResult:
    """Fetch what is new in every folder of the mailbox, store it, do the post-actions, then process it.

    With a `holder`, the poll first takes the mailbox's lease (one poller per mailbox across hosts), renews it
    between batches, and stops if it is lost; when another poller holds it, nothing is done. With `kept`, the
    IMAP connection is taken from there and left there for the next poll.
    """
    started = time.monotonic()
    result = PollResult(settings.name)
    if holder is not None:
        taken, current = take_lease(database, settings, holder, clock=clock)
        if not taken:
            result.polled_by, result.lease_expires = current.holder, current.expires_at
            if kept is not None:
                kept.drop(settings.name)
            return result
        should_stop = _renewing(database, settings, holder, should_stop, clock)
    # Processing starts with the first stored batch: the workers evaluate while the next batches are fetched.
    processor = PendingProcessor(database, context, evaluator=evaluator, should_stop=should_stop) if process else None
    try:
        _fetch(
            database,
            settings,
            password,
            result,
            max_message_bytes=max_message_bytes,
            batch_bytes=batch_bytes,
            should_stop=should_stop,
            clock=clock,
            kept=kept,
            processor=processor,
        )
        if processor is not None:
            result.processed = processor.finish()  # after a stop: only the batch already evaluated is written
    finally:
        if processor is not None:
            processor.close()
        if holder is not None and not keep_lease:
            give_up_lease(database, settings, holder)
    result.seconds = time.monotonic() - started
    return result


def _renewing(
    database: Database, settings: MailboxSettings, holder: str, should_stop: StopCheck, clock: Callable[[], datetime]
) -> StopCheck:
    """A stop check that also renews the lease; losing it stops the poll (another host has the mailbox now).

    The lease was just taken, and nobody else can take it before it runs out: it is renewed when a quarter of
    its time has passed, not at every check (a poll checks several times per batch, and each renewal is a
    write transaction)."""
    renew_every = lease_ttl(settings) / 4
    renewed = clock()

    def check() -> bool:
        nonlocal renewed
        if should_stop():
            return True
        now = clock()
        if now - renewed < renew_every:
            return False
        taken, current = take_lease(database, settings, holder, clock=clock)
        if not taken:
            log.warning("%s: lost the mailbox to %s; stopping this poll", settings.name, current.holder)
        renewed = now
        return not taken

    return check


def _fetch(
    database: Database,
    settings: MailboxSettings,
    password: str | None,
    result: PollResult,
    *,
    max_message_bytes: int,
    batch_bytes: int,
    should_stop: StopCheck,
    clock: Callable[[], datetime],
    kept: KeptConnections | None = None,
    processor: PendingProcessor | None = None,
) -> None:
    """The IMAP part of a poll: every folder, batch by batch; errors end up in result.error as one line."""
    try:
        connection = kept.take(settings) if kept is not None else None
        if connection is None:
            connection = imap.connect(settings, password)
    except MailboxError as exc:
        result.error = str(exc)
        _record(database, settings, None, error=result.error, clock=clock)
        return
    try:
        for folder in settings.folders:
            if should_stop():
                break
            result.folders.append(FolderResult(folder))
            _poll_folder(
                database,
                connection,
                settings,
                folder,
                result.folders[-1],
                max_message_bytes=max_message_bytes,
                batch_bytes=batch_bytes,
                should_stop=should_stop,
                clock=clock,
                processor=processor,
            )
            _record(database, settings, folder, error=None, clock=clock)
    except InterestdError as exc:
        result.error = f"{settings.name}: {exc}" if not str(exc).startswith(settings.name) else str(exc)
    except Exception as exc:  # network trouble mid-poll, database gone: one line, the daemon goes on
        result.error = f"{settings.name}: {imap.describe(exc)}"
        log.debug("poll of %s failed", settings.name, exc_info=True)
    finally:
        # A poll cut short by a stop or a lost lease leaves a sound connection: a stop closes it with the others,
        # and the next poll without the lease drops it.
        if kept is not None and result.error is None:
            kept.keep(settings, connection)
        else:
            imap.close(connection)
    if result.error:
        _record(database, settings, None, error=result.error, clock=clock)


def _record(
    database: Database,
    settings: MailboxSettings,
    folder: str | None,
    *,
    error: str | None,
    clock: Callable[[], datetime],
) -> None:
    try:
        with database.session(write=True) as session:
            for name in [folder] if folder else settings.folders:
                store.record_poll(session, settings.name, name, at=clock(), error=error)
            session.commit()
    except Exception:
        log.debug("could not record the poll of %s", settings.name, exc_info=True)


def _poll_folder(
    database: Database,
    connection: Any,
    settings: MailboxSettings,
    folder: str,
    result: FolderResult,
    *,
    max_message_bytes: int,
    batch_bytes: int,
    should_stop: StopCheck,
    clock: Callable[[], datetime],
    processor: PendingProcessor | None = None,
) -> None:
    action = settings.post_action
    with database.session() as session:
        state = store.folder_state(session, settings.name, folder)
        known_validity = state.uidvalidity if state else None
        last_uid = state.last_uid if state else 0
        last_success = state.last_success_at if state else None
        owed = (
            action != "none"
            and known_validity is not None
            and bool(store.pending_actions(session, settings.name, folder, known_validity))
        )
    readonly = action == "none"
    still_open = imap.open_folder(connection) == (folder, readonly)
    peek = None
    if (known_validity is not None and not owed) or still_open:
        # Most polls find nothing: STATUS says so at the same cost on a folder of any size (SELECT reads the
        # folder's index, which grows with it).
        peek = imap.folder_status(connection, folder)
        if (
            known_validity is not None
            and not owed
            and peek
            and peek.uidvalidity == known_validity
            and peek.uidnext is not None
            and peek.uidnext - 1 <= last_uid
        ):
            return
    if still_open and peek is not None and known_validity in (None, peek.uidvalidity):
        # The folder is still open on this connection (kept from the last poll, or opened ahead by the command):
        # opening it again would make the server read it all over again.
        status = peek
    else:
        status = imap.select(connection, folder, readonly=readonly)

    if action != "none":
        if action.startswith("move:"):
            imap.ensure_folder(connection, action.split(":", 1)[1])
        result.actions += _do_owed_actions(database, connection, settings, folder, status.uidvalidity)

    skip_known = False
    if known_validity is None:
        result.first_run = True
        last_uid = _starting_point(connection, settings, status)
        log.info(
            "%s/%s: first poll, starting after UID %d (since = %s)", settings.name, folder, last_uid, settings.since
        )
        _save_position(database, settings.name, folder, status.uidvalidity, last_uid)
    elif known_validity != status.uidvalidity:
        log.warning(
            "%s/%s: UIDVALIDITY changed (%s -> %s): rescanning; messages already stored are recognised",
            settings.name,
            folder,
            known_validity,
            status.uidvalidity,
        )
        result.rescanned = True
        skip_known = True
        last_uid = _rescan_start(connection, last_success)
        _save_position(database, settings.name, folder, status.uidvalidity, last_uid)

    if not skip_known and status.uidnext is not None and status.uidnext - 1 <= last_uid:
        return  # nothing new: the cheap answer SELECT already gave
    uids = imap.uids_after(connection, last_uid)
    if skip_known and uids:
        uids = _unknown_uids(database, connection, uids)
    if processor is not None:
        processor.expect(len(uids))
    for batch, sizes in _batches(
        connection, uids, settings.batch_size, batch_bytes, max_message_bytes, should_stop=should_stop
    ):
        _store_batch(
            database,
            connection,
            settings,
            folder,
            status.uidvalidity,
            batch,
            result,
            max_message_bytes=max_message_bytes,
            clock=clock,
            sizes=sizes,
        )
        if processor is not None:
            processor.step()


def _batches(
    connection: Any,
    uids: Sequence[int],
    batch_size: int,
    batch_bytes: int,
    max_message_bytes: int,
    *,
    should_stop: StopCheck,
) -> Iterator[tuple[list[int], dict[int, int]]]:
    """The UIDs in order, in batches of at most `batch_size` messages and `batch_bytes` bytes, each with the
    sizes of its messages; stops early when should_stop says so (asked before each batch)."""
    start = 0
    for size in batch_sizes(len(uids), batch_size):
        if should_stop():
            return
        chunk = uids[start : start + size]
        start += size
        sizes = imap.message_sizes(connection, chunk)
        for number, batch in enumerate(split_by_bytes(chunk, sizes, batch_bytes, max_message_bytes)):
            if number and should_stop():
                return
            yield batch, sizes


def batch_sizes(count: int, batch_size: int) -> list[int]:
    """How many of `count` messages each fetch batch takes (pipeline.batch_limits)."""
    sizes: list[int] = []
    for limit in batch_limits(batch_size):
        if count <= 0:
            return sizes
        sizes.append(min(limit, count))
        count -= sizes[-1]
    return sizes


def split_by_bytes(
    uids: Sequence[int], sizes: Mapping[int, int], batch_bytes: int, max_message_bytes: int
) -> list[list[int]]:
    """Consecutive runs of the UIDs whose messages come to at most `batch_bytes` bytes (a message larger than
    that alone). A message over `max_message_bytes` counts for nothing (only its header is fetched), nor does
    one the server no longer has."""
    batches: list[list[int]] = []
    batch: list[int] = []
    held = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if size > max_message_bytes:
            size = 0
        if batch and held + size > batch_bytes:
            batches.append(batch)
            batch, held = [], 0
        batch.append(uid)
        held += size
    if batch:
        batches.append(batch)
    return batches


def _starting_point(connection: Any, settings: MailboxSettings, status: imap.FolderStatus) -> int:
    """Where a folder's first poll starts: after everything there ("now"), at the start ("all"), or a date."""
    if settings.since == "all":
        return 0
    if settings.since == "now":
        if status.uidnext is not None:
            return status.uidnext - 1
        existing = imap.all_uids(connection)
        return existing[-1] if existing else 0
    since = imap.uids_since(connection, date.fromisoformat(settings.since))
    if since:
        return since[0] - 1
    return (status.uidnext - 1) if status.uidnext is not None else 0


def _rescan_start(connection: Any, last_success: datetime | None) -> int:
    """After a UIDVALIDITY change: the UID before the first message that arrived near or after the last good poll."""
    if last_success is None:
        return 0
    recent = imap.uids_since(connection, (last_success - RESCAN_MARGIN).date())
    return recent[0] - 1 if recent else 0


def _unknown_uids(database: Database, connection: Any, uids: Sequence[int]) -> list[int]:
    """The UIDs whose Message-ID is not stored yet (messages without one are fetched and deduplicated by hash)."""
    ids = imap.message_ids(connection, uids)
    with database.session() as session:
        known = store.known_message_ids(session, [mid for mid in ids.values() if mid])
    return [uid for uid in uids if ids.get(uid) is None or ids.get(uid) not in known]


def _save_position(database: Database, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None:
    with database.session(write=True) as session:
        store.save_folder_position(session, mailbox, folder, uidvalidity=uidvalidity, last_uid=last_uid)
        store.drop_stale_pending_actions(session, mailbox, folder, uidvalidity)
        session.commit()


def _store_batch(
    database: Database,
    connection: Any,
    settings: MailboxSettings,
    folder: str,
    uidvalidity: int,
    batch: Sequence[int],
    result: FolderResult,
    *,
    max_message_bytes: int,
    clock: Callable[[], datetime],
    sizes: Mapping[int, int] | None = None,
) -> None:
    """A batch of new UIDs: stored together with the folder's new position and the post-actions owed."""
    items = _fetch_items(connection, settings, folder, uidvalidity, batch, max_message_bytes, sizes)
    now = clock()
    with database.session(write=True) as session:
        new, quarantined = _add_items(session, items, max_message_bytes=max_message_bytes, now=now)
        store.save_folder_position(session, settings.name, folder, uidvalidity=uidvalidity, last_uid=max(batch))
        store.add_pending_actions(session, settings.name, folder, uidvalidity, batch, settings.post_action, now=now)
        session.commit()
    _count(result, len(items), new, quarantined)
    if settings.post_action != "none":
        result.actions += _act(database, connection, settings, folder, uidvalidity, list(batch), settings.post_action)


def _do_owed_actions(
    database: Database, connection: Any, settings: MailboxSettings, folder: str, uidvalidity: int
) -> int:
    with database.session() as session:
        owed = store.pending_actions(session, settings.name, folder, uidvalidity)
    done = 0
    for action, uids in owed.items():
        done += _act(database, connection, settings, folder, uidvalidity, uids, action)
    return done


def _act(
    database: Database,
    connection: Any,
    settings: MailboxSettings,
    folder: str,
    uidvalidity: int,
    uids: list[int],
    action: str,
) -> int:
    imap.apply_action(connection, uids, action)
    with database.session(write=True) as session:
        store.clear_pending_actions(session, settings.name, folder, uidvalidity, uids)
        session.commit()
    return len(uids)


def backfill_mailbox(
    database: Database,
    settings: MailboxSettings,
    password: str | None,
    *,
    since: date,
    max_message_bytes: int,
    batch_bytes: int = BATCH_BYTES,
    progress: Callable[[int, int], None] | None = None,
    should_stop: StopCheck = _never,
) -> PollResult:
    """Import a mailbox's history since a date on purpose; known messages are skipped, the folder position kept."""
    started = time.monotonic()
    result = PollResult(settings.name)
    connection = imap.connect(settings, password)
    try:
        for folder in settings.folders:
            folder_result = FolderResult(folder)
            result.folders.append(folder_result)
            status = imap.select(connection, folder, readonly=True)
            uids = _unknown_uids(database, connection, imap.uids_since(connection, since))
            done = 0
            for batch, sizes in _batches(
                connection, uids, settings.batch_size, batch_bytes, max_message_bytes, should_stop=should_stop
            ):
                _store_history(
                    database,
                    connection,
                    settings,
                    folder,
                    status.uidvalidity,
                    batch,
                    folder_result,
                    max_message_bytes=max_message_bytes,
                    sizes=sizes,
                )
                done += len(batch)
                if progress is not None:
                    progress(done, len(uids))
    finally:
        imap.close(connection)
    result.seconds = time.monotonic() - started
    return result


def _store_history(
    database: Database,
    connection: Any,
    settings: MailboxSettings,
    folder: str,
    uidvalidity: int,
    batch: Sequence[int],
    result: FolderResult,
    *,
    max_message_bytes: int,
    sizes: Mapping[int, int] | None = None,
) -> None:
    items = _fetch_items(connection, settings, folder, uidvalidity, batch, max_message_bytes, sizes)
    with database.session(write=True) as session:
        new, quarantined = _add_items(session, items, max_message_bytes=max_message_bytes, now=None)
        session.commit()
    _count(result, len(items), new, quarantined)


def _fetch_items(
    connection: Any,
    settings: MailboxSettings,
    folder: str,
    uidvalidity: int,
    batch: Sequence[int],
    max_bytes: int,
    sizes: Mapping[int, int] | None = None,
) -> list[tuple[store.RawItem, bool]]:
    """The batch's messages as raw items, each with whether only its head was fetched (over the size limit)."""
    origin = f"imap:{settings.name}/{folder}"
    items = []
    for message in imap.fetch(connection, batch, max_bytes=max_bytes, sizes=sizes):
        key, digest = message_key(message.data, quick_message_id(message.data))
        item = store.RawItem(
            origin=origin,
            data=message.data,
            message_id=key,
            content_hash=digest,
            mailbox=settings.name,
            folder=folder,
            uidvalidity=uidvalidity,
            uid=message.uid,
            size=message.size,
        )
        items.append((item, message.truncated))
    return items


def _add_items(
    session: Any, items: Sequence[tuple[store.RawItem, bool]], *, max_message_bytes: int, now: datetime | None
) -> tuple[int, int]:
    """Store fetched items, a message over the size limit quarantined with its head: (new, quarantined)."""
    new_ids = store.add_raw(session, [item for item, truncated in items if not truncated], now=now)
    quarantined = 0
    for item in (item for item, truncated in items if truncated):
        reason = (
            f"too large: {item.real_size} bytes (limit {max_message_bytes}); only the headers were "
            "fetched, the message stays on the server"
        )
        if store.add_quarantined_raw(session, item, reason, keep_bytes=True, now=now) is not None:
            quarantined += 1
    return len(new_ids), quarantined


def _count(result: FolderResult, fetched: int, new: int, quarantined: int) -> None:
    """Count a committed batch in the folder's result."""
    result.fetched += fetched
    result.new += new + quarantined
    result.too_large += quarantined
    result.duplicates += fetched - new - quarantined
