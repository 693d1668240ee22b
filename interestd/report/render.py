"""The report as HTML (inline CSS, tables, CSS bars: what Gmail, Outlook and phones render) and plain text. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from interestd.report.data import Period, ReportData
from interestd.safety import clean_text, safe_url

STRINGS: dict[str, dict[str, str]] = {
    "ru": {
        "title": "Сводка интереса",
        "day": "за {d}",
        "week": "за неделю {a} – {b}",
        "month": "за {m}",
        "total": "Всего",
        "previous": "прошлый период",
        "change": "изменение",
        "last7": "7 дней",
        "last30": "30 дней",
        "sources": "Источники и действия",
        "source": "Источник",
        "action": "Действие",
        "count": "Сейчас",
        "products": "Товары",
        "product": "Товар",
        "no_product": "без товара",
        "managers": "Менеджеры",
        "manager": "Менеджер",
        "assigned": "Назначено",
        "claimed": "Взято",
        "processed": "Обработано",
        "with_proof": "Со скриншотом",
        "to_claim": "До взятия (медиана / 90%)",
        "to_processed": "До обработки (медиана / 90%)",
        "backlog": "Открыто",
        "oldest": "Самая старая",
        "queue": "Очередь: не обработано",
        "received": "Пришла",
        "author": "Автор",
        "text": "Текст",
        "responsible": "Ответственный",
        "reply": "Ответить",
        "nobody": "никто",
        "more": "и ещё {n}",
        "health": "Состояние",
        "skipped": "Пропущено писем",
        "quarantined": "В карантине",
        "last_poll": "Последний успешный опрос ящика",
        "never": "ни разу",
        "silent": "Молчащие источники",
        "silent_line": "{s}: в периоде ни одного письма, а до того было {n} дней с письмами (последнее {t})",
        "no_silent": "нет",
        "nothing": "ничего",
        "generated": "Создано",
        "new_cards": "новых",
        "open": "в очереди",
        "reason": "Причина",
        "messages": "писем",
        "empty": "За этот период интереса не было.",
    },
    "en": {
        "title": "Interest summary",
        "day": "for {d}",
        "week": "for the week {a} – {b}",
        "month": "for {m}",
        "total": "Total",
        "previous": "previous period",
        "change": "change",
        "last7": "7 days",
        "last30": "30 days",
        "sources": "Sources and actions",
        "source": "Source",
        "action": "Action",
        "count": "Now",
        "products": "Products",
        "product": "Product",
        "no_product": "no product",
        "managers": "Managers",
        "manager": "Manager",
        "assigned": "Assigned",
        "claimed": "Claimed",
        "processed": "Processed",
        "with_proof": "With screenshot",
        "to_claim": "To claim (median / 90%)",
        "to_processed": "To processed (median / 90%)",
        "backlog": "Open",
        "oldest": "Oldest",
        "queue": "Queue: not processed",
        "received": "Arrived",
        "author": "Author",
        "text": "Text",
        "responsible": "Responsible",
        "reply": "Reply",
        "nobody": "nobody",
        "more": "and {n} more",
        "health": "Health",
        "skipped": "Messages skipped",
        "quarantined": "Quarantined",
        "last_poll": "Last successful mailbox poll",
        "never": "never",
        "silent": "Silent sources",
        "silent_line": "{s}: no mail in the period, after {n} days with mail before it (last {t})",
        "no_silent": "none",
        "nothing": "nothing",
        "generated": "Generated",
        "new_cards": "new",
        "open": "open",
        "reason": "Reason",
        "messages": "messages",
        "empty": "No interest came in this period.",
    },
}
SOURCE_NAMES = {
    "ru": {
        "vk": "ВКонтакте",
        "facebook": "Facebook",
        "odnoklassniki": "Одноклассники",
        "instagram": "Instagram",
        "telegram": "Telegram",
        "site_form": "Формы сайта",
        "site_comment": "Комментарии на сайте",
        "site_review": "Отзывы",
        "chat": "Чат на сайте",
        "email": "Почта",
    },
    "en": {
        "vk": "VKontakte",
        "facebook": "Facebook",
        "odnoklassniki": "Odnoklassniki",
        "instagram": "Instagram",
        "telegram": "Telegram",
        "site_form": "Site forms",
        "site_comment": "Site comments",
        "site_review": "Reviews",
        "chat": "Site chat",
        "email": "E-mail",
    },
}
ACTION_NAMES = {
    "ru": {
        "comment": "комментарии",
        "reply": "ответы",
        "like": "лайки",
        "repost": "репосты",
        "message": "сообщения",
        "review": "отзывы",
        "request": "заявки",
        "mention": "упоминания",
        "subscription": "подписки",
        "order": "заказы",
    },
    "en": {
        "comment": "comments",
        "reply": "replies",
        "like": "likes",
        "repost": "reposts",
        "message": "messages",
        "review": "reviews",
        "request": "requests",
        "mention": "mentions",
        "subscription": "subscriptions",
        "order": "orders",
    },
}
MONTHS = {
    "ru": [
        "января",
        "февраля",
        "марта",
        "апреля",
        "мая",
        "июня",
        "июля",
        "августа",
        "сентября",
        "октября",
        "ноября",
        "декабря",
    ],
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
}
MONTHS_NOMINATIVE_RU = [
    "январь",
    "февраль",
    "март",
    "апрель",
    "май",
    "июнь",
    "июль",
    "август",
    "сентябрь",
    "октябрь",
    "ноябрь",
    "декабрь",
]


@dataclass(frozen=True)
class RenderedReport:
    subject: str
    html: str
    text: str


@lru_cache(maxsize=1)
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("interestd.report", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment


def render(data: ReportData, *, language: str = "ru", zone: ZoneInfo) -> RenderedReport:
    """The report as a mail subject, an HTML body and a plain-text body. Text from mail is escaped in the HTML."""
    language = language if language in STRINGS else "en"
    context = _context(data, language, zone)
    environment = _environment()
    html = environment.get_template("report.html").render(**context)
    text = environment.get_template("report.txt").render(**context)
    return RenderedReport(subject=context["subject"], html=html, text=text)


def _context(data: ReportData, language: str, zone: ZoneInfo) -> dict[str, Any]:
    t = STRINGS[language]
    label = period_label(data.period, language)
    peak = max([row.count for row in data.totals] + [1])
    product_peak = max([count for _, count in data.products] + [data.without_product, 1])
    subject = f"{t['title']} {label}: {data.total} {t['new_cards']}, {data.queue_total} {t['open']}"
    return {
        "t": t,
        "lang": language,
        "subject": subject,
        "title": f"{t['title']} {label}",
        "data": data,
        "totals": [
            {
                "source": SOURCE_NAMES[language].get(row.source_type, row.source_type),
                "action": ACTION_NAMES[language].get(row.action, row.action),
                "count": row.count,
                "previous": row.previous,
                "change": _signed(row.change),
                "change_class": _trend(row.change),
                "last7": row.last7,
                "last30": row.last30,
                "bar": round(100 * row.count / peak),
            }
            for row in data.totals
        ],
        "total": data.total,
        "total_change": _signed(data.total - data.previous_total),
        "previous_total": data.previous_total,
        "products": [
            {"name": _clean(name), "count": count, "bar": round(100 * count / product_peak)}
            for name, count in data.products
        ],
        "without_product": data.without_product,
        "without_bar": round(100 * data.without_product / product_peak),
        "managers": [
            {
                "login": m.login,
                "name": _clean(m.name) or m.login,
                "assigned": m.assigned,
                "claimed": m.claimed,
                "processed": m.processed,
                "with_proof": m.with_proof,
                "to_claim": _pair(m.claim_median, m.claim_p90, language),
                "to_processed": _pair(m.processed_median, m.processed_p90, language),
                "backlog": m.open_backlog,
                "oldest": f"{m.oldest_ref}, {_when(m.oldest_at, zone)}" if m.oldest_ref else "—",
            }
            for m in data.managers
        ],
        "queue": [
            {
                "ref": row.ref,
                "received": _when(row.received_at, zone),
                "source": SOURCE_NAMES[language].get(row.source_type, row.source_type),
                "author": _clean(row.author) or "—",
                "excerpt": _clean(row.excerpt) or "",
                "responsible": row.responsible or t["nobody"],
                "href": safe_url(row.reply_url),
            }
            for row in data.queue
        ],
        "queue_more": max(data.queue_total - len(data.queue), 0),
        "skipped": [(_clean(reason), count) for reason, count in data.skipped],
        "quarantined": [(_clean(reason), count) for reason, count in data.quarantined],
        "last_poll": _when(data.last_successful_poll, zone) if data.last_successful_poll else t["never"],
        "silent": [
            t["silent_line"].format(
                s=SOURCE_NAMES[language].get(s.source_type, s.source_type),
                n=s.active_days,
                t=_when(s.last_seen, zone) if s.last_seen else "?",
            )
            for s in data.silent
        ],
        "generated": _when(data.generated_at, zone),
    }


def period_label(period: Period, language: str) -> str:
    t = STRINGS[language]
    months = MONTHS[language]
    first, last = period.first_day, period.last_day
    if period.kind == "day":
        day = f"{first.day} {months[first.month - 1]} {first.year}"
        return t["day"].format(d=day)
    if period.kind == "week":
        return t["week"].format(
            a=f"{first.day} {months[first.month - 1]}", b=f"{last.day} {months[last.month - 1]} {last.year}"
        )
    month = (MONTHS_NOMINATIVE_RU if language == "ru" else months)[first.month - 1]
    return t["month"].format(m=f"{month} {first.year}")


def duration_text(seconds: float | None, language: str) -> str:
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    unit = {"ru": ("мин", "ч", "д"), "en": ("min", "h", "d")}[language]
    if minutes < 60:
        return f"{minutes} {unit[0]}"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} {unit[1]} {minutes} {unit[0]}" if minutes else f"{hours} {unit[1]}"
    days, hours = divmod(hours, 24)
    return f"{days} {unit[2]} {hours} {unit[1]}" if hours else f"{days} {unit[2]}"


def _pair(median: float | None, p90: float | None, language: str) -> str:
    if median is None:
        return "—"
    return f"{duration_text(median, language)} / {duration_text(p90, language)}"


def _when(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%d.%m.%Y %H:%M") if moment else "—"


def _signed(value: int) -> str:
    return f"+{value}" if value > 0 else str(value)


def _trend(value: int) -> str:
    return "up" if value > 0 else "down" if value < 0 else "same"


def _clean(value: str | None) -> str | None:
    return clean_text(value)
