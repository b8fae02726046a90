"""What the benchmarks measure besides wall-clock time: the server processes'
CPU time and their peak resident memory, read with psutil, and the
percentiles quoted for latencies.

CPU time moves far less than wall-clock time on a shared machine, so every
throughput or latency figure has a CPU-per-operation figure beside it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import psutil


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


class ProcessMonitor:
    """Follows a server's processes (and any children they start): their
    summed CPU time on demand, and each one's peak RSS from a background
    sampler (every ``interval`` seconds) until ``stop()``."""

    def __init__(self, pids: Sequence[int], interval: float = 0.2) -> None:
        self._processes = [psutil.Process(pid) for pid in pids]
        self._interval = interval
        self._peak_rss: dict[int, int] = {}
        # CPU of processes that have exited (or children that came and went):
        # the last figure read stays counted.
        self._last_cpu: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._sample_forever, name="rss-sampler", daemon=True)
        self._thread.start()

    def _tree(self) -> list[psutil.Process]:
        tree: list[psutil.Process] = []
        for process in self._processes:
            tree.append(process)
            with contextlib.suppress(psutil.Error):
                tree.extend(process.children(recursive=True))
        return tree

    def _sample_forever(self) -> None:
        while not self._stopping.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        for process in self._tree():
            with contextlib.suppress(psutil.Error):
                rss = process.memory_info().rss
                with self._lock:
                    if rss > self._peak_rss.get(process.pid, 0):
                        self._peak_rss[process.pid] = rss

    def cpu_seconds(self) -> float:
        """User plus system CPU time of every process so far."""
        for process in self._tree():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                with self._lock:
                    self._last_cpu[process.pid] = times.user + times.system
        with self._lock:
            return sum(self._last_cpu.values())

    def peak_rss_bytes(self) -> int:
        """The sum over processes of each one's peak RSS (for a single
        process, its peak)."""
        self.sample()
        with self._lock:
            return sum(self._peak_rss.values())

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
