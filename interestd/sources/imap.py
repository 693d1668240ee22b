"""The only code that speaks IMAP: connect, read new UIDs, fetch raw bytes with BODY.PEEK[], apply post-actions.

Connections come from imap-tools; raw fetches go through its imaplib client, because imap-tools parses every
message it fetches and we want the exact bytes, parsed once, by our own pipeline.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import socket
import ssl
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import MailboxLoginError

from interestd.config import MailboxSettings
from interestd.errors import MailboxError

log = logging.getLogger(__name__)

_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_HEADER_FETCH_CHUNK = 500

# The folder each connection has open (SELECT or EXAMINE) and how. A poll on a connection that still has its
# folder open goes on without opening it again: each SELECT makes the server read the folder anew at the
# first message it opens (Dovecot here: about 0.8 s of CPU on a 10,000-message Maildir).
_OPEN_FOLDERS: weakref.WeakKeyDictionary[Any, tuple[str, bool]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """What SELECT told us about a folder."""

    name: str
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True, slots=True)
class Fetched:
    """One message fetched from the server: its UID, its bytes (only the header when too large), its real size."""

    uid: int
    data: bytes
    size: int
    truncated: bool = False


def connect(settings: MailboxSettings, password: str | None) -> Any:
    """A logged-in imap-tools mailbox; every failure becomes a one-line MailboxError."""
    host, port = settings.host, settings.effective_port
    timeout = settings.timeout.total_seconds()
    where = f"{settings.user}@{host}:{port}"
    try:
        if settings.security == "ssl":
            mailbox: Any = MailBox(host, port, timeout=timeout, ssl_context=_ssl_context(settings))
        elif settings.security == "starttls":
            mailbox = MailBoxStartTls(host, port, timeout=timeout, ssl_context=_ssl_context(settings))
        else:
            mailbox = MailBoxUnencrypted(host, port, timeout=timeout)
    except Exception as exc:
        raise MailboxError(f"{settings.name}: cannot connect to {host}:{port}: {describe(exc)}") from None
    try:
        mailbox.login(settings.user, password or "", initial_folder=None)
        # imaplib keeps the pre-login CAPABILITY list; servers advertise MOVE, UIDPLUS, IDLE only after login.
        mailbox.client._get_capabilities()
    except MailboxLoginError as exc:
        _close(mailbox)
        raise MailboxError(f"{settings.name}: login failed for {where}: {_server_text(exc)}") from None
    except Exception as exc:
        _close(mailbox)
        raise MailboxError(f"{settings.name}: login to {where} failed: {describe(exc)}") from None
    return mailbox


class SessionsAhead:
    """IMAP sessions opened in a thread while a command is still starting: logged in, the first folder open
    (as the poll will open it) and read ahead (see read_ahead).

    A poll takes its mailbox's session with `take`, which waits for the thread if need be and raises the
    MailboxError that kept it from logging in: the poll reports that, and does not try a second time (with a
    wrong password that would be two failed logins per poll, and servers delay or ban after a few).
    """

    def __init__(self, mailboxes: Sequence[tuple[MailboxSettings, str | None]]) -> None:
        self._sessions: dict[str, Any] = {}
        self._failures: dict[str, MailboxError] = {}
        # One thread per mailbox: a slow server keeps only its own mailbox's poll waiting.
        self._threads = {
            settings.name: threading.Thread(
                target=self._open, args=(settings, password), name="interestd-imap-ahead", daemon=True
            )
            for settings, password in mailboxes
        }
        for thread in self._threads.values():
            thread.start()

    def _open(self, settings: MailboxSettings, password: str | None) -> None:
        try:
            mailbox = connect(settings, password)
        except MailboxError as exc:
            self._failures[settings.name] = exc
            return
        except Exception:
            return  # the poll connects itself and says what is wrong
        try:
            if settings.folders:
                status = select(mailbox, settings.folders[0], readonly=settings.post_action == "none")
                read_ahead(mailbox, status)
        except MailboxError:
            pass  # the folder cannot be opened: the poll finds that out itself
        except Exception:
            close(mailbox)
            return
        self._sessions[settings.name] = mailbox

    def take(self, settings: MailboxSettings) -> Any | None:
        """The session opened for the mailbox (None when there is none); raises why it could not log in."""
        thread = self._threads.get(settings.name)
        if thread is not None:
            thread.join()
        failure = self._failures.pop(settings.name, None)
        if failure is not None:
            raise failure
        return self._sessions.pop(settings.name, None)

    def close_all(self) -> None:
        for thread in self._threads.values():
            thread.join()
        for mailbox in self._sessions.values():
            close(mailbox)
        self._sessions.clear()
        self._failures.clear()


def _ssl_context(settings: MailboxSettings) -> ssl.SSLContext:
    if not settings.verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise MailboxError(f"{settings.name}: cannot load CA file {settings.ca_file}: {describe(exc)}") from None


def describe(exc: BaseException) -> str:
    """One line saying what went wrong on the network, in words an admin understands."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message or exc.reason})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc})"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "connection reset by the server"
    if isinstance(exc, imaplib.IMAP4.abort):
        return f"connection lost ({_first_line(exc)})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _server_text(exc: MailboxLoginError) -> str:
    text = getattr(exc, "command_result", None)
    if isinstance(text, tuple) and len(text) > 1 and text[1]:
        value = text[1][0] if isinstance(text[1], list) else text[1]
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace").strip()
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _close(mailbox: Any) -> None:
    try:
        mailbox.logout()
    except Exception:
        with contextlib.suppress(Exception):
            mailbox.client.shutdown()


def close(mailbox: Any) -> None:
    """Log out, ignoring a connection that is already gone."""
    _close(mailbox)


def still_usable(mailbox: Any) -> bool:
    """A NOOP on a connection kept from an earlier poll: True when it answers. It also makes the server look at
    the selected folder again, so that what follows sees mail that came in since."""
    try:
        status, _ = mailbox.client.noop()
    except Exception:
        return False
    return status == "OK"


def select(mailbox: Any, folder: str, *, readonly: bool) -> FolderStatus:
    """SELECT (or EXAMINE) a folder and read its UIDVALIDITY, UIDNEXT and message count."""
    client = mailbox.client
    _OPEN_FOLDERS.pop(mailbox, None)
    status, data = client.select(_quote(folder), readonly=readonly)
    if status != "OK":
        raise MailboxError(f"cannot open folder {folder!r}: {_decode(data)}")
    uidvalidity = _untagged_int(client, "UIDVALIDITY")
    if uidvalidity is None:
        raise MailboxError(f"the server gave no UIDVALIDITY for folder {folder!r}")
    exists = int(data[0]) if data and data[0] and data[0].isdigit() else 0
    _OPEN_FOLDERS[mailbox] = (folder, readonly)
    return FolderStatus(folder, uidvalidity, _untagged_int(client, "UIDNEXT"), exists)


def open_folder(mailbox: Any) -> tuple[str, bool] | None:
    """(folder, read-only) that the connection has open, or None."""
    return _OPEN_FOLDERS.get(mailbox)


def read_ahead(mailbox: Any, status: FolderStatus) -> None:
    """Have the server open the newest message of the folder just selected (its header only): on a large
    Maildir, Dovecot's first message access after a SELECT is when it reads the folder, and done now it runs
    while the command is still starting."""
    if status.exists:
        mailbox.client.fetch(str(status.exists), "(BODY.PEEK[HEADER])")


_STATUS_ITEM = re.compile(rb"(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)")


def folder_status(mailbox: Any, folder: str) -> FolderStatus | None:
    """UIDVALIDITY, UIDNEXT and message count by STATUS, without opening the folder: its cost does not grow with
    the folder, unlike SELECT's. None when the server does not answer it fully (then SELECT tells)."""
    status, data = mailbox.client.status(_quote(folder), "(UIDVALIDITY UIDNEXT MESSAGES)")
    if status != "OK":
        return None
    values: dict[bytes, int] = {}
    for item in data or []:
        if isinstance(item, bytes):
            values.update((name, int(number)) for name, number in _STATUS_ITEM.findall(item))
    if b"UIDVALIDITY" not in values or b"UIDNEXT" not in values:
        return None
    return FolderStatus(folder, values[b"UIDVALIDITY"], values[b"UIDNEXT"], values.get(b"MESSAGES", 0))


def _untagged_int(client: Any, name: str) -> int | None:
    _, values = client.response(name)
    for value in reversed(values or []):
        if value and value.strip().isdigit():
            return int(value)
    return None


def uids_after(mailbox: Any, last_uid: int) -> list[int]:
    """UIDs above `last_uid`, ascending (the server answers `n:*` with the last UID even when n is beyond it)."""
    status, data = mailbox.client.uid("SEARCH", None, f"UID {last_uid + 1}:*")
    _check(status, data, "UID SEARCH")
    return sorted(uid for uid in _ints(data) if uid > last_uid)


def uids_since(mailbox: Any, day: date) -> list[int]:
    """UIDs of messages with an internal date on or after `day`."""
    status, data = mailbox.client.uid("SEARCH", None, f"SINCE {day.strftime('%d-%b-%Y')}")
    _check(status, data, "UID SEARCH SINCE")
    return sorted(_ints(data))


def all_uids(mailbox: Any) -> list[int]:
    status, data = mailbox.client.uid("SEARCH", None, "ALL")
    _check(status, data, "UID SEARCH ALL")
    return sorted(_ints(data))


def message_ids(mailbox: Any, uids: Sequence[int]) -> dict[int, str | None]:
    """The Message-ID header of each UID (to skip known messages without fetching them whole)."""
    from interestd.message import quick_message_id

    found: dict[int, str | None] = {}
    for start in range(0, len(uids), _HEADER_FETCH_CHUNK):
        chunk = uids[start : start + _HEADER_FETCH_CHUNK]
        status, data = mailbox.client.uid("FETCH", _uid_set(chunk), "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        _check(status, data, "UID FETCH headers")
        for envelope, payload in _pairs(data):
            uid = _FETCH_UID.search(envelope)
            if uid:
                found[int(uid.group(1))] = quick_message_id(payload + b"\r\n\r\n")
    return found


def message_sizes(mailbox: Any, uids: Sequence[int]) -> dict[int, int]:
    """RFC822.SIZE of each UID; a UID expunged meanwhile simply is not there."""
    if not uids:
        return {}
    status, data = mailbox.client.uid("FETCH", _uid_set(uids), "(UID RFC822.SIZE)")
    _check(status, data, "UID FETCH sizes")
    sizes: dict[int, int] = {}
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if isinstance(line, bytes):
            uid, size = _FETCH_UID.search(line), _FETCH_SIZE.search(line)
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def fetch(
    mailbox: Any, uids: Sequence[int], *, max_bytes: int, sizes: Mapping[int, int] | None = None
) -> Iterator[Fetched]:
    """Raw bytes of each UID with BODY.PEEK[] (never sets \\Seen); over `max_bytes`, only the header is fetched.
    `sizes` (from message_sizes) saves asking the server for them again."""
    if not uids:
        return
    if sizes is None:
        sizes = message_sizes(mailbox, uids)
    wanted = [uid for uid in uids if uid in sizes]
    small = [uid for uid in wanted if sizes[uid] <= max_bytes]
    large = [uid for uid in wanted if sizes[uid] > max_bytes]
    bodies: dict[int, bytes] = {}
    if small:
        bodies.update(_fetch_items(mailbox, small, "(UID BODY.PEEK[])"))
    if large:
        bodies.update(_fetch_items(mailbox, large, "(UID BODY.PEEK[HEADER])"))
    for uid in wanted:
        if uid in bodies:
            yield Fetched(uid, bodies[uid], sizes[uid], truncated=uid in large)


def _fetch_items(mailbox: Any, uids: Sequence[int], items: str) -> dict[int, bytes]:
    status, data = mailbox.client.uid("FETCH", _uid_set(uids), items)
    _check(status, data, "UID FETCH")
    found = {}
    for envelope, payload in _pairs(data):
        uid = _FETCH_UID.search(envelope)
        if uid:
            found[int(uid.group(1))] = payload
    return found


def apply_action(mailbox: Any, uids: Sequence[int], action: str) -> None:
    """Apply a post-action to UIDs of the selected folder: seen, flag, keyword:NAME or move:FOLDER."""
    if not uids or action == "none":
        return
    uid_set = _uid_set(uids)
    client = mailbox.client
    if action == "seen":
        status, data = client.uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Seen)")
    elif action == "flag":
        status, data = client.uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Flagged)")
    elif action.startswith("keyword:"):
        status, data = client.uid("STORE", uid_set, "+FLAGS.SILENT", f"({action.split(':', 1)[1]})")
    elif action.startswith("move:"):
        target = _quote(action.split(":", 1)[1])
        if "MOVE" in client.capabilities:
            status, data = client.uid("MOVE", uid_set, target)
        else:
            status, data = client.uid("COPY", uid_set, target)
            _check(status, data, "UID COPY")
            status, data = client.uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)")
            _check(status, data, "UID STORE \\Deleted")
            # UID EXPUNGE (UIDPLUS) removes only these messages, never someone else's \\Deleted ones.
            status, data = client.uid("EXPUNGE", uid_set) if "UIDPLUS" in client.capabilities else ("OK", [])
    else:
        raise MailboxError(f"unknown post-action {action!r}")
    _check(status, data, f"post-action {action}")


def ensure_folder(mailbox: Any, folder: str) -> None:
    """Create a folder if it does not exist (the target of move:FOLDER)."""
    status, data = mailbox.client.list('""', _quote(folder))
    if status == "OK" and any(item for item in data if item):
        return
    status, data = mailbox.client.create(_quote(folder))
    _check(status, data, f"CREATE {folder}")


def idle_wait(mailbox: Any, timeout: float) -> list[bytes]:
    """Wait in IDLE until the server reports something or `timeout` seconds pass."""
    return list(mailbox.idle.wait(timeout=timeout))


def _check(status: str, data: Any, what: str) -> None:
    if status != "OK":
        raise MailboxError(f"{what} failed: {_decode(data)}")


def _decode(data: Any) -> str:
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def _ints(data: Any) -> list[int]:
    values = []
    for item in data or []:
        if isinstance(item, bytes):
            values.extend(int(token) for token in item.split() if token.isdigit())
    return values


def _pairs(data: Any) -> Iterator[tuple[bytes, bytes]]:
    for item in data or []:
        if isinstance(item, tuple) and len(item) >= 2:
            yield item[0], item[1]


def _uid_set(uids: Sequence[int]) -> str:
    """A compact UID set: 1:5,8,10:12."""
    ordered = sorted(set(uids))
    ranges = []
    start = previous = ordered[0]
    for uid in ordered[1:]:
        if uid == previous + 1:
            previous = uid
            continue
        ranges.append(f"{start}:{previous}" if start != previous else str(start))
        start = previous = uid
    ranges.append(f"{start}:{previous}" if start != previous else str(start))
    return ",".join(ranges)


def _quote(folder: str) -> str:
    from imap_tools.imap_utf7 import utf7_encode

    encoded = utf7_encode(folder)
    text = encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
