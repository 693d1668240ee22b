"""The summary report: aggregates against hand-computed numbers, escaping, SMTP delivery, the schedule, Chromium."""

from __future__ import annotations

import shutil
import subprocess
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from interestd import store
from interestd.models import Card, Event, MailboxState, RawMessage
from interestd.report.data import build, last_complete, period_containing, previous
from interestd.report.render import duration_text, render
from tests.conftest import ROOT, make_app, require_server

MSK = ZoneInfo("Europe/Moscow")
DAY = period_containing("day", date(2026, 11, 20), MSK)  # [2026-11-19 21:00Z, 2026-11-20 21:00Z)


def z(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Dataset:
    """A fixed data set, built card by card, whose numbers are computed by hand in the tests below."""

    def __init__(self, session, prefix: str = "r") -> None:  # type: ignore[no-untyped-def]
        self.session = session
        self.prefix = prefix
        self.n = 0

    def card(
        self,
        source_type: str,
        action: str,
        occurred: str,
        *,
        received: str | None = None,
        product: str | None = None,
        responsible: str | None = None,
        processed: bool = False,
        author: str = "Клиент",
        text: str = "Текст",
        reply_url: str | None = None,
    ) -> Card:
        self.n += 1
        moment = z(occurred)
        raw = RawMessage(
            message_id=f"<{self.prefix}{self.n}@test>",
            content_hash=f"{self.n:064d}",
            origin="test",
            size=1,
            stored_at=moment,
            status="card",
        )
        self.session.add(raw)
        self.session.flush()
        card = Card(
            raw_message_id=raw.id,
            message_id=raw.message_id,
            parser="test",
            source_type=source_type,
            action=action,
            occurred_at=moment,
            received_at=z(received) if received else moment,
            updated_at=moment,
            product=product,
            responsible=responsible,
            processed=processed,
            author_name=author,
            text=text,
            reply_url=reply_url,
        )
        self.session.add(card)
        self.session.flush()
        return card

    def event(self, card: Card, kind: str, at: str, manager: str) -> None:
        self.session.add(Event(card_id=card.id, kind=kind, at=z(at), manager=manager, actor=manager))

    def raw(self, status: str, reason: str, stored: str) -> None:
        self.n += 1
        self.session.add(
            RawMessage(
                message_id=f"<{self.prefix}{self.n}@test>",
                content_hash=f"{self.n:064d}",
                origin="test",
                size=1,
                stored_at=z(stored),
                status=status,
                reason=reason,
            )
        )


@pytest.fixture
def filled(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    app = make_app(
        tmp_path, database_url, '[[managers]]\nlogin = "anna"\nname = "Анна"\n[[managers]]\nlogin = "oleg"\n'
    )
    with app.session(write=True) as session:
        d = Dataset(session)
        c1 = d.card(
            "vk",
            "comment",
            "2026-11-20T08:00:00",
            received="2026-11-20T08:05:00",
            product="Плед Облако",
            responsible="anna",
            processed=True,
        )
        c2 = d.card("vk", "comment", "2026-11-20T20:30:00", received="2026-11-20T20:31:00", responsible="anna")
        d.card("vk", "comment", "2026-11-20T21:30:00")  # 00:30 in Moscow on the 21st: not in the period
        c4 = d.card("site_form", "request", "2026-11-20T10:00:00", product="Диван Осло", responsible="oleg")
        d.card("site_form", "request", "2026-11-19T10:00:00")  # the previous day
        d.card("facebook", "message", "2026-11-19T12:00:00")  # the previous day
        d.card("email", "request", "2026-11-15T12:00:00")  # within 7 days
        d.card("email", "request", "2026-10-25T12:00:00")  # within 30 days
        for offset in range(8):  # the chat brought mail on 8 days, then went silent
            d.card("chat", "message", (datetime(2026, 10, 25, 9) + timedelta(days=offset)).isoformat())
        d.event(c1, "claimed", "2026-11-20T08:35:00", "anna")  # 30 min after arrival
        d.event(c1, "proof_attached", "2026-11-20T10:05:00", "anna")
        d.event(c1, "processed", "2026-11-20T10:05:00", "anna")  # 2 h after arrival
        d.event(c2, "claimed", "2026-11-20T20:41:00", "anna")  # 10 min after arrival
        d.event(c4, "assigned", "2026-11-20T10:00:00", "oleg")  # on arrival
        d.raw("skipped", "auto-reply (Auto-Submitted: auto-replied)", "2026-11-20T09:00:00")
        d.raw("skipped", "auto-reply (Auto-Submitted: auto-replied)", "2026-11-20T11:00:00")
        d.raw("skipped", "auto-reply (X-Autoreply header)", "2026-11-19T11:00:00")  # previous day
        d.raw("quarantined", "email: no sender address and no readable text: nothing to answer", "2026-11-20T12:00:00")
        session.add(
            MailboxState(mailbox="default", folder="INBOX", last_uid=5, last_success_at=z("2026-11-20T20:59:00"))
        )
        session.commit()
    yield app
    app.database.dispose()


def test_aggregates_match_the_hand_computed_numbers(filled) -> None:  # type: ignore[no-untyped-def]
    with filled.session() as session:
        data = build(
            session,
            DAY,
            queue_top=3,
            managers={"anna": "Анна", "oleg": None},
            silent_lookback_days=28,
            silent_min_active_days=7,
        )
    totals = {(r.source_type, r.action): (r.count, r.previous, r.change, r.last7, r.last30) for r in data.totals}
    assert totals == {
        ("vk", "comment"): (2, 0, 2, 2, 2),
        ("site_form", "request"): (1, 1, 0, 2, 2),
        ("facebook", "message"): (0, 1, -1, 1, 1),
        ("email", "request"): (0, 0, 0, 1, 2),
        ("chat", "message"): (0, 0, 0, 0, 8),
    }
    assert (data.total, data.previous_total) == (3, 2)
    assert data.products == [("Диван Осло", 1), ("Плед Облако", 1)] or data.products == [
        ("Плед Облако", 1),
        ("Диван Осло", 1),
    ]
    assert data.without_product == 1

    managers = {m.login: m for m in data.managers}
    anna, oleg = managers["anna"], managers["oleg"]
    assert (anna.name, anna.assigned, anna.claimed, anna.processed, anna.with_proof) == ("Анна", 0, 2, 1, 1)
    assert (anna.claim_median, anna.claim_p90) == (600.0, 1800.0)  # nearest rank of [10 min, 30 min]
    assert (anna.processed_median, anna.processed_p90) == (7200.0, 7200.0)
    assert (anna.open_backlog, anna.oldest_ref) == (1, "INT-2")
    assert (oleg.assigned, oleg.claimed, oleg.claim_median, oleg.open_backlog, oleg.oldest_ref) == (
        1,
        0,
        0.0,
        1,
        "INT-4",
    )

    assert data.queue_total == 15  # every card but the processed one
    assert [row.ref for row in data.queue] == ["INT-9", "INT-8", "INT-10"]  # oldest first: Oct 25 09:00, 12:00, Oct 26
    assert data.skipped == [("auto-reply (Auto-Submitted: auto-replied)", 2)]
    assert data.quarantined == [("email: no sender address and no readable text: nothing to answer", 1)]
    assert data.last_successful_poll == z("2026-11-20T20:59:00")
    assert [(s.source_type, s.active_days) for s in data.silent] == [("chat", 8)]


def test_previous_period_and_wider_periods() -> None:
    assert previous(DAY).key == "day:2026-11-19"
    week = period_containing("week", date(2026, 11, 20), MSK)
    assert (week.key, week.first_day, week.last_day) == ("week:2026-W47", date(2026, 11, 16), date(2026, 11, 22))
    month = period_containing("month", date(2026, 12, 31), MSK)
    assert (month.key, previous(month).key, month.last_day) == ("month:2026-12", "month:2026-11", date(2026, 12, 31))
    assert last_complete("day", z("2026-11-21T04:00:00"), MSK).key == "day:2026-11-20"  # 07:00 in Moscow
    assert last_complete("week", z("2026-11-23T04:00:00"), MSK).key == "week:2026-W47"


def test_week_and_month_reports_count_the_same_data(filled) -> None:  # type: ignore[no-untyped-def]
    with filled.session() as session:
        week = build(session, period_containing("week", date(2026, 11, 20), MSK))
        month = build(session, period_containing("month", date(2026, 11, 20), MSK))
    assert week.total == 3 + 2 + 1  # vk (with the one at 00:30 on the 21st), forms, facebook; e-mail of the 15th out
    assert {(r.source_type, r.count) for r in month.totals if r.count} == {
        ("vk", 3),
        ("site_form", 2),
        ("facebook", 1),
        ("email", 1),
        ("chat", 1),
    }  # the chat's Nov 1


def test_report_renders_in_both_languages_and_escapes_what_came_from_mail(filled) -> None:  # type: ignore[no-untyped-def]
    with filled.session(write=True) as session:
        Dataset(session, prefix="e").card(
            "site_form",
            "request",
            "2026-11-20T11:00:00",
            author="<script>alert('name')</script>",
            text='<a href="javascript:alert(1)">click</a> <img src=x onerror=alert(2)> \x1b[31mred',
            reply_url="javascript:alert(3)",
        )
        session.commit()
    with filled.session() as session:
        data = build(session, DAY, queue_top=50)
    ru = render(data, language="ru", zone=MSK)
    assert ru.subject == "Сводка интереса за 20 ноября 2026: 4 новых, 16 в очереди"
    assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in ru.html
    tree = __import__("lxml.html").html.fromstring(ru.html)
    assert tree.xpath("//script") == [] and tree.xpath("//img") == []
    assert [a for a in tree.xpath("//@*") if a.attrname.startswith("on")] == []
    assert all(href.startswith(("https:", "http:", "mailto:", "tel:")) for href in tree.xpath("//a/@href"))
    assert "<img src=x onerror=alert(2)>" in tree.text_content()  # shown as text
    assert "\x1b" not in ru.html and "\x1b" not in ru.text
    assert "Молчащие источники" in ru.html and "Чат на сайте: в периоде ни одного письма" in ru.html
    en = render(data, language="en", zone=MSK)
    assert en.subject.startswith("Interest summary for 20 November 2026") and "Silent sources" in en.text
    assert duration_text(7260, "ru") == "2 ч 1 мин" and duration_text(90000, "en") == "1 d 1 h"


class SmtpSink:
    """A real SMTP server (aiosmtpd) in the test process."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        from tests.dovecot import free_port

        self.messages: list = []
        self.port = free_port()
        self.fail_next = 0
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                return "451 4.3.0 try again later"
            self.messages.append(envelope)
        return "250 OK"

    def config(self, *to: str) -> str:
        recipients = ", ".join(f'"{t}"' for t in to or ("lead@uyut-dom.ru",))
        return (
            f'[smtp]\nhost = "127.0.0.1"\nport = {self.port}\nsecurity = "none"\nfrom = "interestd@uyut-dom.ru"\n'
            f'to = [{recipients}]\ntimeout = "5s"\n'
        )


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    sink = SmtpSink()
    sink.controller.start()
    yield sink
    sink.controller.stop()


def test_the_report_mail_has_both_parts_and_is_never_taken_for_a_card(
    tmp_path: Path,
    database_url: str,  # type: ignore[no-untyped-def]
    smtp,
) -> None:
    import email

    from interestd.classify import classify
    from interestd.message import parse_raw
    from interestd.report.delivery import mail_report, make_report

    app = make_app(tmp_path, database_url, smtp.config("lead@uyut-dom.ru", "owner@uyut-dom.ru"))
    with app.session() as session:
        period, rendered = make_report(session, app.settings, kind="day", day=date(2026, 11, 20))
    mail_report(app.settings, rendered, period)
    [envelope] = smtp.messages
    assert envelope.rcpt_tos == ["lead@uyut-dom.ru", "owner@uyut-dom.ru"]
    message = email.message_from_bytes(envelope.content)
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.get_payload()] == ["text/plain", "text/html"]
    assert message["X-Interestd-Report"] == "day:2026-11-20" and message["Auto-Submitted"] == "auto-generated"
    assert classify(parse_raw(envelope.content)).kind == "own_report"
    app.database.dispose()


def test_the_scheduled_report_goes_out_once_per_period(tmp_path: Path, database_url: str, smtp) -> None:  # type: ignore[no-untyped-def]
    from interestd.report.delivery import note_interrupted, send_scheduled

    app = make_app(tmp_path, database_url, smtp.config() + '[report]\nat = "07:00"\ntimezone = "Europe/Moscow"\n')
    before = z("2026-11-21T03:59:00")  # 06:59 in Moscow: not due yet
    assert send_scheduled(app.database, app.settings, who="host-a:1", now=before) is None
    due = z("2026-11-21T04:00:00")
    assert send_scheduled(app.database, app.settings, who="host-a:1", now=due) == "day:2026-11-20"
    assert send_scheduled(app.database, app.settings, who="host-b:2", now=due + timedelta(minutes=1)) is None
    assert send_scheduled(app.database, app.settings, who="host-a:3", now=due + timedelta(hours=5)) is None
    assert len(smtp.messages) == 1
    # A daemon that was down all of the next morning sends the missed report when it comes back, once.
    late = z("2026-11-22T15:00:00")
    assert send_scheduled(app.database, app.settings, who="host-a:4", now=late) == "day:2026-11-21"
    assert send_scheduled(app.database, app.settings, who="host-a:4", now=late) is None
    assert len(smtp.messages) == 2
    # A send cut short by a crash is not repeated (it may have gone out).
    with app.session(write=True) as session:
        assert store.claim_report(session, "day:2026-11-22", "host-c:9", now=z("2026-11-23T04:00:00"))
        session.commit()
    assert note_interrupted(app.database, now=z("2026-11-23T05:00:00")) == ["day:2026-11-22"]
    assert send_scheduled(app.database, app.settings, who="host-a:4", now=z("2026-11-23T05:00:00")) is None
    assert len(smtp.messages) == 2
    app.database.dispose()


def test_a_failed_send_is_retried_with_backoff(tmp_path: Path, database_url: str, smtp, caplog) -> None:  # type: ignore[no-untyped-def]
    from interestd.report.delivery import send_scheduled

    app = make_app(tmp_path, database_url, smtp.config() + '[report]\nat = "07:00"\ntimezone = "Europe/Moscow"\n')
    smtp.fail_next = 2
    due = z("2026-11-21T04:00:00")
    assert send_scheduled(app.database, app.settings, who="a", now=due) is None
    assert "report day:2026-11-20 not sent" in caplog.text and "retrying at 07:01" in caplog.text
    assert send_scheduled(app.database, app.settings, who="a", now=due + timedelta(seconds=30)) is None  # too soon
    assert send_scheduled(app.database, app.settings, who="a", now=due + timedelta(minutes=1)) is None  # fails again
    assert send_scheduled(app.database, app.settings, who="a", now=due + timedelta(minutes=4)) == "day:2026-11-20"
    assert len(smtp.messages) == 1
    with app.session() as session:
        run = store.report_run(session, "day:2026-11-20")
    assert run is not None and (run.status, run.attempts) == ("sent", 3)
    app.database.dispose()


def test_report_command_writes_html_and_sends(tmp_path: Path, capsys: pytest.CaptureFixture[str], smtp) -> None:  # type: ignore[no-untyped-def]
    from tests.test_cli import run

    config = tmp_path / "c.toml"
    config.write_text(smtp.config())
    config.chmod(0o600)
    out = tmp_path / "report.html"
    code, _, err = run(capsys, "--config", str(config), "report", "--date", "2026-11-20", "--out", str(out), "--send")
    assert code == 0, err
    assert out.read_text().startswith("<!DOCTYPE html>") and len(smtp.messages) == 1
    code, out_text, _ = run(capsys, "--config", str(config), "report", "--period", "week", "--date", "2026-11-20")
    assert code == 0 and out_text.startswith("Сводка интереса за неделю 16 ноября – 22 ноября 2026")
    assert run(capsys, "--config", str(config), "report", "--period", "year")[0] == 2


def test_the_html_report_renders_in_headless_chromium(filled, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    require_server(browser is not None, "Chromium (Debian package chromium)")
    with filled.session() as session:
        rendered = render(build(session, DAY, queue_top=10), language="ru", zone=MSK)
    artefacts = ROOT / "test-artifacts"
    artefacts.mkdir(exist_ok=True)
    html = artefacts / "report.html"
    html.write_text(rendered.html, encoding="utf-8")
    shot = artefacts / "report.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=900,1600",
            f"--screenshot={shot}",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000
    # Not a blank page: decode the PNG's pixels and look for more than one colour.
    import zlib

    chunks, position = [], 8
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            chunks.append(data[position + 8 : position + 8 + length])
        position += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    assert len(set(pixels[: 900 * 4 * 400])) > 10
