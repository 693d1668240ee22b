"""Trust and secrets: mail storms, authenticated proofs, TLS by default, owner-only files, no secret in output."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from interestd.classify import authenticated_sender
from interestd.config import load_settings
from interestd.errors import ConfigError
from interestd.message import parse_raw
from interestd.models import Card, RawMessage
from interestd.services import ingest_paths
from tests.conftest import make_app
from tests.test_work import TEAM, _proof_mail, card, ingest, png


def _letters(folder: Path, sender: str, count: int, start: int = 0, hours_apart: int = 0) -> Path:
    folder.mkdir(exist_ok=True)
    first = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    for n in range(start, start + count):
        date = format_datetime(first + timedelta(hours=hours_apart * n))
        (folder / f"{n:03d}.eml").write_bytes(
            f"From: {sender}\r\nSubject: Question {n}\r\nMessage-ID: <storm-{n}@example.ru>\r\n"
            f"Date: {date}\r\n\r\nHello, question number {n}\r\n".encode()
        )
    return folder


@pytest.mark.parametrize("batch_size", [200, 3])
def test_a_mail_storm_is_skipped_after_the_limit_and_shows_in_the_report(
    tmp_path: Path, database_url: str, batch_size: int
) -> None:
    limits = f'[limits]\nsender_limit = 5\nsender_window = "2h"\nbatch_size = {batch_size}\n'
    app = make_app(tmp_path, database_url, limits + TEAM)
    ingest_paths(
        app.database,
        app.context,
        [_letters(tmp_path / "storm", "Robot <loop@spam.example>", 12)],
        max_message_bytes=10**7,
    )
    ingest_paths(
        app.database,
        app.context,
        [_letters(tmp_path / "person", "Real <client@example.ru>", 3, 100)],
        max_message_bytes=10**7,
    )
    with app.session() as session:
        statuses = [row.status for row in session.scalars(select(RawMessage).order_by(RawMessage.id))]
        reason = session.scalars(select(RawMessage.reason).where(RawMessage.status == "skipped")).first()
        cards = session.scalars(select(Card.author_email)).all()
    assert statuses == ["card"] * 5 + ["skipped"] * 7 + ["card"] * 3
    assert reason is not None and reason.startswith("mail storm: more than 5 messages from loop@spam.example")
    assert cards.count("loop@spam.example") == 5 and cards.count("client@example.ru") == 3
    from datetime import date

    from interestd.report.data import build, period_containing

    with app.session() as session:
        data = build(session, period_containing("day", date.today(), app.settings.report_zone))
    assert data.skipped[0][1] == 7 and data.skipped[0][0].startswith("mail storm")
    app.database.dispose()


def test_a_backlog_imported_at_once_is_judged_by_when_it_was_sent(tmp_path: Path, sqlite_url: str) -> None:
    """A site's form robot sending 30 requests over 30 hours is no storm, even when all arrive in one import."""
    app = make_app(tmp_path, sqlite_url, '[limits]\nsender_limit = 5\nsender_window = "2h"\n')
    ingest_paths(
        app.database,
        app.context,
        [_letters(tmp_path / "backlog", "Site <forms@uyut-dom.ru>", 30, hours_apart=1)],
        max_message_bytes=10**7,
    )
    ingest_paths(  # the same robot looping: 8 at once, dated like the first letter of the backlog
        app.database,
        app.context,
        [_letters(tmp_path / "loop", "Site <forms@uyut-dom.ru>", 8, start=100, hours_apart=0)],
        max_message_bytes=10**7,
    )
    with app.session() as session:
        statuses = [row.status for row in session.scalars(select(RawMessage).order_by(RawMessage.id))]
    assert statuses[:30] == ["card"] * 30
    # Within the 2 hours up to the loop's date there is the backlog's first letter, then the loop itself:
    # four more are cards, the rest is the storm.
    assert statuses[30:] == ["card"] * 4 + ["skipped"] * 4
    app.database.dispose()


def test_notification_robots_and_managers_are_exempt_from_the_storm_limit(tmp_path: Path, sqlite_url: str) -> None:
    app = make_app(tmp_path, sqlite_url, "[limits]\nsender_limit = 2\n" + TEAM)
    ingest_paths(
        app.database, app.context, [_letters(tmp_path / "mgr", "anna@uyut-dom.ru", 5)], max_message_bytes=10**7
    )
    rules = app.context.storm
    assert rules.exempt("admin@notify.vk.com") and rules.exempt("x@facebookmail.com")
    assert not rules.exempt("someone@example.ru")
    with app.session() as session:
        assert {row.status for row in session.scalars(select(RawMessage))} == {"card"}
    app.database.dispose()


def test_the_storm_exemption_matches_addresses_domains_and_their_subdomains_only() -> None:
    from interestd.evaluation import StormRules

    rules = StormRules(limit=5, allow=("vk.com", "@Tilda.WS", "robot@example.ru"))
    managers = ("anna@uyut-dom.ru",)
    exempt = [
        "admin@vk.com",
        "Admin@Notify.VK.com",  # a subdomain, any case
        "forms@tilda.ws",  # "@domain" is the domain
        "no-reply@mail.tilda.ws",
        "ROBOT@example.ru",  # an allowed address
        "anna@uyut-dom.ru",  # a manager
        None,
        "",
    ]
    limited = [
        "someone@example.ru",  # the allowed address's domain is not allowed as a whole
        "admin@notvk.com",  # a look-alike domain, not a subdomain
        "admin@vk.com.evil.example",
        "vk.com@evil.example",
        "anna@uyut-dom.ru.example",
        "boris@uyut-dom.ru",
    ]
    assert [address for address in exempt if not rules.exempt(address, managers)] == []
    assert [address for address in limited if rules.exempt(address, managers)] == []
    assert not rules.exempt("anna@uyut-dom.ru")  # without the team, a manager's address is limited too
    assert StormRules(limit=0).exempt("someone@example.ru")  # no limit: everybody is exempt


AUTHENTICATED = (
    "Authentication-Results: mx.uyut-dom.ru; dkim=pass header.d=uyut-dom.ru header.s=mail; "
    "spf=pass smtp.mailfrom=anna@uyut-dom.ru\r\n"
)
FORGED = "Authentication-Results: mx.uyut-dom.ru; dkim=fail header.d=uyut-dom.ru; spf=softfail\r\n"
OTHER_SERVER = "Authentication-Results: mx.evil.example; dkim=pass header.d=uyut-dom.ru\r\n"


def _headers(extra: str) -> bytes:
    return (extra + "From: anna@uyut-dom.ru\r\nSubject: [INT-1] proof\r\n\r\nbody\r\n").encode()


def test_authentication_results_are_read_from_our_own_server_only() -> None:
    assert authenticated_sender(parse_raw(_headers(AUTHENTICATED)), "mx.uyut-dom.ru")
    assert not authenticated_sender(parse_raw(_headers(FORGED)), "mx.uyut-dom.ru")
    assert not authenticated_sender(parse_raw(_headers(OTHER_SERVER)), "mx.uyut-dom.ru")
    # A sender's own header below ours does not count: the first one from our server decides.
    assert not authenticated_sender(parse_raw(_headers(FORGED + AUTHENTICATED)), "mx.uyut-dom.ru")
    assert not authenticated_sender(parse_raw(_headers(AUTHENTICATED)), None)
    spf_only = "Authentication-Results: mx.uyut-dom.ru; spf=pass smtp.mailfrom=uyut-dom.ru\r\n"
    assert authenticated_sender(parse_raw(_headers(spf_only)), "mx.uyut-dom.ru")


def test_require_authenticated_proof(tmp_path: Path, database_url: str) -> None:
    from tests.test_work import VK_COMMENT

    app = make_app(
        tmp_path,
        database_url,
        TEAM + '[security]\nrequire_authenticated_proof = true\nauthserv_id = "mx.uyut-dom.ru"\n',
    )
    [ref] = ingest(app, VK_COMMENT)
    plain = tmp_path / "plain.eml"
    plain.write_bytes(_proof_mail("anna@uyut-dom.ru", ref, image=png()))
    ingest_paths(app.database, app.context, [plain], max_message_bytes=10**7)
    assert not card(app, ref).processed
    signed = tmp_path / "signed.eml"
    signed.write_bytes(
        AUTHENTICATED.encode()
        + _proof_mail("anna@uyut-dom.ru", ref, image=png(3, 3)).replace(
            b"Message-ID: <proof-", b"Message-ID: <signed-proof-"
        )
    )
    ingest_paths(app.database, app.context, [signed], max_message_bytes=10**7)
    assert card(app, ref).processed
    with app.session() as session:
        reasons = [r.reason for r in session.scalars(select(RawMessage).where(RawMessage.status == "skipped"))]
    assert any("recorded no DKIM or SPF pass" in (reason or "") for reason in reasons)
    app.database.dispose()
    with pytest.raises(ConfigError, match="require_authenticated_proof needs authserv_id"):
        make_app(tmp_path / "x", database_url, "[security]\nrequire_authenticated_proof = true\n")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('[database]\nurl = "postgresql+psycopg://u@db.example.lan/d"\n', "is not this machine: add sslmode"),
        ('[database]\nurl = "postgresql+psycopg://u@db.example.lan/d?sslmode=prefer"\n', "add sslmode"),
        (
            '[imap]\nhost = "imap.example.ru"\nuser = "u"\nsecurity = "none"\npassword_env = "P"\n',
            'security = "none" sends the password in clear',
        ),
        (
            '[smtp]\nhost = "smtp.example.ru"\nsecurity = "none"\nfrom = "a@b.ru"\nto = ["c@d.ru"]\n',
            'security = "none" refused for smtp.example.ru',
        ),
    ],
)
def test_plain_connections_only_to_this_machine_unless_allowed(tmp_path: Path, config: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(config)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ={"P": "x", "HOME": str(tmp_path)})
    allowed = config.replace("[database]\n", "[database]\nallow_insecure = true\n").replace(
        'security = "none"\n', 'security = "none"\nallow_insecure = true\n'
    )
    path.write_text(allowed)
    load_settings(path, environ={"P": "x", "HOME": str(tmp_path)})
    path.write_text('[database]\nurl = "postgresql+psycopg://u@127.0.0.1/d"\n')
    load_settings(path, environ={"HOME": str(tmp_path)})  # loopback: plain is fine


def test_state_is_created_readable_by_its_owner_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_cli import run

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from interestd.services import open_database

    settings = load_settings(None, environ={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")})
    database = open_database(settings)
    database.dispose()
    data_dir = tmp_path / "data" / "interestd"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "interestd.db").stat().st_mode) == 0o600
    from interestd.proofs import store_image

    stored = store_image(settings.attachments_dir, png(), max_bytes=10**6)
    folder = settings.attachments_dir / stored.sha256[:2]
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE((folder / f"{stored.sha256}.png").stat().st_mode) == 0o600
    del run


def test_world_readable_config_and_secret_files_are_warned_about(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.test_cli import run

    secret = tmp_path / "pw"
    secret.write_text("hunter2")
    secret.chmod(0o644)
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "postgresql+psycopg://u@127.0.0.1/d"\npassword_file = "{secret}"\n')
    config.chmod(0o644)
    code, out, err = run(capsys, "--config", str(config), "check-config")
    assert code == 0
    assert f"{config} is readable by other users" in err
    assert f"database.password_file {secret} is readable by other users" in err
    assert "hunter2" not in out + err


def test_secrets_never_reach_logs_errors_or_the_report(tmp_path: Path, dovecot, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.test_cli import run

    secret = "W1ldS3cret-pass"
    os.environ["TEST_IMAP_PASSWORD"] = secret
    try:
        config = tmp_path / "c.toml"
        config.write_text(
            dovecot.mailbox_settings("wrongpass") + '[smtp]\nhost = "127.0.0.1"\nport = 1\n'
            'security = "none"\nfrom = "r@x.ru"\nto = ["l@x.ru"]\nuser = "r"\n'
            'password_env = "TEST_IMAP_PASSWORD"\ntimeout = "2s"\n'
        )
        config.chmod(0o600)
        outputs = []
        for args in (["--debug", "poll", "--once"], ["check-config"], ["status"], ["report", "--send"], ["report"]):
            _, out, err = run(capsys, "--config", str(config), *args)
            outputs.append(out + err)
        joined = "\n".join(outputs)
        assert "login failed" in joined and "cannot deliver the report" in joined
        assert secret not in joined
    finally:
        del os.environ["TEST_IMAP_PASSWORD"]


def test_reply_open_refuses_anything_but_safe_links(tmp_path: Path, capsys, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from tests.test_cli import run

    app = make_app(tmp_path, sqlite_url)
    [ref] = ingest(app, Path(__file__).resolve().parent / "fixtures" / "parsers" / "vk" / "wall-comment-ru.eml")
    with app.session(write=True) as session:  # as if an older version had let one through
        session.execute(update(Card).values(reply_url="javascript:alert(1)"))
        session.commit()
    os.environ["INTERESTD_DATABASE_URL"] = sqlite_url
    try:
        code, out, err = run(capsys, "--config", str(app.config_path), "reply", "--open", ref)
    finally:
        del os.environ["INTERESTD_DATABASE_URL"]
    assert code == 2 and "has no reply link" in err and "javascript" not in out
    app.database.dispose()
