"""A throwaway PostgreSQL cluster for tests that restart the server or need TLS and passwords.

Made with Debian's initdb/pg_ctl on a free loopback port, run as the postgres user (initdb refuses root),
with TLS on a certificate made on the fly: trust for the superuser, and a password user that may only come
in over TLS.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.dovecot import free_port, make_certificate

APP_USER = "app"
APP_PASSWORD = "app-s3cret/pw"


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def available() -> bool:
    return _bin() is not None and os.geteuid() == 0 and shutil.which("su") is not None


class PrivatePostgres:
    """One cluster in its own directory; `url` is the superuser's, `app_url` the TLS password user's."""

    def __init__(self) -> None:
        bindir = _bin()
        assert bindir is not None
        self.bin = bindir
        self.base = Path(tempfile.mkdtemp(prefix="interestd-pg-"))
        self.base.chmod(0o755)
        shutil.chown(self.base, "postgres", "postgres")
        self.data = self.base / "data"
        self.port = free_port()
        self.cert, key = make_certificate(self.base / "ssl")
        shutil.chown(self.base / "ssl", "postgres")
        for path in (self.cert, key):
            shutil.chown(path, "postgres")
        self.key = key
        self._as_postgres(f"{self.bin}/initdb -D {self.data} -A trust -U postgres -E UTF8 --no-sync")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"hostssl all {APP_USER} 127.0.0.1/32 scram-sha-256\n"
            f"host all {APP_USER} 127.0.0.1/32 reject\n"
            "host all postgres 127.0.0.1/32 trust\n"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"ssl = on\nssl_cert_file = '{self.cert}'\nssl_key_file = '{key}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        self.start()
        self.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
        self.psql(f"CREATE DATABASE interestd OWNER {APP_USER}")
        self.psql("CREATE DATABASE admin_db")

    def _as_postgres(self, command: str) -> None:
        # No pipes: a server started by pg_ctl must not hold this process's output open.
        result = subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        if result.returncode != 0:
            log = self.base / "log"
            raise RuntimeError(f"{command!r} failed: {log.read_text()[-2000:] if log.exists() else ''}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/admin_db"

    def app_url(self, sslmode: str = "verify-full") -> str:
        return (
            f"postgresql+psycopg://{APP_USER}@localhost:{self.port}/interestd?sslmode={sslmode}&sslrootcert={self.cert}"
        )

    def start(self) -> None:
        self._as_postgres(
            f"{self.bin}/pg_ctl -D {self.data} -l {self.base}/log -w -o "
            f'"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1" start'
        )

    def stop(self) -> None:
        self._as_postgres(f"{self.bin}/pg_ctl -D {self.data} -m fast -w stop")

    def psql(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        ) as connection:
            connection.execute(sql)

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        time.sleep(0.1)
        shutil.rmtree(self.base, ignore_errors=True)
