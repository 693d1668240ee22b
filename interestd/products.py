"""Product rules from the config: name the product of a card by its link, the community/page, or its words."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from interestd.card import CardData, with_product
from interestd.config import ProductRule
from interestd.message import ParsedMessage


@dataclass(frozen=True)
class CompiledRule:
    name: str
    url: str | None
    url_prefixes: tuple[str, ...]
    pages: tuple[str, ...]
    keywords: re.Pattern[str] | None


@dataclass(frozen=True)
class ProductRules:
    """The config's [[products]], ready to apply; a parser's own product always wins over a rule."""

    rules: tuple[CompiledRule, ...] = ()

    @classmethod
    def from_settings(cls, rules: Sequence[ProductRule]) -> ProductRules:
        compiled = []
        for rule in rules:
            words = [w.strip() for w in rule.keywords if w.strip()]
            # A keyword matches the start of a word, so "диван" also finds "диваны" and "диванчик".
            pattern = (
                re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + ")", re.IGNORECASE)
                if words
                else None
            )
            compiled.append(
                CompiledRule(
                    rule.name,
                    rule.url,
                    tuple(p.lower() for p in rule.url_prefixes),
                    tuple(p.casefold() for p in rule.pages if p.strip()),
                    pattern,
                )
            )
        return cls(tuple(compiled))

    def find(self, card: CardData, message: ParsedMessage) -> CompiledRule | None:
        """The rule for this card: a link prefix first, then a community/page name, then keywords."""
        if not self.rules:
            return None
        links = [url.lower() for url in (card.source_url, card.product_url, card.reply_url) if url]
        for rule in self.rules:
            if any(link.startswith(prefix) for link in links for prefix in rule.url_prefixes):
                return rule
        where = f"{message.subject}\n{message.text}".casefold()
        for rule in self.rules:
            if any(page in where for page in rule.pages):
                return rule
        for rule in self.rules:
            if rule.keywords is not None and (
                rule.keywords.search(card.text) or rule.keywords.search(card.subject or "")
            ):
                return rule
        return None

    def apply(self, card: CardData, message: ParsedMessage) -> CardData:
        if card.product:
            return card
        rule = self.find(card, message)
        return with_product(card, rule.name, rule.url) if rule else card
