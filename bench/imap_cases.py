"""The IMAP benchmarks: the floor (imap-tools fetching everything), interestd end to end, idle polls, memory.

Everything runs against one private Dovecot whose mail lives on tmpfs, filled directly on disk (an APPEND per
message would make loading the 100,000-message folder the slowest part of the run).
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.mailbox import generate, maildir_name, templates
from bench.measure import Run, median, run_command
from tests.dovecot import PASSWORD, Dovecot


@dataclass
class Folder:
    """A user's INBOX filled with `count` benchmark messages."""

    user: str
    count: int
    size: int  # bytes


class MailServer:
    """A private Dovecot under `root` (tmpfs; the system's temporary directory when None) with benchmark
    mailboxes."""

    def __init__(self, root: Path | None = None) -> None:
        self.dovecot = Dovecot(root)
        self.dovecot.start()

    def fill(
        self,
        count: int,
        *,
        seed: int = 7,
        leave_out: frozenset[int] = frozenset(),
        skip: frozenset[int] = frozenset(),
    ) -> Folder:
        """A new user whose INBOX holds `count` benchmark messages without the template kinds in `leave_out`;
        then without those numbered in `skip` (the number in their Message-ID), which leaves the others exactly
        as they are in the folder that `count` and `leave_out` alone give."""
        user = self.dovecot.add_user()
        folder = self.dovecot.maildir(user)
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        kinds = len(templates())
        wanted = count if not leave_out else count * kinds // max(kinds - len(leave_out), 1) + kinds
        total = taken = written = 0
        for number, raw in enumerate(generate(wanted, seed=seed)):
            if number % kinds in leave_out:
                continue
            taken += 1
            if number not in skip:
                # Seen, as a shared mailbox already read by people is; interestd never looks at flags anyway.
                (folder / "cur" / maildir_name(number, raw)).write_bytes(raw)
                total += len(raw)
                written += 1
            if taken == count:
                break
        self.dovecot.own_mail(user)
        self.open(user)  # Dovecot indexes the folder on the first SELECT: not part of any measurement
        return Folder(user, written, total)

    def open(self, user: str) -> int:
        return self.dovecot.count(user)

    def config(self, folder: Folder, database: Path, *, since: str = "all", extra: str = "") -> str:
        return (
            self.dovecot.mailbox_settings(folder.user, since=since, timeout="120s")
            + f'[database]\nurl = "sqlite:///{database}"\n'
            + extra
        )

    def stop(self) -> None:
        self.dovecot.remove()


# --- 1. the floor -------------------------------------------------------------------------------------------


def floor(server: MailServer, folder: Folder) -> tuple[float, int]:
    """imap-tools fetching every message in one bulk FETCH, touching what any consumer reads; (seconds, count)."""
    from imap_tools import MailBoxUnencrypted

    started = time.perf_counter()
    seen = 0
    with MailBoxUnencrypted("127.0.0.1", server.dovecot.imap_port).login(folder.user, PASSWORD) as mailbox:
        for message in mailbox.fetch(bulk=True, mark_seen=False):
            _ = (message.uid, message.subject, message.from_, message.date, message.text, message.html, message.flags)
            seen += 1
    return time.perf_counter() - started, seen


# --- 2. end to end ------------------------------------------------------------------------------------------

_POLL_LINE = re.compile(r"(\d+) fetched .*?; (\d+) cards, (\d+) skipped, (\d+) quarantined")


@dataclass
class PollRun:
    run: Run
    fetched: int
    cards: int
    skipped: int
    quarantined: int

    @property
    def outcomes(self) -> int:
        return self.cards + self.skipped + self.quarantined


def interestd_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "interestd", "--config", str(config), *args]


def environment(home: Path) -> dict[str, str]:
    return {**os.environ, "TEST_IMAP_PASSWORD": PASSWORD, "HOME": str(home), "INTERESTD_DATABASE_URL": ""}


def poll_once(
    server: MailServer, folder: Folder, work: Path, name: str, *, extra: str = "", sample_memory: bool = True
) -> PollRun:
    """`interestd poll --once` from an empty database; the whole process's wall time and (when sampled) memory.

    Sampling reads every process's smaps ten times a second, which costs CPU on this machine: timed runs are
    not sampled, as the floor is not."""
    work.mkdir(parents=True, exist_ok=True)
    database = work / f"{name}.db"
    for stale in work.glob(f"{name}.db*"):
        stale.unlink()
    config = work / f"{name}.toml"
    config.write_text(server.config(folder, database, extra=extra))
    config.chmod(0o600)
    env = {key: value for key, value in environment(work).items() if key != "INTERESTD_DATABASE_URL"}
    run = run_command(interestd_command(config, "poll", "--once"), env=env, sample_memory=sample_memory)
    if run.returncode != 0:
        raise RuntimeError(f"interestd poll --once failed ({run.returncode}): {run.stderr.strip()[-500:]}")
    match = _POLL_LINE.search(run.stdout)
    if match is None:
        raise RuntimeError(f"unexpected poll output: {run.stdout.strip()[-300:]}")
    fetched, cards, skipped, quarantined = (int(value) for value in match.groups())
    return PollRun(run, fetched, cards, skipped, quarantined)


# --- 5. idle polls ------------------------------------------------------------------------------------------


def idle_polls(server: MailServer, folder: Folder, work: Path) -> Iterator[float]:
    """Seconds of each poll that finds nothing new, one per `next()`, as the daemon's poll job runs them (its
    IMAP connection kept from the poll before: NOOP, STATUS, record the poll), after a first poll that starts at
    the folder's end. `close()` logs out."""
    from interestd.config import load_settings
    from interestd.pipeline import evaluate_serially
    from interestd.polling import KeptConnections, holder_name, poll_mailbox
    from interestd.services import build_context, open_database

    work.mkdir(parents=True, exist_ok=True)
    database_path = work / f"idle-{folder.user}.db"
    for stale in work.glob(f"idle-{folder.user}.db*"):
        stale.unlink()
    config = work / f"idle-{folder.user}.toml"
    config.write_text(server.config(folder, database_path, since="now"))
    config.chmod(0o600)
    settings = load_settings(config, environment(work))
    database = open_database(settings)
    context = build_context(settings)
    mailbox = settings.all_mailboxes()[0]
    holder = holder_name("bench")
    kept = KeptConnections()
    try:
        for number in itertools.count():
            started = time.perf_counter()
            result = poll_mailbox(
                database,
                context,
                mailbox,
                PASSWORD,
                max_message_bytes=settings.limits.max_message_bytes,
                holder=holder,
                evaluator=evaluate_serially,
                kept=kept,
            )
            elapsed = time.perf_counter() - started
            if result.error or result.new:
                raise RuntimeError(f"idle poll was not idle: {result.line()}")
            if number:  # the first poll records the starting point
                yield elapsed
    finally:
        kept.close_all()
        database.dispose()


def summary_of(times: list[float]) -> float:
    return median(times)
