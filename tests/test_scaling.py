"""Several hosts: PostgreSQL over TLS, one poller per mailbox, a standby taking over, outages, two mailboxes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from interestd.db import SCHEMA_REVISION
from tests.conftest import _empty_postgres, fresh_database_url, require_server
from tests.dovecot import PASSWORD
from tests.mailgen import letter
from tests.test_daemon import DaemonProcess, wait_for


@pytest.fixture
def private_postgres() -> Iterator[object]:
    from tests.postgres import PrivatePostgres, available

    require_server(available(), "PostgreSQL server binaries (Debian package postgresql) and root to run initdb")
    server = PrivatePostgres()
    yield server
    server.remove()


@pytest.fixture
def pg_url(postgres_schema: str) -> str:
    _empty_postgres(postgres_schema)
    return postgres_schema


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        if daemon.alive():
            daemon.kill()


def _cli(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interestd", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or dict(os.environ),
    )


def test_the_cli_works_against_a_remote_postgresql_over_tls_with_a_password_file(
    tmp_path: Path,  # type: ignore[no-untyped-def]
    private_postgres,
) -> None:
    from tests.postgres import APP_PASSWORD

    secret = tmp_path / "db-password"
    secret.write_text(APP_PASSWORD + "\n")
    secret.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{private_postgres.app_url()}"\npassword_file = "{secret}"\n')
    config.chmod(0o600)
    assert _cli(config, "db", "upgrade").returncode == 0
    mailbox = Path(__file__).resolve().parent / "fixtures" / "sample-mailbox"
    ingested = _cli(config, "ingest", str(mailbox))
    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.startswith("7 messages read: 5 new cards")
    shown = _cli(config, "check-config")
    assert APP_PASSWORD not in shown.stdout and "app:***@localhost" in shown.stdout
    # The server only lets this user in over TLS: without it the CLI gets a clear one-line error.
    config.write_text(f'[database]\nurl = "{private_postgres.app_url("disable")}"\npassword_file = "{secret}"\n')
    refused = _cli(config, "feed")
    assert refused.returncode == 4
    assert len(refused.stderr.strip().splitlines()) == 1 and "pg_hba.conf rejects connection" in refused.stderr


def test_db_upgrade_from_two_processes_at_once(tmp_path: Path, database_url: str) -> None:
    """Two hosts upgrading the same (empty) database at the same moment: both succeed, one schema results."""
    url = fresh_database_url(database_url, tmp_path, "upgrade_race")
    config = tmp_path / "c.toml"
    config.write_text("")
    config.chmod(0o600)
    env = {**os.environ, "INTERESTD_DATABASE_URL": url}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "interestd", "--config", str(config), "db", "upgrade"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = [(run.wait(120), run.stdout.read(), run.stderr.read()) for run in runs]  # type: ignore[union-attr]
    assert [code for code, _, _ in results] == [0, 0], results
    outputs = sorted(out.strip() for _, out, _ in results)
    assert outputs == [
        f"database schema is up to date ({SCHEMA_REVISION})",
        f"database schema upgraded: empty -> {SCHEMA_REVISION}",
    ]
    assert _cli(config, "db", "current", env=env).returncode == 0


def test_two_daemons_poll_one_at_a_time_and_the_standby_takes_over_a_killed_leader(  # type: ignore[no-untyped-def]
    tmp_path: Path, daemons, dovecot, imap_user, pg_url
) -> None:
    from tests.test_report import SmtpSink

    sink = SmtpSink()
    sink.controller.start()
    try:
        interval = 5
        config = (
            dovecot.mailbox_settings(imap_user, interval=f"{interval}s") + sink.config() + ('[report]\nat = "00:00"\n')
        )
        first = DaemonProcess(tmp_path, config, name="host-a", database_url=pg_url)
        second = DaemonProcess(tmp_path, config, name="host-b", database_url=pg_url)
        daemons.extend([first, second])
        first.start()
        wait_for(lambda: "poll mailbox=default ok=1" in first.log_text(), 30, "host A's first poll")
        second.start()
        wait_for(lambda: "default: polled by" in second.log_text(), 30, "host B standing by")
        dovecot.append(imap_user, [letter(n) for n in range(20)])
        wait_for(lambda: first.cards() == 20, 30, "20 cards through host A")
        assert "poll mailbox=default ok=1" not in second.log_text()  # exactly one poller at a time
        first.kill()
        killed = time.monotonic()
        dovecot.append(imap_user, [letter(n) for n in range(20, 30)])
        wait_for(lambda: "poll mailbox=default ok=1" in second.log_text(), 4 * interval, "host B to take over")
        takeover = time.monotonic() - killed
        assert takeover <= 2 * interval, f"host B took over after {takeover:.1f}s"
        wait_for(lambda: second.cards() == 30, 30, "the 10 later cards through host B")
        assert second.scalar("SELECT count(*) FROM raw_message") == 30
        assert second.scalar("SELECT count(DISTINCT message_id) FROM raw_message") == 30
        assert second.scalar("SELECT count(*) FROM card") == 30
        assert len(sink.messages) == 1  # the report went out once, from one of the two hosts
        assert second.stop() == 0
    finally:
        sink.controller.stop()


def test_a_postgresql_restart_under_the_daemon_costs_nothing(
    tmp_path: Path,
    daemons,
    dovecot,
    imap_user,  # type: ignore[no-untyped-def]
    private_postgres,
) -> None:
    daemon = DaemonProcess(
        tmp_path, dovecot.mailbox_settings(imap_user, interval="1s"), database_url=private_postgres.url
    )
    daemons.append(daemon)
    dovecot.append(imap_user, [letter(1)])
    daemon.start()
    wait_for(lambda: daemon.cards() == 1, 30, "the first card")
    private_postgres.stop()
    dovecot.append(imap_user, [letter(2), letter(3)])
    time.sleep(4)  # several polls fail while the database is away
    assert daemon.alive()
    private_postgres.start()
    wait_for(lambda: daemon.cards() == 3, 45, "the cards after the restart")
    assert daemon.scalar("SELECT count(DISTINCT message_id) FROM raw_message") == 3
    assert daemon.scalar("SELECT count(*) FROM raw_message") == 3
    log = daemon.log_text()
    outage_lines = [line for line in log.splitlines() if line.startswith("interestd: ERROR: default:")]
    assert len(outage_lines) == 1, log  # one line per outage, not one per failed poll
    assert "recovered after" in log
    assert daemon.stop() == 0


def test_a_broken_mailbox_never_delays_the_other(tmp_path: Path, daemons, dovecot, imap_user) -> None:  # type: ignore[no-untyped-def]
    good = dovecot.mailbox_settings(imap_user, interval="1s")
    broken = re.sub(
        r"^\[imap\]",
        '[[mailboxes]]\nname = "sales"',
        dovecot.mailbox_settings("wrongpass", interval="1s"),
        flags=re.MULTILINE,
    )
    daemon = DaemonProcess(tmp_path, good + broken)
    daemons.append(daemon)
    daemon.start()
    wait_for(lambda: "sales: login failed" in daemon.log_text(), 30, "the broken mailbox's error")
    started = time.monotonic()
    dovecot.append(imap_user, [letter(n) for n in range(3)])
    wait_for(lambda: daemon.cards() == 3, 10, "cards from the good mailbox")
    assert time.monotonic() - started < 10
    status = daemon.cli("status")
    assert status.returncode == 8
    assert "ok  default/INBOX" in status.stdout and "BAD sales/INBOX" in status.stdout
    assert "sales/INBOX: never polled" in status.stderr
    assert sum("login failed" in line for line in daemon.log_text().splitlines()) == 1
    daemon.signal(signal.SIGTERM)
    assert daemon.process is not None and daemon.process.wait(15) == 0
    assert PASSWORD not in daemon.log_text()
