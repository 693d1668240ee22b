"""20 processes claim the same card at the same moment: exactly one wins, the others are told who has it."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from interestd.config import load_settings
from interestd.db import Database
from interestd.errors import ConflictError
from tests.conftest import make_app
from tests.test_work import VK_COMMENT, ingest

CLAIMERS = 20


def _claim(config: str, url: str, ref: str, login: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    from interestd import work

    settings = load_settings(Path(config), environ={**os.environ, "INTERESTD_DATABASE_URL": url})
    database = Database(url, busy_timeout=60)
    barrier.wait()
    try:
        with database.session(write=True) as session:
            results.put((login, "won", work.claim(session, settings, ref, login)))
    except ConflictError as exc:
        results.put((login, "lost", str(exc)))
    except Exception as exc:  # anything else is a failure of the test
        results.put((login, "error", f"{type(exc).__name__}: {exc}"))
    finally:
        database.dispose()


def test_exactly_one_of_twenty_simultaneous_claims_wins(tmp_path: Path, database_url: str) -> None:
    team = "".join(f'[[managers]]\nlogin = "m{n:02d}"\n' for n in range(CLAIMERS))
    app = make_app(tmp_path, database_url, team)
    [ref] = ingest(app, VK_COMMENT)
    app.database.dispose()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(CLAIMERS)
    results = context.Queue()
    workers = [
        context.Process(target=_claim, args=(str(app.config_path), database_url, ref, f"m{n:02d}", barrier, results))
        for n in range(CLAIMERS)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    winners = [login for login, result, _ in outcomes if result == "won"]
    errors = [message for _, result, message in outcomes if result == "error"]
    assert errors == []
    assert len(winners) == 1
    losers = [message for _, result, message in outcomes if result == "lost"]
    assert len(losers) == CLAIMERS - 1
    assert all(message == f"{ref} is already claimed by {winners[0]}" for message in losers), losers
    checked = make_app(tmp_path / "check", database_url, team)
    from tests.test_work import card, kinds

    assert card(checked, ref).responsible == winners[0]
    assert kinds(checked, ref) == ["created:", "open:", f"claimed:{winners[0]}"]
    checked.database.dispose()


def _take_all(config: str, url: str, login: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    from interestd import work
    from interestd.errors import NotFoundError

    settings = load_settings(Path(config), environ={**os.environ, "INTERESTD_DATABASE_URL": url})
    database = Database(url, busy_timeout=60)
    taken: list[str] = []
    barrier.wait()
    try:
        while True:
            with database.session(write=True) as session:
                taken.append(work.claim_next(session, settings, login).split()[0])
    except NotFoundError:
        results.put((login, taken, None))
    except Exception as exc:  # anything else is a failure of the test
        results.put((login, taken, f"{type(exc).__name__}: {exc}"))
    finally:
        database.dispose()


def test_managers_taking_the_next_card_at_once_never_get_the_same_one(tmp_path: Path, database_url: str) -> None:
    from interestd.services import ingest_paths
    from tests.mailgen import letter

    takers, cards = 8, 40
    team = "".join(f'[[managers]]\nlogin = "m{n:02d}"\n' for n in range(takers))
    app = make_app(tmp_path, database_url, team)
    mail = tmp_path / "mail"
    mail.mkdir()
    for n in range(cards):
        (mail / f"{n}.eml").write_bytes(letter(n))
    ingest_paths(app.database, app.context, [mail], max_message_bytes=10**7)
    app.database.dispose()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(takers)
    results = context.Queue()
    workers = [
        context.Process(target=_take_all, args=(str(app.config_path), database_url, f"m{n:02d}", barrier, results))
        for n in range(takers)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert [error for _, _, error in outcomes if error] == []
    taken = [ref for _, refs, _ in outcomes for ref in refs]
    assert len(taken) == cards and len(set(taken)) == cards  # every card once, none twice
    checked = make_app(tmp_path / "check", database_url, team)
    from tests.test_work import card, kinds

    for login, refs, _ in outcomes:
        for ref in refs:
            assert card(checked, ref).responsible == login
            assert kinds(checked, ref) == ["created:", "open:", f"claimed:{login}"]
    checked.database.dispose()
