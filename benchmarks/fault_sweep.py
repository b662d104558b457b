"""Recovery cost of cluster faults: a table of fault, phase, outcome and seconds lost against an undisturbed run.

Usage (from the repository, with ``../shared/data`` beside it)::

    python -m benchmarks.fault_sweep [--size 1024] [--ttl 10] [--work /tmp/fault-sweep]

On a real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1 (no nanny, one thread each), a
network run (FusionNet QuickBird, adapted by the tailor, 256-pixel blocks) on a mirror mosaic of the
embedded sample scene is disturbed once per row, on an event of the run (the first progress report of a
phase), never after a guessed delay:

* a worker SIGKILLed in each phase (ingest, adapt, fuse, cog);
* a worker SIGSTOPped (hung) while blocks are fused, with the scheduler's ``worker-ttl`` at ``--ttl`` seconds;
* the scheduler SIGKILLed while blocks are fused, then ``--resume`` on a new cluster.

Outcome ``identical`` means the COG's pixels equal the undisturbed run's. Seconds lost: the disturbed run's
wall time (both attempts, for the scheduler) less the median of two undisturbed runs; "a block" is the
undisturbed fusion's seconds per block per worker, the work a killed worker's in-flight task can cost.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import statistics
import subprocess
import time
from pathlib import Path

import rasterio

import pansharp_dist
from benchmarks.dask_processes import DaskProcesses
from benchmarks.mosaic import mosaic_pair
from pansharp_dist.adapt.options import AdaptOptions
from pansharp_dist.errors import ClusterError
from pansharp_dist.pipeline import run

SAMPLE = Path(pansharp_dist.__file__).parent / "sample"
NETWORK = {"method": "fusionnet-qb", "device": "cpu", "adapt": "tailor", "tile": 128, "task_megapixels": 0.07}
STEPS = 20


def pixels(cog: Path) -> str:
    with rasterio.open(cog) as src:
        return hashlib.sha256(src.read().tobytes()).hexdigest()


def one_run(pair, work: Path, procs: DaskProcesses, event=None, resume: bool = False) -> tuple[float, object]:
    """Seconds of one run on ``procs`` and its report; ``event(phase, done, total)`` disturbs it."""
    start = time.perf_counter()
    report = run(
        *pair,
        work / "out.tif",
        scheduler=procs.address,
        work_dir=work / "work",
        resume=resume,
        overwrite=True,
        adapt_options=AdaptOptions(steps=STEPS),
        progress=event,
        **NETWORK,
    )
    return time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--ttl", type=float, default=10.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fault-sweep"))
    args = parser.parse_args()
    pair = mosaic_pair(SAMPLE / "pan.tif", SAMPLE / "ms.tif", args.size, args.work / "mosaic")
    rows = []

    def fresh(name: str) -> Path:
        folder = args.work / name
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        folder.mkdir(parents=True)
        return folder

    base_seconds, reference, fuse_share = [], None, None
    for k in range(2):
        folder = fresh(f"undisturbed-{k}")
        procs = DaskProcesses(folder / "cluster")
        fuse_times: list[float] = []

        def note(phase, done, total, _note=None, times=fuse_times):
            if phase == "fuse":
                times.append(time.perf_counter())

        try:
            seconds, report = one_run(pair, folder, procs, note)
        finally:
            procs.close()
        base_seconds.append(seconds)
        reference = pixels(folder / "out.tif")
        fuse_share = (fuse_times[-1] - fuse_times[0]) / max(1, report.blocks - 1) * 2  # per block per worker
    base = statistics.median(base_seconds)
    print(
        f"undisturbed: {base:.1f} s (runs {', '.join(f'{s:.1f}' for s in base_seconds)}), "
        f"a block about {fuse_share:.2f} s",
        flush=True,
    )

    ttl = {"DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": f"{args.ttl}s"}

    def disturbed(fault: str, phase: str, signum: int, target: str) -> None:
        folder = fresh(f"{fault}-{phase}")
        procs = DaskProcesses(folder / "cluster", scheduler_env=ttl if signum == signal.SIGSTOP else None)
        fired: list[float] = []

        def event(current, done, total, _note=None):
            if current == phase and done >= 1 and not fired:
                proc = procs.scheduler if target == "scheduler" else procs.workers[1]
                proc.send_signal(signum)
                fired.append(time.perf_counter())

        outcome = None
        try:
            start = time.perf_counter()
            try:
                one_run(pair, folder, procs, event)
                total = time.perf_counter() - start
            except ClusterError as exc:  # the scheduler lost: the run stops, a new cluster resumes it
                total = time.perf_counter() - start
                outcome = f"stopped with one line, then --resume on a new cluster ({str(exc)[:48]}...)"
                procs.close()
                procs = DaskProcesses(folder / "cluster2")
                seconds, _ = one_run(pair, folder, procs, resume=True)
                total += seconds
        finally:
            procs.close()
        same = pixels(folder / "out.tif") == reference
        outcome = ("identical" if same else "DIFFERENT") + ("" if outcome is None else f"; {outcome}")
        rows.append(f"| {fault} | {phase} | {outcome} | {total - base:+.1f} |")
        print(rows[-1], flush=True)

    for phase in ("ingest", "adapt", "fuse", "cog"):
        disturbed("worker SIGKILL", phase, signal.SIGKILL, "worker")
    disturbed(f"worker SIGSTOP (hung), ttl {args.ttl:g} s", "fuse", signal.SIGSTOP, "worker")
    disturbed("scheduler SIGKILL", "fuse", signal.SIGKILL, "scheduler")
    print("\n| fault | phase | outcome | seconds lost |\n|---|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
