"""Who gets a card: one owner per person first, then routing to a group, then the policy. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from interestd.config import AssignmentSettings, ManagerSettings, RouteSettings

POLICIES = ("first_claim", "least_loaded", "round_robin")


@dataclass(frozen=True)
class Candidate:
    """A manager as the policies see them at one moment."""

    login: str
    groups: tuple[str, ...] = ()
    available: bool = True
    capacity: int | None = None
    open_cards: int = 0
    last_assigned_at: datetime | None = None

    @property
    def has_room(self) -> bool:
        return self.capacity is None or self.open_cards < self.capacity


@dataclass(frozen=True)
class Decision:
    """The manager chosen (None: the card stays open for claims) and why, in words for the card's history."""

    manager: str | None
    rule: str
    reason: str


def identities(url: str | None, email: str | None, phone: str | None) -> list[str]:
    """The keys that say two cards are about the same person: profile link, e-mail, phone."""
    keys = []
    if url:
        keys.append(f"url:{url}")
    if email:
        keys.append(f"email:{email.lower()}")
    if phone:
        keys.append(f"phone:{phone}")
    return keys


def route_for(
    routes: Sequence[RouteSettings], source_type: str, action: str, product: str | None
) -> RouteSettings | None:
    """The first routing rule that fits the card."""
    return next((route for route in routes if route.matches(source_type, action, product)), None)


def candidates(
    managers: Sequence[ManagerSettings], *, day: date, open_cards: dict[str, int], last_assigned: dict[str, datetime]
) -> list[Candidate]:
    """Managers from the config, with their availability on `day` and their current load."""
    return [
        Candidate(
            login=m.login,
            groups=tuple(m.groups),
            available=m.active and not m.is_away(day),
            capacity=m.capacity,
            open_cards=open_cards.get(m.login, 0),
            last_assigned_at=last_assigned.get(m.login),
        )
        for m in managers
    ]


def least_loaded(pool: Sequence[Candidate]) -> Candidate | None:
    """The available manager with the fewest open cards; ties go to whoever got a card longest ago, then by login."""
    eligible = [c for c in pool if c.available and c.has_room]
    if not eligible:
        return None
    return min(eligible, key=lambda c: (c.open_cards, _moment(c.last_assigned_at), c.login))


def _moment(value: datetime | None) -> float:
    """Never assigned sorts first: it has waited longest."""
    return value.timestamp() if value is not None else float("-inf")


def round_robin(pool: Sequence[Candidate], last: str | None) -> Candidate | None:
    """The next available manager (by login) after the one who got the previous card."""
    eligible = sorted((c for c in pool if c.available and c.has_room), key=lambda c: c.login)
    if not eligible:
        return None
    for candidate in eligible:
        if last is None or candidate.login > last:
            return candidate
    return eligible[0]


def choose(
    settings: AssignmentSettings,
    *,
    source_type: str,
    action: str,
    product: str | None,
    pool: Sequence[Candidate],
    owner: str | None,
    owner_refs: Sequence[str] = (),
    last_round_robin: str | None = None,
    policy: str | None = None,
) -> Decision:
    """Decide who gets a new card. `policy` overrides the configured one (the claim window uses the fallback)."""
    policy = policy or settings.policy
    if owner is not None and settings.one_owner_per_person:
        cards = f" ({', '.join(owner_refs)})" if owner_refs else ""
        return Decision(owner, "one owner per person", f"the author is worked by {owner}{cards}")
    route = route_for(settings.routes, source_type, action, product)
    note = ""
    if route is not None:
        pool = [c for c in pool if route.group in c.groups]
        note = f", routed to group {route.group}"
    if policy == "first_claim":
        return Decision(None, "first_claim", "open for the first claim" + note)
    chosen = least_loaded(pool) if policy == "least_loaded" else round_robin(pool, last_round_robin)
    if chosen is None:
        return Decision(None, policy, "no manager available (away, inactive or at capacity)" + note)
    load = f"{chosen.open_cards} open" + (f" of {chosen.capacity}" if chosen.capacity else "")
    return Decision(chosen.login, policy, f"{policy.replace('_', ' ')}: {chosen.login} had {load}{note}")
