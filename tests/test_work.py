"""Managers working the queue on a real database: policies on arrival, one owner per person, claims, proofs."""

from __future__ import annotations

import base64
import logging
import struct
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select

from interestd import store, work
from interestd.errors import ConflictError, NotFoundError, UsageError
from interestd.models import Card, RawMessage
from interestd.services import ingest_paths
from tests.conftest import make_app

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parsers"
VK_MESSAGE = FIXTURES / "vk" / "community-message-html-only.eml"  # Дмитрий Волков, phone +79175551234
SAME_PHONE_LETTER = FIXTURES / "email" / "outlook-cp1251-signature-quote.eml"  # signed with the same phone
VK_COMMENT = FIXTURES / "vk" / "wall-comment-ru.eml"
FB_COMMENT = FIXTURES / "facebook" / "comment-page-post-en-qp.eml"
FORM = FIXTURES / "site_form" / "cf7-ru-plain-reply-to.eml"
ORDER = FIXTURES / "site_form" / "tilda-order-ru-qp.eml"

TEAM = """
[[managers]]
login = "anna"
name = "Анна Петрова"
emails = ["anna@uyut-dom.ru"]
groups = ["smm"]
[[managers]]
login = "oleg"
emails = ["oleg@uyut-dom.ru"]
groups = ["sales"]
[[managers]]
login = "ivan"
emails = ["ivan@uyut-dom.ru"]
groups = ["smm", "sales"]
"""


def png(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny) PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def team(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    application = make_app(tmp_path, database_url, TEAM)
    yield application
    application.database.dispose()


def reconfigure(app, tmp_path: Path, extra: str):  # type: ignore[no-untyped-def]
    application = make_app(tmp_path, str(app.database.url), TEAM + extra)
    app.database.dispose()
    return application


def ingest(app, *paths: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """Ingest mail one message at a time; the refs of the new cards, in order."""
    refs = []
    for path in paths:
        ingest_paths(app.database, app.context, [path], max_message_bytes=10**7)
        with app.session() as session:
            refs.append(session.scalars(select(Card).order_by(Card.id.desc())).first().ref)
    return refs


def card(app, ref: str) -> Card:  # type: ignore[no-untyped-def]
    from interestd.services import card_by_ref

    with app.session() as session:
        return card_by_ref(session, ref)


def act(app, action, *args, **kwargs):  # type: ignore[no-untyped-def]
    with app.session(write=True) as session:
        return action(session, app.settings, *args, **kwargs)


def kinds(app, ref: str) -> list[str]:  # type: ignore[no-untyped-def]
    with app.session() as session:
        _, events = work.history(session, ref)
    return [f"{e.kind}:{e.manager or ''}" for e in events]


def test_one_owner_per_person_across_sources(team) -> None:  # type: ignore[no-untyped-def]
    [vk] = ingest(team, VK_MESSAGE)
    assert card(team, vk).responsible is None and kinds(team, vk) == ["created:", "open:"]
    assert act(team, work.claim, vk, "anna") == f"{vk} is now yours"
    [letter] = ingest(team, SAME_PHONE_LETTER)  # the same phone number: the same person, from another source
    arrived = card(team, letter)
    assert arrived.responsible == "anna"
    with team.session() as session:
        _, events = work.history(session, letter)
    assert (events[-1].kind, events[-1].rule, events[-1].detail) == (
        "assigned",
        "one owner per person",
        f"the author is worked by anna ({vk})",
    )
    with pytest.raises(ConflictError, match=f"{letter} is already claimed by anna"):
        act(team, work.claim, letter, "oleg")


def test_claiming_someone_elses_person_is_refused_unless_forced(team) -> None:  # type: ignore[no-untyped-def]
    [vk] = ingest(team, VK_MESSAGE)
    act(team, work.claim, vk, "anna")
    [letter] = ingest(team, SAME_PHONE_LETTER)
    # The letter went to anna on arrival; she releases it, but still works the person (the VK card).
    act(team, work.release, letter, "anna")
    assert card(team, letter).responsible is None
    with pytest.raises(ConflictError) as refused:
        act(team, work.claim, letter, "oleg")
    assert str(refused.value) == f"{letter}'s author is worked by anna ({vk}): ask them, or use --force"
    act(team, work.claim, letter, "oleg", force=True)
    assert card(team, letter).responsible == "oleg"
    with team.session() as session:
        owners = store.owners_of(session, ["phone:+79175551234"])
    assert owners["phone:+79175551234"].manager == "oleg"


def test_least_loaded_respects_capacity_and_away_days(tmp_path: Path, team) -> None:  # type: ignore[no-untyped-def]
    today = datetime.now(UTC).date()
    app = make_app(
        tmp_path,
        str(team.database.url),
        f"""
[[managers]]
login = "anna"
away = [{{ from = "{today - timedelta(days=1)}", to = "{today + timedelta(days=1)}" }}]
[[managers]]
login = "ivan"
capacity = 1
[[managers]]
login = "oleg"
[assignment]
policy = "least_loaded"
""",
    )
    refs = ingest(app, VK_COMMENT, FB_COMMENT, FORM, ORDER)
    assert [card(app, ref).responsible for ref in refs] == ["ivan", "oleg", "oleg", "oleg"]
    with app.session() as session:
        _, events = work.history(session, refs[1])
    assert events[-1].rule == "least_loaded" and events[-1].detail == "least loaded: oleg had 0 open"
    app.database.dispose()


def test_round_robin_rotates_and_routes_send_cards_to_groups(tmp_path: Path, team) -> None:  # type: ignore[no-untyped-def]
    app = reconfigure(
        team,
        tmp_path,
        """
[assignment]
policy = "round_robin"
[[assignment.routes]]
group = "sales"
source_types = ["site_form"]
""",
    )
    refs = ingest(app, VK_COMMENT, FB_COMMENT, VK_MESSAGE, FORM, ORDER)
    owners = [card(app, ref).responsible for ref in refs]
    assert owners[:3] == ["anna", "ivan", "oleg"]  # rotation by login
    assert set(owners[3:]) <= {"oleg", "ivan"}  # forms go to the sales group only
    app.database.dispose()


def test_a_card_nobody_claims_is_assigned_when_the_claim_window_closes(tmp_path: Path, team) -> None:  # type: ignore[no-untyped-def]
    app = reconfigure(team, tmp_path, '[assignment]\npolicy = "first_claim"\nclaim_timeout = "2h"\n')
    [ref] = ingest(app, VK_COMMENT)
    assert work.assign_overdue(app.database, app.settings) == []
    decided = work.assign_overdue(app.database, app.settings, now=datetime.now(UTC) + timedelta(hours=3))
    assert [(r, d.rule) for r, d in decided] == [(ref, "least_loaded")]
    assert card(app, ref).responsible == "anna"
    with app.session() as session:
        _, events = work.history(session, ref)
    assert (events[-1].kind, events[-1].actor) == ("assigned", "claim window")
    app.database.dispose()


def test_routes_limit_who_may_claim(tmp_path: Path, team) -> None:  # type: ignore[no-untyped-def]
    app = reconfigure(team, tmp_path, '[[assignment.routes]]\ngroup = "smm"\nsource_types = ["vk"]\n')
    [ref] = ingest(app, VK_COMMENT)
    with pytest.raises(ConflictError, match="goes to group smm \\(anna, ivan\\)"):
        act(app, work.claim, ref, "oleg")
    act(app, work.claim, ref, "ivan")
    app.database.dispose()


def test_a_claim_beyond_capacity_is_refused_and_undone(tmp_path: Path, team) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tmp_path, str(team.database.url), TEAM.replace('login = "oleg"\n', 'login = "oleg"\ncapacity = 1\n'))
    team.database.dispose()
    [first, second] = ingest(app, VK_COMMENT, FORM)
    assert act(app, work.claim, first, "oleg") == f"{first} is now yours"
    with pytest.raises(ConflictError, match="oleg has 1 open cards, the capacity set in the config"):
        act(app, work.claim, second, "oleg")
    assert card(app, second).responsible is None  # the refused claim left nothing behind
    assert kinds(app, second) == ["created:", "open:"]
    assert act(app, work.claim, second, "oleg", force=True) == f"{second} is now yours"
    app.database.dispose()


def test_claim_next_takes_the_longest_waiting_card_this_manager_may_take(tmp_path: Path, team) -> None:  # type: ignore[no-untyped-def]
    app = reconfigure(team, tmp_path, '[[assignment.routes]]\ngroup = "smm"\nsource_types = ["vk", "facebook"]\n')
    refs = ingest(app, VK_COMMENT, FB_COMMENT, FORM, ORDER)
    by_age = sorted(refs, key=lambda ref: (card(app, ref).occurred_at, card(app, ref).id))
    social = [ref for ref in by_age if card(app, ref).source_type in ("vk", "facebook")]
    sites = [ref for ref in by_age if ref not in social]
    # oleg is in sales only: the VK and Facebook cards are routed past him.
    assert act(app, work.claim_next, "oleg") == f"{sites[0]} is now yours"
    assert act(app, work.claim_next, "oleg") == f"{sites[1]} is now yours"
    with pytest.raises(NotFoundError, match="no open card for you to take \\(the others are for other groups"):
        act(app, work.claim_next, "oleg")
    assert act(app, work.claim_next, "anna") == f"{social[0]} is now yours"
    assert kinds(app, social[0])[-1] == "claimed:anna"
    assert act(app, work.claim_next, "ivan") == f"{social[1]} is now yours"
    with pytest.raises(NotFoundError, match=r"^no open card for you to take$"):
        act(app, work.claim_next, "ivan")
    app.database.dispose()


def test_claim_next_passes_over_a_person_another_manager_works(team) -> None:  # type: ignore[no-untyped-def]
    [vk] = ingest(team, VK_MESSAGE)
    act(team, work.claim, vk, "anna")
    [letter] = ingest(team, SAME_PHONE_LETTER)  # the same person: assigned to anna on arrival
    act(team, work.release, letter, "anna")  # back in the queue, but the person is still anna's
    with pytest.raises(NotFoundError):
        act(team, work.claim_next, "oleg")
    assert act(team, work.claim_next, "anna") == f"{letter} is now yours"


def test_claim_next_reads_the_unclaimed_queue_off_its_own_index(team) -> None:  # type: ignore[no-untyped-def]
    """The feed's index holds claimed cards too: walking it, each claim would pass over every card claimed
    before (claims slow down as the queue is worked). PostgreSQL's planner took that index until
    ix_card_unclaimed, which holds only what is left, was there; SQLite finds the unclaimed cards as a prefix
    of ix_card_responsible_feed."""
    sent: list[tuple[str, object]] = []

    def keep(connection, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        sent.append((statement, parameters))

    # The plan of exactly what the claim sends to the driver (cached statement, its bound values, passed cards).
    event.listen(team.database.engine, "before_cursor_execute", keep)
    try:
        with team.database.session(write=True) as session:
            store.claim_next_open_card(session, "anna", now=datetime.now(UTC), skip=[1, 2])
            session.rollback()
    finally:
        event.remove(team.database.engine, "before_cursor_execute", keep)
    [(sql, params)] = [(sql, params) for sql, params in sent if sql.startswith("UPDATE card")]
    assert "NOT IN" in sql, sql
    with team.database.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)  # type: ignore[arg-type]
            plan = " ".join(str(row[-1]) for row in rows)
        else:
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")  # an empty table would not use any index
            plan = " ".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}", params))  # type: ignore[arg-type]
    assert "ix_card_feed " not in plan, plan
    assert "ix_card_unclaimed" in plan or "ix_card_responsible_feed (responsible=? AND processed=?)" in plan, plan
    team.database.dispose()


def test_release_and_reassign_move_the_person_with_their_open_cards(team) -> None:  # type: ignore[no-untyped-def]
    [vk] = ingest(team, VK_MESSAGE)
    act(team, work.claim, vk, "anna")
    [letter] = ingest(team, SAME_PHONE_LETTER)
    assert card(team, letter).responsible == "anna"
    with pytest.raises(ConflictError, match="is not yours"):
        act(team, work.release, vk, "oleg")
    with team.session(write=True) as session:
        moved = work.reassign(session, team.settings, vk, "oleg", "ivan", why="anna is on sick leave")
    assert moved == [vk, letter]
    assert card(team, vk).responsible == card(team, letter).responsible == "oleg"
    with team.session() as session:
        _, events = work.history(session, letter)
    assert events[-1].kind == "reassigned" and events[-1].actor == "ivan"
    assert events[-1].detail == f"from anna to oleg: anna is on sick leave (same author as {vk})"
    with pytest.raises(NotFoundError, match="unknown manager 'boris'"), team.session(write=True) as session:
        work.reassign(session, team.settings, vk, "boris", "ivan")


def test_done_needs_a_screenshot_unless_configured_otherwise(tmp_path: Path, team) -> None:  # type: ignore[no-untyped-def]
    [ref] = ingest(team, VK_COMMENT)
    act(team, work.claim, ref, "anna")
    with pytest.raises(ConflictError, match=f"interestd attach {ref} screenshot.png"):
        act(team, work.done, ref, "anna")
    app = reconfigure(team, tmp_path, "[assignment]\nrequire_proof = false\n")
    assert act(app, work.done, ref, "anna") == f"{ref} is processed"
    done = card(app, ref)
    assert done.processed and done.replied and done.screenshot is None
    app.database.dispose()


def test_attaching_a_screenshot_processes_the_card(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    [ref] = ingest(team, VK_COMMENT)
    image = tmp_path / "reply.png"
    image.write_bytes(png())
    assert act(team, work.attach, ref, "anna", str(image)).startswith(f"{ref} is processed: screenshot attachment:")
    attached = card(team, ref)
    assert attached.processed and attached.replied and attached.responsible == "anna"  # claimed on the way
    stored = (
        team.settings.attachments_dir / attached.screenshot.split(":", 1)[1][:2] / attached.screenshot.split(":", 1)[1]
    )
    assert stored.read_bytes() == image.read_bytes() and stored.stat().st_mode & 0o077 == 0
    assert kinds(team, ref) == ["created:", "open:", "claimed:anna", "proof_attached:anna", "processed:anna"]

    [other] = ingest(team, FB_COMMENT)
    act(team, work.attach, other, "ivan", "https://joxi.ru/abc123")
    assert card(team, other).screenshot == "https://joxi.ru/abc123"
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UsageError, match="is not a PNG, JPEG, WebP or GIF image"):
        act(team, work.attach, other, "ivan", str(tmp_path / "notes.txt"))
    with pytest.raises(UsageError, match="is not a known screenshot service"):
        act(team, work.attach, other, "ivan", "https://evil.example/x.png")
    with pytest.raises(UsageError, match="not an http"):
        act(team, work.attach, other, "ivan", "javascript:alert(1)")
    with pytest.raises(ConflictError, match="is ivan's: use --force"):
        act(team, work.attach, other, "anna", "https://joxi.ru/def")


def _proof_mail(sender: str, ref: str, *, image: bytes | None = None, link: str | None = None) -> bytes:
    boundary = "----=_proof_7f3a"
    body = f"Ответил клиенту. {link or ''}\r\n"
    parts = [f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"]
    if image is not None:
        encoded = base64.encodebytes(image).decode()
        parts.append(
            f'--{boundary}\r\nContent-Type: image/png; name="reply.png"\r\nContent-Transfer-Encoding: base64'
            f'\r\nContent-Disposition: attachment; filename="reply.png"\r\n\r\n{encoded}'
        )
    return (
        f"From: {sender}\r\nTo: zayavki@uyut-dom.ru\r\nSubject: =?utf-8?B?"
        f"{base64.b64encode(f'[{ref}] скрин ответа'.encode()).decode()}?=\r\n"
        f"Date: Fri, 20 Nov 2026 18:00:00 +0300\r\n"
        f"Message-ID: <proof-{_token(sender)}-{ref}-{len(body)}@uyut-dom.ru>\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        + "".join(parts)
        + f"--{boundary}--\r\n"
    ).encode()


def _token(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isascii() and (ch.isalnum() or ch in "@.-"))


def _raw_status(app, message_id_part: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    with app.session() as session:
        raw = session.scalars(select(RawMessage).where(RawMessage.message_id.contains(message_id_part))).one()
    return raw.status, raw.reason or ""


def test_a_screenshot_mailed_by_a_manager_processes_the_card(team, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    [ref] = ingest(team, VK_COMMENT)
    act(team, work.claim, ref, "anna")
    mail = tmp_path / "proof.eml"
    mail.write_bytes(_proof_mail("Анна <Anna@Uyut-Dom.ru>", ref, image=png()))
    summary = ingest_paths(team.database, team.context, [mail], max_message_bytes=10**7)
    assert summary.outcomes == {"proof": 1}
    proved = card(team, ref)
    assert proved.processed and proved.replied and proved.screenshot.startswith("attachment:")
    assert _raw_status(team, "proof-") == ("proof", f"reply proof for {ref} from anna")
    assert kinds(team, ref)[-2:] == ["proof_attached:anna", "processed:anna"]

    [other] = ingest(team, FB_COMMENT)
    act(team, work.claim, other, "anna")
    link_mail = tmp_path / "colleague.eml"
    link_mail.write_bytes(_proof_mail("oleg@uyut-dom.ru", other, link="https://prnt.sc/t8x2k1"))
    with caplog.at_level(logging.WARNING):
        ingest_paths(team.database, team.context, [link_mail], max_message_bytes=10**7)
    assert card(team, other).screenshot == "https://prnt.sc/t8x2k1"
    assert f"{other}: reply proof sent by oleg, but the card is anna's" in caplog.text


def test_proofs_from_strangers_or_for_unknown_cards_do_not_count(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    [ref] = ingest(team, VK_COMMENT)
    stranger = tmp_path / "stranger.eml"
    stranger.write_bytes(_proof_mail("hacker@example.com", ref, image=png()))
    unknown = tmp_path / "unknown.eml"
    unknown.write_bytes(_proof_mail("anna@uyut-dom.ru", "INT-999", image=png(3, 3)))
    empty = tmp_path / "empty.eml"
    empty.write_bytes(_proof_mail("anna@uyut-dom.ru", ref))
    for path in (stranger, unknown, empty):
        ingest_paths(team.database, team.context, [path], max_message_bytes=10**7)
    assert not card(team, ref).processed
    assert _raw_status(team, "proof-hacker@example.com") == (
        "skipped",
        f"reply proof for {ref} from hacker@example.com, who is no manager",
    )
    assert _raw_status(team, "INT-999") == ("quarantined", "reply proof from anna for INT-999, which does not exist")
    status, reason = _raw_status(team, f"proof-anna@uyut-dom.ru-{ref}-")
    assert status == "quarantined" and "without a screenshot" in reason


def test_history_shows_every_step(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    [ref] = ingest(team, VK_COMMENT)
    act(team, work.claim, ref, "anna")
    act(team, work.release, ref, "anna")
    act(team, work.claim, ref, "ivan")
    with team.session(write=True) as session:
        work.reassign(session, team.settings, ref, "anna", "ivan")
    image = tmp_path / "r.png"
    image.write_bytes(png())
    act(team, work.attach, ref, "anna", str(image))
    assert kinds(team, ref) == [
        "created:",
        "open:",
        "claimed:anna",
        "released:anna",
        "claimed:ivan",
        "reassigned:anna",
        "proof_attached:anna",
        "processed:anna",
    ]


def test_who_is_speaking(team, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    settings = team.settings
    assert work.current_manager(settings, "oleg", {}) == "oleg"
    assert work.current_manager(settings, None, {"INTERESTD_MANAGER": "ivan"}) == "ivan"
    with pytest.raises(NotFoundError, match="unknown manager 'boris' \\(from --as; configured: anna, oleg, ivan\\)"):
        work.current_manager(settings, "boris", {})
    monkeypatch.setattr("getpass.getuser", lambda: "anna")
    assert work.current_manager(settings, None, {}) == "anna"
    monkeypatch.setattr("getpass.getuser", lambda: "root")
    with pytest.raises(NotFoundError, match="the OS user 'root' is no configured manager"):
        work.current_manager(settings, None, {})


def test_managers_are_synced_and_removed_ones_keep_their_history(tmp_path: Path, team) -> None:  # type: ignore[no-untyped-def]
    [ref] = ingest(team, VK_COMMENT)
    act(team, work.claim, ref, "oleg")
    smaller = make_app(tmp_path, str(team.database.url), '[[managers]]\nlogin = "anna"\n')
    with smaller.session() as session:
        rows = {m.login: m.in_config for m in store.managers_in_db(session)}
    assert rows == {"anna": True, "oleg": False, "ivan": False}
    assert card(smaller, ref).responsible == "oleg"
    smaller.database.dispose()


def test_manager_cli_commands(team, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_cli import run

    [ref] = ingest(team, VK_COMMENT)
    config = str(team.config_path)
    base = ["--config", config]
    import os

    os.environ["INTERESTD_DATABASE_URL"] = str(team.database.url)
    try:
        assert run(capsys, *base, "--as", "anna", "claim", ref)[:2] == (0, f"{ref} is now yours\n")
        code, _, err = run(capsys, *base, "--as", "oleg", "claim", ref)
        assert (code, err) == (7, f"interestd: error: {ref} is already claimed by anna\n")
        code, out, _ = run(capsys, *base, "--as", "anna", "mine", "--json")
        assert [c["ref"] for c in __import__("json").loads(out)] == [ref]
        code, out, _ = run(capsys, *base, "reply", ref)
        assert code == 0 and out.startswith("https://vk.com/")
        code, out, _ = run(capsys, *base, "history", ref)
        assert "claimed -> anna by anna [first claim]" in out
        assert run(capsys, *base, "--as", "boris", "claim", ref)[0] == 6
        assert run(capsys, *base, "--as", "anna", "claim", "INT-999")[0] == 6
        [form] = ingest(team, FORM)
        assert run(capsys, *base, "--as", "oleg", "claim", "--next")[:2] == (0, f"{form} is now yours\n")
        code, _, err = run(capsys, *base, "--as", "oleg", "claim", "--next")
        assert (code, err) == (6, "interestd: error: no open card for you to take\n")
        assert run(capsys, *base, "--as", "oleg", "claim", ref, "--next")[0] == 2
        assert run(capsys, *base, "--as", "oleg", "claim")[0] == 2
    finally:
        del os.environ["INTERESTD_DATABASE_URL"]


def test_away_period_days_are_inclusive() -> None:
    from interestd.config import ManagerSettings

    manager = ManagerSettings(login="anna", away=[{"from": "2026-12-28", "to": "2027-01-08"}])
    assert manager.is_away(date(2026, 12, 28)) and manager.is_away(date(2027, 1, 8))
    assert not manager.is_away(date(2027, 1, 9))
