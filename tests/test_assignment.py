"""The assignment policies as pure functions: least loaded, round robin, first claim, one owner, routing."""

from __future__ import annotations

from datetime import UTC, date, datetime

from interestd.assignment import Candidate, candidates, choose, identities, least_loaded, round_robin
from interestd.config import AssignmentSettings, ManagerSettings, RouteSettings

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _pool(*specs: tuple[str, int]) -> list[Candidate]:
    return [Candidate(login=login, open_cards=count) for login, count in specs]


def test_least_loaded_takes_the_fewest_open_cards_with_a_fair_deterministic_tie_break() -> None:
    assert least_loaded(_pool(("anna", 3), ("oleg", 1), ("ivan", 2))).login == "oleg"
    tied = [
        Candidate("anna", open_cards=1, last_assigned_at=T0.replace(hour=11)),
        Candidate("oleg", open_cards=1, last_assigned_at=T0.replace(hour=10)),
        Candidate("ivan", open_cards=1, last_assigned_at=T0.replace(hour=12)),
    ]
    assert least_loaded(tied).login == "oleg"  # waited longest
    never = [Candidate("zoe", open_cards=1), Candidate("anna", open_cards=1, last_assigned_at=T0)]
    assert least_loaded(never).login == "zoe"
    assert least_loaded([Candidate("b", 0), Candidate("a", 0)]).login == "a"


def test_capacity_and_away_managers_are_skipped() -> None:
    pool = [
        Candidate("anna", open_cards=0, available=False),
        Candidate("oleg", open_cards=5, capacity=5),
        Candidate("ivan", open_cards=7),
    ]
    assert least_loaded(pool).login == "ivan"
    assert least_loaded(pool[:2]) is None
    assert round_robin(pool, last=None).login == "ivan"


def test_round_robin_rotates_over_available_managers() -> None:
    pool = _pool(("oleg", 9), ("anna", 0), ("ivan", 4))
    order = []
    last = None
    for _ in range(5):
        chosen = round_robin(pool, last)
        order.append(chosen.login)
        last = chosen.login
    assert order == ["anna", "ivan", "oleg", "anna", "ivan"]


def test_candidates_know_away_periods_and_inactive_managers() -> None:
    managers = [
        ManagerSettings(login="anna", away=[{"from": "2026-11-19", "to": "2026-11-21"}]),
        ManagerSettings(login="oleg", active=False),
        ManagerSettings(login="ivan", capacity=3),
    ]
    pool = candidates(managers, day=date(2026, 11, 20), open_cards={"ivan": 2}, last_assigned={})
    assert [(c.login, c.available, c.open_cards, c.capacity) for c in pool] == [
        ("anna", False, 0, None),
        ("oleg", False, 0, None),
        ("ivan", True, 2, 3),
    ]
    assert candidates(managers, day=date(2026, 11, 22), open_cards={}, last_assigned={})[0].available


def test_the_owner_of_the_person_wins_whatever_the_policy() -> None:
    for policy in ("first_claim", "least_loaded", "round_robin"):
        decision = choose(
            AssignmentSettings(policy=policy),
            source_type="site_form",
            action="request",
            product=None,
            pool=_pool(("anna", 0), ("oleg", 9)),
            owner="oleg",
            owner_refs=["INT-3", "INT-7"],
        )
        assert (decision.manager, decision.rule) == ("oleg", "one owner per person")
        assert decision.reason == "the author is worked by oleg (INT-3, INT-7)"
    off = AssignmentSettings(policy="least_loaded", one_owner_per_person=False)
    assert (
        choose(
            off, source_type="vk", action="comment", product=None, pool=_pool(("anna", 0), ("oleg", 9)), owner="oleg"
        ).manager
        == "anna"
    )


def test_first_claim_leaves_the_card_open() -> None:
    decision = choose(
        AssignmentSettings(), source_type="vk", action="comment", product=None, pool=_pool(("anna", 0)), owner=None
    )
    assert (decision.manager, decision.rule) == (None, "first_claim")


def test_routing_sends_a_card_to_its_group() -> None:
    settings = AssignmentSettings(
        policy="least_loaded",
        routes=[
            RouteSettings(group="smm", source_types=["vk", "facebook"]),
            RouteSettings(group="sales", actions=["order"], source_types=["site_form"]),
            RouteSettings(group="sales", products=["Диван Осло"]),
        ],
    )
    pool = [
        Candidate("anna", groups=("smm",), open_cards=5),
        Candidate("oleg", groups=("sales",), open_cards=0),
        Candidate("ivan", groups=("smm",), open_cards=2),
    ]
    vk = choose(settings, source_type="vk", action="comment", product=None, pool=pool, owner=None)
    assert vk.manager == "ivan" and "routed to group smm" in vk.reason
    order = choose(settings, source_type="site_form", action="order", product=None, pool=pool, owner=None)
    assert order.manager == "oleg"
    by_product = choose(settings, source_type="email", action="request", product="диван осло", pool=pool, owner=None)
    assert by_product.manager == "oleg"
    nobody = choose(
        settings,
        source_type="vk",
        action="comment",
        product=None,
        pool=[Candidate("anna", groups=("smm",), available=False)],
        owner=None,
    )
    assert nobody.manager is None and "no manager available" in nobody.reason


def test_identities_of_a_person() -> None:
    assert identities("https://vk.com/id1", "Anna@X.ru", "+79001234567") == [
        "url:https://vk.com/id1",
        "email:anna@x.ru",
        "phone:+79001234567",
    ]
    assert identities(None, None, None) == []
