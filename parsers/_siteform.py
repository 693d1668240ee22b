"""Reading "label: value" fields out of site-form mails: text lines, Bitrix and WPForms blocks, HTML table rows.

The reader keeps every field in the order it came, with the label as written and a canonical key (name, phone,
email, message, product, page, …) when the label is a known one; unknown labels are the site's custom questions
and stay in the card text. Values may run over several lines (messages, Tilda multi-line answers); a value ends at
the next label line, a separator (`--`, `---`, `*****`), a bare URL line or the sender's boilerplate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from interestd.extract import find_urls
from interestd.htmltext import element_text, tree_to_text

MAX_LINES = 2000  # a form mail is short; a huge body is read only this far

_LABELS: dict[str, tuple[str, ...]] = {
    "name": (
        "имя",
        "ваше имя",
        "фио",
        "ф.и.о.",
        "ф.и.о",
        "ф. и. о.",
        "имя и фамилия",
        "фамилия и имя",
        "фамилия имя",
        "фамилия, имя",
        "фамилия имя отчество",
        "имя фамилия",
        "контактное лицо",
        "как к вам обращаться",
        "как вас зовут",
        "имя клиента",
        "имя посетителя",
        "ваше имя и фамилия",
        "автор",
        "name",
        "your name",
        "your-name",
        "full name",
        "fullname",
        "fio",
        "contact name",
        "author",
    ),
    "last_name": ("фамилия", "last name", "lastname", "surname"),
    "phone": (
        "телефон",
        "тел",
        "тел.",
        "ваш телефон",
        "номер телефона",
        "ваш номер телефона",
        "контактный телефон",
        "мобильный телефон",
        "моб. телефон",
        "мобильный",
        "телефон автора",
        "телефон для связи",
        "phone",
        "your phone",
        "your-phone",
        "phone number",
        "telephone",
        "tel",
        "tel.",
        "mobile",
    ),
    "email": (
        "e-mail",
        "email",
        "e mail",
        "ваш e-mail",
        "ваш email",
        "ваша почта",
        "эл. почта",
        "эл.почта",
        "электронная почта",
        "почта",
        "адрес электронной почты",
        "e-mail автора",
        "email автора",
        "your email",
        "your-email",
        "your e-mail",
        "email address",
        "e-mail address",
        "mail",
    ),
    "message": (
        "сообщение",
        "ваше сообщение",
        "текст сообщения",
        "комментарий",
        "комментарии",
        "ваш комментарий",
        "комментарий к заказу",
        "комментарий покупателя",
        "вопрос",
        "ваш вопрос",
        "текст",
        "текст обращения",
        "пожелания",
        "примечание",
        "message",
        "your message",
        "your-message",
        "message body",
        "comment",
        "comments",
        "your comment",
        "comment or message",
        "question",
        "your question",
        "textarea",
    ),
    "product": (
        "товар",
        "наименование товара",
        "название товара",
        "продукт",
        "услуга",
        "выбранная услуга",
        "интересующая услуга",
        "интересующий товар",
        "тариф",
        "product",
        "product name",
        "service",
    ),
    "product_url": ("ссылка на товар", "product url", "product link"),
    "subject": ("тема", "тема сообщения", "тема обращения", "subject", "your subject", "your-subject"),
    "page": (
        "страница",
        "url страницы",
        "адрес страницы",
        "страница отправки",
        "отправлено со страницы",
        "форма отправлена со страницы",
        "страница сайта",
        "ссылка на страницу",
        "url",
        "page",
        "page url",
        "source page",
        "referer",
        "referrer",
        "http referer",
        "реферер",
    ),
    "date": ("дата", "date", "дата отправки", "дата заявки", "дата и время", "date/time", "время заказа"),
    "time": ("время", "time", "время отправки"),
    "from_line": ("от", "from", "от кого"),
}
_CANONICAL = {label: key for key, labels in _LABELS.items() for label in labels}

# Technical lines the form robots add: never the person's words.
_META = re.compile(
    r"^(?:ip|ip[- ]?адрес|ip address|remote ip|удал[её]нный ip|user agent|user-agent|useragent|пользовательский агент"
    r"|браузер|powered by|работает на|transaction id|request id|block id|form name|form id|formid|formname|tranid"
    r"|уникальный номер.*|название формы|форма|form|результат|пользователь|посетитель|сессия|page title"
    r"|заголовок страницы|site|сайт|site url|utm.*|cookies?|roistat.*|yclid|gclid|fbclid|client ?id|_?ym.?uid"
    r"|.*согласи[ея].*|.*consent.*|.*policy.*|.*privacy.*|i agree.*|payment id|payment system|платежная система"
    r"|serial number|id заявки|id|ma .*|referer title|page title)$"
)
_SEPARATOR = re.compile(r"^(?:--\s*|-{3,}.*|\*{3,}|={3,}|_{3,}|—{2,})$")
# Lines of the senders' own wording (intros, footers, section titles) in the languages they come in.
_BOILERPLATE = re.compile(
    r"^(?:this e-?mail was sent from|это (?:сообщение|письмо) (?:было )?отправлено с|(?:сообщение|письмо) отправлено"
    r" с сайта|sent from\b|отправлено с сайта|powered by\b|(?:сообщение|письмо) сгенерировано автоматически"
    r"|для просмотра воспользуйтесь ссылкой|информационное сообщение сайта|вам было отправлено сообщение"
    r"|заполнена web-форма|web form filled|request (?:information|details)|additional information"
    r"|purchaser information|информация о (?:заявке|покупателе)|данные заявки|дополнительная информация"
    r"|не отвечайте на это письмо|please do not reply|это письмо (?:сформировано|создано) автоматически"
    r"|(?:новая )?заявка с сайта|(?:новое )?сообщение с сайта|new (?:lead|request|message) from)",
    re.IGNORECASE,
)
_PAIR = re.compile(r"^[•·\s]*(?P<label>[^:\t\n]{1,60}?)\s*(?P<sep>:|\t| - | — )\s*(?P<value>.*)$")
_DASHED_LABEL = re.compile(r"^-{2,}\s*(?P<label>[^-].*?)\s*-{2,}$")
_STARS = re.compile(r"^\*{5,}$")
_URL_LINE = re.compile(r"^(?:<?(https?://\S+?)>?)(?:\s+\(\s*https?://\S+?\s*\))?$")
_SENTENCE = re.compile(r"[,;!]|\.\s|\?.")
_DOMAIN = re.compile(r"\.[a-z]{2,}\b", re.IGNORECASE)

_TRACKING = re.compile(
    r"^(?:utm_\w+|yclid|gclid|fbclid|ysclid|_openstat|openstat|roistat\w*|from_email|aref|n_m|mid|bcode|lloc|landref"
    r"|_ga|_gl|msclkid|mc_cid|mc_eid|etext|tm_\w+)$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Field:
    """One form field: the label as the mail wrote it, its value, and the canonical key when the label is known."""

    label: str
    value: str
    key: str | None


@dataclass(frozen=True, slots=True)
class Reading:
    """The fields of a form mail in order, and the URLs that stood alone on a line (Tilda's page URL, admin links)."""

    fields: tuple[Field, ...]
    urls: tuple[str, ...]

    def first(self, key: str) -> Field | None:
        return next((f for f in self.fields if f.key == key), None)

    def value(self, key: str) -> str | None:
        found = self.first(key)
        return found.value if found else None


def label_key(label: str) -> str:
    """A label made comparable: lower case, ё as е, underscores and runs of spaces as one space, no trailing ':*'."""
    text = label.lower().replace("ё", "е").replace("_", " ").replace("\u00a0", " ")
    text = re.sub(r"\s+", " ", text).strip(" \t*:")
    return text.strip()


def canonical(label: str) -> str | None:
    """The canonical key of a label (name, phone, email, message, …), "meta" for technical lines, else None."""
    key = label_key(label)
    if not key:
        return None
    if key in _CANONICAL:
        return _CANONICAL[key]
    return "meta" if _META.match(key) else None


def contact_labels() -> dict[str, tuple[str, ...]]:
    """Labels of the four contact fields, in the shape `interestd.extract.label_values` takes."""
    return {key: _LABELS[key] for key in ("name", "phone", "email", "message")}


def is_boilerplate(line: str) -> bool:
    stripped = line.strip()
    return bool(_SEPARATOR.match(stripped) or _BOILERPLATE.match(stripped))


def bare_url(line: str) -> str | None:
    match = _URL_LINE.match(line.strip())
    return match.group(1) if match else None


def read_text(text: str) -> Reading:
    """Fields of a text body: "Label: value" lines, Bitrix `Label/*****/value` and WPForms `--- Label ---` blocks."""
    lines = [line.strip() for line in (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = lines[:MAX_LINES]
    fields: list[Field] = []
    urls: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        url = bare_url(line)
        if url:
            urls.append(url)
            continue
        if index < len(lines) and _STARS.match(lines[index]):
            value, index = _block(lines, index + 1)
            _add(fields, line, value)
            continue
        dashed = _DASHED_LABEL.match(line)
        if dashed and not is_boilerplate(dashed.group("label")):
            value, index = _block(lines, _skip_blank(lines, index), until_dashed=True)
            _add(fields, dashed.group("label"), value)
            continue
        if is_boilerplate(line):
            continue
        pair = _split_pair(line)
        if pair is not None:
            label, value = pair
            key = canonical(label)
            if value:
                more, index = _continuation(lines, index, key, fields)
                value = "\n".join([value, *more])
            else:
                more, index = _continuation(lines, index, key, fields, after_label=True)
                value = "\n".join(more)
            _add(fields, label, value)
            continue
        key = canonical(line)
        if key is not None and key != "meta" and _next_is_value(lines, index):
            more, index = _continuation(lines, index, key, fields, after_label=True)
            _add(fields, line, "\n".join(more))
    return Reading(tuple(fields), tuple(urls))


def read_blocks(text: str) -> Reading:
    """Fields of a body written as paragraphs "question line / answer lines" (Yandex Forms and similar)."""
    fields: list[Field] = []
    urls: list[str] = []
    head = "\n".join((text or "").replace("\r\n", "\n").split("\n")[:MAX_LINES])
    for paragraph in re.split(r"\n\s*\n", head):
        lines = [line.strip() for line in paragraph.split("\n") if line.strip()]
        if not lines:
            continue
        if len(lines) == 1:
            url = bare_url(lines[0])
            if url:
                urls.append(url)
            continue
        label = lines[0]
        if len(label) > 120 or _split_pair(label) is not None or is_boilerplate(label) or bare_url(label):
            continue
        _add(fields, label, "\n".join(lines[1:]))
    return Reading(tuple(fields), tuple(urls))


def read_html_rows(tree: Any) -> Reading:
    """Fields of HTML tables: two-cell rows (label | value) and a label row followed by a value row (WPForms)."""
    fields: list[Field] = []
    pending: str | None = None
    for row in _leaf_rows(tree):
        cells = [cell for cell in row if isinstance(cell.tag, str) and cell.tag.lower() in ("td", "th")]
        texts = [tree_to_text(cell).strip() for cell in cells]
        if len(cells) == 2 and texts[0] and "\n" not in texts[0] and len(texts[0]) <= 60 and texts[1]:
            _add(fields, texts[0].rstrip(":").strip(), texts[1])
            pending = None
        elif len(cells) == 1 and pending is not None and texts[0]:
            _add(fields, pending, texts[0])
            pending = None
        elif len(cells) == 1 and _is_label_cell(cells[0], texts[0]):
            pending = texts[0].rstrip(":").strip()
        else:
            pending = None
    return Reading(tuple(fields), ())


def clean_url(url: str | None) -> str | None:
    """The URL without tracking parameters (utm_*, yclid, …) and without Tilda's UI fragments (#tcart, #popup:…)."""
    if not url:
        return None
    url = url.strip().strip("<>()\"'").rstrip(".,;")
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)])
    fragment = "" if re.match(r"^(?:tcart|order|popup:.*|!/tab/.*)$", parts.fragment) else parts.fragment
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, fragment))


def first_url(value: str | None) -> str | None:
    found = find_urls(value or "")
    return found[0] if found else None


def _add(fields: list[Field], label: str, value: str) -> None:
    label = label.strip().rstrip(":").strip()
    value = value.strip()
    if label and value:
        fields.append(Field(label, value, canonical(label)))


def _split_pair(line: str) -> tuple[str, str] | None:
    match = _PAIR.match(line)
    if not match:
        return None
    label, separator, value = match.group("label").strip(), match.group("sep"), match.group("value").strip()
    if value.startswith("//") or "http" in label.lower() or "@" in label or "<" in label:
        return None
    key = canonical(label)
    if separator.strip() in ("-", "—") and key is None:
        return None  # "Плед - 2 шт" is text; only known labels use Bitrix's " - " separator
    if key is None and not _label_shaped(label):
        return None
    return label, value


def _label_shaped(label: str) -> bool:
    words = label.split()
    if not words or len(words) > 6 or label.isdigit() or re.fullmatch(r"[\d\s.,:]+", label):
        return False
    return not (_SENTENCE.search(label) or _DOMAIN.search(label))


def _continuation(
    lines: list[str], index: int, key: str | None, fields: list[Field], *, after_label: bool = False
) -> tuple[list[str], int]:
    """The lines that continue a value; a message may hold blank lines (paragraphs), other fields end at one."""
    taken: list[str] = []
    seen = {f.key for f in fields if f.key and f.key != "meta"}
    message = key == "message"
    position = index
    while position < len(lines):
        line = lines[position]
        if not line:
            following = _skip_blank(lines, position)
            if not (message and taken) or following >= len(lines):
                break
            if not _continues(lines[following], seen, message=True):
                break
            taken.append("")
            position = following
            continue
        if not _continues(line, seen, message=message and bool(taken or not after_label)):
            break
        taken.append(line)
        position += 1
    return taken, position


def _continues(line: str, seen: set[str], *, message: bool) -> bool:
    """Whether `line` goes on with the value before it rather than starting something new."""
    if is_boilerplate(line) or bare_url(line) or (canonical(line) is not None and len(line) <= 40):
        return False
    pair = _split_pair(line)
    if pair is None:
        return True
    if not message or not pair[1]:
        return False
    key = canonical(pair[0])
    if key is None:
        return "_" not in pair[0]  # "Размер: 160×200" in a message is the person's text; Tilda variables are fields
    # Inside a message "Вопрос: …" written by the person is text, unless it is a field not seen yet.
    return key != "meta" and key in seen


def _next_is_value(lines: list[str], index: int) -> bool:
    if index >= len(lines) or not lines[index]:
        return False
    line = lines[index]
    return not (is_boilerplate(line) or _split_pair(line) is not None or canonical(line) is not None)


def _block(lines: list[str], index: int, *, until_dashed: bool = False) -> tuple[str, int]:
    """A block value: lines up to a blank line (Bitrix) or up to the next `--- Label ---` line (WPForms plain)."""
    taken: list[str] = []
    while index < len(lines):
        line = lines[index]
        if until_dashed:
            if _DASHED_LABEL.match(line) or (line and is_boilerplate(line) and not _DASHED_LABEL.match(line)):
                break
        elif not line:
            break
        taken.append(line)
        index += 1
    return "\n".join(taken).strip(), index


def _skip_blank(lines: list[str], index: int) -> int:
    while index < len(lines) and not lines[index]:
        index += 1
    return index


def _leaf_rows(tree: Any) -> Iterator[Any]:
    for row in tree.iter("tr"):
        if row.find(".//tr") is None:
            yield row


def _is_label_cell(cell: Any, text: str) -> bool:
    if not text or "\n" in text or len(text) > 60:
        return False
    if "field-name" in (cell.get("class") or "") or cell.tag.lower() == "th":
        return True
    strong = [el for el in cell.iter("strong", "b") if el is not cell]
    return any(" ".join(element_text(el).split()) == " ".join(text.split()) for el in strong)
