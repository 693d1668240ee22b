"""Making text that came from mail safe to store and show: URL scheme allow-list, terminal and CSV escaping."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel"})

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_URL_SPACE = re.compile(r"[\s\x00-\x1f\x7f]+")
_CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

# Redirectors social networks wrap outgoing links in: the real target is in a query parameter.
_REDIRECTORS = {
    ("vk.com", "/away.php"): "to",
    ("m.vk.com", "/away.php"): "to",
    ("vk.ru", "/away.php"): "to",
    ("l.facebook.com", "/l.php"): "u",
    ("lm.facebook.com", "/l.php"): "u",
    ("l.instagram.com", "/"): "u",
    ("ok.ru", "/dk"): "st.link",
}


def clean_text(value: str | None) -> str | None:
    """Text without control characters, ANSI escape sequences and bidi overrides (newlines and tabs kept)."""
    if value is None:
        return None
    value = _ANSI.sub("", value)
    return _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


def terminal_text(value: object) -> str:
    """A value made safe to print on a terminal: nothing in it can move the cursor or repaint the screen."""
    if value is None:
        return ""
    return clean_text(str(value)) or ""


def safe_url(value: str | None) -> str | None:
    """The URL if its scheme is http, https, mailto or tel (redirect wrappers unwrapped), else None."""
    if not value:
        return None
    url = _URL_SPACE.sub("", value.strip().strip("<>\"'"))
    if not url:
        return None
    if url.startswith("//"):
        url = "https:" + url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in SAFE_SCHEMES:
        return None
    if scheme in ("http", "https"):
        try:
            if not parts.hostname:
                return None
        except ValueError:
            return None
        target = _unwrap_redirect(parts)
        if target is not None:
            return safe_url(target)
    elif (scheme == "mailto" and "@" not in parts.path) or (
        scheme == "tel" and not re.fullmatch(r"\+?[\d\-(). ]{3,32}", parts.path.replace("%20", " "))
    ):
        return None
    return url if len(url) <= 4000 else None


def _unwrap_redirect(parts: object) -> str | None:
    host = (getattr(parts, "hostname", None) or "").lower()
    path = getattr(parts, "path", "") or "/"
    parameter = _REDIRECTORS.get((host, path))
    if parameter is None:
        return None
    values = parse_qs(getattr(parts, "query", ""), keep_blank_values=False).get(parameter)
    return values[0] if values else None


def csv_cell(value: object) -> object:
    """A CSV cell that spreadsheet programs will not run as a formula."""
    if isinstance(value, str) and value.startswith(_CSV_TRIGGERS):
        return "'" + value
    return value
