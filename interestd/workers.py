"""Evaluating messages in worker processes: every core used, and each message held to a time and memory limit.

A message that hangs a parser, exhausts memory or crashes the interpreter costs one worker (killed and
replaced), never the daemon: the chunk it was in is retried one message at a time to find it, and that
message alone is quarantined with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection, wait
from typing import Any

from interestd.evaluation import Outcome, PipelineContext, evaluate
from interestd.forking import fork_context

log = logging.getLogger(__name__)

CHUNK_MESSAGES = 16
CHUNK_BYTES = 4 * 1024 * 1024


def _worker_main(connection: Connection, context: PipelineContext, memory_limit: int | None) -> None:
    """A worker: evaluate the messages it is sent until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if memory_limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        now, items = task
        outcomes = []
        for raw in items:
            try:
                outcomes.append(evaluate(raw, context, now=now))
            except MemoryError:
                outcomes.append(Outcome("quarantined", "needs more memory than worker_memory allows"))
        try:
            connection.send(outcomes)
        except MemoryError:
            connection.send(
                [Outcome("quarantined", "its result needs more memory than worker_memory allows")] * len(items)
            )


class WorkersUnavailable(RuntimeError):
    """Worker processes die before evaluating anything: an environment problem, not a message's."""


@dataclass
class _Worker:
    process: Any
    connection: Connection
    task: list[int] | None = None  # row indexes being evaluated
    deadline: float = 0.0


class WorkerPool:
    """An Evaluator (see pipeline.process_pending) backed by worker processes."""

    parallel = True  # process_pending may evaluate the next batch while it writes this one

    def __init__(
        self, context: PipelineContext, *, processes: int, timeout: float, memory_limit: int | None = None
    ) -> None:
        self.context = context
        self.timeout = timeout
        self.memory_limit = memory_limit
        # The fork server is started once (see interestd.forking) and forks every worker.
        self._mp = fork_context()
        self._proven = False  # set once a worker has returned results: from then on a death is the message's
        self._workers: list[_Worker] = []
        # The daemon polls its mailboxes in threads of their own, each handing batches to this one pool.
        self._one_batch_at_a_time = threading.Lock()
        # Starting the fork server imports the parsing code there (about half a second): the caller goes on
        # meanwhile (logs in, fetches the first batch) and the first evaluation waits for the workers.
        self._start_error: BaseException | None = None
        self._starting: threading.Thread | None = threading.Thread(
            target=self._start, args=(max(processes, 1),), name="interestd-workers-start", daemon=True
        )
        self._starting.start()

    def _start(self, processes: int) -> None:
        try:
            for _ in range(processes):
                self._workers.append(self._spawn())
        except BaseException as exc:
            self._start_error = exc

    def _wait_for_start(self) -> None:
        if self._starting is not None:
            self._starting.join()
            self._starting = None

    def _started(self) -> None:
        """Wait for the workers to be started; raise what stopped them from starting."""
        self._wait_for_start()
        if self._start_error is not None:
            raise self._start_error

    def _spawn(self) -> _Worker:
        parent, child = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=_worker_main, args=(child, self.context, self.memory_limit), name="interestd-worker", daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def close(self) -> None:
        self._wait_for_start()
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.connection.send(None)
        for worker in self._workers:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
            worker.connection.close()
        self._workers = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __call__(self, rows: Sequence[Any], context: PipelineContext, now: datetime) -> list[Outcome]:
        """Outcomes for the rows, in order. `context` must be the pool's own (it was given to the workers)."""
        with self._one_batch_at_a_time:
            return self._evaluate(rows, now)

    def _evaluate(self, rows: Sequence[Any], now: datetime) -> list[Outcome]:
        self._started()
        raws = [row.raw for row in rows]
        results: dict[int, Outcome] = {}
        queue: deque[list[int]] = deque(_chunks(raws, len(self._workers)))
        while queue or any(w.task is not None for w in self._workers):
            for worker in self._workers:
                if worker.task is None and queue:
                    self._give(worker, queue.popleft(), raws, now)
            self._collect(queue, results, raws)
        return [results[index] for index in range(len(rows))]

    def _give(self, worker: _Worker, chunk: list[int], raws: list[bytes | None], now: datetime) -> None:
        worker.task = chunk
        # A whole chunk gets one message's time: if it runs over, its messages are retried one by one.
        worker.deadline = time.monotonic() + self.timeout
        try:
            worker.connection.send((now, [raws[index] for index in chunk]))
        except OSError:
            worker.deadline = 0.0  # the worker is gone: _collect replaces it

    def _collect(self, queue: deque[list[int]], results: dict[int, Outcome], raws: list[bytes | None]) -> None:
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return
        wait_for = max(min(w.deadline for w in busy) - time.monotonic(), 0.0)
        ready = wait([w.connection for w in busy], timeout=wait_for)
        for worker in busy:
            if worker.connection in ready:
                try:
                    outcomes = worker.connection.recv()
                except (EOFError, OSError):
                    self._failed(worker, queue, results, self._death(worker))
                    continue
                assert worker.task is not None
                for index, outcome in zip(worker.task, outcomes, strict=True):
                    results[index] = outcome
                worker.task = None
                self._proven = True
            elif time.monotonic() >= worker.deadline:
                reason = f"processing took longer than {self.timeout:.0f}s (message_timeout)"
                self._failed(worker, queue, results, reason)

    def _failed(self, worker: _Worker, queue: deque[list[int]], results: dict[int, Outcome], reason: str) -> None:
        """Replace a worker that hung or died; find the message responsible by retrying its chunk one by one."""
        chunk = worker.task or []
        self._replace(worker)
        if len(chunk) > 1:
            queue.extendleft([index] for index in reversed(chunk))
            return
        if not self._proven:
            # No worker has finished anything yet: blame the workers, not the message (it stays waiting).
            raise WorkersUnavailable(f"worker processes cannot evaluate messages: {reason}")
        for index in chunk:
            log.warning("a message was quarantined: %s", reason)
            results[index] = Outcome("quarantined", reason)

    def _death(self, worker: _Worker) -> str:
        worker.process.join(1)
        code = worker.process.exitcode
        if code is not None and code < 0:
            return f"the worker processing it died ({signal.Signals(-code).name})"
        return f"the worker processing it died (exit code {code})"

    def _replace(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        worker.connection.close()
        fresh = self._spawn()
        worker.process, worker.connection, worker.task, worker.deadline = fresh.process, fresh.connection, None, 0.0


def _chunks(raws: list[bytes | None], workers: int = 1) -> list[list[int]]:
    """Row indexes in chunks of a few messages (less IPC per message), smaller for large messages and towards
    the end of the batch, so that the workers finish it together instead of one waiting for the other's last
    chunk."""
    chunks: list[list[int]] = []
    index, count = 0, len(raws)
    while index < count:
        size = max(1, min(CHUNK_MESSAGES, (count - index) // (2 * workers)))
        current: list[int] = []
        held = 0
        while index < count and len(current) < size:
            length = len(raws[index] or b"")
            if current and held + length > CHUNK_BYTES:
                break
            current.append(index)
            held += length
            index += 1
        chunks.append(current)
    return chunks
