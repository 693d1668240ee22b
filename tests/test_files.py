"""Ingest from files: .eml, folders of them, mbox and Maildir, streamed; unreadable input is a clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from interestd import store
from interestd.errors import UsageError
from interestd.services import ingest_paths
from interestd.sources.files import check_paths, iter_messages, total_size

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _letter(n: int, body: str = "Текст письма") -> bytes:
    return (
        f"From: client{n}@example.ru\r\nSubject: =?utf-8?B?0JLQvtC/0YDQvtGB?= {n}\r\nMessage-ID: <m{n}@example.ru>\r\n"
        f"Date: Fri, 20 Nov 2026 10:{n:02d}:00 +0300\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body} {n}\r\n"
    ).encode()


def test_mbox_is_split_and_from_lines_unescaped(tmp_path: Path) -> None:
    mbox = tmp_path / "archive.mbox"
    parts = [
        b"From client1@example.ru Fri Nov 20 10:01:00 2026\n" + _letter(1).replace(b"\r\n", b"\n") + b"\n",
        b"From client2@example.ru Fri Nov 20 10:02:00 2026\n"
        + _letter(2, "First line\n>From the start of a line\nlast").replace(b"\r\n", b"\n")
        + b"\n",
        b"From client3@example.ru Fri Nov 20 10:03:00 2026\n" + _letter(3).replace(b"\r\n", b"\n"),
    ]
    mbox.write_bytes(b"".join(parts))
    messages = list(iter_messages([mbox], max_bytes=10**6))
    assert len(messages) == 3
    assert all(m.origin == f"mbox:{mbox}" for m in messages)
    assert b"\nFrom the start of a line\n" in messages[1].data
    assert messages[0].data.endswith(b"1\n") and not messages[0].data.endswith(b"\n\n")
    assert messages[-1].consumed == mbox.stat().st_size


def test_maildir_and_nested_folders_are_read_in_order(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "1700000001.M1P1.host:2,S").write_bytes(_letter(1))
    (maildir / "new" / "1700000002.M2P2.host").write_bytes(_letter(2))
    (maildir / "tmp" / "1700000003.M3P3.host").write_bytes(_letter(3))  # being delivered: not a message yet
    nested = tmp_path / "exports" / "2026" / "11"
    nested.mkdir(parents=True)
    (nested / "b.eml").write_bytes(_letter(5))
    (nested / "a.EML").write_bytes(_letter(4))
    (nested / "notes.txt").write_text("not mail")
    origins = [m.origin for m in iter_messages([maildir, tmp_path / "exports"], max_bytes=10**6)]
    assert [o.rsplit("/", 1)[-1] for o in origins] == [
        "1700000001.M1P1.host:2,S",
        "1700000002.M2P2.host",
        "a.EML",
        "b.eml",
    ]


def test_a_maildir_that_lost_its_empty_subfolders_is_still_read(tmp_path: Path) -> None:
    # git and many archivers keep no empty folders: a Maildir checked out from a repository has no `cur`.
    maildir = tmp_path / "checked-out"
    (maildir / "new").mkdir(parents=True)
    (maildir / "tmp").mkdir()
    (maildir / "new" / "1700000002.M2P2.host").write_bytes(_letter(2))
    assert [m.data for m in iter_messages([maildir], max_bytes=10**6)] == [_letter(2)]


def test_hidden_files_and_subfolders_of_a_maildir_are_not_messages_and_an_mbox_there_is_split(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / ".dovecot-uidlist").write_text("3 V1 N1\n")
    (maildir / "cur" / "subfolder").mkdir()
    (maildir / "cur" / "1700000001.M1P1.host:2,S").write_bytes(_letter(1))
    (maildir / "new" / "1700000002.M2P2.host").write_bytes(
        b"From client2@example.ru Fri Nov 20 10:02:00 2026\n"
        + _letter(2).replace(b"\r\n", b"\n")
        + b"\nFrom client3@example.ru Fri Nov 20 10:03:00 2026\n"
        + _letter(3).replace(b"\r\n", b"\n")
    )
    messages = list(iter_messages([maildir], max_bytes=10**6))
    assert [m.data.replace(b"\r\n", b"\n") for m in messages] == [_letter(n).replace(b"\r\n", b"\n") for n in (1, 2, 3)]
    assert [m.origin.split(":", 1)[0] for m in messages] == ["file", "mbox", "mbox"]


def test_total_size_counts_every_file_or_stops_at_the_bound_given(tmp_path: Path) -> None:
    for n in range(10):
        (tmp_path / f"{n}.eml").write_bytes(b"x" * 1000)
    assert total_size([tmp_path]) == 10_000
    assert total_size([tmp_path], up_to=2500) == 3000


def test_unreadable_paths_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no such file or folder: .*missing\.eml"):
        check_paths([tmp_path / "missing.eml"])
    with pytest.raises(UsageError, match="no input given"):
        check_paths([])
    if os.geteuid() != 0:  # root reads everything
        locked = tmp_path / "locked.eml"
        locked.write_bytes(b"x")
        locked.chmod(0)
        with pytest.raises(UsageError, match="permission denied"):
            check_paths([locked])


def test_cli_ingest_of_a_missing_path_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "interestd", "ingest", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"interestd: error: no such file or folder: {tmp_path / 'nope'}"


def test_a_message_over_the_size_limit_is_quarantined_with_its_headers(sqlite_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    big = tmp_path / "big.eml"
    big.write_bytes(_letter(7) + b"x" * 300_000)
    summary = ingest_paths(sqlite_app.database, sqlite_app.context, [big], max_message_bytes=100_000)
    assert summary.outcomes["quarantined"] == 1
    from interestd.services import mail_list

    with sqlite_app.session() as session:
        [stored] = mail_list(session, statuses=["quarantined"])
        kept = store.raw_bytes(session, stored.id)
    assert "too large" in (stored.reason or "") and "100000" in (stored.reason or "")
    assert stored.size == big.stat().st_size
    assert kept is not None and len(kept) < 100_000 and kept.startswith(b"From: client7")
    assert stored.message_id == "<m7@example.ru>"


def test_an_import_stores_small_batches_first_so_the_workers_start_early(
    sqlite_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """As a poll's fetch batches: 100, then batch_size at a time (200 here), every message stored once."""
    from dataclasses import replace

    from tests.mailgen import letter

    folder = tmp_path / "mail"
    folder.mkdir()
    for n in range(450):
        (folder / f"{n:04d}.eml").write_bytes(letter(n))
    stored: list[int] = []
    add_raw = store.add_raw

    def recording(session, items):  # type: ignore[no-untyped-def]
        stored.append(len(items))
        return add_raw(session, items)

    monkeypatch.setattr(store, "add_raw", recording)
    context = replace(sqlite_app.context, batch_size=200)
    summary = ingest_paths(sqlite_app.database, context, [folder], max_message_bytes=1_000_000)
    assert stored == [100, 200, 150]
    assert summary.read == 450 and summary.duplicates == 0 and summary.outcomes["card"] == 450
