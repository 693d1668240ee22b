"""Helpers the Facebook and Instagram parsers share: Meta notify headers, link unwrapping and cleaning, page text."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from interestd.htmltext import element_text, normalise_text, tree_to_text
from interestd.message import ParsedMessage

NOTIFY_HEADERS = ("X-Facebook-Notify", "X-FB-Internal-Notiftype")

# Words of an X-Facebook-Notify type (split at "_"), checked in this order; the first hit names the action.
_TYPE_ACTIONS: tuple[tuple[str, frozenset[str]], ...] = (
    ("reply", frozenset({"reply", "replied", "replies"})),
    ("mention", frozenset({"mention", "mentions", "mentioned", "tag", "tagged"})),
    ("comment", frozenset({"comment", "comments", "commented"})),
    ("message", frozenset({"message", "messages", "msg", "messenger", "inbox", "direct", "dm"})),
    ("review", frozenset({"review", "reviews", "recommendation", "recommends", "recommend"})),
    ("like", frozenset({"like", "likes", "liked", "reaction", "reactions", "react", "reacted"})),
    ("subscription", frozenset({"fan", "follow", "follows", "follower", "followers"})),
)
# Types that are never about a person's interest, whatever else their name says: security, money, digests.
_TYPE_DENY = frozenset(
    "digest summary insights weekly monthly login logins security password recovery checkpoint code verify "
    "verification confirm confirmation ads ad billing payment invoice stale reminder birthday suggestion "
    "suggestions gysj marketing promo survey".split()
)
# Business-settings words: deny only when no action word is present ("biz_inbox_message" is still a message).
_TYPE_WEAK_DENY = frozenset("biz business manager partner request access perm finance settings".split())

_FACEBOOK_KEEP = frozenset({"story_fbid", "fbid", "id", "comment_id", "reply_comment_id", "v", "eid"})
_BUSINESS_KEEP = frozenset({"asset_id", "business_id", "mailbox_id", "selected_item_id", "thread_type"})
_EXTERNAL_TRACKING = re.compile(r"^(?:utm_\w+|fbclid|igshid|igsh|mibextid|__cft__.*|__tn__|gclid|yclid)$")
_INSTAGRAM_LOGIN_PATHS = ("/_n/web_emaillogin", "/_n/emaillogin", "/accounts/login", "/accounts/login/")
_AVATAR_HOST = re.compile(r"^(?:scontent[\w.-]*\.(?:fbcdn\.net|cdninstagram\.com)|instagram\.[\w.-]+\.fbcdn\.net)$")
# Gmail rewrites images of mail it forwards to its proxy and keeps the original after "#".
_IMAGE_PROXY = re.compile(r"^https://ci\d*\.googleusercontent\.com/[^#\s]*#(?P<original>https?://\S+)$")
_INLINE_URL = re.compile(r"\s*<(?:https?|mailto):[^\s>]+>")
_HIDDEN_STYLE = re.compile(r"font-size:\s*[01]px|display:\s*none|max-height:\s*0", re.IGNORECASE)
_QUOTE_PAIRS = {'"': '"', "“": "”", "«": "»", "„": "“", "'": "'"}


@dataclass(frozen=True, slots=True)
class CleanLink:
    """A link of the notification: its visible text, the target without wrappers and tracking, FB's element name."""

    text: str
    url: str
    role: str | None = None


def notify_type(msg: ParsedMessage) -> str | None:
    """The Meta notification type (X-Facebook-Notify and kin, else Feedback-ID), lower-case; None when absent."""
    for name in NOTIFY_HEADERS:
        value = msg.header(name)
        if value and value.split(";")[0].strip():
            return value.split(";")[0].strip().lower()
    feedback = msg.header("Feedback-ID") or ""
    parts = [part.strip() for part in feedback.split(":") if part.strip()]
    if len(parts) >= 2 and parts[-1].lower() == "facebook":
        return parts[-2].lower()
    return None


def type_verdict(kind: str) -> str | None:
    """The action a notify type names, "deny" for a non-interest type, or None when the type says nothing."""
    words = set(re.split(r"[^a-z0-9]+", kind.lower()))
    if words & _TYPE_DENY:
        return "deny"
    for action, names in _TYPE_ACTIONS:
        if words & names:
            return action
    return "deny" if words & _TYPE_WEAK_DENY else None


def sender_domain(msg: ParsedMessage) -> str:
    return (msg.sender_email or "").rpartition("@")[2]


def domain_in(domain: str, roots: Iterable[str]) -> bool:
    return any(domain == root or domain.endswith("." + root) for root in roots)


@lru_cache(maxsize=4096)
def clean_link(href: str, depth: int = 0) -> tuple[str, str | None] | None:
    """(target URL without redirect wrappers and tracking parameters, FB's lloc) or None for a non-web link.

    Pure, and the same links recur in a notification (name, avatar and "reply" all point at one profile).
    """
    try:
        parts = urlsplit(href.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    path = parts.path or "/"
    params = parse_qsl(parts.query, keep_blank_values=True)
    if _is_facebook(host) and path.rstrip("/") in ("/n", "/nd"):
        # Facebook's mail redirector: the first query item is the target path, percent-encoded.
        raw_target, _, rest = parts.query.partition("&")
        target_path, _, target_query = unquote(raw_target).partition("?")
        host, path = "www.facebook.com", "/" + target_path.lstrip("/")
        params = parse_qsl(target_query, keep_blank_values=True) + parse_qsl(rest, keep_blank_values=True)
    else:
        wrapped = _wrapped_target(host, path, dict(params))
        if wrapped is not None:
            return clean_link(wrapped, depth + 1) if depth < 4 else None
    role = dict(params).get("lloc") or None
    if _is_facebook(host):
        host = host if host == "business.facebook.com" else "www.facebook.com"
        keep = _BUSINESS_KEEP if host == "business.facebook.com" else _FACEBOOK_KEEP
        return _build(host, path, [(k, v) for k, v in params if k in keep]), role
    if _is_instagram(host):
        return _build("www.instagram.com", path, []), role
    kept = [(k, v) for k, v in params if not _EXTERNAL_TRACKING.match(k)]
    netloc = parts.netloc.rpartition("@")[2]
    url = f"{parts.scheme.lower()}://{netloc}{path}" + (f"?{urlencode(kept)}" if kept else "")
    return url + (f"#{parts.fragment}" if parts.fragment else ""), role


def _build(host: str, path: str, params: list[tuple[str, str]]) -> str:
    return f"https://{host}{path}" + (f"?{urlencode(params)}" if params else "")


def _is_facebook(host: str) -> bool:
    return domain_in(host, ("facebook.com",))


def _is_instagram(host: str) -> bool:
    return domain_in(host, ("instagram.com",))


def _wrapped_target(host: str, path: str, params: dict[str, str]) -> str | None:
    """The real target of a redirect wrapper (Facebook l.php, Instagram login links, Gmail, Outlook Safe Links)."""
    if host in ("l.facebook.com", "lm.facebook.com", "www.facebook.com", "facebook.com") and path == "/l.php":
        return params.get("u")
    if host == "l.instagram.com":
        return params.get("u")
    if _is_instagram(host) and path in _INSTAGRAM_LOGIN_PATHS and params.get("next"):
        target = params["next"]
        return "https://www.instagram.com" + target if target.startswith("/") else target
    if host in ("www.google.com", "google.com") and path == "/url":
        return params.get("q") or params.get("url")
    if host.endswith("safelinks.protection.outlook.com"):
        return params.get("url")
    return None


def page_links(msg: ParsedMessage) -> list[CleanLink]:
    """Every web link of the message, cleaned, in document order."""
    found = []
    for link in msg.links:
        cleaned = clean_link(link.href)
        if cleaned is not None:
            found.append(CleanLink(link.text.strip(), cleaned[0], cleaned[1]))
    return found


def preheader(tree: Any | None) -> str:
    """The hidden preview line Meta puts atop the HTML ("Anna wrote: …"), or ""."""
    for element in _hidden_elements(tree):
        text = normalise_text(element_text(element))
        if text:
            return text
    return ""


def visible_lines(msg: ParsedMessage) -> list[str]:
    """The body as lines, without the hidden preheader and without the <url> marks of plain-text renderings."""
    return list(msg.derived("meta.visible_lines", _visible_lines))


def _visible_lines(msg: ParsedMessage) -> tuple[str, ...]:
    text = msg.plain if msg.plain and msg.plain.strip() else _visible_html_text(msg)
    return tuple(_INLINE_URL.sub("", raw).replace("\t", " ").strip() for raw in text.split("\n"))


def html_lines(msg: ParsedMessage) -> list[str]:
    """Lines of the visible HTML only (no preheader), or [] without HTML."""
    if msg.html_tree is None:
        return []
    return [line.replace("\t", " ").strip() for line in _visible_html_text(msg).split("\n")]


def _visible_html_text(msg: ParsedMessage) -> str:
    """The HTML body's text without the elements hidden from the reader, worked out once per message."""

    def compute(msg: ParsedMessage) -> str:
        if msg.html_tree is None:
            return ""
        # One walk of the tree itself: a copy with the hidden elements dropped cost as much again as the walk.
        return tree_to_text(msg.html_tree, also_hidden=_hidden_from_reader)

    return msg.derived("meta.visible_html_text", compute)


_HIDDEN_TAGS = frozenset({"span", "div"})


def _hidden_elements(tree: Any | None) -> list[Any]:
    if tree is None:
        return []
    return [element for element in tree.iter(*_HIDDEN_TAGS) if _hidden_from_reader(element)]


def _hidden_from_reader(element: Any) -> bool:
    """A span or div that Meta's mail hides from the reader (tiny or collapsed preheaders), not the root."""
    return (
        element.tag in _HIDDEN_TAGS
        and _HIDDEN_STYLE.search(element.get("style") or "") is not None
        and element.getparent() is not None
    )


def avatar_url(tree: Any | None, profile_url: str | None, name: str | None) -> str | None:
    """The author's picture: a profile-CDN <img> inside a link to the profile, or one whose alt is the name."""
    if tree is None:
        return None
    by_alt = None
    for image in tree.iter("img"):
        src = (image.get("src") or "").strip()
        proxied = _IMAGE_PROXY.match(src)
        src = proxied.group("original") if proxied else src
        try:
            host = (urlsplit(src).hostname or "").lower()
        except ValueError:
            continue
        if not _AVATAR_HOST.match(host):
            continue
        anchor = next(image.iterancestors("a"), None)
        if profile_url and anchor is not None:
            cleaned = clean_link(anchor.get("href") or "")
            if cleaned is not None and cleaned[0].rstrip("/") == profile_url.rstrip("/"):
                return src
        alt = " ".join((image.get("alt") or "").split())
        if by_alt is None and name and alt.lower() in (name.lower(), "@" + name.lower()):
            by_alt = src
    return by_alt


def strip_quotes(text: str) -> str:
    """The text without one pair of quotation marks around all of it."""
    text = text.strip().replace("\u00a0", " ").strip()
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        return text[1:-1].strip()
    return text


def quoted_block(lines: list[str], start: int) -> str:
    """The first block of lines after `start` that opens and closes with quotation marks, unquoted; or ""."""
    index = start
    while index < len(lines):
        line = lines[index]
        if line[:1] in _QUOTE_PAIRS:
            closing = _QUOTE_PAIRS[line[0]]
            block = []
            for end in range(index, min(len(lines), index + 60)):
                block.append(lines[end])
                body = "\n".join(block)
                if len(body) > 1 and body.rstrip().endswith(closing):
                    return body.strip()[1:-1].strip()
            return ""
        index += 1
    return ""
