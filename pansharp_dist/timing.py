"""One pipeline run on a LocalCluster, timed per phase, with the peak memory of the client and of each worker."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..cluster import connect
from ..pipeline import RunReport, run
from .memory import PeakMemory


@dataclass(frozen=True)
class MeasuredRun:
    """Wall seconds (cluster start excluded), seconds since the start at which each phase ended, peak RSS in bytes."""

    seconds: float
    phases: dict[str, float]
    client_peak: int
    worker_peaks: list[int]
    report: RunReport = field(repr=False)

    @property
    def worker_peak(self) -> int:
        return max(self.worker_peaks)


def measured_run(pan: Path, ms: Path, out: Path, workers: int | None = None, **options: object) -> MeasuredRun:
    """:func:`~pansharp_dist.pipeline.run` on a new LocalCluster of ``workers`` single-threaded workers."""
    phases: dict[str, float] = {}
    start = time.perf_counter()

    def progress(phase: str, done: int, total: int) -> None:
        if done == total:
            phases[phase] = time.perf_counter() - start

    with connect("local", workers) as client:
        worker_pids = list(client.run(os.getpid).values())
        pids = {"client": os.getpid(), **{f"worker{i}": pid for i, pid in enumerate(worker_pids)}}
        start = time.perf_counter()
        with PeakMemory(lambda: pids) as mem:
            report = run(pan, ms, out, client=client, overwrite=True, progress=progress, **options)
        seconds = time.perf_counter() - start
    workers_peaks = [mem.peaks.get(f"worker{i}", 0) for i in range(len(worker_pids))]
    return MeasuredRun(seconds, phases, mem.peaks["client"], workers_peaks, report)
