"""Mail from files: single .eml files, folders of them (recursively), mbox files and Maildir folders, streamed."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from interestd.errors import UsageError

_MBOX_FROM = re.compile(rb"^From \S")
_ESCAPED_FROM = re.compile(rb"^>(>*From )")
_READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FileMessage:
    """One message read from a file: where it came from and its bytes; `consumed` is input bytes used so far.

    A message larger than the limit is not read whole: `data` holds its first bytes and `size` its real size.
    """

    origin: str
    data: bytes
    consumed: int
    size: int

    @property
    def truncated(self) -> bool:
        return self.size > len(self.data)


def check_paths(paths: list[Path]) -> None:
    """Fail early, with the path named, when an input cannot be read."""
    if not paths:
        raise UsageError("no input given: name .eml files, folders, mbox files or Maildirs")
    for path in paths:
        if not path.exists():
            raise UsageError(f"no such file or folder: {path}")
        if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
            raise UsageError(f"cannot read {path}: permission denied")
        if not (path.is_file() or path.is_dir()):
            raise UsageError(f"not a file or folder: {path}")


def total_size(paths: list[Path], *, up_to: int | None = None) -> int:
    """Bytes the inputs hold (for a progress bar); with `up_to`, counting stops once that many are found."""
    total = 0
    for path in _files(paths):
        try:
            total += path.stat().st_size
        except OSError:
            continue  # iter_messages reports it
        if up_to is not None and total >= up_to:
            break
    return total


MAIL_FILE_SUFFIXES = (".eml", ".mbox", ".mbx")  # in ordinary folders; a Maildir's files have no suffix
HEAD_BYTES = 64 * 1024  # what is kept of a message over the size limit: enough for its headers


def iter_messages(paths: list[Path], *, max_bytes: int, errors: list[str] | None = None) -> Iterator[FileMessage]:
    """Every message in the inputs, in the order given (folders sorted by name); unreadable files go to `errors`."""
    consumed = 0
    for file_path in _files(paths):
        try:
            # One open per file: its first bytes tell an mbox from a single message.
            with file_path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                data = handle.read(HEAD_BYTES if size > max_bytes else -1)
            if data.startswith(b"From "):
                for data, size, used in _mbox_messages(file_path, max_bytes):
                    yield FileMessage(f"mbox:{file_path}", data, consumed + used, size)
                consumed += file_path.stat().st_size
            else:
                consumed += size
                yield FileMessage(f"file:{file_path}", data, consumed, max(size, len(data)))
        except OSError as exc:
            if errors is None:
                raise UsageError(f"cannot read {file_path}: {exc.strerror or exc}") from None
            errors.append(f"{file_path}: {exc.strerror or exc}")


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from _folder_files(path)
        else:
            yield path


def _folder_files(folder: Path) -> Iterator[Path]:
    if is_maildir(folder):
        for sub in ("cur", "new"):
            if (folder / sub).is_dir():
                yield from sorted(_plain_files(folder / sub))
        # Maildir++ subfolders (.Sent, .Archive ...) are mail folders of their own.
        for child in sorted(folder.iterdir()):
            if child.is_dir() and child.name.startswith(".") and is_maildir(child):
                yield from _folder_files(child)
        return
    for root, dirs, files in os.walk(folder):
        subfolders = [Path(root) / d for d in sorted(dirs) if not d.startswith(".")]
        dirs[:] = [d.name for d in subfolders if not is_maildir(d)]
        for name in sorted(files):
            if name.lower().endswith(MAIL_FILE_SUFFIXES) and not name.startswith("."):
                yield Path(root) / name
        for maildir in (d for d in subfolders if is_maildir(d)):
            yield from _folder_files(maildir)


def _plain_files(folder: Path) -> Iterator[Path]:
    """The regular files of a folder, hidden ones left out (read from the listing: no stat per file)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.startswith(".") and entry.is_file():
                yield folder / entry.name


def is_maildir(folder: Path) -> bool:
    # Copied through git or an archive, a Maildir loses its empty subfolders: a `cur` or `new` with one more of
    # the three is enough.
    present = {sub for sub in ("cur", "new", "tmp") if (folder / sub).is_dir()}
    return len(present) >= 2 and bool(present & {"cur", "new"})


def _mbox_messages(path: Path, max_bytes: int) -> Iterator[tuple[bytes, int, int]]:
    """Split an mbox as it is read: a message starts at a "From " line (after a blank line or at the start).

    Yields (bytes, real size, input bytes used); a message over `max_bytes` keeps only its first bytes.
    """
    current: list[bytes] = []
    kept = size = 0
    previous_blank = True
    used = 0
    with path.open("rb") as handle:
        for line in handle:
            if previous_blank and _MBOX_FROM.match(line):
                if size:
                    yield _finish(current, size, max_bytes), size, used
                current, kept, size = [], 0, 0
                previous_blank = False
                used += len(line)
                continue
            used += len(line)
            previous_blank = line in (b"\n", b"\r\n")
            size += len(line)
            if kept < max_bytes:
                current.append(_ESCAPED_FROM.sub(rb"\1", line))
                kept += len(line)
    if size:
        yield _finish(current, size, max_bytes), size, used


def _finish(lines: list[bytes], size: int, max_bytes: int) -> bytes:
    if size > max_bytes:
        return b"".join(lines)[:HEAD_BYTES]
    # The blank line before the next "From " belongs to the mbox format, not to the message.
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]
    return b"".join(lines)
