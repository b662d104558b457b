"""``python -m benchmarks scaling``: throughput against workers and scene size, classical and network, and GDAL.

Scenes are mosaicked from the real WorldView-2 pair ``grip_unina_pnn/imgWV2.mat``.
For each size, the pipeline runs end to end (ingest, statistics, fuse, COG) on a
LocalCluster of 1, 2, ... single-threaded workers, for Brovey and for a network
(no adaptation), and ``gdal_pansharpen.py`` writes the same Brovey as a COG with
``NUM_THREADS=ALL_CPUS``; both COGs at the same codec and level. The table goes
to ``docs/results/scaling.md`` and the plot to ``docs/results/scaling.png``.
Throughput is PAN megapixels per second of wall time (our cluster's start
excluded, GDAL's whole command).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pansharp_dist.timing import measured_run

from .classical import SOURCE, gdal_brovey
from .mosaic import mosaic_pair
from .results import machine, shared_data, write_result


@dataclass(frozen=True)
class ScalingPoint:
    """One run: the path (``brovey``, the network's name, or ``gdal``), PAN size, workers (GDAL: all cores)
    and wall seconds."""

    path: str
    size: int
    workers: int
    seconds: float

    @property
    def megapixels(self) -> float:
        return self.size * self.size / 1e6

    @property
    def rate(self) -> float:
        return self.megapixels / self.seconds


def run_scaling_bench(
    results: Path,
    work_dir: Path,
    sizes: list[int],
    network_sizes: list[int],
    model: str = "fusionnet-wv2",
    compress: str = "ZSTD:1",
    log: Callable[[str], None] = lambda _: None,
) -> list[ScalingPoint]:
    """Every size x workers for Brovey (``sizes``) and ``model`` (``network_sizes``), GDAL at ``sizes``;
    writes the table and the plot into ``results``."""
    cores = os.cpu_count() or 1
    data = shared_data()
    points = []
    for size in sorted({*sizes, *network_sizes}):
        pan, ms = mosaic_pair(data / SOURCE, data / SOURCE, size, work_dir)
        out = work_dir / f"scaling_{size}.tif"
        paths = (["brovey"] if size in sizes else []) + ([model] if size in network_sizes else [])
        for method in paths:
            for workers in range(1, cores + 1):
                options = {"device": "cpu", "adapt": "none"} if method != "brovey" else {}
                run = measured_run(pan, ms, out, workers, method=method, compress=compress, **options)
                points.append(ScalingPoint(method, size, workers, run.seconds))
                log(f"[scaling {size}²] {method}, {workers} worker(s): {points[-1].rate:.2f} MP/s")
        if size in sizes:
            out.unlink(missing_ok=True)
            seconds, _ = gdal_brovey(pan, ms, out, 8, compress=compress)
            points.append(ScalingPoint("gdal", size, cores, seconds))
            log(f"[scaling {size}²] gdal_pansharpen.py, ALL_CPUS: {points[-1].rate:.2f} MP/s")
        out.unlink(missing_ok=True)
    write_result(results, "scaling", _section(points, model, compress, cores))
    _plot(points, results / "scaling.png", compress)
    return points


def _label(point: ScalingPoint) -> str:
    if point.path == "gdal":
        return f"gdal_pansharpen.py (Brovey), ALL_CPUS ({point.workers} cores)"
    return f"{point.path}, {point.workers} worker{'s' if point.workers > 1 else ''}"


def _series(points: list[ScalingPoint]) -> dict[str, list[ScalingPoint]]:
    series: dict[str, list[ScalingPoint]] = {}
    for p in points:
        series.setdefault(_label(p), []).append(p)
    return series


def _section(points: list[ScalingPoint], model: str, compress: str, cores: int) -> str:
    lines = [
        "## Throughput against workers and scene size (`python -m benchmarks scaling`)",
        "",
        f"Machine: {machine()}. Scenes mosaicked from `{SOURCE}` (8 bands, uint16). Ours: the pipeline end to end "
        f"(ingest, statistics, fuse, COG) on a LocalCluster of single-threaded workers, Brovey and {model} on CPU "
        f"(no adaptation); GDAL: `gdal_pansharpen.py` Brovey with `-threads ALL_CPUS`. Both COGs at {compress} "
        "(predictor 2, 512 blocks, average overviews). PAN MP/s of wall time (our cluster start excluded).",
        "",
        "| path | PAN size | PAN MP | workers | seconds | PAN MP/s | against GDAL at this size |",
        "|---|---|---|---|---|---|---|",
    ]
    gdal = {p.size: p for p in points if p.path == "gdal"}
    for p in points:
        against = f"{p.rate / gdal[p.size].rate:.2f}" if p.path == "brovey" and p.size in gdal else ""
        lines.append(
            f"| {p.path} | {p.size}² | {p.megapixels:.0f} | {p.workers} | {p.seconds:.1f} | {p.rate:.2f} | {against} |"
        )
    lines += ["", "Fitted in log-log over the sizes (seconds against pixels), and the seconds it predicts:", ""]
    lines += ["| series | exponent | 1 GP (s) | 2 GP (s) | 4 GP (s) |", "|---|---|---|---|---|"]
    for label, series in _series(points).items():
        if len(series) < 2:
            continue
        px, s = [p.megapixels * 1e6 for p in series], [p.seconds for p in series]
        slope, intercept = np.polyfit(np.log(px), np.log(s), 1)
        predicted = [float(np.exp(intercept + slope * np.log(gp * 1e9))) for gp in (1, 2, 4)]
        lines.append(f"| {label} | {slope:.2f} | " + " | ".join(f"{v:.0f}" for v in predicted) + " |")
    speedups = []
    for path in sorted({p.path for p in points if p.path != "gdal"}):
        for size in sorted({p.size for p in points if p.path == path}):
            by = {p.workers: p for p in points if p.path == path and p.size == size}
            if 1 in by and cores in by:
                speedups.append(f"{path} at {size}²: x{by[cores].rate / by[1].rate:.2f}")
    lines += ["", f"{cores} workers against 1: " + "; ".join(speedups) + "."]
    return "\n".join(lines)


def _plot(points: list[ScalingPoint], path: Path, compress: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    for label, series in _series(points).items():
        series = sorted(series, key=lambda p: p.size)
        style = "k--" if series[0].path == "gdal" else "-o"
        ax.plot([p.megapixels for p in series], [p.rate for p in series], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    rates = [p.rate for p in points]
    ax.set_xticks(sorted({round(p.megapixels) for p in points}))
    ax.set_yticks([v for v in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if min(rates) / 2 <= v <= max(rates) * 2])
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("scene size (PAN megapixels)")
    ax.set_ylabel("end to end (PAN megapixels per second)")
    ax.set_title(f"Pansharpening throughput, COG at {compress}, {os.cpu_count()} cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
