"""Read the dates people and notification robots write ("20 нояб. 2026 г. в 10:15", "Nov 20 at 3:04 PM")."""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime, timedelta, tzinfo

_MONTHS = {
    "янв": 1,
    "фев": 2,
    "мар": 3,
    "апр": 4,
    "мая": 5,
    "май": 5,
    "июн": 6,
    "июл": 7,
    "авг": 8,
    "сен": 9,
    "окт": 10,
    "ноя": 11,
    "дек": 12,
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH_WORD = r"(?P<month>[A-Za-zА-Яа-яёЁ]{3,9})\.?"
_TIME = r"(?P<hour>\d{1,2})[:.](?P<minute>\d{2})(?::(?P<second>\d{2}))?\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?"
_PATTERNS = [
    # 20.11.2026, 10:15  /  20.11.26 10:15
    re.compile(
        r"(?P<day>\d{1,2})\.(?P<month_num>\d{1,2})\.(?P<year>\d{4}|\d{2})(?:\s*(?:г\.?)?,?\s*(?:в|at)?\s*"
        + _TIME
        + ")?"
    ),
    # 2026-11-20 10:15
    re.compile(r"(?P<year>\d{4})-(?P<month_num>\d{1,2})-(?P<day>\d{1,2})(?:[T ]\s*" + _TIME + ")?"),
    # 20 ноября 2026 г. в 10:15  /  20 Nov 2026 at 10:15  /  20 ноября в 10:15
    re.compile(
        r"(?P<day>\d{1,2})\s+"
        + _MONTH_WORD
        + r"(?:\s+(?P<year>\d{4}))?(?:\s*г\.?)?,?\s*(?:в|at|,)?\s*"
        + r"(?:"
        + _TIME
        + r")?"
    ),
    # Nov 20, 2026 at 3:04 PM  /  Mon, Nov 20, 2026 at 10:15 AM  /  November 20 at 3:04 PM
    re.compile(
        _MONTH_WORD
        + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?(?:\s+(?P<year>\d{4}))?,?\s*(?:at|в)?\s*"
        + r"(?:"
        + _TIME
        + r")?"
    ),
]
_RELATIVE = re.compile(r"\b(?P<word>сегодня|вчера|today|yesterday)\b(?:\s*(?:в|at)\s*" + _TIME + ")?", re.IGNORECASE)


def parse_human_date(text: str, *, reference: datetime | None = None, zone: tzinfo | None = None) -> datetime | None:
    """The first date in `text`, aware; missing year and zone come from `reference` (an aware datetime).

    Returns None when no date is found or the one found is impossible.
    """
    text = text.strip()
    if not text:
        return None
    zone = zone or (reference.tzinfo if reference is not None and reference.tzinfo else UTC)
    rfc = _rfc2822(text)
    if rfc is not None:
        return rfc
    relative = _RELATIVE.search(text)
    if relative and reference is not None:
        day = reference.astimezone(zone).date()
        if relative.group("word").lower() in ("вчера", "yesterday"):
            day -= timedelta(days=1)
        hour, minute, second = _clock(relative.groupdict())
        return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=zone)
    for pattern in _PATTERNS:
        for match in pattern.finditer(text):
            found = _build(match.groupdict(), reference, zone)
            if found is not None:
                return found
    return None


def _rfc2822(text: str) -> datetime | None:
    if not re.search(r"\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{1,2}:\d{2}", text):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None  # without a zone the pattern-based reading (with the reference zone) is better
    return parsed


def _build(groups: dict[str, str | None], reference: datetime | None, zone: tzinfo) -> datetime | None:
    month = _month(groups)
    if month is None:
        return None
    try:
        day = int(groups["day"] or 0)
    except ValueError:
        return None
    year_text = groups.get("year")
    if year_text:
        year = int(year_text)
        if year < 100:
            year += 2000
    elif reference is not None:
        year = reference.astimezone(zone).year
    else:
        return None
    hour, minute, second = _clock(groups)
    try:
        found = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None
    if not year_text and reference is not None and found > reference + timedelta(days=2):
        found = found.replace(year=year - 1)  # "20 декабря" read in January is last year's
    return found


def _month(groups: dict[str, str | None]) -> int | None:
    if groups.get("month_num"):
        value = int(groups["month_num"] or 0)
        return value if 1 <= value <= 12 else None
    word = (groups.get("month") or "").lower()
    return _MONTHS.get(word[:3]) if word else None


def _clock(groups: dict[str, str | None]) -> tuple[int, int, int]:
    if not groups.get("hour"):
        return 0, 0, 0
    hour = int(groups["hour"] or 0)
    minute = int(groups["minute"] or 0)
    second = int(groups.get("second") or 0)
    ampm = (groups.get("ampm") or "").lower().replace(".", "")
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59 or second > 59:
        return 0, 0, 0
    return hour, minute, second
