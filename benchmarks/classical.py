"""``python -m benchmarks classical``: Brovey through the pipeline against GDAL.

For each PAN size, a scene is mosaicked from the real WorldView-2 pair
``grip_unina_pnn/imgWV2.mat`` (mirrored copies, real georeference), then in one
run: the pipeline (ingest, fit, tiled Brovey on a LocalCluster, COG) and
``gdal_pansharpen.py`` writing a COG with the same weights and the same
creation options. Both produce the same deliverable: a COG with overviews.

The two run back to back ``repeats`` times per size, in alternating order
(ours first, then GDAL first, ...), because this machine's pace drifts by
up to x1.6 within an hour: the ratio reported is the median of the pairs'
ratios, each pair measured within minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np
import rasterio
from rasterio.windows import Window

from pansharp_dist.errors import InvalidParameterError, PansharpError
from pansharp_dist.export import cog_options
from pansharp_dist.timing import PeakMemory, measured_run

from .mosaic import mosaic_pair
from .results import machine, shared_data, write_result

SOURCE = Path("grip_unina_pnn") / "imgWV2.mat"


@dataclass(frozen=True)
class ClassicalPair:
    """One back-to-back run of both sides: wall seconds, our phase ends (seconds), peak RSS (bytes)."""

    ours_s: float
    gdal_s: float
    phases: dict[str, float]
    client_peak: int
    worker_peak: int
    gdal_peak: int


@dataclass(frozen=True)
class ClassicalRow:
    """One size's pairs of runs, and the mean absolute difference of the last pair's outputs (% of GDAL's range)."""

    size: int
    pairs: list[ClassicalPair]
    mad_percent: float

    @property
    def megapixels(self) -> float:
        return self.size * self.size / 1e6

    @property
    def ours_s(self) -> float:
        return median(p.ours_s for p in self.pairs)

    @property
    def gdal_s(self) -> float:
        return median(p.gdal_s for p in self.pairs)

    @property
    def ratios(self) -> list[float]:
        """GDAL's seconds over ours, pair by pair: above 1, ours is faster."""
        return [p.gdal_s / p.ours_s for p in self.pairs]

    def phase(self, name: str) -> float:
        """Median over the pairs of the second at which our phase ``name`` ended."""
        return median(p.phases.get(name, 0.0) for p in self.pairs)

    def peak(self, side: str) -> int:
        """Largest peak RSS over the pairs, bytes: ``side`` is client, worker or gdal."""
        return max(getattr(p, f"{side}_peak") for p in self.pairs)


def gdal_brovey(pan: Path, ms: Path, out: Path, bands: int, compress: str = "ZSTD") -> tuple[float, int]:
    """``gdal_pansharpen.py`` Brovey (equal weights, cubic) into a COG with our creation options at ``compress``,
    all CPUs: wall seconds and peak RSS (bytes) of the command."""
    exe = shutil.which("gdal_pansharpen.py") or shutil.which("gdal_pansharpen")
    if exe is None:
        raise PansharpError("gdal_pansharpen.py not found; install Debian's gdal-bin and python3-gdal")
    size = bands * 2 * _pixels(pan)
    options = [a for k, v in cog_options("uint16", size, compress).items() for a in ("-co", f"{k}={v}")]
    weights = [a for _ in range(bands) for a in ("-w", str(1.0 / bands))]
    cmd = [
        exe,
        "-q",
        str(pan),
        str(ms),
        str(out),
        "-of",
        "COG",
        "-r",
        "cubic",
        "-threads",
        "ALL_CPUS",
        *weights,
        *options,
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with PeakMemory(lambda: {"gdal": proc.pid}, with_children=frozenset({"gdal"})) as mem:
        _, stderr = proc.communicate()
    if proc.returncode:
        raise PansharpError(f"gdal_pansharpen.py failed: {stderr.decode().strip()[:300]}")
    return time.perf_counter() - start, mem.peaks.get("gdal", 0)


def _pixels(path: Path) -> int:
    with rasterio.open(path) as src:
        return src.width * src.height


def _ours(pan: Path, ms: Path, out: Path, workers: int | None) -> tuple[float, dict[str, float], int, int]:
    measured = measured_run(pan, ms, out, workers, method="brovey")
    return measured.seconds, measured.phases, measured.client_peak, measured.worker_peak


def _mad_percent(a: Path, b: Path, size: int) -> float:
    """Mean |ours - GDAL| over a central 2048^2 window, as % of GDAL's data range."""
    n = min(2048, size)
    win = Window((size - n) // 2, (size - n) // 2, n, n)
    with rasterio.open(a) as sa, rasterio.open(b) as sb:
        x, y = sa.read(window=win).astype(np.float64), sb.read(window=win).astype(np.float64)
    return float(np.abs(x - y).mean() / np.ptp(y) * 100)


def run_classical_bench(
    sizes: list[int],
    work_dir: Path,
    results: Path,
    workers: int | None = None,
    repeats: int = 2,
    log: Callable[[str], None] = lambda _: None,
) -> list[ClassicalRow]:
    """Run the benchmark for each PAN ``size``, ``repeats`` pairs of runs each, and write the table into ``results`` (a folder of Markdown tables).

    Raises:
        InvalidParameterError: ``repeats`` below 1.
    """
    if repeats < 1:
        raise InvalidParameterError(f"--repeats must be at least 1, got {repeats}")
    data = shared_data()
    rows = []
    for size in sizes:
        log(f"[{size}^2] mosaicking {SOURCE} ...")
        pan, ms = mosaic_pair(data / SOURCE, data / SOURCE, size, work_dir)
        ours_path, gdal_path = work_dir / f"ours_{size}.tif", work_dir / f"gdal_{size}.tif"
        pairs = []
        for n in range(repeats):
            tag = f"[{size}^2, pair {n + 1}/{repeats}]"
            pair = _pair(
                pan, ms, ours_path, gdal_path, workers, gdal_first=n % 2 == 1, log=lambda m, tag=tag: log(f"{tag} {m}")
            )
            pairs.append(pair)
            log(f"{tag} ours {pair.ours_s:.1f} s, GDAL {pair.gdal_s:.1f} s, ratio {pair.gdal_s / pair.ours_s:.2f}")
        rows.append(ClassicalRow(size, pairs, _mad_percent(ours_path, gdal_path, size)))
        for path in (ours_path, gdal_path):
            path.unlink(missing_ok=True)
    _write_report(results, rows, workers, repeats)
    return rows


def _pair(
    pan: Path,
    ms: Path,
    ours_path: Path,
    gdal_path: Path,
    workers: int | None,
    gdal_first: bool,
    log: Callable[[str], None],
) -> ClassicalPair:
    """Our pipeline and GDAL on the same files, one right after the other."""

    def ours():
        log("pipeline (Brovey, LocalCluster) ...")
        return _ours(pan, ms, ours_path, workers)

    def gdal():
        log("gdal_pansharpen.py -of COG ...")
        gdal_path.unlink(missing_ok=True)
        return gdal_brovey(pan, ms, gdal_path, 8)

    if gdal_first:
        (gdal_s, gdal_peak), (ours_s, phases, client_peak, worker_peak) = gdal(), ours()
    else:
        (ours_s, phases, client_peak, worker_peak), (gdal_s, gdal_peak) = ours(), gdal()
    return ClassicalPair(ours_s, gdal_s, phases, client_peak, worker_peak, gdal_peak)


def _write_report(results: Path, rows: list[ClassicalRow], workers: int | None, repeats: int) -> None:
    mb = 2**20
    lines = [
        "## Classical Brovey: pipeline vs `gdal_pansharpen.py` (`python -m benchmarks classical`)",
        "",
        f"Machine: {machine()}. LocalCluster of {workers or os.cpu_count()} single-threaded workers.",
        "Scene: `grip_unina_pnn/imgWV2.mat` (WorldView-2, 8 bands, uint16) mosaicked with mirrored copies,",
        "EPSG:32633 at 0.5 m PAN / 2 m MS. Both sides write a COG (512 blocks, ZSTD, predictor 2, average",
        "overviews, all CPUs) with equal weights 1/8 and cubic MS upsampling. Throughput is PAN megapixels per",
        "second of wall time, end to end (ours: ingest, fit, fuse, COG; the cluster start is excluded).",
        f"Each size: {repeats} pair(s) of back-to-back runs in alternating order; seconds, phases and MP/s are",
        "medians over the runs, the ratio is the median of the pairs' ratios (each pair's in parentheses), peaks are",
        "the largest over the runs.",
        "",
        "| PAN size | ours (s) | ingest / fuse / COG (s) | GDAL (s) | ours MP/s | GDAL MP/s | ratio to GDAL "
        "| peak client (MiB) | peak per worker (MiB) | peak GDAL (MiB) | MAD vs GDAL (% of range) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ingest, fuse, cog = r.phase("ingest"), r.phase("fuse"), r.phase("cog")
        pairs = f" ({', '.join(f'{x:.2f}' for x in r.ratios)})" if len(r.ratios) > 1 else ""
        lines.append(
            f"| {r.size}² | {r.ours_s:.1f} | {ingest:.1f} / {fuse - ingest:.1f} / {cog - fuse:.1f} | "
            f"{r.gdal_s:.1f} | {r.megapixels / r.ours_s:.2f} | {r.megapixels / r.gdal_s:.2f} | "
            f"{median(r.ratios):.2f}{pairs} | {r.peak('client') / mb:.0f} | {r.peak('worker') / mb:.0f} | "
            f"{r.peak('gdal') / mb:.0f} | {r.mad_percent:.3f} |"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = {side: last.peak(side) / first.peak(side) for side in ("client", "worker", "gdal")}
        lines += [
            "",
            f"Peak memory from {first.size}² to {last.size}² ({last.megapixels / first.megapixels:.0f}x the pixels): "
            f"client x{growth['client']:.2f}, worker x{growth['worker']:.2f}, GDAL x{growth['gdal']:.2f}.",
        ]
    write_result(results, "classical", "\n".join(lines))
