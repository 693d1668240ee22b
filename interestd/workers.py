"""Evaluating messages in worker processes: every core used, and each message held to a time and memory limit.

A message that hangs a parser, exhausts memory or crashes the interpreter costs one worker (killed and
replaced), never the daemon: the chunk it was in is retried one message at a time to find it, and that
message alone is quarantined with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection, wait
from typing import Any

from interestd.evaluation import Outcome, PipelineContext, evaluate
from interestd.forking import fork_context

log = logging.getLogger(__name__)

CHUNK_MESSAGES = 16
CHUNK_BYTES = 4 * 1024 * 1024
# Chunks sent to a worker before its first comes back: it goes straight on to the second while the first one's
# results cross the pipe, instead of waiting for this process (busy fetching and writing) to send the next.
CHUNKS_PER_WORKER = 2


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
class _Batch:
    """Rows handed over by one submit(): their outcomes, filled in as chunks come back."""

    raws: list[bytes | None]
    now: datetime
    future: Future[list[Outcome]]
    outcomes: list[Outcome | None]
    dispatched: int = 0  # rows before this index have been put into chunks
    missing: int = 0  # rows without an outcome yet

    @property
    def over(self) -> bool:
        return self.future.done()


@dataclass
class _Chunk:
    batch: _Batch
    indexes: list[int]


@dataclass
class _Worker:
    process: Any
    connection: Connection
    sending: queue.SimpleQueue[tuple[datetime, list[bytes | None]] | None]
    sender: threading.Thread
    tasks: deque[_Chunk] = field(default_factory=deque)  # sent, oldest (being evaluated) first
    deadline: float = 0.0  # for the oldest task


class WorkerPool:
    """An Evaluator (see pipeline.process_pending) backed by worker processes.

    Batches are submitted (from any thread) and evaluated as one stream: a dispatcher thread keeps every worker
    CHUNKS_PER_WORKER chunks ahead, taking them from the oldest batch first, so no worker waits for another to
    finish a batch's last chunk before the next batch starts.
    """

    parallel = True  # process_pending may evaluate the next batch while it writes this one

    def __init__(
        self, context: PipelineContext, *, processes: int, timeout: float, memory_limit: int | None = None
    ) -> None:
        self.context = context
        self.timeout = timeout
        self.memory_limit = memory_limit
        # The fork server is started once (see interestd.forking) and forks every worker.
        self._mp = fork_context()
        self._processes = max(processes, 1)
        self._proven = False  # set once a worker has returned results: from then on a death is the message's
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # guards the batches, the retries and _closing
        self._batches: deque[_Batch] = deque()  # submitted, with rows not yet in a chunk
        self._retries: deque[_Chunk] = deque()  # chunks taken back from a worker that hung or died
        self._outstanding: list[_Batch] = []  # submitted and not over
        self._closing = False
        self._broken: BaseException | None = None  # what stopped the workers from starting, or the dispatcher
        self._wake_read, self._wake_write = os.pipe()
        # Starting the fork server imports the parsing code there (about half a second): the caller goes on
        # meanwhile (logs in, fetches the first batch) and the first batch waits in line for the workers.
        self._dispatcher = threading.Thread(target=self._dispatch, name="interestd-workers", daemon=True)
        self._dispatcher.start()

    # --- the caller's side --------------------------------------------------------------------------------

    def submit(self, rows: Sequence[Any], context: PipelineContext, now: datetime) -> Future[list[Outcome]]:
        """Outcomes for the rows, in order, once evaluated. `context` must be the pool's own (it was given to
        the workers)."""
        batch = _Batch([row.raw for row in rows], now, Future(), [None] * len(rows), missing=len(rows))
        if not rows:
            batch.future.set_result([])
            return batch.future
        with self._lock:
            if self._broken is not None:
                batch.future.set_exception(self._broken)
                return batch.future
            if self._closing:
                raise RuntimeError("the worker pool is closed")
            self._batches.append(batch)
            self._outstanding.append(batch)
        self._wake()
        return batch.future

    def __call__(self, rows: Sequence[Any], context: PipelineContext, now: datetime) -> list[Outcome]:
        return self.submit(rows, context, now).result()

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._wake()
        self._dispatcher.join()
        self._fail_outstanding(RuntimeError("the worker pool was closed before evaluating these messages"))
        for worker in self._workers:
            worker.sending.put(None)  # the worker exits when it reads None
        for worker in self._workers:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.sender.join(2)
            worker.connection.close()
        self._workers = []
        os.close(self._wake_read)
        os.close(self._wake_write)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")

    # --- the dispatcher thread ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        try:
            for _ in range(self._processes):
                self._workers.append(self._spawn())
            self._serve()
        except BaseException as exc:
            # Whatever stopped the workers from starting (or this thread) is every batch's error from now on.
            with self._lock:
                self._broken = exc
            self._fail_outstanding(exc)

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                self._send_chunks()
            busy = [w for w in self._workers if w.tasks]
            timeout = None
            if busy:
                timeout = max(min(w.deadline for w in busy) - time.monotonic(), 0.0)
            ready = wait([self._wake_read, *(w.connection for w in busy)], timeout=timeout)
            if self._wake_read in ready:
                os.read(self._wake_read, 4096)
            for worker in busy:
                if worker.connection in ready:
                    self._receive(worker)
                elif time.monotonic() >= worker.deadline:
                    self._failed(worker, f"processing took longer than {self.timeout:.0f}s (message_timeout)")

    def _send_chunks(self) -> None:
        for worker in self._workers:
            while len(worker.tasks) < CHUNKS_PER_WORKER and (chunk := self._next_chunk()) is not None:
                if not worker.tasks:
                    # A whole chunk gets one message's time: if it runs over, its messages are retried one by one.
                    worker.deadline = time.monotonic() + self.timeout
                worker.tasks.append(chunk)
                worker.sending.put((chunk.batch.now, [chunk.batch.raws[index] for index in chunk.indexes]))

    def _next_chunk(self) -> _Chunk | None:
        """The next rows to send: a retry first, else a few from the oldest batch (fewer as the work left
        shrinks, so that the workers finish together instead of one waiting for the other's last chunk)."""
        while self._retries:
            chunk = self._retries.popleft()
            if not chunk.batch.over:
                return chunk
        while self._batches and (self._batches[0].over or self._batches[0].dispatched == len(self._batches[0].raws)):
            self._batches.popleft()
        if not self._batches:
            return None
        left = sum(len(batch.raws) - batch.dispatched for batch in self._batches)
        size = max(1, min(CHUNK_MESSAGES, left // (2 * len(self._workers))))
        batch = self._batches[0]
        indexes: list[int] = []
        held = 0
        while batch.dispatched < len(batch.raws) and len(indexes) < size:
            length = len(batch.raws[batch.dispatched] or b"")
            if indexes and held + length > CHUNK_BYTES:
                break
            indexes.append(batch.dispatched)
            held += length
            batch.dispatched += 1
        return _Chunk(batch, indexes)

    def _receive(self, worker: _Worker) -> None:
        try:
            outcomes = worker.connection.recv()
        except (EOFError, OSError):
            self._failed(worker, self._death(worker))
            return
        chunk = worker.tasks.popleft()
        worker.deadline = time.monotonic() + self.timeout  # the next task starts now
        self._proven = True
        for index, outcome in zip(chunk.indexes, outcomes, strict=True):
            self._settle(chunk.batch, index, outcome)

    def _settle(self, batch: _Batch, index: int, outcome: Outcome) -> None:
        if batch.over:
            return
        batch.outcomes[index] = outcome
        batch.missing -= 1
        if batch.missing == 0:
            with self._lock:
                self._outstanding.remove(batch)
            with contextlib.suppress(InvalidStateError):  # cancelled meanwhile: nobody wants it
                batch.future.set_result(batch.outcomes)  # type: ignore[arg-type]

    def _failed(self, worker: _Worker, reason: str) -> None:
        """Replace a worker that hung or died; find the message responsible by retrying its chunk one by one.
        The chunks it had not started go back in line as they are."""
        head, *rest = worker.tasks
        self._replace(worker)
        retries = [_Chunk(head.batch, [index]) for index in head.indexes] if len(head.indexes) > 1 else []
        with self._lock:
            self._retries.extendleft(reversed(retries + rest))
        if retries:
            return
        if not self._proven:
            # No worker has finished anything yet: blame the workers, not the message (it stays waiting).
            self._fail_outstanding(WorkersUnavailable(f"worker processes cannot evaluate messages: {reason}"))
            return
        log.warning("a message was quarantined: %s", reason)
        self._settle(head.batch, head.indexes[0], Outcome("quarantined", reason))

    def _fail_outstanding(self, error: BaseException) -> None:
        with self._lock:
            failed, self._outstanding = self._outstanding, []
            self._batches.clear()
            self._retries.clear()
        for batch in failed:
            with contextlib.suppress(InvalidStateError):
                batch.future.set_exception(error)

    # --- worker processes ---------------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        parent, child = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=_worker_main, args=(child, self.context, self.memory_limit), name="interestd-worker", daemon=True
        )
        process.start()
        child.close()
        sending: queue.SimpleQueue[tuple[datetime, list[bytes | None]] | None] = queue.SimpleQueue()
        # Sending blocks while the worker is busy with the chunk before: a thread of its own, so that this one
        # goes on receiving from the other workers and keeping their deadlines.
        sender = threading.Thread(target=_send_all, args=(parent, sending), name="interestd-workers-send", daemon=True)
        sender.start()
        return _Worker(process, parent, sending, sender)

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
        worker.sending.put(None)
        worker.sender.join(5)  # a send in progress fails once the process is gone
        worker.connection.close()
        fresh = self._spawn()
        worker.process, worker.connection, worker.sending, worker.sender = (
            fresh.process,
            fresh.connection,
            fresh.sending,
            fresh.sender,
        )
        worker.tasks.clear()
        worker.deadline = 0.0


def _send_all(connection: Connection, sending: queue.SimpleQueue[Any]) -> None:
    """Send a worker its tasks in order, until None (passed on: the worker exits) or the worker is gone."""
    while True:
        task = sending.get()
        try:
            connection.send(task)
        except OSError:
            return
        if task is None:
            return
