"""The systemd unit: what the issue asks of it is there, and systemd-analyze verify accepts it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from interestd import sdnotify
from tests.conftest import require_server

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "interestd.service"


def _directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_runs_the_daemon_as_a_hardened_notify_service() -> None:
    unit = _directives()
    assert unit["Type"] == ["notify"] and unit["Restart"] == ["on-failure"]
    assert unit["ExecStart"][0].endswith(" run") and "WatchdogSec" in unit
    assert unit["User"] == ["interestd"] and unit["StateDirectory"] == ["interestd"]
    assert {c.split(":")[0] for c in unit["LoadCredential"]} == {"imap-password", "smtp-password"}
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }.items():
        assert unit[key] == [value], key


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    require_server(shutil.which("systemd-analyze") is not None, "systemd-analyze (Debian package systemd)")
    # verify checks that ExecStart exists: point it at a binary this machine has.
    unit = tmp_path / "interestd.service"
    unit.write_text(UNIT.read_text().replace("/opt/interestd/bin/interestd", shutil.which("true") or "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_sd_notify_speaks_the_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert sdnotify.notify("READY=1\nSTATUS=started")
    assert server.recv(100) == b"READY=1\nSTATUS=started"
    server.close()
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    assert sdnotify.watchdog_interval() == 60
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sdnotify.notify("READY=1")
