"""Time and peak memory of evaluating each hostile input, each in a fresh process (for the closing figures).

    .venv/bin/python bench/hostile.py
Prints, per input: the outcome, seconds, and the process's peak RSS minus that of an idle evaluating process.
The 40 MB attachment is measured as the pipeline meets it: above max_message_bytes only its head is read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROBE = r"""
import json, resource, sys, time
from datetime import UTC, datetime
from interestd.evaluation import PipelineContext, evaluate
from interestd.registry import load_registry
from interestd.sources.files import iter_messages
from pathlib import Path
context = PipelineContext(registry=load_registry())
evaluate(b"From: a@b.ru\r\nSubject: warm\r\n\r\nwarm up\r\n", context, now=datetime.now(UTC))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
[message] = list(iter_messages([Path(sys.argv[1])], max_bytes=25 * 1024 * 1024))
if message.truncated:
    status, reason = "quarantined", "too large (only the head was read)"
else:
    outcome = evaluate(message.data, context, now=datetime.now(UTC))
    status, reason = outcome.status, outcome.reason
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": status, "reason": reason, "seconds": seconds, "rss_kb": after - before,
                  "bytes": message.size}))
"""


def main() -> int:
    from tests.hostile import CORPUS

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, make in CORPUS.items():
            path = Path(folder) / "m.eml"
            path.write_bytes(make())
            result = subprocess.run(
                [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=600
            )
            if result.returncode != 0:
                rows.append((name, "CRASHED", "", "", "", result.stderr.strip().splitlines()[-1][:60]))
                continue
            data = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append(
                (
                    name,
                    f"{data['bytes'] / 1024:,.0f} KB",
                    data["status"],
                    f"{data['seconds']:.3f}",
                    f"{data['rss_kb'] / 1024:.1f}",
                    (data["reason"] or "")[:60],
                )
            )
    header = ("input", "size", "outcome", "seconds", "peak RSS +MB", "reason")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(
        f"{len(rows)} inputs; worst time {max(float(r[3] or 0) for r in rows):.3f}s, "
        f"worst extra memory {max(float(r[4] or 0) for r in rows):.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
