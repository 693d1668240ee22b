"""Making the report for a period, and the daemon's scheduled send: once per period, retried, never twice."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

from sqlmodel import Session

from interestd import store
from interestd.config import Settings
from interestd.db import Database
from interestd.errors import DeliveryError, UsageError
from interestd.models import utcnow
from interestd.report.data import Period, build, last_complete, period_containing
from interestd.report.mailer import build_message, send
from interestd.report.render import RenderedReport, render

log = logging.getLogger("interestd.report")

INTERRUPTED_AFTER = timedelta(minutes=10)  # a "sending" claim older than this was left by a process that died


def make_report(
    session: Session,
    settings: Settings,
    *,
    kind: str | None = None,
    day: date | None = None,
    now: datetime | None = None,
) -> tuple[Period, RenderedReport]:
    """The report for the period of `kind` containing `day` (default: the last complete one)."""
    now = now or utcnow()
    kind = kind or settings.report.period
    zone = settings.report_zone
    period = period_containing(kind, day, zone) if day else last_complete(kind, now, zone)
    names = {m.login: m.display_name for m in store.managers_in_db(session)}
    data = build(
        session,
        period,
        queue_top=settings.report.queue_top,
        silent_lookback_days=settings.report.silent_lookback_days,
        silent_min_active_days=settings.report.silent_min_active_days,
        managers=names,
        now=now,
    )
    return period, render(data, language=settings.report.language, zone=zone)


def mail_report(settings: Settings, report: RenderedReport, period: Period, *, attempts: int = 3) -> None:
    if settings.smtp is None:
        raise UsageError("no [smtp] section in the config: the report cannot be mailed")
    message = build_message(report, settings.smtp, period_key=period.key)
    send(message, settings.smtp, settings.secret("smtp.password"), attempts=attempts)


def due_at(period: Period, settings: Settings) -> datetime:
    """When a period's report is due: the configured time of day, on the first day after the period."""
    hour, minute = (int(part) for part in settings.report.at.split(":"))
    day_after = period.end.astimezone(settings.report_zone).date()
    return datetime.combine(day_after, time(hour, minute), tzinfo=settings.report_zone)


def send_scheduled(database: Database, settings: Settings, *, who: str, now: datetime | None = None) -> str | None:
    """Send the latest due report unless it went out already; returns its period key when sent now."""
    if not settings.report.enabled or settings.smtp is None:
        return None
    now = now or utcnow()
    period = last_complete(settings.report.period, now, settings.report_zone)
    if now < due_at(period, settings):
        return None
    with database.session(write=True) as session:
        if not store.claim_report(session, period.key, who, now=now):
            return None
        session.commit()
    with database.session() as session:
        run = store.report_run(session, period.key)
        attempts = run.attempts if run else 0
    try:
        with database.session() as session:
            built_period, report = make_report(session, settings, kind=period.kind, day=period.first_day, now=now)
        mail_report(settings, report, built_period, attempts=1)
    except DeliveryError as exc:
        delay = min(60 * 2**attempts, 3600)
        retry_at = None if exc.permanent or attempts + 1 > settings.smtp.retries else now + timedelta(seconds=delay)
        with database.session(write=True) as session:
            store.finish_report(session, period.key, now=now, error=str(exc), retry_at=retry_at)
            session.commit()
        when = f"retrying at {retry_at.astimezone(settings.report_zone):%H:%M}" if retry_at else "giving up"
        log.error("report %s not sent: %s (%s)", period.key, exc, when)
        return None
    except Exception as exc:  # building it failed (a bug, or the database went away): retry later, keep going
        with database.session(write=True) as session:
            store.finish_report(
                session, period.key, now=now, error=f"{type(exc).__name__}: {exc}", retry_at=now + timedelta(minutes=5)
            )
            session.commit()
        log.error("report %s could not be built: %s: %s", period.key, type(exc).__name__, exc)
        return None
    with database.session(write=True) as session:
        store.finish_report(session, period.key, now=now, error=None, retry_at=None)
        session.commit()
    log.info("report %s sent to %s", period.key, ", ".join(settings.smtp.to))
    return period.key


def note_interrupted(database: Database, *, now: datetime | None = None) -> list[str]:
    """At start-up: reports a dead process left half-sent are marked, not resent (never twice)."""
    now = now or utcnow()
    with database.session(write=True) as session:
        keys = store.interrupted_reports(session, now - INTERRUPTED_AFTER)
        session.commit()
    for key in keys:
        log.error(
            "report %s was being sent when interestd stopped: it may not have arrived, and is not sent again "
            "automatically (send it with `interestd report --send --date ...` if needed)",
            key,
        )
    return keys
