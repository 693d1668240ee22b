"""CardDraft (what a parser returns) and its normalisation into CardData (what the store keeps)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from interestd.safety import clean_text, safe_url

SOURCE_TYPES = (
    "vk",
    "facebook",
    "odnoklassniki",
    "instagram",
    "telegram",
    "site_form",
    "site_comment",
    "site_review",
    "chat",
    "email",
)
ACTIONS = ("comment", "reply", "like", "repost", "message", "review", "request", "mention", "subscription", "order")
URL_FIELDS = ("source_url", "author_url", "author_photo_url", "product_url", "reply_url")
# What a parser reads out of a message: every field of CardDraft but `missing`.
PARSED_FIELDS = (
    "source_type",
    "action",
    "text",
    "occurred_at",
    "source_url",
    "author_name",
    "author_url",
    "author_photo_url",
    "author_email",
    "author_phone",
    "product",
    "product_url",
    "reply_url",
)
MAX_TEXT = 20_000

_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]{2,}$")
_ROBOT_LOCAL_PARTS = re.compile(
    r"^(?:no-?reply|do-?not-?reply|notify|notification|notifications|mailer-daemon|postmaster|bounces?|"
    r"bezotveta|robot|info-noreply|wordpress)(?:[+.-].*)?$",
    re.IGNORECASE,
)
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass
class CardDraft:
    """A parser's reading of one message. Unknown values stay None; `missing` names fields it looked for in vain."""

    source_type: str
    action: str
    text: str = ""
    source_url: str | None = None
    occurred_at: datetime | None = None
    author_name: str | None = None
    author_url: str | None = None
    author_photo_url: str | None = None
    author_email: str | None = None
    author_phone: str | None = None
    product: str | None = None
    product_url: str | None = None
    reply_url: str | None = None
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CardData:
    """A normalised card as the store writes it: safe URLs, E.164 phone, lower-case e-mail, aware UTC time."""

    source_type: str
    action: str
    text: str
    occurred_at: datetime
    source_url: str | None = None
    author_name: str | None = None
    author_url: str | None = None
    author_photo_url: str | None = None
    author_email: str | None = None
    author_phone: str | None = None
    product: str | None = None
    product_url: str | None = None
    reply_url: str | None = None
    subject: str | None = None
    notes: tuple[str, ...] = ()

    def fields_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "notes"}


def normalise(
    draft: CardDraft,
    *,
    subject: str | None,
    message_date: datetime | None,
    received_at: datetime,
    phone_region: str = "RU",
) -> CardData:
    """Make a draft safe and uniform; every value dropped or changed on the way is noted."""
    notes = [f"not found: {name}" for name in dict.fromkeys(draft.missing)]
    values: dict[str, str | None] = {}
    for name in URL_FIELDS:
        raw = getattr(draft, name)
        values[name] = safe_url(raw)
        if raw and values[name] is None:
            notes.append(f"unsafe or invalid URL dropped from {name}")

    email = normalise_email(draft.author_email)
    if draft.author_email and email is None:
        notes.append("invalid or robot e-mail address dropped from author_email")
    phone = normalise_phone(draft.author_phone, phone_region)
    if draft.author_phone and phone is None:
        notes.append("invalid phone number dropped from author_phone")

    occurred = _occurred(draft.occurred_at, message_date, received_at)
    clean_subject = _line(subject)
    reply_url = values["reply_url"] or _fallback_reply_url(email, phone, values["source_url"], clean_subject)
    return CardData(
        source_type=(draft.source_type or "email").strip().lower(),
        action=(draft.action or "request").strip().lower(),
        text=normalise_body(draft.text),
        occurred_at=occurred,
        source_url=values["source_url"],
        author_name=_line(draft.author_name, 300),
        author_url=values["author_url"],
        author_photo_url=values["author_photo_url"],
        author_email=email,
        author_phone=phone,
        product=_line(draft.product, 300),
        product_url=values["product_url"],
        reply_url=reply_url,
        subject=clean_subject,
        notes=tuple(notes),
    )


def with_product(card: CardData, product: str | None, product_url: str | None) -> CardData:
    """The card with a product filled in by the config's product rules (a parser's own value wins)."""
    if card.product or not product:
        return card
    return replace(card, product=product, product_url=card.product_url or safe_url(product_url))


def normalise_email(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip().strip("<>").strip()
    if value.lower().startswith("mailto:"):
        value = value[7:].split("?")[0]
    value = value.lower()
    if not _EMAIL.match(value) or len(value) > 320:
        return None
    if _ROBOT_LOCAL_PARTS.match(value.split("@")[0]):
        return None
    return value


def normalise_phone(value: str | None, region: str = "RU") -> str | None:
    """A phone number in E.164 (+79001234567), or None when it is not a possible number."""
    if not value:
        return None
    text = value.strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    digits = re.sub(r"\D", "", text)
    if len(digits) < 6 or len(digits) > 16:
        return None
    import phonenumbers  # its metadata takes a while to load: only the pipeline needs it

    # Russian numbers are often written 8XXXXXXXXXX; phonenumbers reads that right only with region RU.
    try:
        number = phonenumbers.parse(text, region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_body(text: str | None) -> str:
    """Whitespace-normalised text: spaces collapsed, lines trimmed, at most one blank line in a row."""
    cleaned = clean_text(text or "") or ""
    lines = [_SPACES.sub(" ", line.replace("\t", " ")).strip() for line in cleaned.split("\n")]
    result = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return result[:MAX_TEXT]


def _line(value: str | None, limit: int = 1000) -> str | None:
    cleaned = clean_text(value)
    if not cleaned:
        return None
    cleaned = " ".join(cleaned.split())
    return cleaned[:limit] or None


def _occurred(parsed: datetime | None, message_date: datetime | None, received_at: datetime) -> datetime:
    horizon = received_at + timedelta(days=1)
    for candidate in (parsed, message_date):
        if candidate is not None:
            aware = candidate if candidate.tzinfo else candidate.replace(tzinfo=UTC)
            if aware <= horizon and aware.year >= 1990:
                return aware.astimezone(UTC)
    return received_at.astimezone(UTC)


def mailto(address: str, subject: str | None) -> str:
    """A mailto: link that answers in the same thread (Re: subject)."""
    if not subject:
        return f"mailto:{address}"
    reply_subject = subject if re.match(r"^\s*(re|ответ|отв)\s*:", subject, re.IGNORECASE) else f"Re: {subject}"
    return f"mailto:{address}?subject={quote(reply_subject, safe='')}"


def _fallback_reply_url(
    email: str | None, phone: str | None, source_url: str | None, subject: str | None
) -> str | None:
    if email:
        return mailto(email, subject)
    if phone:
        return f"tel:{phone}"
    return source_url
