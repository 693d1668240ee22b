"""Measuring tools for the benchmarks: wall time of a command, the memory of a process tree, medians."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def busy_cpu_seconds() -> float:
    """CPU seconds the machine's cores have spent busy since boot (/proc/stat: user, nice, system, irq and
    softirq time; guest time is part of user time).

    The difference around a run is what the run cost the whole machine, the mail server included, on every
    core: a run that keeps both cores busy shows twice its wall time."""
    with open("/proc/stat") as handle:
        user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in handle.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found.extend(int(child) for child in text.split())
    except OSError:
        pass
    return found


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (the fork server and the workers of an interestd run)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(_children(current))
    return tree


def _kilobytes(path: str, field: str) -> int:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class MemoryPeak:
    """Peaks seen while a process ran: its own RSS, and the proportional set size (PSS) of its whole tree:
    pages shared between the processes counted once, so the sum is the memory the run really used."""

    main_rss: int = 0  # bytes
    tree_pss: int = 0  # bytes


class MemorySampler(threading.Thread):
    """Samples a process tree's memory every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = MemoryPeak()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def sample(self) -> None:
        main = _kilobytes(f"/proc/{self.pid}/status", "VmHWM:") * 1024  # the kernel's own high-water mark
        total = sum(_kilobytes(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in process_tree(self.pid)) * 1024
        self.peak.main_rss = max(self.peak.main_rss, main)
        self.peak.tree_pss = max(self.peak.tree_pss, total)

    def stop(self) -> MemoryPeak:
        self._done.set()
        self.join()
        return self.peak


@dataclass
class Run:
    """One command run: its wall time, output, exit code and memory peaks."""

    seconds: float
    returncode: int
    stdout: str
    stderr: str
    memory: MemoryPeak


def run_command(command: Sequence[str], *, env: dict[str, str] | None = None, sample_memory: bool = False) -> Run:
    started = time.perf_counter()
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = MemorySampler(process.pid) if sample_memory else None
    if sampler is not None:
        sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    peak = sampler.stop() if sampler is not None else MemoryPeak()
    return Run(seconds, process.returncode, stdout, stderr, peak)


def megabytes(value: int) -> str:
    return f"{value / 1024 / 1024:.0f} MB"
