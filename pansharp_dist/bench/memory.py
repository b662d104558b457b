"""Peak resident memory of processes, sampled in a background thread."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psutil


class PeakMemory:
    """Track the peak RSS (bytes) of each process returned by ``pids()``, sampled every ``interval`` s.

    Processes named in ``with_children`` are measured with all their
    descendants (a command that forks); the others alone (a client whose
    LocalCluster workers are its children must not count them).
    """

    def __init__(
        self, pids: Callable[[], dict[str, int]], interval: float = 0.1, with_children: frozenset[str] = frozenset()
    ) -> None:
        self._pids = pids
        self._interval = interval
        self._with_children = with_children
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self, pid: int, children: bool) -> int:
        try:
            proc = psutil.Process(pid)
            own = proc.memory_info().rss
            return own + sum(c.memory_info().rss for c in proc.children(recursive=True)) if children else own
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self._pids().items():
                self.peaks[name] = max(self.peaks.get(name, 0), self._rss(pid, name in self._with_children))
            self._stop.wait(self._interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
