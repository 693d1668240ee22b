"""Small extraction helpers parsers share: phones, e-mails, label: value pairs, quoted replies and signatures.

All pure functions of text; third-party parsers may use them too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_DIGIT = re.compile(r"\d")
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-zА-Яа-я]{2,}")
_URL = re.compile(r"https?://[^\s<>\"'«»]+[^\s<>\"'«».,;:!?)\]]")

# A line that introduces the quoted message in a reply ("... wrote:", "... написал(а):").
_QUOTE_HEADER = re.compile(
    r"^.{0,300}?(?:wrote|написал\(а\)|написала|написал|пишет|писали|schrieb|a écrit)\s*:\s*$"
    # Gmail (ru) and Mail.ru put no verb in the attribution: "<date> <time>, Name <address>:"
    r"|^.{0,120}\d{1,2}:\d{2}.{0,160}[<\[(]?[\w.+-]+@[\w-]+(?:\.[\w-]+)+[>\])]?\s*:\s*$"
    r"|^[ \t]*-{2,}\s*(?:Original Message|Исходное сообщение|Reply above this line|Ответ выше этой строки)\s*-{2,}\s*$"
    r"|^[ \t]*_{10,}\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_SIGNATURE_START = re.compile(
    r"^(?:--\s*|__+\s*|С уважением[,.!]?.*|С наилучшими пожеланиями.*|Всего доброго.*|Best regards.*|Kind regards.*"
    r"|Regards,?|Sincerely,?|Thanks and regards,?"
    r"|Отправлено (?:с|из) .{0,40}|Sent from my .{0,40}|Get Outlook for .{0,30}|Отправлено из мобильной .{0,30})$",
    re.IGNORECASE,
)


def find_urls(text: str) -> list[str]:
    return _URL.findall(text or "")


def find_emails(text: str) -> list[str]:
    return [match.group(0) for match in _EMAIL.finditer(text or "")]


def find_phones(text: str, region: str = "RU") -> list[str]:
    """Phone numbers written in the text, as written, in order (valid numbers only: not order or tax numbers).

    `region` reads numbers written without a country code (8 917 ..., (495) ...); the card's normalisation
    later formats the number found with the configured region.
    """
    import phonenumbers

    if not text or not _DIGIT.search(text):
        return []
    matcher = phonenumbers.PhoneNumberMatcher(text[:20_000], region, leniency=phonenumbers.Leniency.VALID)
    return [match.raw_string for match in matcher]


QUOTE_SELECTORS = (
    "blockquote",
    ".gmail_quote",
    ".gmail_attr",
    ".moz-cite-prefix",
    ".yandex_quote",
    "#appendonsend",
    "#divRplyFwdMsg",
    "#mail-app-auto-quote",
    ".protonmail_quote",
)


def html_without_quotes(tree: object) -> str | None:
    """Readable text of an HTML body with the quoted earlier messages (blockquote, Gmail/Outlook quote blocks) cut;
    None when the body quotes nothing (the HTML's own text is then the answer)."""
    import copy

    from interestd.htmltext import drop_tree, tree_to_text

    if tree is None or not tree.xpath(_QUOTE_XPATH):  # type: ignore[attr-defined]
        return None
    root = copy.deepcopy(tree)
    for element in root.xpath(_QUOTE_XPATH):  # type: ignore[attr-defined]
        parent = element.getparent()
        if parent is None:
            continue
        if element.get("id") in ("appendonsend", "divRplyFwdMsg"):
            # Outlook's reply header starts a block that runs to the end: drop what follows it too.
            for sibling in list(element.itersiblings()):
                parent.remove(sibling)
        drop_tree(element)
    return tree_to_text(root)


def _quote_xpath() -> str:
    from cssselect import HTMLTranslator

    translator = HTMLTranslator()
    return " | ".join(translator.css_to_xpath(selector) for selector in QUOTE_SELECTORS)


_QUOTE_XPATH = _quote_xpath()


def split_reply(text: str) -> tuple[str, str]:
    """(what the person wrote now, their signature): quoted earlier messages and sign-offs removed."""
    if not text:
        return "", ""
    lines = text.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for line in lines:
        if _QUOTE_HEADER.match(line) or line.lstrip().startswith(">"):
            break
        kept.append(line)
    body_lines = kept
    signature: list[str] = []
    for index, line in enumerate(kept):
        if index > 0 and _SIGNATURE_START.match(line.strip()):
            body_lines, signature = kept[:index], kept[index:]
            break
    body = "\n".join(body_lines).strip()
    if not body:  # everything looked like a quote or a signature: better keep the text than lose it
        return text.strip(), ""
    body = _library_reply(body)
    return body, "\n".join(signature).strip()


def _library_reply(text: str) -> str:
    parser = _reply_parser()
    try:
        replies = parser.read(text=text).replies
    except Exception:
        return text
    if replies and replies[0].body.strip():
        return replies[0].body.strip()
    return text


@lru_cache(maxsize=1)
def _reply_parser():  # type: ignore[no-untyped-def]
    from mailparser_reply import EmailReplyParser

    return EmailReplyParser(languages=["en", "de", "fr"])


def label_values(text: str, labels: dict[str, Iterable[str]]) -> dict[str, str]:
    """Values of "Label: value" (or "Label<TAB>value") lines, keyed by the canonical names in `labels`.

    `labels` maps a canonical name to the labels that mean it (case-insensitive, matched whole).
    A label alone on its line takes the next non-empty line as its value.
    """
    lookup: dict[str, str] = {}
    for canonical, names in labels.items():
        for name in names:
            lookup[_label_key(name)] = canonical
    found: dict[str, str] = {}
    lines = [line.strip() for line in (text or "").split("\n")]
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        match = re.match(r"^[*•\-\s]*([^:\t]{1,60}?)\s*(?::|\t|\s-\s)\s*(.*)$", line)
        if not match:
            bare = lookup.get(_label_key(line))
            if bare and bare not in found:
                value, index = _next_value(lines, index)
                if value:
                    found[bare] = value
            continue
        canonical = lookup.get(_label_key(match.group(1)))
        if canonical is None or canonical in found:
            continue
        value = match.group(2).strip()
        if not value:
            value, index = _next_value(lines, index)
        if value:
            found[canonical] = value
    return found


def _next_value(lines: list[str], index: int) -> tuple[str, int]:
    while index < len(lines) and not lines[index]:
        index += 1
    if index < len(lines) and not re.fullmatch(r"[*=\-_]{3,}", lines[index]):
        return lines[index], index + 1
    return "", index


def _label_key(label: str) -> str:
    return re.sub(r"[\s_*:]+", " ", label).strip().lower()
