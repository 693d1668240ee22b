"""Polling a real Dovecot: exactly once, BODY.PEEK, first-run horizon, UIDVALIDITY changes, post-actions, TLS."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from interestd import store
from interestd.config import load_settings
from interestd.models import Card, PendingAction, RawMessage
from interestd.polling import KeptConnections, poll_mailbox
from interestd.services import backfill, build_context, open_database, poll_once
from interestd.sources import imap
from tests.mailgen import letter


class Setup:
    """Settings for one Dovecot user on one database engine, and what the CLI would build from them."""

    def __init__(self, tmp_path: Path, database_url: str, dovecot, user: str, **imap: object) -> None:  # type: ignore[no-untyped-def]
        self.dovecot, self.user, self.tmp_path, self.database_url = dovecot, user, tmp_path, database_url
        self.configure(**imap)

    def configure(self, **imap: object) -> None:
        path = self.tmp_path / "config.toml"
        path.write_text(self.dovecot.mailbox_settings(self.user, **imap))
        self.settings = load_settings(path, environ={**os.environ, "INTERESTD_DATABASE_URL": self.database_url})
        self.database = open_database(self.settings)
        self.context = build_context(self.settings)

    def poll(self):  # type: ignore[no-untyped-def]
        [result] = poll_once(self.settings, self.database, self.context)
        return result

    def poll_mailbox(self, **options: object):  # type: ignore[no-untyped-def]
        """poll_mailbox on this setup's one mailbox, with the given options (holder, kept, should_stop...)."""
        mailbox = self.settings.all_mailboxes()[0]
        return poll_mailbox(
            self.database,
            self.context,
            mailbox,
            self.settings.mailbox_password(mailbox),
            max_message_bytes=self.settings.limits.max_message_bytes,
            **options,  # type: ignore[arg-type]
        )

    def count(self, model) -> int:  # type: ignore[no-untyped-def]
        with self.database.session() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0

    def message_ids(self) -> list[str]:
        with self.database.session() as session:
            return sorted(session.scalars(select(RawMessage.message_id)))


@pytest.fixture
def setup(tmp_path: Path, database_url: str, dovecot, imap_user: str) -> Setup:  # type: ignore[no-untyped-def]
    return Setup(tmp_path, database_url, dovecot, imap_user)


def test_new_mail_becomes_cards_and_a_second_poll_finds_nothing(setup: Setup) -> None:
    setup.dovecot.append(setup.user, [letter(n) for n in range(5)])
    result = setup.poll()
    assert result.error is None
    assert (result.fetched, result.new, result.processed.counts["card"]) == (5, 5, 5)
    assert result.folders[0].first_run
    again = setup.poll()
    assert (again.error, again.fetched, again.new) == (None, 0, 0)
    setup.dovecot.append(setup.user, [letter(5)])
    assert setup.poll().new == 1
    assert setup.count(Card) == 6 and setup.count(RawMessage) == 6
    with setup.database.session() as session:
        state = store.folder_state(session, "default", "INBOX")
    assert state is not None and state.last_uid == 6 and state.last_success_at is not None


def test_mail_a_person_already_read_is_still_taken_and_never_marked_seen(setup: Setup) -> None:
    setup.dovecot.append(setup.user, [letter(1)], flags="(\\Seen)")
    setup.dovecot.append(setup.user, [letter(2)])
    assert setup.poll().new == 2
    flags = setup.dovecot.flags(setup.user)
    assert "\\Seen" in flags[1] and "\\Seen" not in flags[2]  # BODY.PEEK: interestd changed nothing


def test_first_poll_with_since_now_leaves_old_mail_alone(
    tmp_path: Path,
    database_url: str,
    dovecot,  # type: ignore[no-untyped-def]
    imap_user: str,
) -> None:
    dovecot.append(imap_user, [letter(n) for n in range(3)])
    setup = Setup(tmp_path, database_url, dovecot, imap_user, since="now")
    first = setup.poll()
    assert first.new == 0 and first.folders[0].first_run
    dovecot.append(imap_user, [letter(10)])
    assert setup.poll().new == 1
    assert setup.message_ids() == ["<letter-10@example.ru>"]
    # History is imported on purpose, and only once.
    from datetime import date

    [history] = backfill(setup.settings, setup.database, setup.context, since=date(2000, 1, 1))
    assert (history.fetched, history.new) == (3, 3)
    assert setup.count(Card) == 4
    [again] = backfill(setup.settings, setup.database, setup.context, since=date(2000, 1, 1))
    assert again.fetched == 0


def test_uidvalidity_change_rescans_without_duplicates_or_gaps(setup: Setup) -> None:
    setup.dovecot.append(setup.user, [letter(n) for n in range(4)])
    assert setup.poll().new == 4
    setup.dovecot.set_uidvalidity(setup.user, setup.dovecot.uidvalidity(setup.user) + 1000)
    setup.dovecot.append(setup.user, [letter(4), letter(5)])
    result = setup.poll()
    assert result.folders[0].rescanned
    assert result.new == 2
    assert setup.count(RawMessage) == 6 and setup.count(Card) == 6
    assert setup.message_ids() == sorted(f"<letter-{n}@example.ru>" for n in range(6))
    assert setup.poll().new == 0


class CountingConnects:
    """How many times polls logged in (real connections: only the count is added)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = imap.connect

        def connect(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(imap, "connect", connect)


def _kept_poll(setup: Setup, kept: KeptConnections):  # type: ignore[no-untyped-def]
    """One poll as the daemon's poll job makes it: the connection taken from and left in `kept`."""
    return setup.poll_mailbox(holder="test-daemon", kept=kept)


def test_the_daemon_keeps_its_connection_and_still_sees_every_new_message(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects = CountingConnects(monkeypatch)
    kept = KeptConnections()
    setup.dovecot.append(setup.user, [letter(1)])
    assert _kept_poll(setup, kept).new == 1
    assert _kept_poll(setup, kept).new == 0
    setup.dovecot.append(setup.user, [letter(2)])  # by another session, as the mail server's delivery is
    assert _kept_poll(setup, kept).new == 1
    # Delivered straight into the Maildir, as a local delivery agent writes it, while the folder is selected.
    delivered = setup.dovecot.maildir(setup.user) / "new" / "1790000000.M1P1.test"
    delivered.write_bytes(letter(3))
    setup.dovecot.own_mail(setup.user)
    assert _kept_poll(setup, kept).new == 1
    assert connects.count == 1 and len(kept) == 1
    assert setup.message_ids() == [f"<letter-{n}@example.ru>" for n in (1, 2, 3)]
    kept.close_all()


class CountingSelects:
    """Which folders polls opened with SELECT/EXAMINE (real commands: only the record is added)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folders: list[str] = []
        real = imap.select

        def select(mailbox, folder, *, readonly):  # type: ignore[no-untyped-def]
            self.folders.append(folder)
            return real(mailbox, folder, readonly=readonly)

        monkeypatch.setattr(imap, "select", select)


def test_a_kept_connection_goes_on_with_its_open_folder_instead_of_opening_it_again(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each SELECT makes the server read the folder anew: polls that find mail on a kept connection reuse it.
    selects = CountingSelects(monkeypatch)
    kept = KeptConnections()
    for n in range(1, 4):
        setup.dovecot.append(setup.user, [letter(n)])
        assert _kept_poll(setup, kept).new == 1
    assert selects.folders == ["INBOX"]
    # A poll that must open the folder another way (a post-action needs it writable) opens it again.
    setup.configure(post_action="seen")
    setup.dovecot.append(setup.user, [letter(4)])
    assert _kept_poll(setup, kept).new == 1
    assert selects.folders == ["INBOX", "INBOX"]
    assert setup.message_ids() == [f"<letter-{n}@example.ru>" for n in range(1, 5)]
    kept.close_all()


def test_poll_once_uses_the_session_opened_while_the_command_started(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects, selects = CountingConnects(monkeypatch), CountingSelects(monkeypatch)
    setup.dovecot.append(setup.user, [letter(n) for n in range(1, 4)])
    mailbox = setup.settings.all_mailboxes()[0]
    ahead = imap.SessionsAhead([(mailbox, setup.settings.mailbox_password(mailbox))])
    [result] = poll_once(setup.settings, setup.database, setup.context, ahead=ahead)
    assert (result.error, result.new) == (None, 3)
    assert (connects.count, selects.folders) == (1, ["INBOX"])  # one login, the folder opened once
    assert ahead.take(mailbox) is None  # handed over, and closed with the poll
    # A session that cannot log in ahead is the poll's error, and the poll does not try a second time (servers
    # delay, then ban, after a few failed logins).
    ahead = imap.SessionsAhead([(mailbox, "wrong password")])
    [result] = poll_once(setup.settings, setup.database, setup.context, ahead=ahead)
    assert result.error is not None and result.error.startswith("default: login failed for ")
    assert connects.count == 2


def test_a_kept_connection_the_server_dropped_is_replaced_without_an_error(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects = CountingConnects(monkeypatch)
    kept = KeptConnections()
    assert _kept_poll(setup, kept).error is None
    setup.dovecot.doveadm("kick", setup.user)
    setup.dovecot.append(setup.user, [letter(1)])
    result = _kept_poll(setup, kept)
    assert (result.error, result.new, connects.count) == (None, 1, 2)
    # The folder's UIDVALIDITY changes under a kept connection: the rescan still finds each message once.
    setup.dovecot.set_uidvalidity(setup.user, setup.dovecot.uidvalidity(setup.user) + 1000)
    setup.dovecot.append(setup.user, [letter(2)])
    result = _kept_poll(setup, kept)
    assert (result.error, result.new) == (None, 1) and result.folders[0].rescanned
    assert setup.message_ids() == [f"<letter-{n}@example.ru>" for n in (1, 2)]
    kept.close_all()


def test_a_failed_poll_keeps_no_connection(setup: Setup) -> None:
    kept = KeptConnections()
    assert _kept_poll(setup, kept).error is None and len(kept) == 1
    setup.configure(folders=["INBOX", "No such folder"])
    result = _kept_poll(setup, kept)
    assert result.error is not None and "No such folder" in result.error
    assert len(kept) == 0


def test_a_poll_evaluates_what_it_stored_while_it_fetches_the_rest(setup: Setup) -> None:
    """The first stored batch goes to the evaluator while the next ones are fetched; all are processed."""
    from tests.conftest import SignallingEvaluator

    setup.dovecot.append(setup.user, [letter(n) for n in range(12)])
    setup.configure(batch_size=4)
    evaluator = SignallingEvaluator()
    evaluated_while_fetching: list[bool] = []

    def should_stop() -> bool:  # asked before each batch is fetched (and by the processing)
        if not evaluated_while_fetching and setup.count(RawMessage) == 8:
            evaluated_while_fetching.append(evaluator.called.wait(20))
        return False

    result = setup.poll_mailbox(should_stop=should_stop, evaluator=evaluator)
    assert result.error is None and result.fetched == 12
    assert evaluated_while_fetching == [True]
    assert result.processed.counts["card"] == 12 == setup.count(Card) == evaluator.rows


def test_a_poll_renews_its_lease_when_a_quarter_of_it_has_passed_not_at_every_batch(setup: Setup) -> None:
    """Each renewal is a write transaction, and a poll checks its lease several times per batch: it is renewed
    when a quarter of its time has passed, and a poll longer than the lease still holds it to the end."""
    from sqlalchemy import event

    from interestd.polling import holder_name

    setup.configure(batch_size=1, interval="8s")
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("UPDATE LEASE", "INSERT INTO LEASE")):
            statements.append(statement)

    checks = 0

    def poll(seconds_per_check: float) -> None:
        nonlocal checks
        statements.clear()
        checks = 0
        offset = timedelta()

        def clock() -> datetime:
            return datetime.now(UTC) + offset

        def should_stop() -> bool:  # asked before each batch and by the processing: each time, time passes
            nonlocal offset, checks
            checks += 1
            offset += timedelta(seconds=seconds_per_check)
            return False

        result = setup.poll_mailbox(holder=holder_name("test"), should_stop=should_stop, clock=clock)
        assert result.error is None and result.fetched == 12

    event.listen(setup.database.engine, "before_cursor_execute", count)
    try:
        setup.dovecot.append(setup.user, [letter(n) for n in range(12)])
        poll(0)  # twelve batches in a moment: the lease taken, then left alone
        assert checks >= 12 and 1 <= len(statements) <= 2
        setup.dovecot.append(setup.user, [letter(n) for n in range(12, 24)])
        poll(0.5)  # half a second per check: renewed every fourth check (a quarter of 8 s), not at each
        # (a renewal is an INSERT that finds the row, then an UPDATE)
        assert checks >= 12 and 2 * 3 <= len(statements) <= 2 * (checks // 4 + 2)
    finally:
        event.remove(setup.database.engine, "before_cursor_execute", count)
    with setup.database.session() as session:
        lease = store.lease(session, "mailbox:default")
    assert lease is not None and lease.holder == holder_name("test")
    assert setup.count(Card) == 24


def test_move_post_action_moves_only_committed_messages(
    tmp_path: Path,
    database_url: str,
    dovecot,  # type: ignore[no-untyped-def]
    imap_user: str,
) -> None:
    setup = Setup(tmp_path, database_url, dovecot, imap_user, post_action="move:Processed", batch_size=2)
    dovecot.append(imap_user, [letter(n) for n in range(5)])
    result = setup.poll()
    assert (result.new, result.folders[0].actions) == (5, 5)
    assert dovecot.count(imap_user, "INBOX") == 0 and dovecot.count(imap_user, "Processed") == 5
    assert setup.count(PendingAction) == 0


def test_a_post_action_owed_by_a_crashed_run_is_done_at_the_next_poll(
    tmp_path: Path,
    database_url: str,  # type: ignore[no-untyped-def]
    dovecot,
    imap_user: str,
) -> None:
    setup = Setup(tmp_path, database_url, dovecot, imap_user, post_action="flag")
    [uid] = dovecot.append(imap_user, [letter(1)])
    assert setup.poll().new == 1
    dovecot.append(imap_user, [letter(2)])
    validity = dovecot.uidvalidity(imap_user)
    # As if a run had committed message 2 and died before flagging it.
    with setup.database.session(write=True) as session:
        store.add_pending_actions(session, "default", "INBOX", validity, [uid + 1], "flag")
        store.save_folder_position(session, "default", "INBOX", uidvalidity=validity, last_uid=uid + 1)
        session.commit()
    result = setup.poll()
    assert result.new == 0 and result.folders[0].actions == 1
    assert "\\Flagged" in dovecot.flags(imap_user)[uid + 1]
    assert setup.count(PendingAction) == 0


def test_a_message_over_the_size_limit_is_quarantined_and_left_on_the_server(
    tmp_path: Path,
    database_url: str,  # type: ignore[no-untyped-def]
    dovecot,
    imap_user: str,
) -> None:
    setup = Setup(tmp_path, database_url, dovecot, imap_user)
    config = setup.tmp_path / "config.toml"
    config.write_text(config.read_text() + "\n[limits]\nmax_message_bytes = 20000\n")
    setup.settings = load_settings(config, environ={**os.environ, "INTERESTD_DATABASE_URL": database_url})
    dovecot.append(imap_user, [letter(1, size=60_000), letter(2)])
    result = setup.poll()
    assert result.new == 2 and result.folders[0].too_large == 1
    with setup.database.session() as session:
        [big] = session.scalars(select(RawMessage).where(RawMessage.status == "quarantined")).all()
        head = store.raw_bytes(session, big.id)
    assert "too large" in (big.reason or "") and big.size > 60_000 and head is not None and len(head) < 2000
    assert dovecot.count(imap_user) == 2


def _record_stored_batches(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The UIDs of each batch a poll stores, in order (filled as the poll goes)."""
    from interestd import polling

    stored: list[list[int]] = []
    store_batch = polling._store_batch

    def recording(*args: object, **kwargs: object) -> None:
        stored.append(list(args[5]))  # type: ignore[call-overload]
        store_batch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(polling, "_store_batch", recording)
    return stored


def test_a_poll_fetches_and_stores_at_most_batch_bytes_of_mail_at_a_time(
    tmp_path: Path,
    database_url: str,  # type: ignore[no-untyped-def]
    dovecot,
    imap_user: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """batch_size counts messages; batch_bytes bounds what one batch holds in memory (the FETCH and its
    transaction): large mail is taken in more, smaller batches, in order, and nothing is left out."""
    letters = [letter(n, size=280_000) for n in range(7)]
    assert all(300_000 < len(raw) < 1024 * 1024 / 2 for raw in letters)
    dovecot.append(imap_user, letters)
    setup = Setup(tmp_path, database_url, dovecot, imap_user, batch_size=5)
    config = setup.tmp_path / "config.toml"
    config.write_text(config.read_text() + '\n[limits]\nbatch_bytes = "1MB"\n')
    setup.settings = load_settings(config, environ={**os.environ, "INTERESTD_DATABASE_URL": database_url})
    stored = _record_stored_batches(monkeypatch)
    result = setup.poll()
    assert result.error is None and result.new == 7 and result.processed.counts["card"] == 7
    uids = [uid for batch in stored for uid in batch]
    assert uids == sorted(uids) and len(uids) == 7
    sizes = {uid: len(raw) for uid, raw in zip(uids, letters, strict=True)}
    assert all(sum(sizes[uid] for uid in batch) <= 1024 * 1024 for batch in stored)
    assert [len(batch) for batch in stored] == [2, 2, 1, 2]  # 5 by count, each 5 then by bytes


def test_a_poll_starts_with_small_batches_so_the_workers_start_early(
    tmp_path: Path,
    database_url: str,  # type: ignore[no-untyped-def]
    dovecot,
    imap_user: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The workers wait for the first batch stored: it is small (100), the next larger, then batch_size."""
    dovecot.append(imap_user, [letter(n) for n in range(450)])
    setup = Setup(tmp_path, database_url, dovecot, imap_user, batch_size=200)
    stored = _record_stored_batches(monkeypatch)
    result = setup.poll()
    assert result.error is None and result.new == 450 and result.processed.counts["card"] == 450
    assert [len(batch) for batch in stored] == [100, 200, 150]
    uids = [uid for batch in stored for uid in batch]
    assert uids == sorted(uids) and len(set(uids)) == 450


def test_batch_sizes_grow_to_batch_size_and_cover_every_message() -> None:
    from interestd.polling import batch_sizes

    assert batch_sizes(10_000, 1000) == [100, 300] + [1000] * 9 + [600]
    assert batch_sizes(250, 1000) == [100, 150]
    assert batch_sizes(50, 1000) == [50]
    assert batch_sizes(0, 1000) == []
    assert batch_sizes(10, 3) == [3, 3, 3, 1]  # a batch_size below the first sizes wins
    assert batch_sizes(450, 200) == [100, 200, 150]
    for count in range(0, 2500, 37):
        assert sum(batch_sizes(count, 1000)) == count


def test_batches_by_bytes_keep_the_order_and_let_a_large_message_through_alone() -> None:
    from interestd.polling import split_by_bytes

    sizes = {1: 400, 2: 400, 3: 400, 4: 5_000, 5: 100, 6: 9_999_999, 7: 100}
    # 6 is over the message size limit: only its header is fetched, so it weighs nothing; 8 has gone.
    assert split_by_bytes([1, 2, 3, 4, 5, 6, 7, 8], sizes, 1000, 1_000_000) == [[1, 2], [3], [4], [5, 6, 7, 8]]
    assert split_by_bytes([], sizes, 1000, 1_000_000) == []
    assert split_by_bytes([1, 2, 3], sizes, 10**9, 10**9) == [[1, 2, 3]]


def test_wrong_password_is_one_clear_error(
    tmp_path: Path,
    database_url: str,
    dovecot,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "interestd-pass")  # not the password of user "wrongpass"
    setup = Setup(tmp_path, database_url, dovecot, "wrongpass")
    result = setup.poll()
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("default: login failed for wrongpass@127.0.0.1:")
    assert "Authentication failed" in result.error


def test_imaps_with_the_configured_ca_works_and_a_foreign_certificate_is_refused(setup: Setup) -> None:
    setup.dovecot.append(setup.user, [letter(1)])
    setup.configure(security="ssl", port=setup.dovecot.imaps_port, ca_file=str(setup.dovecot.cert))
    assert setup.poll().new == 1
    setup.configure(security="ssl", port=setup.dovecot.imaps_port, ca_file=str(setup.dovecot.other_ca))
    result = setup.poll()
    assert result.error is not None and "TLS certificate not trusted" in result.error
    setup.configure(security="starttls", port=setup.dovecot.imap_port, ca_file=str(setup.dovecot.cert))
    setup.dovecot.append(setup.user, [letter(2)])
    assert setup.poll().new == 1


def test_several_folders_are_read_each_on_its_own(
    tmp_path: Path,
    database_url: str,
    dovecot,  # type: ignore[no-untyped-def]
    imap_user: str,
) -> None:
    dovecot.append(imap_user, [letter(1)], folder="Forms")
    dovecot.append(imap_user, [letter(2)])
    setup = Setup(tmp_path, database_url, dovecot, imap_user, folders=["INBOX", "Forms"])
    result = setup.poll()
    assert [(f.folder, f.new) for f in result.folders] == [("INBOX", 1), ("Forms", 1)]
