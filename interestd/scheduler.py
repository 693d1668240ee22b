"""The daemon: APScheduler jobs that poll each mailbox (plus IMAP IDLE watchers), signals, reload and sd_notify.

Jobs call the same service functions as `interestd poll --once`; everything here is about timing, failure
and lifecycle: back off after errors, log one line per outage, stop within seconds on SIGTERM, reload on SIGHUP.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from interestd import sdnotify
from interestd.config import MailboxSettings, Settings
from interestd.db import Database, describe_error
from interestd.errors import ConfigError, InterestdError
from interestd.pipeline import PipelineContext, evaluate_serially
from interestd.polling import KeptConnections, PollResult, give_up_lease, holder_name, lease_ttl, poll_mailbox
from interestd.sources import imap

log = logging.getLogger("interestd.daemon")

FIRST_RETRY_SECONDS = 5.0
STOP_BUDGET_SECONDS = 8.0  # SIGTERM to exit stays under systemd's and the 10 s


@dataclass
class MailboxHealth:
    """Failure bookkeeping of one mailbox: log one line when an outage starts and one when it ends."""

    failures: int = 0
    failing_since: datetime | None = None
    last_error: str | None = None


class Daemon:
    """`interestd run`: schedules polls until SIGTERM/SIGINT; SIGHUP reloads the configuration."""

    def __init__(
        self,
        settings: Settings,
        *,
        open_database: Callable[[Settings], Database],
        build_context: Callable[[Settings], PipelineContext],
        reload_settings: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self._open_database = open_database
        self._build_context = build_context
        self._reload_settings = reload_settings
        self.database = open_database(settings)
        self.context = build_context(settings)
        self.evaluator = self._make_evaluator(settings, self.context)
        self.stop_event = threading.Event()
        self._reload_event = threading.Event()
        self._health: dict[str, MailboxHealth] = {}
        self._rerun: set[str] = set()
        self._held: set[str] = set()  # mailboxes whose lease this daemon holds
        self._standing_by: set[str] = set()
        self._lock = threading.Lock()
        self._running = 0
        self._reloading = False
        self._running_changed = threading.Condition()
        self._idle_watchers: list[IdleWatcher] = []
        self._connections = KeptConnections()
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
        )
        # A poll that outlasts its interval is normal (max_instances=1 skips the overlap): not worth a warning.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)

    # --- lifecycle ------------------------------------------------------------------------------------------

    @staticmethod
    def _make_evaluator(settings: Settings, context: PipelineContext) -> Any:
        """Worker processes for the daemon's whole life (time and memory limits per message), unless workers = 0."""
        if settings.limits.worker_count == 0:
            return evaluate_serially
        from interestd.workers import WorkerPool

        return WorkerPool(
            context,
            processes=settings.limits.worker_count,
            timeout=settings.limits.message_timeout.total_seconds(),
            memory_limit=settings.limits.worker_memory,
        )

    def _close_evaluator(self) -> None:
        close = getattr(self.evaluator, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    @property
    def identity(self) -> str:
        """Who this daemon is, in claims other processes can read: host and process id."""
        return holder_name()

    def run(self) -> int:
        """Run until asked to stop; returns the process exit code."""
        from interestd.report.delivery import note_interrupted

        self._install_signal_handlers()
        try:
            note_interrupted(self.database)
        except Exception as exc:
            log.error("could not check for interrupted reports: %s", describe_error(exc))
        self._schedule()
        self.scheduler.start()
        names = ", ".join(m.name for m in self.settings.all_mailboxes()) or "none"
        log.info("interestd started: mailboxes %s; database %s", names, self.settings.masked_database_url)
        sdnotify.notify("READY=1\nSTATUS=started")
        while not self.stop_event.is_set():
            self.stop_event.wait(0.5)
            if self._reload_event.is_set():
                self._reload_event.clear()
                self.reload()
        return self._shutdown()

    def request_stop(self) -> None:
        self.stop_event.set()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self._reload_event.set())

    def _shutdown(self) -> int:
        log.info("stopping: finishing the message in hand")
        sdnotify.notify("STOPPING=1")
        for watcher in self._idle_watchers:
            watcher.stop()
        # Not shutdown(wait=True): a job still running may need the scheduler's lock to finish.
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + STOP_BUDGET_SECONDS
        with self._running_changed:
            while self._running and time.monotonic() < deadline:
                self._running_changed.wait(deadline - time.monotonic())
            unfinished = self._running
        self._release_leases()
        if not unfinished:
            self._connections.close_all()
            self._close_evaluator()
        if unfinished:
            # A network call is still waiting on its timeout. Nothing it has not committed is lost: the
            # folder position only moves with the commit, so it is fetched again at the next start.
            log.warning("a poll did not finish in time; what it had not committed is fetched again next start")
            log.info("stopped")
            logging.shutdown()
            os._exit(0)
        self.database.dispose()
        log.info("stopped")
        return 0

    def reload(self) -> None:
        """Re-read the configuration; an invalid one is refused and the running one kept."""
        if self._reload_settings is None:
            return
        try:
            new = self._reload_settings()
        except ConfigError as exc:
            log.error("configuration not reloaded, keeping the running one: %s", exc)
            return
        try:
            database = self._open_database(new) if new.database_url != self.settings.database_url else None
            context = self._build_context(new)
        except InterestdError as exc:
            log.error("configuration not reloaded, keeping the running one: %s", exc)
            return
        with self._running_changed:  # let running polls finish, and hold new ones back, while swapping
            self._reloading = True
            while self._running:
                self._running_changed.wait()
        try:
            self._swap(new, database, context)
        finally:
            with self._running_changed:
                self._reloading = False
                self._running_changed.notify_all()
        log.info("configuration reloaded")

    def _swap(self, new: Settings, database: Database | None, context: PipelineContext) -> None:
        with self._lock:
            for watcher in self._idle_watchers:
                watcher.stop()
            self._idle_watchers.clear()
            self._connections.close_all()  # a mailbox's server or login may have changed
            for job in self.scheduler.get_jobs():
                if job.id.startswith(("poll:", "watchdog", "claim-window", "report", "leases")):
                    job.remove()
            if database is not None:
                self.database.dispose()
                self.database = database
            self._close_evaluator()
            self.settings, self.context = new, context
            self.evaluator = self._make_evaluator(new, context)
            self._schedule()

    # --- jobs -----------------------------------------------------------------------------------------------

    def _schedule(self) -> None:
        now = datetime.now(UTC)
        for mailbox in self.settings.all_mailboxes():
            self.scheduler.add_job(
                self._poll_job,
                "interval",
                args=[mailbox.name],
                id=f"poll:{mailbox.name}",
                seconds=mailbox.interval.total_seconds(),
                next_run_time=now,
                replace_existing=True,
            )
            if mailbox.idle:
                watcher = IdleWatcher(
                    mailbox, self.settings.mailbox_password(mailbox), self.stop_event, on_new_mail=self.poll_soon
                )
                self._idle_watchers.append(watcher)
                watcher.start()
        interval = sdnotify.watchdog_interval()
        if interval:
            self.scheduler.add_job(
                lambda: sdnotify.notify("WATCHDOG=1"),
                "interval",
                seconds=interval,
                id="watchdog",
                replace_existing=True,
            )
        self._schedule_extra()

    def _schedule_extra(self) -> None:
        """Jobs beyond polling: lease renewal, the claim window and the summary report."""
        mailboxes = self.settings.all_mailboxes()
        if mailboxes:
            shortest = min(lease_ttl(m) for m in mailboxes)
            self.scheduler.add_job(
                self._renew_leases, "interval", seconds=shortest.total_seconds() / 3, id="leases", replace_existing=True
            )
        if self.settings.assignment.policy == "first_claim" and self.settings.assignment.claim_timeout:
            self.scheduler.add_job(
                self._claim_window_job, "interval", seconds=60, id="claim-window", replace_existing=True
            )
        if self.settings.report.enabled and self.settings.smtp is not None:
            self.scheduler.add_job(
                self._report_job,
                "interval",
                seconds=60,
                id="report",
                replace_existing=True,
                next_run_time=datetime.now(UTC),
            )

    def _claim_window_job(self) -> None:
        from interestd.work import assign_overdue

        try:
            assign_overdue(self.database, self.settings)
        except Exception as exc:
            log.error("claim window: %s", describe_error(exc))

    def _report_job(self) -> None:
        from interestd.report.delivery import send_scheduled

        try:
            send_scheduled(self.database, self.settings, who=self.identity)
        except Exception as exc:
            log.error("report: %s", describe_error(exc))

    def poll_soon(self, name: str) -> None:
        """Run a mailbox's poll now (IDLE saw new mail); if one is running, run again right after it."""
        self._rerun.add(name)
        self._reschedule(name, datetime.now(UTC))

    def _reschedule(self, name: str, when: datetime) -> None:
        if self.stop_event.is_set():
            return
        try:
            self.scheduler.modify_job(f"poll:{name}", next_run_time=when)
        except Exception:  # the job was removed by a reload, or the scheduler is stopping
            log.debug("could not reschedule the poll of %s", name, exc_info=True)

    def _poll_job(self, name: str) -> None:
        with self._running_changed:
            while self._reloading:  # a reload swaps the database, context and workers: wait for it
                self._running_changed.wait()
            self._running += 1
        try:
            self._poll(name)
        finally:
            with self._running_changed:
                self._running -= 1
                self._running_changed.notify_all()

    def _poll(self, name: str) -> None:
        self._rerun.discard(name)
        mailbox = self.settings.mailbox(name)
        if mailbox is None or self.stop_event.is_set():
            return
        try:
            result = poll_mailbox(
                self.database,
                self.context,
                mailbox,
                self.settings.mailbox_password(mailbox),
                max_message_bytes=self.settings.limits.max_message_bytes,
                batch_bytes=self.settings.limits.batch_bytes,
                should_stop=self.stop_event.is_set,
                holder=self.identity,
                evaluator=self.evaluator,
                kept=self._connections,
            )

        except Exception as exc:  # the database went away while processing, or a bug: never kill the daemon
            log.debug("poll of %s failed", name, exc_info=True)
            result = PollResult(name, error=f"{name}: {describe_error(exc)}")
        if self.stop_event.is_set():
            return
        if result.polled_by is not None:
            self._standby(mailbox, result)
            return
        self._standing_by.discard(name)
        if result.error is None:
            self._held.add(name)
        else:
            # Failing here (this host's network, say) must not keep a healthy standby from trying.
            self._held.discard(name)
            with contextlib.suppress(Exception):
                give_up_lease(self.database, mailbox, self.identity)
        self._after_poll(mailbox, result)

    def _standby(self, mailbox: MailboxSettings, result: PollResult) -> None:
        """Another daemon polls this mailbox: try again just after its lease would run out."""
        if mailbox.name not in self._standing_by:
            log.info("%s: polled by %s; standing by", mailbox.name, result.polled_by)
        self._held.discard(mailbox.name)
        self._standing_by.add(mailbox.name)
        now = datetime.now(UTC)
        retry = min((result.lease_expires or now) + timedelta(seconds=0.5), now + mailbox.interval)
        self._reschedule(mailbox.name, max(retry, now + timedelta(seconds=0.5)))

    def _renew_leases(self) -> None:
        """Keep the mailboxes this daemon polls while it waits for their next poll."""
        from interestd.polling import take_lease

        for name in list(self._held):
            mailbox = self.settings.mailbox(name)
            if mailbox is None:
                self._held.discard(name)
                continue
            try:
                taken, current = take_lease(self.database, mailbox, self.identity)
            except Exception as exc:
                log.debug("lease renewal of %s failed: %s", name, describe_error(exc))
                continue
            if not taken:
                log.warning("%s: lost the mailbox to %s", name, current.holder)
                self._held.discard(name)

    def _release_leases(self) -> None:
        """A clean stop hands the mailboxes over at once (a standby need not wait for the leases to run out)."""
        for name in list(self._held):
            mailbox = self.settings.mailbox(name)
            if mailbox is not None:
                try:
                    give_up_lease(self.database, mailbox, self.identity)
                except Exception as exc:
                    log.debug("could not release the lease of %s: %s", name, describe_error(exc))
        self._held.clear()

    def _after_poll(self, mailbox: MailboxSettings, result: PollResult) -> None:
        health = self._health.setdefault(mailbox.name, MailboxHealth())
        if result.error is None:
            if health.failures:
                log.info(
                    "%s: recovered after %d failed polls (failing since %s)",
                    mailbox.name,
                    health.failures,
                    health.failing_since.isoformat(timespec="seconds") if health.failing_since else "?",
                )
            self._health[mailbox.name] = MailboxHealth()
            log.info(result.line())
            sdnotify.notify(f"STATUS=last poll {datetime.now(UTC):%H:%M:%S} UTC: {result.new} new")
            if mailbox.name in self._rerun:
                self.poll_soon(mailbox.name)
            return
        health.failures += 1
        health.failing_since = health.failing_since or datetime.now(UTC)
        delay = min(FIRST_RETRY_SECONDS * 2 ** (health.failures - 1), mailbox.interval.total_seconds())
        if health.failures == 1:  # one line when an outage starts, one when it ends
            log.error("%s (retrying in %.0fs, then backing off up to %s)", result.error, delay, mailbox.interval)
        else:
            log.debug("%s (failure %d, retrying in %.0fs)", result.error, health.failures, delay)
        health.last_error = result.error
        sdnotify.notify(f"STATUS={mailbox.name}: failing: {result.error}")
        self._reschedule(mailbox.name, datetime.now(UTC) + timedelta(seconds=delay))


class IdleWatcher(threading.Thread):
    """Keeps an IMAP IDLE on a mailbox's first folder and asks for a poll as soon as the server reports new mail."""

    def __init__(
        self,
        settings: MailboxSettings,
        password: str | None,
        stop_event: threading.Event,
        on_new_mail: Callable[[str], None],
    ) -> None:
        super().__init__(name=f"idle:{settings.name}", daemon=True)
        self.settings = settings
        self.password = password
        self._stop = threading.Event()
        self._daemon_stop = stop_event
        self._on_new_mail = on_new_mail

    def stop(self) -> None:
        self._stop.set()

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._daemon_stop.is_set()

    def run(self) -> None:
        failures = 0
        while not self._stopping():
            try:
                self._watch()
                failures = 0
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "%s: IDLE connection lost (%s); the periodic poll goes on, IDLE reconnects",
                        self.settings.name,
                        imap.describe(exc) if not isinstance(exc, InterestdError) else exc,
                    )
                delay = min(FIRST_RETRY_SECONDS * 2 ** (failures - 1), self.settings.interval.total_seconds())
                self._stop.wait(delay)

    def _watch(self) -> None:
        connection: Any = imap.connect(self.settings, self.password)
        try:
            imap.select(connection, self.settings.folders[0], readonly=True)
            while not self._stopping():
                connection.idle.start()
                renew_at = time.monotonic() + self.settings.idle_timeout.total_seconds()
                news = False
                try:
                    while not self._stopping() and time.monotonic() < renew_at and not news:
                        responses = connection.idle.poll(timeout=1.0)
                        news = any(b"EXISTS" in line or b"RECENT" in line for line in responses)
                finally:
                    connection.idle.stop()
                if news:
                    self._on_new_mail(self.settings.name)
        finally:
            imap.close(connection)
