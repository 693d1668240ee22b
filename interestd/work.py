"""Working the queue: who is speaking, assignment of new cards, claim, release, reassign, done, reply proofs.

Every change of a card writes an event with who did it and which rule decided, in the same transaction.
"""

from __future__ import annotations

import getpass
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlmodel import Session

from interestd import store
from interestd.assignment import Decision, candidates, choose, identities, route_for
from interestd.config import Settings
from interestd.db import Database
from interestd.errors import ConflictError, NotFoundError, UsageError
from interestd.models import Card, utcnow
from interestd.proofs import StoredImage, screenshot_link, store_image
from interestd.team import MailProof, TeamRules

log = logging.getLogger(__name__)


# --- who is speaking ----------------------------------------------------------------------------------------


def current_manager(settings: Settings, explicit: str | None, environ: Mapping[str, str]) -> str:
    """The manager running the CLI: --as, else $INTERESTD_MANAGER, else the OS user mapped through the config."""
    if not settings.managers:
        raise UsageError("no managers are configured: add [[managers]] to the config")
    for source, login in (("--as", explicit), ("INTERESTD_MANAGER", environ.get("INTERESTD_MANAGER"))):
        if login:
            if settings.manager(login) is None:
                raise NotFoundError(f"unknown manager {login!r} (from {source}; configured: {_logins(settings)})")
            return login
    user = getpass.getuser()
    for manager in settings.managers:
        if user in manager.os_users or user == manager.login:
            return manager.login
    raise NotFoundError(
        f"the OS user {user!r} is no configured manager: use --as LOGIN, set INTERESTD_MANAGER, or "
        f'add os_users = ["{user}"] to a [[managers]] entry (configured: {_logins(settings)})'
    )


def _logins(settings: Settings) -> str:
    return ", ".join(m.login for m in settings.managers)


def sync_managers(database: Database, settings: Settings) -> int:
    """Bring the manager table in line with the config (cheap when nothing changed)."""
    with database.session(write=True) as session:
        changes = store.sync_managers(session, settings.managers)
        if changes:
            session.commit()
        return changes


# --- assignment of new cards (called by the pipeline in the card's own transaction) ---------------------------


class AssignableCard(Protocol):
    """What assignment reads of a card (a stored Card, or one the pipeline has just inserted)."""

    id: int | None
    source_type: str
    action: str
    product: str | None
    author_url: str | None
    author_email: str | None
    author_phone: str | None
    responsible: str | None


@dataclass
class TeamLoad:
    """The managers' load as assignment sees it, read once and kept up to date while a batch is assigned."""

    session: Session
    _open: dict[str, int] | None = None
    _last: dict[str, datetime] | None = None
    _round_robin: str | None = None
    _round_robin_read: bool = False

    def pool(self, rules: TeamRules, now: datetime) -> list[Any]:
        if self._open is None or self._last is None:
            self._open = store.open_cards_by_manager(self.session)
            self._last = store.last_assigned_by_manager(self.session)
        return candidates(
            rules.managers, day=now.astimezone(rules.zone).date(), open_cards=self._open, last_assigned=self._last
        )

    def last_round_robin(self) -> str | None:
        if not self._round_robin_read:
            self._round_robin = store.last_manager_by_rule(self.session, "round_robin")
            self._round_robin_read = True
        return self._round_robin

    def assigned(self, manager: str, rule: str, now: datetime) -> None:
        if self._open is not None:
            self._open[manager] = self._open.get(manager, 0) + 1
        if self._last is not None:
            self._last[manager] = now
        if rule == "round_robin":
            self._round_robin, self._round_robin_read = manager, True


def person_owner(session: Session, card: AssignableCard) -> tuple[str | None, list[str]]:
    """The manager already working this card's author, and the refs of that manager's cards of the person."""
    keys = identities(card.author_url, card.author_email, card.author_phone)
    owners = store.owners_of(session, keys)
    if not owners:
        return None, []
    first = min(owners.values(), key=lambda row: row.since)
    cards = store.cards_by_author(
        session, url=card.author_url, email=card.author_email, phone=card.author_phone, exclude_id=card.id
    )
    refs = [c.ref for c in cards if c.responsible == first.manager]
    return first.manager, refs


def assign_new(
    session: Session,
    card: AssignableCard,
    rules: TeamRules,
    *,
    now: datetime,
    policy: str | None = None,
    actor: str = "interestd",
    load: TeamLoad | None = None,
) -> Decision:
    """Decide who gets a card, record it (responsible, ownership of the person, an event). Returns the decision.

    `load` carries the managers' load across the cards of one batch (read from the database when not given).
    """
    load = load or TeamLoad(session)
    owner, refs = person_owner(session, card)
    if owner is not None and rules.manager(owner) is None:
        owner = None  # the person's manager has left the team: the policy decides afresh
    chosen_policy = policy or rules.assignment.policy
    owner_decides = owner is not None and rules.assignment.one_owner_per_person
    # The load is read only when a load policy will look at it (first_claim and known owners do not).
    pool = load.pool(rules, now) if chosen_policy != "first_claim" and not owner_decides else []
    last = load.last_round_robin() if chosen_policy == "round_robin" and not owner_decides else None
    decision = choose(
        rules.assignment,
        source_type=card.source_type,
        action=card.action,
        product=card.product,
        pool=pool,
        owner=owner,
        owner_refs=refs,
        last_round_robin=last,
        policy=policy,
    )
    assert card.id is not None
    if decision.manager is None:
        store.add_event(session, card.id, "open", actor=actor, rule=decision.rule, detail=decision.reason, at=now)
        return decision
    store.set_responsible(session, card.id, decision.manager, now=now)
    card.responsible = decision.manager
    store.take_ownership(session, _keys(card), decision.manager, card.id, now=now)
    store.add_event(
        session,
        card.id,
        "assigned",
        actor=actor,
        manager=decision.manager,
        rule=decision.rule,
        detail=decision.reason,
        at=now,
    )
    load.assigned(decision.manager, decision.rule, now)
    return decision


def _keys(card: AssignableCard) -> list[str]:
    return identities(card.author_url, card.author_email, card.author_phone)


def assign_overdue(
    database: Database, settings: Settings, *, now: datetime | None = None
) -> list[tuple[str, Decision]]:
    """Under first_claim, cards nobody claimed within claim_timeout go by the fallback policy."""
    timeout = settings.assignment.claim_timeout
    if settings.assignment.policy != "first_claim" or timeout is None or not settings.managers:
        return []
    now = now or utcnow()
    rules = TeamRules.from_settings(settings)
    decided = []
    with database.session(write=True) as session:
        for card in store.unassigned_since(session, now - timeout):
            decision = assign_new(
                session, card, rules, now=now, policy=settings.assignment.fallback, actor="claim window"
            )
            if decision.manager is not None:
                decided.append((card.ref, decision))
        session.commit()
    for ref, decision in decided:
        log.info("%s: nobody claimed it within %s; assigned to %s (%s)", ref, timeout, decision.manager, decision.rule)
    return decided


# --- the commands of a manager ------------------------------------------------------------------------------


def _card(session: Session, ref: str) -> Card:
    from interestd.services import card_by_ref

    return card_by_ref(session, ref)


def claim(
    session: Session, settings: Settings, ref: str, login: str, *, force: bool = False, now: datetime | None = None
) -> str:
    """Take a card. Exactly one of several managers claiming at once wins; the others learn who has it."""
    now = now or utcnow()
    if not force:
        # The common case in one statement: the UPDATE ... WHERE nobody is responsible decides between managers
        # racing for this card. When it changes nothing, the card is read below to say why.
        from interestd.services import parse_ref

        taken = store.claim_open_card(session, parse_ref(ref), login, now=now)
        if taken is not None:
            return _claimed(session, settings, taken, login, now)
    card = _card(session, ref)
    assert card.id is not None
    if card.responsible == login:
        return f"{card.ref} is already yours"
    if card.processed:
        raise ConflictError(f"{card.ref} is already processed (by {card.responsible or 'nobody'})")
    if card.responsible is not None and not force:
        raise ConflictError(f"{card.ref} is already claimed by {card.responsible}")
    _check_route(settings, card, login, force)
    _check_capacity(session, settings, login, force)
    previous = card.responsible
    # The UPDATE ... WHERE responsible IS NULL decides between managers racing for this card; only the winner
    # goes on to check and take the person.
    if not store.claim_card(session, card.id, login, now=now, force=force):
        session.rollback()
        winner = store.get_card(session, card.id)
        raise ConflictError(f"{card.ref} is already claimed by {winner.responsible if winner else 'someone'}")
    owner, refs = person_owner(session, card)
    if owner is not None and owner != login and not force:
        session.rollback()
        raise ConflictError(
            f"{card.ref}'s author is worked by {owner}"
            + (f" ({', '.join(refs)})" if refs else "")
            + ": ask them, or use --force"
        )
    owners = store.take_ownership(session, _keys(card), login, card.id, now=now)
    others = sorted({manager for manager in owners.values() if manager != login})
    if others and not force:
        session.rollback()  # someone took this person a moment ago
        raise ConflictError(f"{card.ref}'s author is worked by {others[0]}: ask them, or use --force")
    if others:
        store.move_ownership(session, _keys(card), login, card.id, now=now)
    kind, rule = (
        ("reassigned", "forced claim") if previous else ("claimed", "first claim" if not force else "forced claim")
    )
    detail = f"taken over from {previous}" if previous else None
    store.add_event(session, card.id, kind, actor=login, manager=login, rule=rule, detail=detail, at=now)
    session.commit()
    return f"{card.ref} is now yours"


NEXT_LOOKS = 50  # open cards `claim --next` looks at before saying there is none for this manager


def claim_next(session: Session, settings: Settings, login: str, *, now: datetime | None = None) -> str:
    """Take the open card that has waited longest among those this manager may take (routes, the person's
    owner). Managers taking cards this way at the same moment never get the same one, and never wait on
    each other: a card another claim is deciding on is passed over."""
    now = now or utcnow()
    _check_capacity(session, settings, login, False)
    passed: list[int] = []
    manager = settings.manager(login)
    for _ in range(NEXT_LOOKS):
        taken = store.claim_next_open_card(session, login, now=now, skip=passed)
        if taken is None:
            break
        route = route_for(settings.assignment.routes, taken.source_type, taken.action, taken.product)
        owners = {}
        if route is None or manager is None or route.group in manager.groups:
            owners = store.take_ownership(session, _keys(taken), login, taken.id, now=now)
        if (route is not None and manager is not None and route.group not in manager.groups) or any(
            owner != login for owner in owners.values()
        ):
            session.rollback()  # another group's card or another manager's person: nothing else was done yet
            passed.append(taken.id)
            continue
        _add_claimed_event(session, taken.id, login, now)
        session.commit()
        return f"{taken.ref} is now yours"
    session.rollback()
    raise NotFoundError(
        "no open card for you to take"
        + (" (the others are for other groups or other managers' people)" if passed else "")
    )


def _add_claimed_event(session: Session, card_id: int, login: str, now: datetime) -> None:
    store.add_events(
        session,
        [{"card_id": card_id, "kind": "claimed", "at": now, "actor": login, "manager": login, "rule": "first claim"}],
    )


def _claimed(session: Session, settings: Settings, card: store.ClaimedCard, login: str, now: datetime) -> str:
    """The rest of a claim won by the UPDATE: the route and capacity checks, then the person; any refusal undoes
    the claim."""
    try:
        _check_route(settings, card, login, False)
        _check_capacity(session, settings, login, False, claimed=1)
    except ConflictError:
        session.rollback()
        raise
    owners = store.take_ownership(session, _keys(card), login, card.id, now=now)
    others = sorted({manager for manager in owners.values() if manager != login})
    if others:
        session.rollback()  # the person is someone else's: the claim is undone, and the message says whose
        owner, refs = person_owner(session, card)
        raise ConflictError(
            f"{card.ref}'s author is worked by {owner or others[0]}"
            + (f" ({', '.join(refs)})" if refs and owner else "")
            + ": ask them, or use --force"
        )
    _add_claimed_event(session, card.id, login, now)
    session.commit()
    return f"{card.ref} is now yours"


def _check_route(settings: Settings, card: Card | store.ClaimedCard, login: str, force: bool) -> None:
    route = route_for(settings.assignment.routes, card.source_type, card.action, card.product)
    manager = settings.manager(login)
    if route is not None and manager is not None and route.group not in manager.groups and not force:
        members = ", ".join(m.login for m in settings.managers if route.group in m.groups)
        raise ConflictError(f"{card.ref} goes to group {route.group} ({members}): use --force to take it anyway")


def _check_capacity(session: Session, settings: Settings, login: str, force: bool, *, claimed: int = 0) -> None:
    """Refuse when the manager is at capacity; `claimed`: cards of theirs already counted that this takes."""
    manager = settings.manager(login)
    if manager is None or manager.capacity is None or force:
        return
    open_cards = store.open_cards_by_manager(session).get(login, 0) - claimed
    if open_cards >= manager.capacity:
        raise ConflictError(
            f"{login} has {open_cards} open cards, the capacity set in the config: finish some first, or use --force"
        )


def release(
    session: Session, settings: Settings, ref: str, login: str, *, force: bool = False, now: datetime | None = None
) -> str:
    """Give a card back to the queue."""
    now = now or utcnow()
    card = _card(session, ref)
    assert card.id is not None
    if card.responsible is None:
        raise ConflictError(f"{card.ref} is not claimed by anyone")
    if card.responsible != login and not force:
        raise ConflictError(f"{card.ref} is not yours (it is {card.responsible}'s)")
    if card.processed:
        raise ConflictError(f"{card.ref} is already processed")
    owner = card.responsible
    store.set_responsible(session, card.id, None, now=now)
    others = [
        c
        for c in store.cards_by_author(
            session, url=card.author_url, email=card.author_email, phone=card.author_phone, exclude_id=card.id
        )
        if c.responsible == owner
    ]
    if not others:
        store.drop_ownership(session, _keys(card), owner)
    store.add_event(
        session,
        card.id,
        "released",
        actor=login,
        manager=owner,
        rule="release",
        detail=None if login == owner else f"released on behalf of {owner}",
        at=now,
    )
    session.commit()
    return f"{card.ref} is back in the queue"


def reassign(
    session: Session,
    settings: Settings,
    ref: str,
    to_login: str,
    by_login: str,
    *,
    why: str | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Give a card (and so its author, with the author's other open cards) to another manager."""
    now = now or utcnow()
    if settings.manager(to_login) is None:
        raise NotFoundError(f"unknown manager {to_login!r} (configured: {_logins(settings)})")
    card = _card(session, ref)
    assert card.id is not None
    if card.responsible == to_login:
        return []
    previous = card.responsible
    moved = [card]
    if previous is not None:
        moved += [
            c
            for c in store.cards_by_author(
                session, url=card.author_url, email=card.author_email, phone=card.author_phone, exclude_id=card.id
            )
            if c.responsible == previous and not c.processed
        ]
    detail = f"from {previous or 'nobody'} to {to_login}" + (f": {why}" if why else "")
    for item in moved:
        assert item.id is not None
        store.set_responsible(session, item.id, to_login, now=now)
        store.add_event(
            session,
            item.id,
            "reassigned",
            actor=by_login,
            manager=to_login,
            rule="reassign",
            detail=detail if item is card else f"{detail} (same author as {card.ref})",
            at=now,
        )
    store.move_ownership(session, _keys(card), to_login, card.id, now=now)
    session.commit()
    return [item.ref for item in moved]


def done(
    session: Session, settings: Settings, ref: str, login: str, *, force: bool = False, now: datetime | None = None
) -> str:
    """Mark a card processed without a screenshot (only when [assignment] require_proof = false)."""
    now = now or utcnow()
    card = _card(session, ref)
    assert card.id is not None
    if card.processed:
        return f"{card.ref} is already processed"
    if settings.assignment.require_proof:
        raise ConflictError(
            f"{card.ref} needs a screenshot of the reply: interestd attach {card.ref} screenshot.png "
            "(or a screenshot link); [assignment] require_proof = false allows done without one"
        )
    _ensure_responsible(session, settings, card, login, force, now)
    store.mark_processed(session, card.id, now=now, screenshot=None, replied=True)
    store.add_event(
        session,
        card.id,
        "processed",
        actor=login,
        manager=card.responsible,
        rule="done",
        detail="marked done without a screenshot",
        at=now,
    )
    session.commit()
    return f"{card.ref} is processed"


def _ensure_responsible(
    session: Session, settings: Settings, card: Card, login: str, force: bool, now: datetime
) -> None:
    """The one answering must be the card's manager: an unclaimed card is claimed on the way."""
    if card.responsible == login:
        return
    if card.responsible is None:
        claim(session, settings, card.ref, login, now=now)
        card.responsible = login
        return
    if not force:
        raise ConflictError(f"{card.ref} is {card.responsible}'s: use --force to act on it anyway")


def attach(
    session: Session,
    settings: Settings,
    ref: str,
    login: str,
    target: str,
    *,
    force: bool = False,
    now: datetime | None = None,
) -> str:
    """Attach a reply screenshot (a file, or a screenshot-service link): the card becomes processed and replied."""
    now = now or utcnow()
    card = _card(session, ref)
    assert card.id is not None
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) and not Path(target).exists():
        location, stored = screenshot_link(target, settings.proofs.url_hosts), None
    else:
        path = Path(target)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        stored = store_image(settings.attachments_dir, data, max_bytes=settings.proofs.max_bytes, name=str(path))
        location = stored.reference
    _ensure_responsible(session, settings, card, login, force, now)
    _record_proof(session, card, location, stored, added_by=login, now=now)
    session.commit()
    return f"{card.ref} is processed: screenshot {location}"


def _record_proof(
    session: Session,
    card: Card,
    location: str,
    stored: StoredImage | None,
    *,
    added_by: str,
    now: datetime,
    raw_message_id: int | None = None,
) -> None:
    assert card.id is not None
    store.add_proof(
        session,
        card.id,
        kind="file" if stored else "url",
        location=location,
        added_by=added_by,
        now=now,
        sha256=stored.sha256 if stored else None,
        content_type=stored.content_type if stored else None,
        size=stored.size if stored else None,
        raw_message_id=raw_message_id,
    )
    already = card.processed
    store.mark_processed(
        session,
        card.id,
        now=card.processed_at if already and card.processed_at else now,
        screenshot=location,
        replied=True,
    )
    via = "by e-mail" if raw_message_id else "from the CLI"
    store.add_event(
        session,
        card.id,
        "proof_attached",
        actor=added_by,
        manager=card.responsible,
        rule="proof",
        detail=f"screenshot {location} {via}",
        at=now,
    )
    if not already:
        store.add_event(
            session,
            card.id,
            "processed",
            actor=added_by,
            manager=card.responsible,
            rule="proof",
            detail="processed on a reply screenshot",
            at=now,
        )


def record_mail_proof(
    session: Session, rules: TeamRules, raw_id: int, proof: MailProof, *, now: datetime
) -> tuple[str, str]:
    """Attach a screenshot mailed to the shared mailbox. Returns the message's (status, reason)."""
    manager = rules.manager_by_address(proof.sender)
    if manager is None:
        return (
            "skipped",
            f"reply proof for INT-{proof.ref} from {proof.sender or 'an unknown sender'}, who is no manager",
        )
    if rules.require_authenticated_proof and not proof.authenticated:
        return "skipped", (
            f"reply proof for INT-{proof.ref} from {proof.sender}: {rules.authserv_id} recorded no "
            "DKIM or SPF pass for it (require_authenticated_proof)"
        )
    card = store.get_card(session, proof.ref)
    if card is None:
        return "quarantined", f"reply proof from {manager.login} for INT-{proof.ref}, which does not exist"
    if not proof.images and not proof.links:
        return "quarantined", (
            f"reply proof from {manager.login} for {card.ref} without a screenshot "
            "(no image attached, no screenshot link)"
        )
    if card.responsible is None:
        store.claim_card(session, card.id or 0, manager.login, now=now)
        store.take_ownership(session, _keys(card), manager.login, card.id, now=now)
        store.add_event(
            session,
            card.id,
            "claimed",
            actor=manager.login,
            manager=manager.login,
            rule="proof",
            detail="claimed by sending the reply screenshot",
            at=now,
        )
        card.responsible = manager.login
    elif card.responsible != manager.login:
        log.warning("%s: reply proof sent by %s, but the card is %s's", card.ref, manager.login, card.responsible)
    recorded = 0
    for image in proof.images:
        try:
            stored = store_image(rules.attachments_dir, image.data, max_bytes=rules.proof_max_bytes, name=image.name)
        except UsageError as exc:
            log.warning("%s: attachment %s of a reply proof not kept: %s", card.ref, image.name, exc)
            continue
        _record_proof(session, card, stored.reference, stored, added_by=manager.login, now=now, raw_message_id=raw_id)
        card.processed, recorded = True, recorded + 1
    for link in proof.links:
        _record_proof(session, card, link, None, added_by=manager.login, now=now, raw_message_id=raw_id)
        card.processed, recorded = True, recorded + 1
    if not recorded:
        return "quarantined", f"reply proof from {manager.login} for {card.ref}: no attachment was a usable image"
    return "proof", f"reply proof for {card.ref} from {manager.login}"


def history(session: Session, ref: str) -> tuple[Card, list[Any]]:
    card = _card(session, ref)
    assert card.id is not None
    return card, store.card_events(session, card.id)
