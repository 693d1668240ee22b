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
