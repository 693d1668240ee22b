"""Soak: the daemon runs while mail arrives continuously and the IMAP server is restarted at random.

    .venv/bin/python bench/soak.py [--seconds 300] [--rate 20] [--seed 1]

At the end it prints the messages sent, what became of them (cards, skipped, quarantined), and how many were
lost or duplicated (both must be 0). Everything runs on this machine: a private Dovecot on loopback, SQLite.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="interestd soak test")
    parser.add_argument("--seconds", type=float, default=300.0, help="how long mail keeps arriving (default 300)")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second appended (default 20)")
    parser.add_argument("--restart-min", type=float, default=15.0, help="least seconds between Dovecot restarts")
    parser.add_argument("--restart-max", type=float, default=45.0, help="most seconds between Dovecot restarts")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from tests.dovecot import PASSWORD, Dovecot, available
    from tests.hostile import nul_bytes_and_surrogates
    from tests.mailgen import letter

    if not available():
        print("soak: Dovecot is not installed (apt-get install dovecot-imapd)", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="interestd-soak-"))
    server = Dovecot()
    server.start()
    user = server.add_user()
    config = work / "config.toml"
    config.write_text(
        server.mailbox_settings(user, interval="2s", timeout="5s")
        + f'[database]\nurl = "sqlite:///{work / "soak.db"}"\n'
    )
    config.chmod(0o600)
    env = {**os.environ, "TEST_IMAP_PASSWORD": PASSWORD, "HOME": str(work)}
    log = (work / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "interestd", "--config", str(config), "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    sent: list[str] = []
    restarts = 0
    stop = threading.Event()
    lock = threading.Lock()

    def generate() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            raw = letter(number, size=rng.choice([0, 2000, 8000, 30000]))
            if number % 97 == 0:  # now and then something broken
                raw = nul_bytes_and_surrogates().replace(b"hostile-nul", f"soak-broken-{number}".encode())
            message_id = f"<letter-{number}@example.ru>" if number % 97 else f"<soak-broken-{number}@example.ru>"
            for _attempt in range(100):
                try:
                    with lock:
                        server.append(user, [raw])
                    sent.append(message_id)
                    break
                except Exception:
                    time.sleep(0.2)  # the server is restarting
            time.sleep(1.0 / args.rate)

    def restart() -> None:
        nonlocal restarts
        while not stop.wait(rng.uniform(args.restart_min, args.restart_max)):
            with lock:
                server.stop()
                time.sleep(rng.uniform(0.5, 3.0))
                server.start()
            restarts += 1

    threads = [threading.Thread(target=generate), threading.Thread(target=restart)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join(60)

    def stored() -> set[str]:
        try:
            connection = sqlite3.connect(work / "soak.db", timeout=30)
            try:
                return {row[0] for row in connection.execute("SELECT message_id FROM raw_message")}
            finally:
                connection.close()
        except sqlite3.OperationalError:
            return set()

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not set(sent) <= stored():
        time.sleep(1)
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(30)
    connection = sqlite3.connect(work / "soak.db")
    rows = connection.execute("SELECT status, count(*) FROM raw_message GROUP BY status").fetchall()
    total_rows = connection.execute("SELECT count(*) FROM raw_message").fetchone()[0]
    distinct = connection.execute("SELECT count(DISTINCT message_id) FROM raw_message").fetchone()[0]
    uids = connection.execute(
        "SELECT count(*) - count(DISTINCT uidvalidity || ':' || uid) FROM raw_message"
    ).fetchone()[0]
    cards_twice = connection.execute(
        "SELECT count(*) FROM (SELECT raw_message_id FROM card GROUP BY raw_message_id HAVING count(*) > 1)"
    ).fetchone()[0]
    connection.close()
    server.remove()
    counts = dict(rows)
    lost = len(set(sent) - stored())
    duplicated = (total_rows - distinct) + uids + cards_twice
    print(f"soak: {time.monotonic() - started:.0f} s, {restarts} Dovecot restarts, daemon exit code {code}")
    print(f"sent        {len(sent)}")
    print(f"cards       {counts.get('card', 0)}")
    print(f"skipped     {counts.get('skipped', 0)}")
    print(f"quarantined {counts.get('quarantined', 0)}")
    print(f"waiting     {counts.get('new', 0)}")
    print(f"lost        {lost}")
    print(f"duplicated  {duplicated}")
    return 0 if lost == 0 and duplicated == 0 and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
