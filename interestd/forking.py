"""The fork server that worker processes are forked from, started as early as a command knows it will need it.

Starting it runs a fresh interpreter that imports the parsing code (about half a second of one core). Started
before the command opens its database and loads its parsers, that import runs on the other core meanwhile,
instead of after them while the command waits for its first results.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interestd.config import Settings

POOL_FROM = 32  # below this many messages, starting worker processes costs more than it saves

# What every worker needs, imported once in the fork server instead of once per worker: the worker's own code,
# the parsing code, and the parser plugins (which a worker would otherwise import when it unpickles the parser
# registry it is sent, each worker on its own, before its first message).
PRELOAD = ["interestd.workers", "interestd.evaluation", "interestd.htmltext", "phonenumbers", "interestd.preload"]


def fork_context() -> multiprocessing.context.ForkServerContext:
    """The multiprocessing context workers are started from: forked from a clean, single-threaded server."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context  # type: ignore[return-value]


def start_fork_server() -> None:
    """Start the fork server now, without waiting for its imports (the first worker started waits for them)."""
    fork_context()
    forkserver.ensure_running()


def uses_workers(settings: Settings, count: int) -> bool:
    """Whether `count` messages are evaluated in worker processes rather than in the process itself."""
    return settings.limits.worker_count != 0 and count >= POOL_FROM


def start_workers_for_poll(settings: Settings) -> None:
    """A poll learns how much mail is new only once it has loaded its database code. When it may evaluate in
    worker processes, their fork server starts at once: its imports run on a core that is otherwise idle while
    the command starts. A poll that finds little new mail leaves it unused, having cost that core about a third
    of a second."""
    if settings.limits.worker_count != 0:
        start_fork_server()


def start_workers_early(settings: Settings, count: int) -> None:
    """When `count` messages will be evaluated in worker processes, start their fork server now, before the
    command imports its own code, opens the database and loads its parsers."""
    if uses_workers(settings, count):
        start_fork_server()
