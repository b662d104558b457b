"""Time a run of your own scene on your own cluster: seconds per phase and peak memory.

:func:`measured_run` is :func:`~pansharp_dist.pipeline.run` with a stopwatch
on each phase and a sampler of the resident memory of the client and of each
worker process; ``pansharp-dist bench`` runs it a few times and prints the
medians. The project's own benchmarks (against GDAL, across sensors, at scale)
build on it; they live beside the package, in ``benchmarks/``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cluster import connect
from .pipeline import RunReport, run


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
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _rss(self, pid: int, children: bool) -> int:
        import psutil

        try:
            proc = psutil.Process(pid)
            own = proc.memory_info().rss
            return own + sum(c.memory_info().rss for c in proc.children(recursive=True)) if children else own
        except psutil.Error:
            return 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, pid in self._pids().items():
                self.peaks[name] = max(self.peaks.get(name, 0), self._rss(pid, name in self._with_children))
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class MeasuredRun:
    """Wall seconds (cluster start excluded), seconds since the start at which each phase ended, peak RSS in
    bytes of the client and of each worker process on this machine (none for an in-process run or a remote
    cluster)."""

    seconds: float
    phases: dict[str, float]
    client_peak: int
    worker_peaks: list[int]
    report: RunReport = field(repr=False)

    @property
    def worker_peak(self) -> int:
        return max(self.worker_peaks, default=0)

    @property
    def megapixels_per_second(self) -> float:
        """PAN megapixels fused per second of wall time, end to end."""
        return self.report.width * self.report.height / 1e6 / self.seconds


def measured_run(
    pan: str | Path,
    ms: str | Path,
    out: str | Path,
    workers: int | None = None,
    *,
    scheduler: str = "local",
    **options: Any,
) -> MeasuredRun:
    """:func:`~pansharp_dist.pipeline.run` timed: on a new LocalCluster of ``workers`` single-threaded workers
    (``scheduler="local"``, the default), this process's threads (``"threads"``) or a running cluster (its
    address). ``options`` are :func:`~pansharp_dist.pipeline.run`'s; the output is overwritten."""
    phases: dict[str, float] = {}
    start = time.perf_counter()

    def progress(phase: str, done: int, total: int, note: str | None = None) -> None:
        if done == total:
            phases[phase] = time.perf_counter() - start

    with connect(scheduler, workers) as client:
        local = client is not None and scheduler in ("local", "cuda")  # its workers are processes of this machine
        worker_pids = list(client.run(os.getpid).values()) if local and client is not None else []
        pids = {"client": os.getpid(), **{f"worker{i}": pid for i, pid in enumerate(worker_pids)}}
        start = time.perf_counter()
        with PeakMemory(lambda: pids) as mem:
            report = run(pan, ms, out, client=client, overwrite=True, progress=progress, **options)
        seconds = time.perf_counter() - start
    worker_peaks = [mem.peaks.get(f"worker{i}", 0) for i in range(len(worker_pids))]
    return MeasuredRun(seconds, phases, mem.peaks["client"], worker_peaks, report)
