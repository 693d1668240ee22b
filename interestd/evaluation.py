"""Evaluating one message, purely: raw bytes in, an Outcome out (card, skipped, quarantined or reply proof).

No database code is imported here, so the worker processes that evaluate messages start light.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from interestd.card import CardData, normalise
from interestd.classify import authenticated_sender, classify
from interestd.errors import ParseError
from interestd.message import ParsedMessage, parse_raw
from interestd.products import ProductRules
from interestd.registry import Registry
from interestd.team import MailProof, ProofFile, TeamRules

log = logging.getLogger("interestd.pipeline")


@dataclass(frozen=True)
class StormRules:
    """The per-sender limit that keeps a mail storm out of the feed (0 turns it off)."""

    limit: int = 0
    window_seconds: float = 7200.0
    allow: tuple[str, ...] = ()

    def exempt(self, address: str | None, managers: tuple[str, ...] = ()) -> bool:
        """True for an address the limit does not apply to: an allowed address, or one at an allowed domain or
        any of its subdomains (run for every message stored, so the lists are looked up as sets)."""
        if not self.limit or not address:
            return True
        allowed = _allowed_set(self.allow, managers)
        address = address.lower()
        if address in allowed:
            return True
        domain = address.rpartition("@")[2]
        while domain:
            if domain in allowed:
                return True
            domain = domain.partition(".")[2]
        return False


@lru_cache(maxsize=64)
def _allowed_set(allow: tuple[str, ...], managers: tuple[str, ...]) -> frozenset[str]:
    return frozenset(entry.lower().lstrip("@") for entry in (*allow, *managers))


@dataclass(frozen=True)
class PipelineContext:
    """What evaluating a message depends on besides its bytes (built once from the settings)."""

    registry: Registry
    phone_region: str = "RU"
    max_attempts: int = 3
    batch_size: int = 200
    batch_bytes: int = 64 * 1024 * 1024
    products: ProductRules = field(default_factory=ProductRules)
    team: TeamRules = field(default_factory=TeamRules)
    storm: StormRules = field(default_factory=lambda: StormRules())


@dataclass(frozen=True)
class Outcome:
    """What became of one message: a card, skipped, quarantined (with the reason), or a reply proof."""

    status: str
    reason: str | None = None
    parser: str | None = None
    parser_version: str | None = None
    card: CardData | None = None
    proof: MailProof | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def evaluate(raw: bytes | None, context: PipelineContext, *, now: datetime) -> Outcome:
    """Decide what one raw message becomes. Pure: never touches the database; never raises."""
    if raw is None:
        return Outcome("quarantined", "the raw bytes of this message were not kept")
    try:
        message = parse_raw(raw)
    except Exception as exc:
        return Outcome("quarantined", f"unparseable message: {type(exc).__name__}: {_first_line(exc)}")
    meta = _meta(message)
    try:
        return _evaluate_parsed(message, context, now=now, meta=meta)
    except Exception as exc:  # a bug in a classifier or normaliser must not lose the message
        log.exception("message %s could not be evaluated", meta.get("message_id"))
        return Outcome("quarantined", f"internal error: {type(exc).__name__}: {_first_line(exc)}", meta=meta)


def _evaluate_parsed(
    message: ParsedMessage, context: PipelineContext, *, now: datetime, meta: dict[str, Any]
) -> Outcome:
    kind = classify(message)
    if kind.kind in ("auto_reply", "bounce", "own_report"):
        return Outcome("skipped", kind.reason, meta=meta)
    if kind.kind == "reply_proof" and kind.ref is not None:
        return Outcome("proof", kind.reason, proof=_mail_proof(message, kind.ref, context), meta=meta)

    original = message.original
    pick = context.registry.pick(original, every_match=False)
    parser = pick.parser
    if parser is context.registry.fallback and kind.automated and original is message:
        return Outcome("skipped", f"{kind.reason}: no notification parser recognises it", meta=meta)
    try:
        draft = parser.parse(original)
    except Exception as exc:
        if isinstance(exc, ParseError):
            reason = f"{parser.name}: {exc}"
        elif isinstance(exc, MemoryError):
            reason = f"{parser.name} parser needs more memory than the limit allows (worker_memory)"
        else:
            reason = f"{parser.name} parser failed: {type(exc).__name__}: {_first_line(exc)}"
        return Outcome(
            "quarantined",
            reason,
            parser=parser.name,
            parser_version=parser.version,
            meta=meta,
        )
    card = normalise(
        draft,
        subject=original.subject or message.subject,
        message_date=original.date or message.date,
        received_at=now,
        phone_region=context.phone_region,
    )
    card = context.products.apply(card, original)
    notes = list(card.notes) + list(pick.match_errors)
    return Outcome(
        "card",
        "; ".join(notes) or None,
        parser=parser.name,
        parser_version=parser.version,
        card=card,
        meta=meta,
    )


def _mail_proof(message: ParsedMessage, ref: int, context: PipelineContext) -> MailProof:
    """The screenshots a manager's proof mail carries: image attachments, and screenshot-service links."""
    from interestd.proofs import image_type, is_screenshot_link

    images = tuple(
        ProofFile(a.filename or f"image-{n}", a.data)
        for n, a in enumerate(message.attachments, 1)
        if a.content_type.startswith("image/") and image_type(a.data) and a.size == len(a.data)
    )
    hosts = list(context.team.proof_hosts)
    links = tuple(dict.fromkeys(link.href for link in message.links if is_screenshot_link(link.href, hosts)))
    authenticated = authenticated_sender(message, context.team.authserv_id)
    return MailProof(ref=ref, sender=message.sender_email, images=images, links=links, authenticated=authenticated)


def _meta(message: ParsedMessage) -> dict[str, Any]:
    sender = message.sender
    return {
        "message_id": message.message_id,
        "subject": message.subject[:500] or None,
        "sender": str(sender)[:500] if sender else None,
        "sender_address": (message.sender_email or "")[:320] or None,
        "date": message.date,
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
