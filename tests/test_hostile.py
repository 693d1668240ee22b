"""Hostile and broken input: every message ends as a card, skipped or quarantined; nothing hangs or escapes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest

from interestd.card import CardDraft
from interestd.evaluation import PipelineContext, evaluate
from interestd.message import ParsedMessage
from interestd.registry import build_registry, discover, load_registry
from interestd.store import PendingRaw
from tests.hostile import CORPUS
from tests.test_daemon import DaemonProcess, wait_for

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CONTEXT = PipelineContext(registry=load_registry())
SAFE_URL = re.compile(r"^(?:https?://|mailto:|tel:)")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x1b]")
SMALL = {name: make for name, make in CORPUS.items() if name != "40 MB attachment"}


@pytest.mark.parametrize("name", list(SMALL))
def test_each_hostile_message_gets_exactly_one_outcome(name: str) -> None:
    outcome = evaluate(SMALL[name](), CONTEXT, now=NOW)
    assert outcome.status in ("card", "skipped", "quarantined")
    assert outcome.status == "quarantined" or outcome.reason is None or "\n" not in outcome.reason
    if outcome.card is not None:
        for field in ("source_url", "author_url", "author_photo_url", "product_url", "reply_url"):
            value = getattr(outcome.card, field)
            assert value is None or SAFE_URL.match(value), (field, value)
        assert not CONTROL.search(outcome.card.author_name or "")
        assert not CONTROL.search(outcome.card.text.replace("\n", ""))


def test_scripted_html_becomes_clean_text() -> None:
    outcome = evaluate(CORPUS["scripts, handlers, javascript: and data: links"](), CONTEXT, now=NOW)
    assert outcome.card is not None
    assert outcome.card.text == "Хочу диван\n\nreply xprofile"  # no space between those tags in the HTML
    assert "evil" not in outcome.card.text and "alert" not in outcome.card.text


def test_escape_sequences_never_reach_a_terminal(tmp_path: Path) -> None:
    raw = CORPUS["terminal escapes in RFC 2047 words"]()
    outcome = evaluate(raw, CONTEXT, now=NOW)
    assert outcome.card is not None and outcome.card.author_name == "Анна Injected: yes"
    path = tmp_path / "escapes.eml"
    path.write_bytes(raw)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    subprocess.run([sys.executable, "-m", "interestd", "ingest", str(path)], check=True, capture_output=True, env=env)
    for command in (["feed"], ["show", "INT-1"], ["mail", "list", "--status", "card"], ["history", "INT-1"]):
        shown = subprocess.run([sys.executable, "-m", "interestd", *command], capture_output=True, env=env)
        assert b"\x1b" not in shown.stdout and b"\x07" not in shown.stdout, command
        assert shown.returncode in (0, 2), shown.stderr  # history needs no manager; mail list works


def test_the_whole_corpus_through_the_cli_with_worker_limits(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    for index, make in enumerate(CORPUS.values()):
        (folder / f"{index:02d}.eml").write_bytes(make())
    config = tmp_path / "config.toml"
    config.write_text('[limits]\nworkers = 2\nmessage_timeout = "30s"\nworker_memory = "768MB"\n')
    config.chmod(0o600)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "interestd", "--config", str(config), "ingest", "--json", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["read"] == len(CORPUS)
    assert summary["cards"] + summary["skipped"] + summary["quarantined"] + summary["duplicates"] == len(CORPUS)
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "interestd",
            "--config",
            str(config),
            "mail",
            "list",
            "--json",
            "--status",
            "new",
            "--status",
            "card",
            "--status",
            "skipped",
            "--status",
            "quarantined",
            "--limit",
            "100",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    rows = json.loads(listed.stdout)
    assert not [row for row in rows if row["status"] == "new"]
    big = next(row for row in rows if "attachment-40mb" in (row["message_id"] or ""))
    assert big["status"] == "quarantined" and big["reason"].startswith("too large:") and big["size"] > 40 * 2**20
    assert time.monotonic() - started < 600


class SleepingParser:
    """A parser stuck in a loop (think: catastrophic regex backtracking)."""

    name: ClassVar[str] = "sleeper"
    priority: ClassVar[int] = 999
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        return "sleep" in msg.subject

    def parse(self, msg: ParsedMessage) -> CardDraft:
        time.sleep(3600)
        raise AssertionError("unreachable")


class GreedyParser(SleepingParser):
    name: ClassVar[str] = "greedy"

    def match(self, msg: ParsedMessage) -> bool:
        return "greedy" in msg.subject

    def parse(self, msg: ParsedMessage) -> CardDraft:
        hog = [bytearray(64 * 1024 * 1024) for _ in range(64)]  # 4 GB
        raise AssertionError(len(hog))


class CrashingParser(SleepingParser):
    name: ClassVar[str] = "crasher"

    def match(self, msg: ParsedMessage) -> bool:
        return "crash" in msg.subject

    def parse(self, msg: ParsedMessage) -> CardDraft:
        os.kill(os.getpid(), 11)  # a segfault in a C extension, say
        raise AssertionError("unreachable")


def _letter(subject: str) -> bytes:
    return f"From: client@example.ru\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\nhello\r\n".encode()


def test_a_hanging_greedy_or_crashing_parser_costs_only_its_message() -> None:
    from interestd.workers import WorkerPool

    context = PipelineContext(
        registry=build_registry([SleepingParser(), GreedyParser(), CrashingParser(), *discover()])
    )
    subjects = ["ok one", "sleep now", "ok two", "greedy now", "ok three", "crash now", "ok four"]
    rows = [PendingRaw(n, _letter(subject), 0, 100) for n, subject in enumerate(subjects)]
    with WorkerPool(context, processes=2, timeout=2, memory_limit=512 * 1024 * 1024) as pool:
        started = time.monotonic()
        outcomes = pool(rows, context, NOW)
        elapsed = time.monotonic() - started
        again = pool(rows[:1], context, NOW)  # the pool goes on working
    by_subject = dict(zip(subjects, outcomes, strict=True))
    assert [by_subject[s].status for s in subjects if s.startswith("ok")] == ["card"] * 4
    assert by_subject["sleep now"].reason == "processing took longer than 2s (message_timeout)"
    assert by_subject["greedy now"].status == "quarantined"
    assert "memory" in (by_subject["greedy now"].reason or "")
    assert by_subject["crash now"].reason == "the worker processing it died (SIGSEGV)"
    assert again[0].status == "card"
    assert elapsed < 60


def test_batches_submitted_together_stream_through_the_pool_each_bad_message_costing_only_itself() -> None:
    """A poll hands the pool batch after batch without waiting: chunks of the later ones are already with the
    workers when a message of an earlier one hangs or crashes its worker. Every batch still gets exactly its own
    outcomes, in order; a batch cancelled meanwhile is dropped without holding up the ones behind it."""
    from interestd.workers import WorkerPool

    context = PipelineContext(registry=build_registry([SleepingParser(), CrashingParser(), *discover()]))

    def batch(*subjects: str) -> list[PendingRaw]:
        return [PendingRaw(n, _letter(subject), 0, 100) for n, subject in enumerate(subjects)]

    first = batch(*(f"ok a{n}" for n in range(40)), "crash now", *(f"ok b{n}" for n in range(40)))
    second = batch(*(f"ok c{n}" for n in range(30)), "sleep now", *(f"ok d{n}" for n in range(30)))
    dropped = batch(*(f"ok e{n}" for n in range(50)))
    last = batch(*(f"ok f{n}" for n in range(20)))
    with WorkerPool(context, processes=2, timeout=2) as pool:
        futures = [pool.submit(rows, context, NOW) for rows in (first, second, dropped, last)]
        assert futures[2].cancel()
        first_out, second_out, last_out = (futures[n].result(60) for n in (0, 1, 3))
        assert not pool.submit([], context, NOW).result(1)
    assert [o.status for o in first_out] == ["card"] * 40 + ["quarantined"] + ["card"] * 40
    assert first_out[40].reason == "the worker processing it died (SIGSEGV)"
    assert [o.status for o in second_out] == ["card"] * 30 + ["quarantined"] + ["card"] * 30
    assert second_out[30].reason == "processing took longer than 2s (message_timeout)"
    assert [o.status for o in last_out] == ["card"] * 20
    for rows, outcomes in ((first, first_out), (second, second_out), (last, last_out)):
        for row, outcome in zip(rows, outcomes, strict=True):
            if outcome.status == "card":
                assert outcome == evaluate(row.raw, context, now=NOW)


def test_workers_that_cannot_start_fail_the_batch_instead_of_hanging_it() -> None:
    from interestd.workers import WorkerPool

    class Unpicklable(SleepingParser):  # a class defined in a function cannot be sent to a worker
        name: ClassVar[str] = "unpicklable"

    context = PipelineContext(registry=build_registry([Unpicklable(), *discover()]))
    rows = [PendingRaw(0, _letter("ok"), 0, 100)]
    with WorkerPool(context, processes=1, timeout=2) as pool:
        with pytest.raises(Exception, match=r"(?i)pickle"):
            pool(rows, context, NOW)
        with pytest.raises(Exception, match=r"(?i)pickle"):  # and the next one too, at once
            pool.submit(rows, context, NOW).result(5)


def test_the_daemon_survives_the_corpus_from_the_mailbox(tmp_path: Path, dovecot, imap_user) -> None:  # type: ignore[no-untyped-def]
    messages = [make() for make in CORPUS.values()]
    dovecot.append(imap_user, messages)
    daemon = DaemonProcess(
        tmp_path,
        dovecot.mailbox_settings(imap_user, interval="2s") + '[limits]\nworkers = 2\nmessage_timeout = "30s"\n',
    )
    daemon.start()
    try:
        wait_for(
            lambda: daemon.scalar("SELECT count(*) FROM raw_message WHERE status <> 'new'") == len(messages),
            300,
            "every hostile message to get an outcome",
        )
        assert daemon.alive()
        big = daemon.scalar(
            "SELECT count(*) FROM raw_message JOIN raw_body ON raw_body.raw_message_id = raw_message.id "
            "WHERE status = 'quarantined' AND reason LIKE 'too large:%' AND length(raw_body.raw) < 100000"
        )
        assert big == 1  # only the headers were fetched; the server's copy stays
        assert dovecot.count(imap_user) == len(messages)
        assert daemon.stop() == 0
    finally:
        if daemon.alive():
            daemon.kill()
