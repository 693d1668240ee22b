"""The plain e-mail parser: a customer's own letter becomes a card (the fallback when no other parser matches)."""

from __future__ import annotations

from typing import ClassVar

from interestd.card import CardDraft, mailto, normalise_email
from interestd.errors import ParseError
from interestd.extract import find_phones, html_without_quotes, split_reply
from interestd.message import Address, ParsedMessage


class PlainEmailParser:
    name: ClassVar[str] = "email"
    priority: ClassVar[int] = 0
    version: ClassVar[str] = "1"

    def match(self, msg: ParsedMessage) -> bool:
        return True

    def parse(self, msg: ParsedMessage) -> CardDraft:
        author = _author(msg)
        body, signature = split_reply(_own_text(msg))
        phones = find_phones(signature) or find_phones(body)
        missing = []
        if author is None or not author.email:
            missing.append("author_email")
        address = normalise_email(author.email) if author and author.email else None
        if address is None and not body.strip():
            raise ParseError("no sender address and no readable text: nothing to answer")
        return CardDraft(
            source_type="email",
            action="request",
            text=body,
            occurred_at=msg.date,
            author_name=author.name if author else None,
            author_email=address,
            author_phone=phones[0] if phones else None,
            reply_url=mailto(address, msg.subject) if address else None,
            missing=missing,
        )


def _own_text(msg: ParsedMessage) -> str:
    """The body without quoted earlier messages: the plain part, or the HTML with its quote blocks removed."""
    if msg.html_tree is not None and msg.text == msg.html_text:
        unquoted = html_without_quotes(msg.html_tree)
        if unquoted is not None:
            return unquoted
    return msg.text


def _author(msg: ParsedMessage) -> Address | None:
    """The person: From, unless From is a robot address and Reply-To names someone."""
    sender = msg.sender
    if sender and sender.email and normalise_email(sender.email):
        return sender
    for candidate in msg.reply_to:
        if candidate.email and normalise_email(candidate.email):
            return Address(candidate.name or (sender.name if sender else None), candidate.email)
    return sender
