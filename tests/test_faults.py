"""Faults injected under a running daemon: the disk fills up, another writer holds the database, the IMAP server
restarts in the middle of a large batch. Each time: the daemon says so, keeps running, and loses nothing."""

from __future__ import annotations

import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.mailgen import letter
from tests.test_daemon import DaemonProcess, wait_for


def _exactly_once(daemon: DaemonProcess, total: int) -> None:
    assert daemon.scalar("SELECT count(*) FROM raw_message") == total
    assert daemon.scalar("SELECT count(DISTINCT message_id) FROM raw_message") == total
    assert daemon.scalar("SELECT count(*) FROM card") == total
    assert daemon.scalar("SELECT count(*) FROM raw_message WHERE status <> 'card'") == 0


def test_a_full_disk_while_storing_loses_nothing_and_the_daemon_recovers(
    tmp_path: Path,
    dovecot,  # type: ignore[no-untyped-def]
    imap_user,
) -> None:
    daemon = DaemonProcess(tmp_path, dovecot.mailbox_settings(imap_user, interval="1s", batch_size=20))
    assert daemon.cli("db", "upgrade").returncode == 0
    limit = daemon.database.stat().st_size + 64 * 1024  # room for the log, not for the mail

    def small_files() -> None:
        # The file-size limit makes the database's writes fail with EFBIG, as a full disk would; ignoring
        # SIGXFSZ keeps the process alive to handle the error, as it would be on a real full disk.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    dovecot.append(imap_user, [letter(n, size=20_000) for n in range(60)])
    handle = daemon.log.open("ab")
    daemon.process = subprocess.Popen(
        [sys.executable, "-m", "interestd", "--config", str(daemon.config), "run"],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=daemon.env,
        preexec_fn=small_files,
    )
    try:
        wait_for(lambda: "full" in daemon.log_text() or "disk I/O" in daemon.log_text(), 60, "the write failure")
        time.sleep(2)
        assert daemon.alive()
        assert daemon.scalar("SELECT count(*) FROM raw_message") == 0  # nothing half-stored
        assert daemon.scalar("SELECT coalesce(max(last_uid), 0) FROM mailbox_state") == 0  # position not advanced
        resource.prlimit(
            daemon.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )  # space is back (soft limit raised)
        wait_for(lambda: daemon.cards() == 60, 60, "the cards once there is room")
        # Cards appear while the poll goes on; the recovery is logged when it has ended.
        wait_for(lambda: "recovered after" in daemon.log_text(), 30, "the recovery to be logged")
        _exactly_once(daemon, 60)
        assert daemon.stop() == 0
    finally:
        if daemon.alive():
            daemon.kill()


def test_a_database_locked_longer_than_the_busy_timeout_loses_nothing(
    tmp_path: Path,
    dovecot,  # type: ignore[no-untyped-def]
    imap_user,
) -> None:
    daemon = DaemonProcess(tmp_path, dovecot.mailbox_settings(imap_user, interval="1s"))
    daemon.config.write_text(daemon.config.read_text().replace("[database]\n", '[database]\nbusy_timeout = "1s"\n'))
    assert daemon.cli("db", "upgrade").returncode == 0
    daemon.start()
    try:
        wait_for(lambda: "poll mailbox=default ok=1" in daemon.log_text(), 30, "the first poll")
        blocker = sqlite3.connect(daemon.database, timeout=30, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database...
        dovecot.append(imap_user, [letter(n) for n in range(10)])
        wait_for(lambda: "database is locked" in daemon.log_text(), 30, "the lock to be noticed")
        time.sleep(3)  # ...for several busy timeouts
        assert daemon.alive()
        blocker.execute("ROLLBACK")
        blocker.close()
        wait_for(lambda: daemon.cards() == 10, 30, "the cards after the lock is gone")
        _exactly_once(daemon, 10)
        assert daemon.log_text().count("database is locked") == 1  # one line for the whole episode
        assert daemon.stop() == 0
    finally:
        if daemon.alive():
            daemon.kill()


def test_the_imap_server_restarting_in_the_middle_of_a_large_batch(tmp_path: Path, private_dovecot) -> None:  # type: ignore[no-untyped-def]
    user = private_dovecot.add_user()
    total = 800
    private_dovecot.append(user, [letter(n, size=4000) for n in range(total)])
    daemon = DaemonProcess(tmp_path, private_dovecot.mailbox_settings(user, interval="1s", batch_size=20, timeout="3s"))
    daemon.start()
    try:
        wait_for(lambda: daemon.scalar("SELECT count(*) FROM raw_message") >= 100, 60, "the batch to be under way")

        def restart() -> None:
            private_dovecot.stop()
            time.sleep(2)
            private_dovecot.start()

        worker = threading.Thread(target=restart)
        worker.start()
        worker.join(30)
        wait_for(lambda: daemon.cards() == total, 120, "every message after the restart")
        _exactly_once(daemon, total)
        assert daemon.stop() == 0
    finally:
        if daemon.alive():
            daemon.kill()
