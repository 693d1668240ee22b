"""Reading WordPress comment notifications: the part site_comment and site_review share."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from interestd.card import CardDraft
from interestd.message import ParsedMessage

# The mails are plain text built line by line by wp-includes/pluggable.php and localised with the site's locale.
# Parsing keys on what does not depend on the language — the admin links `wp-admin/comment.php?action=…&c=ID`, the
# post permalink ending in `#comments`, the comment permalink `#comment-ID`, a quoted post title — and reads the
# labels from a small English/Russian dictionary. The Russian wording is translate.wordpress.org's (WordPress 6.x
# ru_RU): 'Новый комментарий к записи "%s"', 'Автор: %1$s (IP адрес: %2$s, %3$s)', 'В ответ на %s.',
# 'Комментарий:', 'Здесь вы можете посмотреть все комментарии к данной записи:', 'Постоянная ссылка:', 'Одобрить:',
# 'В корзину:', 'Спам:'; pingbacks are "уведомления", trackbacks "обратные ссылки".

# Links the notification always carries; they are the same in every language.
ADMIN_ACTION = re.compile(
    r"(?P<url>(?P<base>https?://[^\s<>\"]+?)/wp-admin/comment\.php\?action=(?P<action>approve|unapprove|trash|delete"
    r"|spam|editcomment)&(?:amp;)?c=(?P<id>\d+)[^\s<>\"]*)",
    re.IGNORECASE,
)
_ADMIN_ACTION_PATH = re.compile(r"/wp-admin/comment\.php\?action=", re.IGNORECASE)  # in every ADMIN_ACTION
COMMENTS_ANCHOR = re.compile(r"^[ \t]*(?P<post>https?://[^\s<>\"]+?)#comments[ \t]*$", re.MULTILINE)
PERMALINK = re.compile(r"(?P<url>https?://[^\s<>\"]+?#comment-(?P<id>\d+))(?![\w-])")
PRODUCT_REVIEW_LINK = re.compile(
    r"wp-admin/edit\.php\?[^\s<>\"]*post_type=product[^\s<>\"]*|[?&](?:amp;)?page=product-reviews", re.IGNORECASE
)
# WooCommerce product permalinks: /product/<slug>/ by default; /shop/, /catalog/ or a transliterated base on
# Russian shops.
PRODUCT_PATH = re.compile(
    r"^/(?:[^/]+/)*?(?:product|products|shop|tovar|tovary|produkt|catalog|katalog)/[^/]+", re.IGNORECASE
)

_QUOTED = re.compile(r"[\"“«„](?P<title>.+)[\"”»“]")
_URL_LINE = re.compile(r"^[ \t]*(?P<url>https?://[^\s<>\"]+)[ \t]*$")
_AUTHOR = re.compile(r"^[ \t]*(?:Author|Автор)[ \t]*:[ \t]*(?P<value>.*)$", re.IGNORECASE | re.MULTILINE)
_WEBSITE = re.compile(
    r"^[ \t]*(?:Website|Вебсайт|Веб-сайт|Сайт)[ \t]*:[ \t]*(?P<value>.*\(\s*IP\b.*)$", re.IGNORECASE | re.MULTILINE
)
_EMAIL = re.compile(
    r"^[ \t]*(?:E-?mail|Эл\.\s*почта|Электронная почта|Почта)[ \t]*:[ \t]*(?P<value>\S*)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_URL_LABEL = re.compile(
    r"^[ \t]*(?:URL|Website|Веб-сайт|Сайт)[ \t]*:[ \t]*(?P<value>(?:https?://)?[^\s(]*)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# "В ответ на %s." (ru_RU) ends in a full stop; a mail client's line wrapping may put the URL on the next line.
_IN_REPLY = re.compile(
    r"^[ \t]*(?:In reply to|В ответ на)[ \t]*:?\s*?\n?[ \t]*(?P<url>https?://\S+?)\.?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_TEXT_LABEL = re.compile(
    r"^[ \t]*(?:Comment|Комментарий|Trackback excerpt|Pingback excerpt|Отрывок уведомления|Отрывок обратной ссылки)"
    r"[ \t]*:[ \t]*(?P<rest>.*)$",
    re.IGNORECASE,
)
_PERMALINK_LABEL = re.compile(r"^[ \t]*(?:Permalink|Постоянная ссылка)[ \t]*:", re.IGNORECASE)
_SEE_ALL = re.compile(r"^[ \t]*(?:You can see all|Здесь вы можете посмотреть)", re.IGNORECASE)
_WAITING = re.compile(r"^[ \t]*(?:Currently \d+|В настоящее время)", re.IGNORECASE)
_IP_SUFFIX = re.compile(r"\s*\(\s*IP\b.*$", re.IGNORECASE)  # "(IP address: …, host)", possibly wrapped
_MODERATION = re.compile(
    r"waiting for your approval|Please moderate|ожидает (?:вашего )?(?:проверки|одобрения)|Проверьте, пожалуйста",
    re.IGNORECASE,
)
_TRACKBACK = re.compile(r"\btrackback\b|обратн\w+ ссылк", re.IGNORECASE)
_PINGBACK = re.compile(r"\bpingback\b|уведомлени", re.IGNORECASE)
_SUBJECT_SITE = re.compile(r"^\s*\[(?P<site>[^\]]+)\]")
_TRACKING = re.compile(
    r"^(?:utm_\w+|from_email|aref|n_m|mid|bcode|lloc|landref|gclid|yclid|fbclid|_hsenc|_hsmi|mc_[ce]id|trk)$",
    re.IGNORECASE,
)


@dataclass
class WpComment:
    """What one WordPress comment notification says."""

    kind: str = "comment"  # comment | trackback | pingback
    moderation: bool = False
    is_reply: bool = False
    post_title: str | None = None
    post_url: str | None = None
    author_name: str | None = None
    author_email: str | None = None
    author_url: str | None = None
    url_label_seen: bool = False
    text: str | None = None
    permalink: str | None = None
    approve_url: str | None = None
    comment_id: str | None = None


def body_of(msg: ParsedMessage) -> str:
    """The notification text: the plain part, or the HTML's text when an HTML-mail plugin replaced it."""
    return (msg.text or "").replace("\r\n", "\n").replace("\r", "\n")


def is_comment_notification(msg: ParsedMessage) -> bool:
    """True for a WordPress new-comment or moderation mail (post-author or moderator), in any language."""
    # Asked by both the review and the comment parser's match(): worked out once per message.
    return msg.derived("wordpress.is_comment_notification", _is_comment_notification)


def _is_comment_notification(msg: ParsedMessage) -> bool:
    body = body_of(msg)
    # Most mail that gets this far is no WordPress mail at all: one look for what either kind of link must
    # contain spares the full patterns, each tried at every position of the text.
    if "#comment" not in body and not _ADMIN_ACTION_PATH.search(body):
        return False
    moderation = any(m.group("action").lower() != "editcomment" for m in ADMIN_ACTION.finditer(body))
    public = COMMENTS_ANCHOR.search(body) is not None and PERMALINK.search(body) is not None
    if not (moderation or public):
        return False
    return _AUTHOR.search(body) is not None or _WEBSITE.search(body) is not None


def is_product_review(msg: ParsedMessage) -> bool:
    """True when the commented post is a WooCommerce product (admin product-reviews link or product permalink)."""
    return msg.derived("wordpress.is_product_review", _is_product_review)


def _is_product_review(msg: ParsedMessage) -> bool:
    body = body_of(msg)
    if PRODUCT_REVIEW_LINK.search(body):
        return True
    comment = read_comment(msg)
    url = comment.post_url or (comment.permalink or "").split("#")[0]
    return bool(url) and PRODUCT_PATH.match(urlsplit(url).path or "/") is not None


def read_comment(msg: ParsedMessage) -> WpComment:
    """Read every field the notification carries; what is absent stays None. Read once per message (the
    match() of two parsers and the chosen parse() all need it); each caller gets its own copy."""
    return copy.copy(msg.derived("wordpress.comment", _read_comment))


def _read_comment(msg: ParsedMessage) -> WpComment:
    body = body_of(msg)
    lines = body.split("\n")
    found = WpComment()
    author_index = _author_line_index(lines)
    headline = _headline(lines, author_index)
    # The post title is quoted in both; it must not decide the kind ("Как настроить уведомления" is no pingback).
    context = _QUOTED.sub("", f"{msg.subject}\n{headline}")
    found.kind = _kind(context, body)
    found.moderation = bool(_MODERATION.search(context)) or any(
        m.group("action").lower() == "approve" for m in ADMIN_ACTION.finditer(body)
    )
    found.post_title = _title(headline) or _title(_SUBJECT_SITE.sub("", msg.subject))
    found.post_url = _post_url(lines, author_index)
    _read_author(found, body, msg)
    found.is_reply = _IN_REPLY.search(body) is not None
    found.text = _text(lines)
    permalink = PERMALINK.search(body)
    if permalink:
        found.permalink = permalink.group("url")
        found.comment_id = permalink.group("id")
    for match in ADMIN_ACTION.finditer(body):
        action = match.group("action").lower()
        if action == "approve" and found.approve_url is None:
            found.approve_url = match.group("url")
        if action != "editcomment" and found.comment_id is None:
            found.comment_id = match.group("id")
    if found.post_url is None and found.permalink:
        found.post_url = re.sub(r"comment-page-\d+/?$", "", found.permalink.split("#")[0])
    return found


def build_draft(msg: ParsedMessage, comment: WpComment, *, source_type: str, action: str) -> CardDraft:
    """A card draft from a read notification: the permalink (or, for a pending comment, its approve page) links it."""
    link = comment.permalink or comment.approve_url
    draft = CardDraft(
        source_type=source_type,
        action=action,
        text=comment.text or "",
        source_url=link,
        occurred_at=msg.date,
        author_name=comment.author_name,
        author_url=comment.author_url,
        author_email=comment.author_email,
        product=comment.post_title,
        product_url=comment.post_url,
        reply_url=link,
    )
    for name, value in (
        ("text", comment.text),
        ("source_url", link),
        ("author_name", comment.author_name),
        ("product", comment.post_title),
        ("product_url", comment.post_url),
    ):
        if not value:
            draft.missing.append(name)
    if comment.kind == "comment" and not comment.author_email:
        draft.missing.append("author_email")
    if not comment.url_label_seen:
        draft.missing.append("author_url")
    return draft


def _author_line_index(lines: list[str]) -> int | None:
    for index, line in enumerate(lines):
        if _AUTHOR.match(line) or _WEBSITE.match(line):
            return index
    return None


def _headline(lines: list[str], author_index: int | None) -> str:
    """The "New comment on your post "…"" line: the last line holding a quoted title above the author line."""
    stop = author_index if author_index is not None else min(len(lines), 5)
    for line in reversed(lines[:stop]):
        if _QUOTED.search(line):
            return line.strip()
    return ""


def _title(text: str) -> str | None:
    match = _QUOTED.search(text or "")
    return match.group("title").strip() if match else None


def _kind(context: str, body: str) -> str:
    if _TRACKBACK.search(context) or re.search(r"Trackback excerpt|Отрывок обратной ссылки", body, re.IGNORECASE):
        return "trackback"
    if _PINGBACK.search(context) or re.search(r"Pingback excerpt|Отрывок уведомления", body, re.IGNORECASE):
        return "pingback"
    if _WEBSITE.search(body) and not _AUTHOR.search(body):
        return "pingback"  # a "Website: … (IP …)" line instead of "Author:" is how both link notices start
    return "comment"


def _post_url(lines: list[str], author_index: int | None) -> str | None:
    """The post permalink: the `…#comments` line, else (moderation mail) the bare URL under the headline."""
    for line in lines:
        match = COMMENTS_ANCHOR.match(line)
        if match:
            return match.group("post")
    for line in lines[: author_index if author_index is not None else len(lines)]:
        match = _URL_LINE.match(line)
        if match and "/wp-admin/" not in match.group("url") and "#comment-" not in match.group("url"):
            return match.group("url")
    return None


def _read_author(found: WpComment, body: str, msg: ParsedMessage) -> None:
    author = _WEBSITE.search(body) if found.kind != "comment" else None
    author = author or _AUTHOR.search(body)
    if author:
        name = _IP_SUFFIX.sub("", author.group("value")).strip()
        found.author_name = name or None
    email = _EMAIL.search(body)
    if email and "@" in email.group("value"):
        found.author_email = email.group("value")
    url = _URL_LABEL.search(body)
    if url:
        found.url_label_seen = True
        found.author_url = url.group("value") or None
    _header_fallbacks(found, msg)


def _header_fallbacks(found: WpComment, msg: ParsedMessage) -> None:
    """The post-author mail puts the commenter in From's display name and in Reply-To (wp_notify_postauthor)."""
    if not found.author_email:
        for address in msg.reply_to:
            if address.email and not address.email.lower().startswith("wordpress@"):
                found.author_email = address.email
                break
    if not found.author_name and msg.sender and msg.sender.name:
        site = _SUBJECT_SITE.match(msg.subject)
        if not site or site.group("site").strip() != msg.sender.name.strip():
            found.author_name = msg.sender.name


def _text(lines: list[str]) -> str | None:
    """The comment: from the "Comment:" label to the blank line before the "see all" / admin-link block."""
    start = next((i for i, line in enumerate(lines) if _TEXT_LABEL.match(line)), None)
    if start is None:
        return None
    first = _TEXT_LABEL.match(lines[start])
    collected = [first.group("rest")] if first and first.group("rest").strip() else []
    end = len(lines)
    for index in range(start + 1, len(lines)):
        if _is_terminator(lines[index]):
            end = index
            break
    block = collected + lines[start + 1 : end]
    # "You can see all comments on this post here:" sits right above the #comments URL, after a blank line.
    see_all = end < len(lines) and COMMENTS_ANCHOR.match(lines[end]) and block and block[-1].rstrip().endswith(":")
    if see_all and (len(block) == 1 or not block[-2].strip()):
        block = block[:-1]
    text = "\n".join(line.rstrip() for line in block).strip("\n")
    return text.strip() or None


def _is_terminator(line: str) -> bool:
    return bool(
        "/wp-admin/" in line
        or COMMENTS_ANCHOR.match(line)
        or _PERMALINK_LABEL.match(line)
        or _SEE_ALL.match(line)
        or _WAITING.match(line)
    )


def strip_tracking(url: str | None) -> str | None:
    """The URL without tracking parameters (utm_*, from_email, …); the ones that address the place are kept."""
    if not url:
        return url
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(key)]
    return urlunsplit(parts._replace(query=urlencode(kept, safe=":/,")))
