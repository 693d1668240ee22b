"""A real Dovecot IMAP server for tests: loopback ports, passwd-file users, a temporary Maildir, IMAPS on a
self-signed certificate made on the fly. Starts in well under a second; stopped (and restartable) by the tests.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
PASSWORD = "interestd-pass"
USER_POOL = 400


def available() -> bool:
    return os.path.exists(DOVECOT) and os.path.exists(DOVEADM) and shutil.which("openssl") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed EC certificate for localhost / 127.0.0.1 (its own CA)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "3650",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    return cert, key


class Dovecot:
    """One Dovecot instance under `base`."""

    def __init__(self, root: Path | None = None) -> None:
        # Dovecot's own processes (users dovecot, dovenull, nobody) walk this path: it cannot live under
        # pytest's private (0700) temporary directories. Benchmarks put it on /dev/shm.
        self.base = base = Path(tempfile.mkdtemp(prefix="interestd-dovecot-", dir=root))
        base.chmod(0o755)
        self.run_dir = base / "run"
        self.conf = base / "dovecot.conf"
        self.passwd = base / "passwd"
        self.home = base / "home"
        self.log = base / "dovecot.log"
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.cert, self.key = make_certificate(base / "ssl")
        self.other_ca, _ = make_certificate(base / "ssl", "other")
        self.users: set[str] = set()
        for folder in (self.run_dir, base / "state", self.home):
            folder.mkdir(parents=True, exist_ok=True)
        # Users are written once, before the start: Dovecot's auth process may not re-read the file in time.
        self.passwd.write_text(
            "".join(f"user{n:04d}:{{PLAIN}}{PASSWORD}::::::\n" for n in range(USER_POOL))
            + f"wrongpass:{{PLAIN}}not-{PASSWORD}::::::\n"
        )
        self._write_config()

    def _write_config(self) -> None:
        if os.geteuid() == 0:
            # Dovecot refuses to access mail as root: the mail belongs to nobody, the service users are the
            # package's own.
            users = "default_internal_user = dovecot\ndefault_login_user = dovenull\n"
            userdb = f"uid=65534 gid=65534 home={self.home}/%u"
            shutil.chown(self.home, user=65534, group=65534)
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            users = f"default_internal_user = {me}\ndefault_login_user = {me}\n"
            userdb = f"uid={os.getuid()} gid={os.getgid()} home={self.home}/%u"
        self.conf.write_text(f"""
instance_name = interestd-test-{self.imap_port}
base_dir = {self.run_dir}
state_dir = {self.base / "state"}
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
{users}first_valid_uid = 1
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd}
}}
userdb {{
  driver = static
  args = {userdb}
}}
mail_location = maildir:~/Maildir
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
""")

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        # The master daemonizes and keeps its inherited descriptors: no pipes, or run() would wait for it.
        subprocess.run(
            [DOVECOT, "-c", str(self.conf)],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.imap_port), timeout=1):
                return
            time.sleep(0.05)
        raise RuntimeError(f"dovecot did not start: {self.log.read_text() if self.log.exists() else ''}")

    def remove(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def stop(self) -> None:
        pid_file = self.run_dir / "master.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.imap_port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.05)

    # --- users and mail -------------------------------------------------------------------------------------

    def add_user(self) -> str:
        """A user nobody has used yet (each has an empty mailbox of its own)."""
        name = f"user{len(self.users):04d}"
        if len(self.users) >= USER_POOL:
            raise RuntimeError("the test Dovecot's user pool is exhausted")
        self.users.add(name)
        return name

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        """The user's Maildir folder on disk (to fill it directly before the user's first login: fast for
        benchmarks; hand the files to the mail user with own_mail() afterwards)."""
        root = self.home / user / "Maildir"
        return root if folder == "INBOX" else root / f".{folder}"

    def own_mail(self, user: str) -> None:
        if os.geteuid() == 0:
            for path in [self.home / user, *(self.home / user).rglob("*")]:
                os.chown(path, 65534, 65534)

    def client(self, user: str) -> imaplib.IMAP4:
        connection = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=30)
        connection.login(user, PASSWORD)
        return connection

    def append(self, user: str, messages: list[bytes], folder: str = "INBOX", flags: str = "") -> list[int]:
        """APPEND messages; returns their UIDs (from APPENDUID)."""
        uids = []
        connection = self.client(user)
        try:
            if folder != "INBOX":
                connection.create(f'"{folder}"')
            for raw in messages:
                status, data = connection.append(f'"{folder}"', flags or None, None, raw)
                assert status == "OK", data
                text = data[0].decode() if data and data[0] else ""
                if "APPENDUID" in text:
                    uids.append(int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]")))
        finally:
            connection.logout()
        return uids

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, str]:
        connection = self.client(user)
        try:
            connection.select(f'"{folder}"', readonly=True)
            _, data = connection.uid("FETCH", "1:*", "(UID FLAGS)")
            found = {}
            for item in data or []:
                if isinstance(item, bytes) and b"UID" in item:
                    text = item.decode()
                    uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
                    found[uid] = text.split("FLAGS (", 1)[1].split(")", 1)[0]
            return found
        finally:
            connection.logout()

    def count(self, user: str, folder: str = "INBOX") -> int:
        connection = self.client(user)
        try:
            status, data = connection.select(f'"{folder}"', readonly=True)
            return int(data[0]) if status == "OK" else -1
        finally:
            connection.logout()

    def doveadm(self, *args: str) -> str:
        result = subprocess.run([DOVEADM, "-c", str(self.conf), *args], check=True, capture_output=True, text=True)
        return result.stdout

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        out = self.doveadm("mailbox", "status", "-u", user, "uidvalidity", folder)
        return int(out.split("=", 1)[1])

    def set_uidvalidity(self, user: str, value: int, folder: str = "INBOX") -> None:
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(value), folder)

    def mailbox_settings(self, user: str, **overrides: object) -> str:
        """The [imap] table of a config for this user (plain IMAP on loopback unless overridden)."""
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.imap_port,
            "security": "none",
            "user": user,
            "password_env": "TEST_IMAP_PASSWORD",
            "since": "all",
            "interval": "2s",
            "timeout": "10s",
        }
        values.update(overrides)
        lines = ["[imap]"]
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int):
                lines.append(f"{key} = {value}")
            elif isinstance(value, list):
                lines.append(f"{key} = [{', '.join(repr(str(v)).replace(chr(39), chr(34)) for v in value)}]")
            else:
                lines.append(f'{key} = "{value}"')
        return "\n".join(lines) + "\n"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))
