"""Site form mails (Contact Form 7, WPForms, Elementor, Tilda, 1C-Bitrix, Yandex Forms, hand-made PHP forms) as cards.

Each well-known sender is recognised by its own fingerprint (Bitrix's X-EVENT_NAME, Yandex Forms' X-Form-ID, Tilda's
noreply@tilda.ws plus its "Block ID"/"Form Name" lines, the WordPress plugins' footers and markup); any other mail
counts as a form only when a website robot sent it and it carries "Имя:/Телефон:"-style field lines. The fields are
read by parsers/_siteform.py; this module picks the visitor's name, e-mail, phone, message, product and page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar
from urllib.parse import urlsplit

from interestd_parsers._siteform import (
    Field,
    Reading,
    clean_url,
    contact_labels,
    first_url,
    read_blocks,
    read_html_rows,
    read_text,
)

from interestd.card import CardDraft, normalise_email
from interestd.dates import parse_human_date
from interestd.errors import ParseError
from interestd.extract import find_emails, find_phones, label_values
from interestd.message import ParsedMessage

# Senders other parsers own (social networks, chats, review and comment services): never a site form here.
_FOREIGN_DOMAIN = re.compile(
    r"(?:^|\.)(?:vk\.com|vk\.ru|vkontakte\.ru|facebookmail\.com|facebook\.com|instagram\.com|ok\.ru|odnoklassniki\.ru"
    r"|telegram\.org|t\.me|jivo\.ru|jivosite\.(?:ru|com)|jivochat\.(?:com|ru)|chatra\.(?:io|com)|tidio\.(?:com|net|co)"
    r"|tidiomail\.com|tawk\.to"
    r"|livechatinc\.com|livechat\.com|crisp\.chat|carrotquest\.io|dashly\.io|chaport\.com|talk-me\.ru|verbox\.ru"
    r"|disqus\.(?:net|com)|google\.com|otzovik\.com|flamp\.ru|2gis\.(?:ru|com)|irecommend\.ru|[\w-]+\.yandex\.(?:ru|com)"
    r"|hypercomments\.com|cackle\.me)$",
    re.IGNORECASE,
)
_TILDA_DOMAIN = re.compile(r"(?:^|\.)(?:tilda\.ws|tilda\.cc|tildacdn\.com)$", re.IGNORECASE)
_TILDA_MARKER = re.compile(
    r"^(?:Block ID:\s*rec\d+|Form Name:|Transaction ID:|Request ID:|Уникальный номер блока с формой:"
    r"|Уникальный номер заявки:|Название формы:|Request (?:information|details):|Purchaser information:"
    r"|Информация о (?:заказе|покупателе|заявке):|Order\s*#\s*\d+)",
    re.IGNORECASE | re.MULTILINE,
)
_TILDA_STRONG = re.compile(r"^(?:Block ID:\s*rec\d+|Уникальный номер блока с формой:\s*rec\d+)", re.I | re.M)
_BITRIX_SKIP_EVENT = re.compile(
    r"USER|PASS|SUBSCRIBE|BLOG|FORUM|COMMENT|REVIEW|STATUS|PAID|CANCEL|DELIVERY|VOTE|TICKET|^IM_|LEARNING|WIKI"
    r"|IDEA|SONET|CALENDAR|TASK|BACKUP|UPDATE|REMIND|SUPPORT|NEWSLETTER",
    re.IGNORECASE,
)
_BITRIX_FORM_EVENT = re.compile(r"FORM|FEEDBACK|CALLBACK|CALL|ORDER|REQUEST|ZAYAV|ZAKAZ|QUESTION|CONTACT|LEAD", re.I)
_BITRIX_BODY = re.compile(
    r"^(?:Заполнена web-форма|Вам было отправлено сообщение через форму обратной связи)"
    r"|Сообщение из формы обратной связи|^Ваш заказ (?:номер|№|N)\s*\S+ от .+ принят",
    re.IGNORECASE | re.MULTILINE,
)
_CF7_FOOTER = re.compile(
    r"(?:This e-?mail was sent from a contact form on|Это (?:сообщение|письмо) (?:было )?отправлено с сайта)\s+"
    r"(?P<site>.+?)\s*\((?P<url>https?://[^)\s]+)\)",
    re.IGNORECASE,
)
_ELEMENTOR = re.compile(r"^(?:Powered by|Работает на)\s*:\s*(?:https?://)?(?:www\.)?elementor", re.I | re.M)
_ELEMENTOR_SUBJECT = re.compile(r'^(?:New message from|Новое сообщение (?:с сайта|от)) ["«]', re.IGNORECASE)
_WPFORMS_SUBJECT = re.compile(r"^(?:New Entry|Новая запись)\s*:", re.IGNORECASE)
_WPFORMS_DASHED = re.compile(r"^-{3}\s+\S.*\s-{3}\s*$", re.MULTILINE)
_REPLY_SUBJECT = re.compile(r"^\s*(?:re|ответ|отв|aw|fwd?|пересл)\s*(?:\[\d+\])?\s*:", re.IGNORECASE)
_COMMENT_MARKS = re.compile(r"wp-admin/comment\.php|wp-admin/edit-comments\.php|#comment-\d+|#comments\b", re.I)
_NOT_FORM_SUBJECT = re.compile(
    r"коммент|comment|отзыв|review|pingback|trackback|offline message|оффлайн|пропущенн\w* (?:чат|диалог)"
    r"|сброс пароля|password|регистрац|registration|подписк|subscri|рассылк|newsletter",
    re.IGNORECASE,
)
_ROBOT_LOCAL = re.compile(
    r"^(?:no-?reply|do-?not-?reply|noanswer|robot|mailer|wordpress|www-data|www|apache|nginx|nobody|php|web"
    r"|webmaster|site|sitemail|website|form|forms|feedback|notify|notification|bitrix|admin|bezotveta|send"
    r"|sender|mail|zayavka|zayavki|lead|leads)(?:[+._-].*)?$",
    re.IGNORECASE,
)
_FORM_WORDS = re.compile(
    r"заявк|форм[аеуыой]|обратн\w* (?:звон|связ)|звон|callback|call back|заказ|order|request|запрос|\blead|\bлид\b"
    r"|с сайта|website|contact|feedback|вопрос|question|обращени|сообщение с|message from|submission|entry",
    re.IGNORECASE,
)
_ORDER_START = re.compile(r"^(?:Order\s*#\s*\d+|Заказ\s*[#№]\s*\d+|Информация о заказе:?|Номер заказа:.*)$", re.I)
_ORDER_END = re.compile(
    r"^(?:Purchaser information|Информация о покупателе|Данные покупателя|Additional information"
    r"|Дополнительная информация|Request information)\s*:?$",
    re.IGNORECASE,
)
_ORDER_NUMBER = re.compile(r"(?:order|заказ)\s*(?:[#№]|номер|N)\s*:?\s*(?P<number>\d+)", re.IGNORECASE)
_TILDA_ITEM = re.compile(
    r"^\d+\.\s+(?P<title>.+):\s*(?P<total>\d[\d\s.,]*)\s*\((?P<qty>[\d.,]+)[^)]*?x\s*[\d\s.,]+\)\s*(?P<options>.*)$"
)
_BITRIX_ORDER_LINE = re.compile(
    r"^(?:Ваш )?заказ (?:номер|№|N)\s*(?P<number>\S+)\s+от\s+(?P<date>.+?)\s+(?:принят|оформлен)", re.I | re.M
)
_BITRIX_DEAR = re.compile(r"^Уважаем(?:ый|ая|ый\(ая\))\s+(?P<name>[^,!\n]+?)\s*[,!]", re.MULTILINE)
_BITRIX_ITEM = re.compile(
    r"^(?P<title>.+?)(?:\s*\[(?P<props>[^\]]*)\])?\s+-\s+(?P<qty>\d+(?:[.,]\d+)?)\s*(?P<unit>[^\s:\d]*)\s*:\s*(?P<price>.+)$"
)
_ADMIN_PATH = re.compile(r"/(?:bitrix/admin|wp-admin|wp-login\.php|admin|cloud/admin)(?:/|\b)", re.IGNORECASE)
_SCAN_CHARS = 30_000  # the field lines of a form are at the top; match() looks no further
_PHONE_ONLY = re.compile(r"^\+?[\d\s().\-]{6,25}$")
_YANDEX_FORM_ID = re.compile(r"^\s*(?P<id>[0-9a-f]{24}|\d{4,12})\s*$", re.IGNORECASE)


@dataclass
class Order:
    """An order block: its lines as the mail wrote them, the ordered items and the order number."""

    block: str
    products: list[str]
    number: str | None = None


@dataclass
class Form:
    """What one sender's layout yields before the shared rules pick the card's fields."""

    reading: Reading
    site_url: str | None = None
    page_url: str | None = None
    when_text: str | None = None
    order: Order | None = None
    name: str | None = None
    email: str | None = None


class SiteFormParser:
    name: ClassVar[str] = "site_form"
    priority: ClassVar[int] = 60
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        return detect(msg) is not None

    def parse(self, msg: ParsedMessage) -> CardDraft:
        kind = detect(msg) or "generic"
        text = msg.text or ""
        form = _READERS[kind](msg, text)
        return _draft(msg, form)


# ---------------------------------------------------------------- detection


def detect(msg: ParsedMessage) -> str | None:
    """Which form sender wrote `msg` (cf7, wpforms, elementor, tilda, bitrix, yandex_forms, generic), or None."""
    # Asked by match() and again by parse(): worked out once per message.
    return msg.derived("site_form.detect", _detect)


def _detect(msg: ParsedMessage) -> str | None:
    sender = msg.sender_email or ""
    domain = sender.rpartition("@")[2]
    if msg.header("X-Form-ID") is not None or re.search(r"(?:^|\.)forms\.yandex\.(?:ru|com)$", domain):
        return "yandex_forms"
    if _FOREIGN_DOMAIN.search(domain):
        return None
    text = msg.text or ""
    event = msg.header("X-EVENT_NAME")
    if event is not None:
        return _bitrix_event(event, msg, text)
    if _TILDA_DOMAIN.search(domain):
        return "tilda" if _TILDA_MARKER.search(text) else None
    if _TILDA_STRONG.search(text) and len({m.group(0).lower() for m in _TILDA_MARKER.finditer(text)}) >= 2:
        return "tilda"
    if _REPLY_SUBJECT.match(msg.subject) and not _is_robot(msg):
        return None  # a person answering or quoting a form mail: their letter, not the form
    if _BITRIX_BODY.search(text):
        return "bitrix"
    if _COMMENT_MARKS.search(text) or _NOT_FORM_SUBJECT.search(msg.subject):
        return None
    return _wordpress_plugin(msg, text) or ("generic" if _generic_form(msg, text) else None)


def _bitrix_event(event: str, msg: ParsedMessage, text: str) -> str | None:
    if event.strip().upper().startswith(("FORM_FILLING", "FEEDBACK_FORM", "SALE_NEW_ORDER")):
        return "bitrix"
    if _BITRIX_SKIP_EVENT.search(event):
        return None
    if _BITRIX_FORM_EVENT.search(event) or _contact_keys(text) >= 2:
        return "bitrix"
    return None


def _wordpress_plugin(msg: ParsedMessage, text: str) -> str | None:
    unquoted = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(">"))
    wordpress = _is_wordpress(msg)
    if _CF7_FOOTER.search(unquoted):
        return "cf7"
    if _ELEMENTOR.search(unquoted) or (wordpress and _ELEMENTOR_SUBJECT.match(msg.subject)):
        return "elementor"
    html = msg.html or ""
    if re.search(r"class=[\"']?field-(?:name|value)", html) or (
        (wordpress or _is_robot(msg))
        and (_WPFORMS_SUBJECT.match(msg.subject) or len(_WPFORMS_DASHED.findall(unquoted)) >= 2)
    ):
        return "wpforms"
    return None


def _generic_form(msg: ParsedMessage, text: str) -> bool:
    if not _is_robot(msg):
        return False
    found = label_values(text[:_SCAN_CHARS], contact_labels())
    if len(found) < 2 or not ({"name", "phone"} & set(found)):
        return False
    return bool(_FORM_WORDS.search(msg.subject) or _FORM_WORDS.search(text[:500]))


def _contact_keys(text: str) -> int:
    return len(label_values(text[:_SCAN_CHARS], contact_labels()))


def _is_wordpress(msg: ParsedMessage) -> bool:
    mailer = msg.header("X-Mailer") or ""
    local = (msg.sender_email or "").partition("@")[0]
    return "phpmailer" in mailer.lower() or local == "wordpress"


def _is_robot(msg: ParsedMessage) -> bool:
    """Sent by a website script rather than a person's mail client."""
    sender = msg.sender_email or ""
    if _ROBOT_LOCAL.match(sender.partition("@")[0]):
        return True
    mailer = (msg.header("X-Mailer") or "").lower()
    if any(word in mailer for word in ("php", "bitrix", "wordpress")):
        return True
    if msg.header("X-PHP-Originating-Script") or msg.header("X-PHP-Script"):
        return True
    return bool(sender) and sender in {a.email.lower() for a in msg.to if a.email}


# ---------------------------------------------------------------- per-sender reading


def _read_cf7(msg: ParsedMessage, text: str) -> Form:
    footer = _CF7_FOOTER.search(text)
    return Form(_best_reading(msg, text), site_url=footer.group("url") if footer else None)


def _read_wordpress(msg: ParsedMessage, text: str) -> Form:
    return Form(_best_reading(msg, text), site_url=_site_link(msg))


def _read_elementor(msg: ParsedMessage, text: str) -> Form:
    reading = _best_reading(msg, text)
    page = reading.value("page") or next((u for u in reading.urls if not _ADMIN_PATH.search(u)), None)
    return Form(reading, page_url=first_url(page))


def _read_tilda(msg: ParsedMessage, text: str) -> Form:
    lines = text.replace("\r\n", "\n").split("\n")
    order, rest = _tilda_order(lines)
    reading = read_text("\n".join(rest))
    page = reading.value("page") or next((u for u in reading.urls if not _ADMIN_PATH.search(u)), None)
    return Form(reading, page_url=first_url(page), order=order, when_text=reading.value("date"))


def _read_bitrix(msg: ParsedMessage, text: str) -> Form:
    event = (msg.header("X-EVENT_NAME") or "").upper()
    if event.startswith("SALE_NEW_ORDER") or _BITRIX_ORDER_LINE.search(text):
        return _bitrix_order(msg, text)
    reading = _best_reading(msg, text)
    admin = next((u for u in reading.urls if _ADMIN_PATH.search(u)), None)
    return Form(reading, site_url=_root(admin), when_text=reading.value("date"))


def _read_yandex(msg: ParsedMessage, text: str) -> Form:
    reading = _best_reading(msg, text)
    blocks = read_blocks(text)
    if _field_count(blocks) > _field_count(reading):
        reading = blocks
    match = _YANDEX_FORM_ID.match(msg.header("X-Form-ID") or "")
    form_url = None
    if match:
        form_id = match.group("id").lower()
        form_url = f"https://forms.yandex.ru/{'surveys' if form_id.isdigit() else 'u'}/{form_id}/"
    sender = msg.sender_email or ""
    email = sender if sender and not sender.endswith("forms.yandex.ru") and normalise_email(sender) else None
    return Form(reading, site_url=form_url, email=email)


def _read_generic(msg: ParsedMessage, text: str) -> Form:
    reading = _best_reading(msg, text)
    if _field_count(reading) < 2:
        blocks = read_blocks(text)
        reading = blocks if _field_count(blocks) > _field_count(reading) else reading
    return Form(reading, site_url=_site_link(msg))


_READERS = {
    "cf7": _read_cf7,
    "wpforms": _read_wordpress,
    "elementor": _read_elementor,
    "tilda": _read_tilda,
    "bitrix": _read_bitrix,
    "yandex_forms": _read_yandex,
    "generic": _read_generic,
}


def _best_reading(msg: ParsedMessage, text: str) -> Reading:
    """The text reading, or the HTML table reading when that finds more fields (WPForms custom labels, PHP tables)."""
    reading = read_text(text)
    tree = msg.html_tree
    if tree is not None and (not (msg.plain or "").strip() or _field_count(reading) < 2 or "field-name" in msg.html):
        rows = read_html_rows(tree)
        if _field_count(rows) > _field_count(reading):
            return Reading(rows.fields, reading.urls)
    return reading


def _field_count(reading: Reading) -> int:
    return sum(1 for f in reading.fields if f.key != "meta")


def _tilda_order(lines: list[str]) -> tuple[Order | None, list[str]]:
    """The order block of a Tilda cart mail (its lines, items, number) and the other lines of the mail."""
    start = next((i for i, line in enumerate(lines) if _ORDER_START.match(line.strip())), None)
    if start is None:
        return None, lines
    end = next((i for i in range(start + 1, len(lines)) if _ORDER_END.match(lines[i].strip())), len(lines))
    block = [line.strip() for line in lines[start:end] if line.strip()]
    products = [_tilda_product(match) for line in block if (match := _TILDA_ITEM.match(line))]
    number = next((m.group("number") for line in block if (m := _ORDER_NUMBER.search(line))), None)
    if not products and number is None:
        return None, lines
    return Order("\n".join(block), products, number), lines[:start] + lines[end:]


def _tilda_product(match: re.Match[str]) -> str:
    title, options = match.group("title").strip(), match.group("options").strip()
    return f"{title} ({options})" if options else title


def _bitrix_order(msg: ParsedMessage, text: str) -> Form:
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    head = _BITRIX_ORDER_LINE.search(text)
    start = next((i for i, line in enumerate(lines) if _BITRIX_ORDER_LINE.match(line)), 0)
    items: list[str] = []
    last = start
    for index in range(start, len(lines)):
        match = _BITRIX_ITEM.match(lines[index])
        if match and index > start:
            props = (match.group("props") or "").strip()
            items.append(f"{match.group('title').strip()} ({props})" if props else match.group("title").strip())
            last = index
        elif items and lines[index] and not match:
            break
    if not items:  # no list found: the block is the order line and the cost
        last = next((i for i in range(start, len(lines)) if lines[i].lower().startswith("стоимость")), start)
    block = "\n".join(line for line in lines[start : last + 1] if line)
    order = Order(block, items, head.group("number") if head else None)
    dear = _BITRIX_DEAR.search(text)
    reading = read_text("\n".join(lines[:start]))  # what follows the list is the shop's own wording
    return Form(
        reading,
        site_url=_site_link(msg),
        order=order,
        when_text=head.group("date") if head else None,
        name=dear.group("name") if dear else None,
        email=_customer_in_to(msg),
    )


def _customer_in_to(msg: ParsedMessage) -> str | None:
    """Bitrix sends the new-order mail to the customer and the shop gets a Bcc copy: the customer is in To."""
    shop = (msg.sender_email or "").rpartition("@")[2]
    for address in msg.to:
        if address.email and address.email.lower().rpartition("@")[2] != shop and normalise_email(address.email):
            return address.email
    return None


def _site_link(msg: ParsedMessage) -> str | None:
    """The site's home page as the footer links it (a link whose path is empty or "/")."""
    for link in msg.links:
        href = link.href.strip()
        if not href.lower().startswith(("http://", "https://")):
            continue
        try:
            parts = urlsplit(href)
            host = parts.hostname or ""
        except ValueError:
            continue
        if parts.path in ("", "/") and not parts.query and not _FOREIGN_DOMAIN.search(host):
            return href
    return None


def _root(url: str | None) -> str | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.netloc}/" if parts.netloc else None


# ---------------------------------------------------------------- the card


def _draft(msg: ParsedMessage, form: Form) -> CardDraft:
    reading = form.reading
    used: set[int] = set()
    name = form.name or _name(reading, used)
    email = _email(reading, used) or form.email or _reply_to_person(msg)
    phone = _phone(reading, used)
    page = clean_url(form.page_url or _page(reading, used))
    occurred = _occurred(msg, reading, form, used)
    products = form.order.products if form.order else []
    product_field = reading.first("product")
    product = "; ".join(products) if products else (product_field.value.split("\n")[0] if product_field else None)
    if product_field is not None and not products:
        used.add(id(product_field))
    product_url = clean_url(first_url(reading.value("product_url")) or first_url(product))
    if reading.first("product_url") is not None:
        used.add(id(reading.first("product_url")))
    text = _text(reading, form, used)
    source_url = page or clean_url(form.site_url)
    if not (text or name or email or phone or source_url):
        raise ParseError("a form mail without any field, contact or page")
    missing = _missing(name, email, phone, source_url, form)
    return CardDraft(
        source_type="site_form",
        action="order" if form.order else "request",
        text=text,
        source_url=source_url,
        occurred_at=occurred,
        author_name=name,
        author_email=email,
        author_phone=phone,
        product=product,
        product_url=product_url,
        missing=missing,
    )


def _name(reading: Reading, used: set[int]) -> str | None:
    first = reading.first("name")
    last = reading.first("last_name")
    name = first.value.split("\n")[0].strip() if first else None
    if first is not None:
        used.add(id(first))
    if last is not None:
        used.add(id(last))
        surname = last.value.split("\n")[0].strip()
        name = f"{name} {surname}" if name and surname.lower() not in name.lower() else (name or surname)
    if name:
        return name
    from_line = reading.first("from_line")
    if from_line is not None:
        used.add(id(from_line))
        return re.sub(r"<[^>]*>|\S+@\S+", "", from_line.value).strip(" \"'") or None
    return None


def _email(reading: Reading, used: set[int]) -> str | None:
    for key in ("email", "from_line"):
        found = reading.first(key)
        if found is None:
            continue
        used.add(id(found))
        emails = find_emails(found.value)
        if emails:
            return emails[0]
    return None


def _reply_to_person(msg: ParsedMessage) -> str | None:
    """The visitor in Reply-To (CF7's default, often WPForms and Elementor), not the site's own address."""
    sender = msg.sender_email or ""
    for address in msg.reply_to:
        candidate = (address.email or "").lower()
        if candidate and candidate != sender and normalise_email(candidate):
            return candidate
    return None


def _phone(reading: Reading, used: set[int]) -> str | None:
    found = reading.first("phone")
    if found is None:
        return None
    used.add(id(found))
    line = found.value.split("\n")[0].strip()
    if _PHONE_ONLY.match(line):
        return line  # the whole value: find_phones would cut "+49 30 2589 4417" short
    phones = find_phones(found.value)
    return phones[0] if phones else line


def _page(reading: Reading, used: set[int]) -> str | None:
    found = reading.first("page")
    if found is not None:
        used.add(id(found))
        url = first_url(found.value)
        if url:
            return url
    return next((u for u in reading.urls if not _ADMIN_PATH.search(u) and "forms.yandex" not in u), None)


def _occurred(msg: ParsedMessage, reading: Reading, form: Form, used: set[int]) -> datetime | None:
    """The submission time. The mail's Date wins: form robots send at once and Date carries the zone, while body
    times are in the site's zone without an offset (WordPress even dates the mail in UTC). A body stamp counts when
    there is no Date, or when a stamp the sender itself writes (Bitrix "Дата -", an order's date) is days older:
    the mail was sent again later. A "Дата" field far from Date is the visitor's wish and stays in the text."""
    date, time = reading.first("date"), reading.first("time")
    field_text = f"{date.value} {time.value}" if date is not None and time is not None else None
    field_time = parse_human_date(field_text or (date.value if date else ""), reference=msg.date) if date else None
    stamp = parse_human_date(form.when_text, reference=msg.date) if form.when_text else None
    if field_time is not None and (msg.date is None or abs(field_time - msg.date) <= timedelta(days=1)):
        used.update(id(f) for f in (date, time) if f is not None)
    if msg.date is None:
        return stamp or field_time
    if stamp is not None and abs(stamp - msg.date) > timedelta(days=1):
        return stamp
    return msg.date


def _text(reading: Reading, form: Form, used: set[int]) -> str:
    """What the visitor wrote: their subject line, message, the order block, then the site's own questions."""
    subject = reading.first("subject")
    messages = [f for f in reading.fields if f.key == "message"]
    head = f"{subject.label}: {subject.value}" if subject is not None else ""
    used.update(id(f) for f in messages[:1])
    if subject is not None:
        used.add(id(subject))
    extras = [_line(f) for f in reading.fields if id(f) not in used and f.key not in ("meta", "page", "from_line")]
    extras = list(dict.fromkeys(extras))
    parts = [head, messages[0].value if messages else "", form.order.block if form.order else "", "\n".join(extras)]
    return "\n\n".join(part for part in parts if part)


def _line(item: Field) -> str:
    label = item.label.replace("_", " ").strip()
    value = item.value if "\n" not in item.value else "\n" + item.value
    return f"{label} {value}" if label.endswith(("?", "!")) else f"{label}: {value}"


def _missing(name: str | None, email: str | None, phone: str | None, source_url: str | None, form: Form) -> list[str]:
    missing = []
    if not name:
        missing.append("author_name")
    if not email and not phone:
        missing += ["author_email", "author_phone"]
    if not source_url:
        missing.append("source_url")
    if form.order is not None and not form.order.products:
        missing.append("product")
    return missing  # no message is no news: callback forms ask only for a name and a phone
