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
