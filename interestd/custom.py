"""Custom parsers described in the config ([[custom_parsers]]): match by regex, read fields by label, regex or CSS."""

from __future__ import annotations

import re
from typing import Any

from interestd.card import CardDraft
from interestd.config import CustomParserSettings, FieldRule
from interestd.dates import parse_human_date
from interestd.errors import ParseError
from interestd.extract import label_values
from interestd.htmltext import element_text, normalise_text
from interestd.message import ParsedMessage


class CustomParser:
    """A parser built from one [[custom_parsers]] table; it goes through the same registry as the built-in ones."""

    version = "config"

    def __init__(self, spec: CustomParserSettings) -> None:
        self.name = spec.name
        self.priority = spec.priority
        self.source_type = spec.source_type
        self.action = spec.action
        self._from = re.compile(spec.match_from, re.IGNORECASE) if spec.match_from else None
        self._subject = re.compile(spec.match_subject, re.IGNORECASE) if spec.match_subject else None
        self._body = re.compile(spec.match_body, re.IGNORECASE | re.MULTILINE) if spec.match_body else None
        self._fields = dict(spec.fields)
        self._regexes = {
            name: re.compile(rule.regex, re.IGNORECASE | re.MULTILINE)
            for name, rule in spec.fields.items()
            if rule.regex is not None
        }
        self._xpaths = {name: _xpath(rule.css) for name, rule in spec.fields.items() if rule.css is not None}

    def match(self, msg: ParsedMessage) -> bool:
        sender = f"{msg.sender.name or ''} <{msg.sender.email or ''}>" if msg.sender else ""
        return all(
            (
                self._from is None or bool(self._from.search(sender)),
                self._subject is None or bool(self._subject.search(msg.subject)),
                self._body is None or bool(self._body.search(msg.text)),
            )
        )

    def parse(self, msg: ParsedMessage) -> CardDraft:
        labelled = {name: rule for name, rule in self._fields.items() if rule.label}
        by_label = label_values(msg.text, {name: rule.label for name, rule in labelled.items()}) if labelled else {}
        values: dict[str, str | None] = {}
        for name, rule in self._fields.items():
            values[name] = by_label.get(name) if rule.label else self._read(name, rule, msg)
        missing = [name for name, value in values.items() if not value]
        found = {name: value for name, value in values.items() if value}
        if not found:
            raise ParseError("none of the configured fields was found")
        occurred = found.pop("occurred_at", None)
        return CardDraft(
            source_type=self.source_type,
            action=self.action,
            occurred_at=(parse_human_date(occurred, reference=msg.date) if occurred else None) or msg.date,
            missing=missing,
            text=found.pop("text", "") or "",
            **found,
        )

    def _read(self, name: str, rule: FieldRule, msg: ParsedMessage) -> str | None:
        if rule.value is not None:
            return rule.value
        if name in self._xpaths:
            tree = msg.html_tree
            if tree is None:
                return None
            texts = [normalise_text(element_text(element)) for element in tree.xpath(self._xpaths[name])]
            return "\n".join(t for t in texts if t) or None
        source = {"text": msg.text, "html": msg.html or "", "subject": msg.subject}[rule.source]
        match = self._regexes[name].search(source)
        if not match:
            return None
        return (match.group(1) if match.groups() else match.group(0)).strip() or None


def _xpath(css: str) -> str:
    from cssselect import HTMLTranslator

    return HTMLTranslator().css_to_xpath(css)


def build_custom_parsers(specs: list[CustomParserSettings]) -> list[Any]:
    return [CustomParser(spec) for spec in specs]
