"""``python -m benchmarks feed``: how many CPU cores keep one GPU fed, at each codec level, without a GPU.

The whole pipeline (ingest, statistics, fuse and encode, COG) runs on a LocalCluster
of this machine's workers, with the network's forward replaced by a stand-in for
one GPU (:class:`StandInGpu`): each batch of tiles holds a lock that every worker
shares, for the seconds the measured GPU forward takes on the batch's core pixels
(``rate`` PAN MP/s), as one GPU serves all the workers of a node in turn; the
batch's result is Brovey's, computed on the worker (numpy), which stands in for
the host side of a real batch (copies to and from the device, float32
conversion) and gives the encoder real fused pixels to compress.

Two kinds of run:

- **CPU-bound**, at the GPU's measured rate (fusionnet-wv3, float16, one H100:
  312 PAN MP/s, docs/results/models-cuda.md): the GPU waits on the CPU, so the
  CPU seconds of the client and the workers per PAN megapixel are what one
  megapixel costs outside the forward, and ``rate x`` that is the cores one GPU
  needs at each codec level.
- **GPU-bound**, at a rate these cores can feed (half of what they delivered at
  the fast level): the end-to-end rate against the stand-in's shows whether the
  pipeline keeps a GPU busy (the overlap of reading, forward and encoding)
  when the cores are enough.
"""

from __future__ import annotations

import fcntl
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from pansharp_dist.alignment import NotGeoreferencedWarning
from pansharp_dist.classical import Brovey
from pansharp_dist.cluster import connect
from pansharp_dist.fusion import make_fuser
from pansharp_dist.pipeline import assemble_cog, fuse_blocks, ingest_tiles, prepare_fuser, run_folder
from pansharp_dist.plan import plan_run
from pansharp_dist.scene import open_scene

from .classical import SOURCE
from .models import megapixels_per_second, sample_tiles
from .mosaic import mosaic_pair
from .results import machine, shared_data, write_result

GPU_RATE = 312.0
"""PAN MP/s of the bare forward of fusionnet-wv3 (float16 autocast) on one H100: docs/results/models-cuda.md."""

CODECS = ("NONE", "ZSTD:1", "ZSTD:3", "ZSTD:9")


@dataclass(frozen=True)
class StandInGpu:
    """A fuser standing in for a network on one GPU shared by every worker of this machine.

    Attributes:
        host: the Brovey fuser whose result each batch returns (the host side of a batch).
        rate: the GPU's forward rate, PAN megapixels (core pixels, halos excluded) per second.
        lock: a file every worker locks (``flock``) while its batch is "on the GPU".
    """

    host: Brovey
    rate: float
    lock: str
    name: str = "gpu-stand-in"

    @property
    def ratio(self) -> int:
        return self.host.ratio

    @property
    def halo(self) -> int:
        return self.host.halo

    @property
    def batch(self) -> int:
        return self.host.batch

    def fuse(self, pan: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """Brovey of the ``(N, H, W)`` PAN and ``(N, B, H/r, W/r)`` MS float32 tiles, returned after the batch's
        ``N (H - 2 halo) (W - 2 halo) / rate`` seconds on the shared GPU."""
        fused = self.host.fuse(pan, ms)
        n, height, width = pan.shape
        core = n * max(0, height - 2 * self.halo) * max(0, width - 2 * self.halo)
        with open(self.lock, "a") as gpu:
            fcntl.flock(gpu, fcntl.LOCK_EX)
            try:
                time.sleep(core / 1e6 / self.rate)
            finally:
                fcntl.flock(gpu, fcntl.LOCK_UN)
        return fused


@dataclass(frozen=True)
class FeedRun:
    """One end-to-end run: its codec, the stand-in's rate (PAN MP/s), wall seconds, CPU seconds of the
    client and the workers; for each phase (``ingest``, ``fuse``, ``cog``) the seconds since the start at which
    it ended and the CPU seconds spent by then."""

    codec: str
    rate: float
    megapixels: float
    seconds: float
    cpu_seconds: float
    phases: dict[str, float]
    phases_cpu: dict[str, float]

    @property
    def end_to_end(self) -> float:
        return self.megapixels / self.seconds

    @property
    def core_seconds_per_mp(self) -> float:
        """CPU seconds per PAN megapixel, the stand-in's wait excluded (it sleeps)."""
        return self.cpu_seconds / self.megapixels

    def phase_core_seconds_per_mp(self) -> dict[str, float]:
        """CPU seconds per PAN megapixel of each phase (the statistics count in ``fuse``)."""
        ends = [self.phases_cpu.get(name, 0.0) for name in ("ingest", "fuse", "cog")]
        return {
            name: (end - begin) / self.megapixels
            for name, begin, end in zip(("ingest", "fuse", "cog"), [0.0, *ends[:2]], ends)
        }


def _cpu_seconds(pids: list[int]) -> float:
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def feed_run(pan: Path, ms: Path, out: Path, codec: str, rate: float, workers: int, tile: int = 512) -> FeedRun:
    """The pipeline's four steps on a new LocalCluster, the stand-in GPU fusing at ``rate``."""
    plan = plan_run(pan, ms, out, method="brovey", tile=tile, compress=codec, overwrite=True)
    phases: dict[str, float] = {}
    phases_cpu: dict[str, float] = {}

    def progress(phase: str, done: int, total: int, note: str | None = None) -> None:
        if done == total:
            phases[phase] = time.perf_counter() - start
            phases_cpu[phase] = _cpu_seconds(pids) - cpu_before

    with connect("local", workers) as client:
        assert client is not None
        pids = [os.getpid(), *client.run(os.getpid).values()]
        cpu_before, start = _cpu_seconds(pids), time.perf_counter()
        with run_folder(plan) as files:
            stored = ingest_tiles(plan, files, client, progress)
            brovey, _ = prepare_fuser(plan, files, stored, client)
            assert isinstance(brovey, Brovey)
            gpu = StandInGpu(brovey, rate, str(files.tiles.parent / "gpu.lock"))
            fuse_blocks(plan, files, stored, gpu, client, progress)
            assemble_cog(plan, files, client, progress)
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds(pids) - cpu_before
    height, width = stored.shape
    return FeedRun(codec, rate, height * width / 1e6, seconds, cpu, phases, phases_cpu)


def run_feed_bench(
    results: Path,
    work_dir: Path,
    size: int = 8192,
    workers: int | None = None,
    rate: float = GPU_RATE,
    log: Callable[[str], None] = lambda _: None,
) -> list[FeedRun]:
    """The CPU-bound runs at each of :data:`CODECS`, then one GPU-bound run at the fast level; writes
    ``results/feed.md``."""
    workers = workers or os.cpu_count() or 1
    work_dir.mkdir(parents=True, exist_ok=True)
    pan, ms = mosaic_pair(shared_data() / SOURCE, shared_data() / SOURCE, size, work_dir)
    out = work_dir / "feed.tif"
    runs = []
    for codec in CODECS:
        runs.append(feed_run(pan, ms, out, codec, rate, workers))
        log(
            f"[feed] {codec} at {rate:g} MP/s: {runs[-1].end_to_end:.2f} MP/s end to end, "
            f"{runs[-1].core_seconds_per_mp:.3f} core-s per MP"
        )
    fast = next(r for r in runs if r.codec == "ZSTD:1")
    feedable = workers / fast.core_seconds_per_mp
    runs.append(feed_run(pan, ms, out, "ZSTD:1", round(feedable / 2, 2), workers))
    log(f"[feed] ZSTD:1 at {runs[-1].rate:g} MP/s: {runs[-1].end_to_end:.2f} MP/s end to end")
    out.unlink(missing_ok=True)
    brovey_cost = _brovey_core_seconds_per_mp()
    write_result(results, "feed", _feed_section(runs, size, workers, brovey_cost))
    return runs


def _brovey_core_seconds_per_mp(tile: int = 512) -> float:
    """One thread's seconds per PAN megapixel of the stand-in's host side: Brovey on a batch of 4 real tiles
    of ``tile``² and their halo, from the pair the mosaics repeat."""
    source = shared_data() / SOURCE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        scene = open_scene(source, source)
    fuser = make_fuser(scene, "brovey")
    pan, ms = sample_tiles(scene, tile + 2 * fuser.halo, 4)
    return 1 / megapixels_per_second(lambda: fuser.fuse(pan, ms), "cpu", 4 * tile * tile, 2.0)


def _feed_section(runs: list[FeedRun], size: int, workers: int, brovey_cost: float) -> str:
    bound, check = runs[:-1], runs[-1]  # the runs at the GPU's rate, then the GPU-bound one
    ingest, fuse = check.phases.get("ingest", 0.0), check.phases.get("fuse", 0.0)
    fuse_rate = check.megapixels / (fuse - ingest)
    lines = [
        "## Cores to feed one GPU (`python -m benchmarks feed`)",
        "",
        f"Machine: {machine()}. The pipeline end to end (ingest; statistics, fuse and encode the COG tiles; the "
        f"overviews below and the assembly) on a {size}² "
        f"8-band uint16 scene mosaicked from `{SOURCE}`, LocalCluster of {workers} single-threaded workers, tile "
        "512, the forward replaced by a stand-in for one GPU shared by the workers (a lock held for the batch's "
        "core pixels / rate; the batch's result is Brovey's, computed on the worker). Core-s: CPU seconds of the "
        "client and the workers per PAN megapixel (the stand-in's wait excluded, its Brovey included). Cores per "
        "GPU: the rate x core-s per MP, if every part of that CPU work spread over cores (the scheduler's does not).",
        "",
        f"| codec | stand-in GPU (PAN MP/s) | end to end (PAN MP/s) | wall (s) | core-s per PAN MP | of which ingest "
        f"/ statistics, fuse and encode / overviews and assembly | cores per GPU at {bound[0].rate:g} MP/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in bound:
        split = " / ".join(f"{v:.3f}" for v in r.phase_core_seconds_per_mp().values())
        lines.append(
            f"| {r.codec} | {r.rate:g} | {r.end_to_end:.2f} | {r.seconds:.1f} | {r.core_seconds_per_mp:.3f} | "
            f"{split} | {r.rate * r.core_seconds_per_mp:.0f} |"
        )
    lines += [
        "",
        f"The stand-in's host side (Brovey on 4 tiles of 512² + halo, one thread) costs {brovey_cost:.3f} core-s "
        "per PAN MP of the above.",
        "",
        f"GPU-bound check: a stand-in of {check.rate:g} PAN MP/s (half of what these {workers} cores fed at ZSTD:1) "
        f"gave **{check.end_to_end:.2f} MP/s end to end, {check.end_to_end / check.rate * 100:.0f}% of the "
        f"stand-in's rate**, its statistics, fuse and encode phase {fuse_rate:.2f} MP/s "
        f"({fuse_rate / check.rate * 100:.0f}%) ({check.seconds:.1f} s: ingest to {ingest:.1f} s, fuse to "
        f"{fuse:.1f} s, COG to {check.phases.get('cog', 0):.1f} s). The phases run one after the other: the GPU "
        "waits during the ingest and the last overviews and assembly, so the cores per GPU above (every phase's "
        "CPU at the GPU's rate) are "
        "what a node needs with the phases overlapped, a lower bound for this pipeline.",
    ]
    return "\n".join(lines)
