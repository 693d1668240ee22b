"""Reply screenshots: check an image's type and size, store it content-addressed, accept screenshot-service links."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from interestd.errors import UsageError
from interestd.safety import safe_url

# The four formats screenshot tools produce, by their magic numbers (checked on the bytes, never the name).
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
)
REFERENCE_PREFIX = "attachment:"


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    extension: str
    content_type: str
    size: int

    @property
    def reference(self) -> str:
        """How a card refers to it: attachment:<sha256>.<ext> (the file lives under the attachments dir)."""
        return f"{REFERENCE_PREFIX}{self.sha256}.{self.extension}"


def image_type(data: bytes) -> tuple[str, str] | None:
    """(content type, extension) of a PNG, JPEG, GIF or WebP image, from its first bytes; None otherwise."""
    for magic, content_type, extension in _SIGNATURES:
        if data.startswith(magic):
            return content_type, extension
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


def check_image(data: bytes, *, max_bytes: int, name: str = "the file") -> tuple[str, str]:
    if len(data) > max_bytes:
        raise UsageError(f"{name} is {len(data)} bytes; a screenshot may be at most {max_bytes} bytes")
    found = image_type(data)
    if found is None:
        raise UsageError(f"{name} is not a PNG, JPEG, WebP or GIF image")
    return found


def store_image(directory: Path, data: bytes, *, max_bytes: int, name: str = "the file") -> StoredImage:
    """Keep an image under `directory` by the SHA-256 of its bytes (owner-only permissions); idempotent."""
    content_type, extension = check_image(data, max_bytes=max_bytes, name=name)
    digest = hashlib.sha256(data).hexdigest()
    target = path_of(directory, f"{digest}.{extension}")
    if not target.exists():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.chmod(temporary, 0o600)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return StoredImage(digest, extension, content_type, len(data))


def path_of(directory: Path, name: str) -> Path:
    """Where a stored image lives: <dir>/<first two hex digits>/<sha256>.<ext>."""
    return directory / name[:2] / name


def screenshot_link(url: str, hosts: list[str]) -> str:
    """A screenshot-service link, checked: http(s) only, and a host from the configured list (or below it)."""
    clean = safe_url(url)
    if clean is None or not clean.lower().startswith(("http://", "https://")):
        raise UsageError(f"not an http(s) link: {url!r}")
    host = (urlsplit(clean).hostname or "").lower()
    if not any(host == allowed or host.endswith("." + allowed) for allowed in hosts):
        raise UsageError(
            f"{host} is not a known screenshot service ({', '.join(hosts[:6])}, ...): add it to [proofs] url_hosts"
        )
    return clean


def is_screenshot_link(url: str, hosts: list[str]) -> bool:
    try:
        screenshot_link(url, hosts)
    except UsageError:
        return False
    return True
