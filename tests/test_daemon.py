"""`interestd run` as a process against a real Dovecot: IDLE, kill -9, server restarts, bad passwords, signals."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.dovecot import PASSWORD
from tests.mailgen import letter


class DaemonProcess:
    """One `interestd run` subprocess with its own config, SQLite database and log file."""

    def __init__(self, tmp_path: Path, config: str, *, name: str = "daemon", database_url: str | None = None) -> None:
        self.tmp_path = tmp_path
        self.config = tmp_path / f"{name}.toml"
        self.database = tmp_path / "interestd.db"
        self.database_url = database_url or f"sqlite:///{self.database}"
        self.log = tmp_path / f"{name}.log"
        self.config.write_text(config + f'\n[database]\nurl = "{self.database_url}"\n')
        self.config.chmod(0o600)
        self.env = {**os.environ, "TEST_IMAP_PASSWORD": PASSWORD, "HOME": str(tmp_path)}
        self.process: subprocess.Popen[bytes] | None = None
        self._engine = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "interestd", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )

    def start(self) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "interestd", "--config", str(self.config), "run"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def stop(self, timeout: float = 15) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def scalar(self, sql: str) -> int:
        """A number from the daemon's database; 0 while it does not exist (yet) or cannot be reached."""
        if self.database_url.startswith("sqlite"):
            if not self.database.exists():
                return 0
            connection = sqlite3.connect(self.database, timeout=30)
            try:
                return connection.execute(sql).fetchone()[0]
            except sqlite3.OperationalError:
                return 0
            finally:
                connection.close()
        from sqlalchemy import create_engine, text

        if self._engine is None:
            self._engine = create_engine(self.database_url, pool_pre_ping=True)
        try:
            with self._engine.connect() as connection:
                return connection.execute(text(sql)).scalar() or 0
        except Exception:
            return 0

    def cards(self) -> int:
        return self.scalar("SELECT count(*) FROM card")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        if daemon.alive():
            daemon.kill()


def _daemon(tmp_path: Path, daemons: list[DaemonProcess], dovecot, user: str, **imap: object) -> DaemonProcess:  # type: ignore[no-untyped-def]
    daemon = DaemonProcess(tmp_path, dovecot.mailbox_settings(user, **imap))
    daemons.append(daemon)
    return daemon


def test_idle_turns_new_mail_into_a_card_within_5_seconds(tmp_path: Path, daemons, dovecot, imap_user) -> None:  # type: ignore[no-untyped-def]
    daemon = _daemon(tmp_path, daemons, dovecot, imap_user, idle=True, interval="300s")
    daemon.start()
    wait_for(lambda: "poll mailbox=default ok=1" in daemon.log_text(), 30, "the first poll")
    time.sleep(0.5)  # let the IDLE command be issued
    dovecot.append(imap_user, [letter(1)])
    elapsed = wait_for(lambda: daemon.cards() == 1, 5, "the card from IDLE")
    assert elapsed < 5
    assert daemon.stop() == 0


def test_kill_9_in_the_middle_of_a_large_batch_loses_and_duplicates_nothing(
    tmp_path: Path,
    daemons,
    dovecot,  # type: ignore[no-untyped-def]
    imap_user,
) -> None:
    total = 1200
    dovecot.append(imap_user, [letter(n, size=4000) for n in range(total)])
    daemon = _daemon(tmp_path, daemons, dovecot, imap_user, batch_size=40)
    for round_ in range(3):  # killed three times, at different points
        daemon.start()
        target = (round_ + 1) * total // 4
        wait_for(
            lambda target=target: daemon.scalar("SELECT count(*) FROM raw_message") >= target,
            120,
            f"{target} stored messages",
        )
        daemon.kill()
    result = daemon.cli("poll", "--once")
    assert result.returncode == 0, result.stderr
    assert daemon.scalar("SELECT count(*) FROM raw_message") == total
    assert daemon.scalar("SELECT count(DISTINCT message_id) FROM raw_message") == total
    assert daemon.scalar("SELECT count(*) FROM card") == total
    assert daemon.scalar("SELECT count(DISTINCT raw_message_id) FROM card") == total
    assert daemon.scalar("SELECT count(*) FROM raw_message WHERE status <> 'card'") == 0


def test_the_daemon_recovers_when_dovecot_restarts(tmp_path: Path, daemons, private_dovecot) -> None:  # type: ignore[no-untyped-def]
    user = private_dovecot.add_user()
    daemon = _daemon(tmp_path, daemons, private_dovecot, user, interval="1s", timeout="3s")
    private_dovecot.append(user, [letter(1)])
    daemon.start()
    wait_for(lambda: daemon.cards() == 1, 30, "the first card")
    private_dovecot.stop()
    wait_for(lambda: "ERROR: default: cannot connect" in daemon.log_text(), 30, "the outage to be noticed")
    time.sleep(4)  # several failed retries
    private_dovecot.start()
    private_dovecot.append(user, [letter(2)])
    wait_for(lambda: daemon.cards() == 2, 30, "the card after the restart")
    wait_for(lambda: "poll mailbox=default ok=1 fetched=1" in daemon.log_text(), 10, "the poll that got it to end")
    assert daemon.alive()
    log = daemon.log_text()
    assert log.count("ERROR: default:") == 1, log  # one line per outage, not one per retry
    assert "recovered after" in log
    assert daemon.stop() == 0


def test_a_wrong_password_is_one_clear_error_and_the_daemon_keeps_running(
    tmp_path: Path,
    daemons,
    dovecot,  # type: ignore[no-untyped-def]
    monkeypatch,
) -> None:
    daemon = _daemon(tmp_path, daemons, dovecot, "wrongpass", interval="1s")
    daemon.start()
    wait_for(lambda: "login failed" in daemon.log_text(), 30, "the login error")
    time.sleep(3)
    assert daemon.alive()
    errors = [line for line in daemon.log_text().splitlines() if "login failed" in line]
    assert len(errors) == 1
    assert errors[0].startswith("interestd: ERROR: default: login failed for wrongpass@127.0.0.1:")
    assert PASSWORD not in daemon.log_text()
    status = daemon.cli("status")
    assert status.returncode == 8 and "default/INBOX: never polled" in status.stderr
    assert daemon.stop() == 0


def test_sigterm_stops_within_10_seconds_with_exit_0(tmp_path: Path, daemons, dovecot, imap_user) -> None:  # type: ignore[no-untyped-def]
    dovecot.append(imap_user, [letter(n) for n in range(300)])
    daemon = _daemon(tmp_path, daemons, dovecot, imap_user, batch_size=20)
    daemon.start()
    wait_for(lambda: daemon.scalar("SELECT count(*) FROM raw_message") > 0, 30, "the poll to start")
    started = time.monotonic()
    code = daemon.stop(timeout=15)
    assert code == 0 and time.monotonic() - started < 10
    assert daemon.scalar("SELECT count(*) FROM raw_message WHERE status = 'new'") >= 0  # kept, processed later
    assert daemon.cli("poll", "--once").returncode == 0
    assert daemon.cards() == 300


def test_sighup_reloads_a_valid_config_and_keeps_the_old_one_when_invalid(
    tmp_path: Path,
    daemons,
    dovecot,  # type: ignore[no-untyped-def]
    imap_user,
) -> None:
    daemon = _daemon(tmp_path, daemons, dovecot, imap_user, interval="1s")
    daemon.start()
    wait_for(lambda: "poll mailbox=default ok=1" in daemon.log_text(), 30, "the first poll")
    good = daemon.config.read_text()
    daemon.config.write_text(good + "\n[limits]\nbatch_size = -3\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded" in daemon.log_text(), 10, "the refused reload")
    assert "limits.batch_size" in daemon.log_text()
    dovecot.append(imap_user, [letter(1)])
    wait_for(lambda: daemon.cards() == 1, 15, "polling with the old config")
    daemon.config.write_text(good.replace('folders = ["INBOX"]', "") + '\n[logging]\nlevel = "debug"\n')
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in daemon.log_text(), 10, "the reload")
    assert daemon.alive()
    assert daemon.stop() == 0


def test_status_reports_health_and_exits_non_zero_when_polls_are_stale(
    tmp_path: Path,
    daemons,
    dovecot,  # type: ignore[no-untyped-def]
    imap_user,
) -> None:
    daemon = _daemon(tmp_path, daemons, dovecot, imap_user, interval="1s")
    dovecot.append(imap_user, [letter(1)])
    assert daemon.cli("poll", "--once").returncode == 0
    healthy = daemon.cli("status")
    assert healthy.returncode == 0, healthy.stderr
    assert "ok  default/INBOX: last success" in healthy.stdout
    assert "backlog: 1 unprocessed cards (1 unassigned), 0 messages waiting" in healthy.stdout
    time.sleep(3.5)  # more than three intervals without a poll
    stale = daemon.cli("status")
    assert stale.returncode == 8
    assert "more than 3 intervals" in stale.stderr
