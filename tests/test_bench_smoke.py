"""The bench scripts run (quick mode), so they cannot rot unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_parser_accuracy_prints_a_table_per_variant() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "parser_accuracy.py"), "--variants", "original,inline"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "== original" in result.stdout and "== inline" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    all_rows = [row for row in rows if row and row[0] == "all"]
    assert len(all_rows) == 2 and all(cell.endswith("%") for cell in all_rows[0][2:])
    # every fixture parses as expected in its original form (the fixture tests say so field by field)
    assert all_rows[0][2] == "100.0%"


def test_soak_quick_run_loses_and_duplicates_nothing() -> None:
    from tests.conftest import require_server
    from tests.dovecot import available

    require_server(available(), "Dovecot (Debian package dovecot-imapd)")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--seconds",
            "12",
            "--rate",
            "10",
            "--restart-min",
            "4",
            "--restart-max",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
    assert int(lines["sent"]) > 0 and lines["lost"] == "0" and lines["duplicated"] == "0"
    assert int(lines["cards"]) + int(lines["skipped"]) + int(lines["quarantined"]) == int(lines["sent"])


def test_hostile_bench_prints_every_input() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "hostile.py")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    from tests.hostile import CORPUS

    assert all(name in result.stdout for name in CORPUS)
    assert "CRASHED" not in result.stdout


def test_the_benchmark_harness_runs_every_measurement_in_quick_mode(tmp_path: Path) -> None:
    """bench/run.py in quick mode: every row of the table is measured and written (the figures themselves are
    not judged here: timings belong to the benchmark, not to the tests)."""
    from tests.conftest import PG_URL, require_server
    from tests.dovecot import available

    require_server(available(), "Dovecot (Debian package dovecot-imapd)")
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5):
            reachable = True
    except Exception:
        reachable = False
    require_server(reachable, "PostgreSQL on 127.0.0.1:5432")
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\nHand-written analysis stays.\n\n<!-- results -->\n<!-- /results -->\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--write", str(target)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): line
        for line in result.stdout.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip().isdigit()
    }
    assert sorted(rows) == [str(n) for n in range(1, 10)], result.stdout
    assert "msg/s" in rows["2"] and "x the floor" in rows["2"]
    # What each run cost the machine's cores, so the table shows whether a figure is bound by CPU.
    assert all("machine CPU" in rows[row] for row in ("1", "2", "4")), result.stdout
    assert "x the floor's" in rows["2"]
    assert "x faster" in rows["3"] and "in one run" in rows["3"]
    assert "0 double assignments" in rows["8"]
    written = target.read_text()
    assert "Hand-written analysis stays." in written
    assert written.count("| 9 |") == 1
    assert "Command: `bench/run.py --quick`" in written  # what reproduces it, not where it was written
    assert "ncalls" in written  # the profile of the ingest path


def test_a_folder_filled_with_skips_is_the_same_folder_without_them() -> None:
    """The peer's timed copy leaves out exactly the messages that stopped it in the untimed one, no others."""
    from bench.imap_cases import MailServer
    from bench.run import message_number
    from tests.conftest import require_server
    from tests.dovecot import available

    require_server(available(), "Dovecot (Debian package dovecot-imapd)")
    server = MailServer()
    try:

        def numbers(user: str) -> set[int]:
            cur = server.dovecot.maildir(user) / "cur"
            found = set()
            for path in cur.iterdir():
                head = path.read_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
                message_id = next(line for line in head.splitlines() if line.lower().startswith("message-id:"))
                found.add(message_number(message_id))
            return found

        whole = server.fill(80, leave_out=frozenset({8}))
        skipped = server.fill(80, leave_out=frozenset({8}), skip=frozenset({3, 70, 81}))
        # 70 is of the kind left out (70 % 62 == 8): skipping it changes nothing
        assert whole.count == 80 and skipped.count == 78
        assert numbers(skipped.user) == numbers(whole.user) - {3, 70, 81}
        assert not any(number % 62 == 8 for number in numbers(whole.user))
    finally:
        server.stop()


def _dovecot_name_hash(name: str) -> int:
    """The hash Dovecot's Maildir code keys file names by (the ELF hash of the name up to the ':')."""
    value = 0
    for byte in name.split(":", 1)[0].encode():
        value = ((value << 4) + byte) & 0xFFFFFFFF
        high = value & 0xF0000000
        if high:
            value ^= high >> 24
            value ^= high
    return value


def test_benchmark_maildir_names_carry_their_sizes_and_spread_over_dovecots_hash() -> None:
    """Names alike at the end collide in Dovecot's hash table, which made each SELECT of the 10,000-message
    folder cost 0.4 s; names as Dovecot's delivery writes them end in the message's sizes."""
    from bench.mailbox import generate, maildir_name

    assert maildir_name(5, b"a\r\nb\nc") == "1700000005.M5P1.bench,S=6,W=7:2,S"  # one LF to widen
    names = [maildir_name(number, raw) for number, raw in enumerate(generate(10_000))]
    assert len(set(names)) == 10_000
    alike = [f"{1700000000 + number}.M{number}P1.bench:2,S" for number in range(10_000)]
    assert len({_dovecot_name_hash(name) for name in alike}) < 1_100  # what the old names gave
    assert len({_dovecot_name_hash(name) for name in names}) > 3_000


def test_machine_cpu_counts_at_least_this_process_spinning() -> None:
    """busy_cpu_seconds() is the machine's busy CPU: this process's own CPU is part of it (to the kernel's tick)."""
    import time

    from bench.measure import busy_cpu_seconds

    before, own = busy_cpu_seconds(), time.process_time()
    while time.process_time() - own < 0.3:
        pass
    spent = time.process_time() - own
    assert busy_cpu_seconds() - before >= spent - 0.05
