"""The peer: django-helpdesk's `get_email` importing the same messages from its own IMAP folder.

It lives in a virtualenv of its own (made once, kept in the user's cache directory), with a minimal Django
project on SQLite and one queue pointing at the benchmark's Dovecot. get_email deletes what it imports, so
it gets its own copy of the messages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HELPDESK = "django-helpdesk==2.6.1"
DJANGO = "Django==5.2.*"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "interestd-bench"


def ensure_venv() -> Path:
    """The peer's Python, installing it on first use (about a minute, from the package index)."""
    venv = cache_dir() / "helpdesk-venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists() and marker.read_text() == HELPDESK:
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", HELPDESK, DJANGO],
        check=True,
    )
    marker.write_text(HELPDESK)
    return python


_SETTINGS = """
from dataclasses import dataclass
from pathlib import Path
from typing import Any
BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
    "django.contrib.messages", "django.contrib.staticfiles", "django.contrib.sites", "django.contrib.humanize",
    "rest_framework", "helpdesk",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "benchsite.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / "helpdesk.db")}}
SITE_ID = 1
USE_TZ = True
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
HELPDESK_TEAMS_MODE_ENABLED = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request", "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
STATIC_URL = "/static/"
LOGGING = {"version": 1, "disable_existing_loggers": True}
"""

_MANAGE = """
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""

_QUEUE = """
from helpdesk.models import Queue
Queue.objects.create(
    title="Interest", slug="interest", email_address="zayavki@example.ru", allow_email_submission=True,
    email_box_type="imap", email_box_host="127.0.0.1", email_box_port={port}, email_box_ssl=False,
    email_box_user="{user}", email_box_pass="{password}", email_box_imap_folder="INBOX", email_box_interval=0,
)
"""


def make_site(python: Path, work: Path, *, port: int, user: str, password: str) -> Path:
    """A Django project with helpdesk's tables and one IMAP queue; returns its manage.py."""
    site = work / "helpdesk-site"
    shutil.rmtree(site, ignore_errors=True)
    package = site / "benchsite"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(_SETTINGS)
    (package / "urls.py").write_text(
        "from django.urls import include, path\n"
        'urlpatterns = [path("helpdesk/", include("helpdesk.urls", namespace="helpdesk"))]\n'
    )
    manage = site / "manage.py"
    manage.write_text(_MANAGE)
    subprocess.run([str(python), str(manage), "migrate", "--noinput", "-v", "0"], check=True, cwd=site)
    script = _QUEUE.format(port=port, user=user, password=password)
    subprocess.run([str(python), str(manage), "shell", "-c", script], check=True, cwd=site, capture_output=True)
    return manage


def tickets(python: Path, manage: Path) -> int:
    result = subprocess.run(
        [str(python), str(manage), "shell", "-c", "from helpdesk.models import Ticket; print(Ticket.objects.count())"],
        check=True,
        capture_output=True,
        text=True,
        cwd=manage.parent,
    )
    return int(result.stdout.strip().splitlines()[-1])  # Django 5.2 may print an "objects imported" line first


def get_email(python: Path, manage: Path) -> tuple[float, bool]:
    """(seconds, finished) of one `manage.py get_email` run: it imports every message of the queue's folder in
    UID order, unless one makes it stop with an exception."""
    started = time.perf_counter()
    result = subprocess.run(
        [str(python), str(manage), "get_email", "--quiet"], cwd=manage.parent, capture_output=True, text=True
    )
    # It logs the exception and still exits 0: the traceback tells.
    return time.perf_counter() - started, result.returncode == 0 and "Traceback" not in result.stderr


@dataclass
class PeerRun:
    seconds: float  # all get_email runs together
    runs: int
    stopped_by: list[str]  # Message-IDs of the messages it stopped on (removed so the next run could go on)


def import_folder(python: Path, manage: Path, dovecot: Any, user: str) -> PeerRun:
    """Run get_email until the folder is empty; a message it stops on is removed and noted."""
    seconds, runs, stopped_by = 0.0, 0, []
    while True:
        took, finished = get_email(python, manage)
        seconds += took
        runs += 1
        if finished:
            return PeerRun(seconds, runs, stopped_by)
        # Those imported before the failure are flagged \\Deleted: the first message left is the one.
        client = dovecot.client(user)
        try:
            client.select("INBOX")
            _, data = client.uid("SEARCH", None, "NOT DELETED")
            remaining = sorted(int(uid) for uid in (data[0] or b"").split())
            if not remaining:
                return PeerRun(seconds, runs, stopped_by)
            _, header = client.uid("FETCH", str(remaining[0]), "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            stopped_by.append(header[0][1].decode(errors="replace").split(":", 1)[-1].strip())
            client.uid("STORE", str(remaining[0]), "+FLAGS.SILENT", "(\\Deleted)")
            client.expunge()
        finally:
            client.logout()
