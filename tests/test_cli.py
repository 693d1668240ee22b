"""CLI wiring: commands call the services, print tables or JSON, and map errors to one line and an exit code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from interestd.cli import main
from interestd.db import SCHEMA_REVISION
from tests.conftest import write_config

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    else:
        code = 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def filled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = tmp_path / "mail"
    shutil.copytree(FIXTURES / "parsers" / "email", folder)
    for case in (FIXTURES / "mail").glob("*.eml"):
        shutil.copy(case, folder)
    code, out, _ = run(capsys, "ingest", str(folder))
    assert code == 0
    assert out.strip() == "10 messages read: 5 new cards, 0 duplicates, 4 skipped, 1 quarantined"
    return folder


def test_ingest_twice_reports_duplicates(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ingest", "--json", str(filled))
    assert code == 0
    assert json.loads(out) == {
        "read": 10,
        "duplicates": 10,
        "cards": 0,
        "skipped": 0,
        "quarantined": 0,
        "proofs": 0,
        "errors": [],
    }


def test_feed_lists_cards_unprocessed_and_newest_first(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "feed")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == [
        "ref",
        "date",
        "source",
        "author",
        "action",
        "text",
        "product",
        "responsible",
        "done",
        "reply",
    ]
    assert len(lines) == 6 and "Елена Воронцова" in lines[1] and "Марина К." in lines[-1]
    code, out, _ = run(capsys, "feed", "--json", "--limit", "2")
    cards = json.loads(out)
    assert [card["author_name"] for card in cards] == ["Елена Воронцова", "Павел Игнатьев"]


def test_show_prints_the_card_and_its_history(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "feed", "--json")
    ref = next(card["ref"] for card in json.loads(out) if card["author_name"] == "Сергей Дронов")
    code, out, _ = run(capsys, "show", ref)
    assert code == 0
    assert out.startswith(f"{ref}  email request")
    assert "reply:       mailto:s.dronov@gmail.com?subject=Re%3A" in out
    assert "фасады на матовые" in out and "history:" in out and "created by pipeline" in out
    code, out, _ = run(capsys, "show", ref.lower(), "--json")
    shown = json.loads(out)
    assert shown["ref"] == ref and shown["history"][0]["kind"] == "created"


def test_unknown_card_is_one_line_and_exit_6(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "show", "INT-999")[0:3:2] == (6, "interestd: error: no card INT-999\n")
    assert run(capsys, "show", "banana")[0:3:2] == (
        2,
        "interestd: error: not a card reference: 'banana' (expected INT-<number>)\n",
    )


def test_mail_list_and_show_explain_what_did_not_become_a_card(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "mail", "list", "--json")
    rows = json.loads(out)
    assert {row["status"] for row in rows} == {"skipped", "quarantined"} and len(rows) == 5
    quarantined = next(row for row in rows if row["status"] == "quarantined")
    assert quarantined["reason"] == "email: no sender address and no readable text: nothing to answer"
    code, out, _ = run(capsys, "mail", "show", str(quarantined["id"]))
    assert code == 0 and "status:         quarantined" in out
    code, out, _ = run(capsys, "mail", "show", "999")
    assert code == 6


def test_export_and_reparse_commands(filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "cards.jsonl"
    code, _, err = run(capsys, "export", "--format", "jsonl", "--output", str(target))
    assert code == 0 and err.strip() == f"5 cards written to {target}"
    assert len(target.read_text().splitlines()) == 5
    assert run(capsys, "export", "--format", "xml")[0] == 2
    code, out, _ = run(capsys, "reparse")
    assert code == 0 and out.strip() == "1 messages reparsed: 0 cards, 0 skipped, 1 quarantined"


def test_db_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and out.strip() == f"database schema upgraded: empty -> {SCHEMA_REVISION}"
    code, out, _ = run(capsys, "db", "upgrade")
    assert out.strip() == f"database schema is up to date ({SCHEMA_REVISION})"
    code, out, _ = run(capsys, "db", "current")
    assert code == 0 and f"schema:   {SCHEMA_REVISION}" in out


def test_help_and_python_dash_m(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "interestd", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("ingest", "feed", "show", "export", "reparse", "mail", "check-config", "db"):
        assert command in result.stdout


def _command(tmp_path: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    # The environment is already clean of INTERESTD_* variables (conftest's isolated_environment).
    config = tmp_path / "config.toml"
    if not config.exists():
        write_config(config, f'[database]\nurl = "sqlite:///{tmp_path / "cards.db"}"\n')
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "interestd", "--config", str(config), *args], text=True, **kwargs
    )


def test_the_command_closes_its_database_and_keeps_its_exit_code(tmp_path: Path) -> None:
    # The process ends without the interpreter's teardown: the database must be closed by then (SQLite then
    # folds its write-ahead log into the file and removes it), the output flushed, the exit code kept.
    ingest = _command(tmp_path, "ingest", str(FIXTURES / "parsers" / "email"), capture_output=True)
    assert ingest.returncode == 0, ingest.stderr
    assert ingest.stdout.strip().endswith("0 quarantined")
    feed = _command(tmp_path, "feed", "--json", capture_output=True)
    assert feed.returncode == 0 and len(json.loads(feed.stdout)) >= 1
    assert sorted(path.name for path in tmp_path.glob("cards.db*")) == ["cards.db"]
    missing = _command(tmp_path, "show", "INT-999999", capture_output=True)
    assert (missing.returncode, missing.stdout, missing.stderr) == (6, "", "interestd: error: no card INT-999999\n")


def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path) -> None:
    assert _command(tmp_path, "ingest", str(FIXTURES / "parsers" / "email"), capture_output=True).returncode == 0
    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    feed = _command(tmp_path, "feed", stdout=reader.stdin, stderr=subprocess.PIPE)
    assert reader.stdin is not None
    reader.stdin.close()
    reader.wait()
    assert feed.returncode == 0 and "Traceback" not in feed.stderr


def test_the_process_ends_only_after_its_threads_and_exit_handlers(tmp_path: Path) -> None:
    # entry() skips the interpreter's teardown, not what comes before it: threads still running are waited
    # for and exit handlers run, as at any interpreter exit; the exit code is kept.
    script = (
        "import atexit, sys, threading, time\n"
        "import interestd.cli as cli\n"
        "def late(): time.sleep(0.3); open(sys.argv[1], 'a').write('thread ')\n"
        "def fake_main():\n"
        "    threading.Thread(target=late).start()\n"
        "    atexit.register(lambda: open(sys.argv[1], 'a').write('handler'))\n"
        "    sys.exit(3)\n"
        "cli.main = fake_main\n"
        "cli.entry()\n"
    )
    written = tmp_path / "written"
    result = subprocess.run([sys.executable, "-c", script, str(written)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (3, "")
    assert written.read_text() == "thread handler"


@pytest.mark.parametrize(("workers", "expected"), [(2, ["fork server", "poll"]), (0, ["poll"])])
def test_poll_starts_the_workers_fork_server_before_it_loads_the_rest(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
    expected: list[str],
) -> None:
    """How much mail is new is known only once the database code is loaded: the fork server's imports run
    meanwhile on the other core, unless the configuration evaluates in the process itself."""
    calls: list[str] = []

    def poll_once(*args: object, **kwargs: object) -> list[object]:
        calls.append("poll")
        return []

    monkeypatch.setattr("interestd.forking.start_fork_server", lambda: calls.append("fork server"))
    monkeypatch.setattr("interestd.services.poll_once", poll_once)
    config = write_config(
        tmp_path / "config.toml",
        f'[database]\nurl = "sqlite:///{tmp_path / "cards.db"}"\n[limits]\nworkers = {workers}\n',
    )
    code, _, err = run(capsys, "--config", str(config), "poll", "--once")
    assert code == 0, err
    assert calls == expected
