"""``python -m benchmarks scale``: cost against scene size, an output larger than RAM, parallel efficiency.

Three parts, each a section of docs/benchmarks.md:

- ``scale``: the whole pipeline (Brovey by default) on scenes mosaicked from the
  real WorldView-2 pair ``grip_unina_pnn/imgWV2.mat`` at several PAN sizes: wall
  time, throughput, peak memory of the client and of each worker, and the
  exponent of time against pixels fitted by least squares in log-log.
- ``big``: one run whose COG is larger than this machine's RAM (uncompressed
  COG, a cheap method), validated with rio-cogeo.
- ``parallel``: a network's fuse phase with one and with two single-threaded
  workers, and the end-to-end run (ingest, infer, write, COG) against the bare
  forward pass over the same tiles in one single-threaded process, scaled to
  the same number of workers.
- ``parallel-cuda`` (``--device cuda``): on one GPU, the WorldView-2 FusionNet
  with a Feature Tailor on a WorldView-3 scene mosaicked from
  ``zpnn_wv3_example`` (small enough to send to a GPU machine): the end-to-end
  run (ingest, adapt, infer, write, COG) against the bare tailored forward pass.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import rasterio
import torch
from rasterio.windows import Window

from pansharp_dist.adapt.options import AdaptOptions
from pansharp_dist.adapt.training import adapt_fuser
from pansharp_dist.classical import Brovey
from pansharp_dist.cluster import connect
from pansharp_dist.fusion import OutputSpec, make_fuser, pansharpen, render, tile_batches, tile_grid
from pansharp_dist.pipeline import ingest_scene
from pansharp_dist.pyramid import encode_output
from pansharp_dist.scene import open_scene
from pansharp_dist.store import block_size, open_store
from pansharp_dist.tiff import TILE
from pansharp_dist.timing import MeasuredRun, measured_run

from .classical import SOURCE
from .models import device_machine, sample_tiles, throughput
from .mosaic import mosaic_pair
from .results import machine, shared_data, write_result

MIB = 2**20


@dataclass(frozen=True)
class ScaleRow:
    size: int
    run: MeasuredRun

    @property
    def megapixels(self) -> float:
        return self.size * self.size / 1e6


def fitted_exponent(pixels: list[float], seconds: list[float]) -> float:
    """Slope of log(seconds) against log(pixels): 1.0 is linear."""
    return float(np.polyfit(np.log(pixels), np.log(seconds), 1)[0])


def run_scale(
    sizes: list[int], work_dir: Path, method: str, workers: int | None, log: Callable[[str], None]
) -> list[ScaleRow]:
    data = shared_data()
    rows = []
    for size in sizes:
        log(f"[scale {size}^2] mosaicking {SOURCE} ...")
        pan, ms = mosaic_pair(data / SOURCE, data / SOURCE, size, work_dir)
        out = work_dir / f"scale_{size}.tif"
        log(f"[scale {size}^2] pipeline ({method}) ...")
        measured = measured_run(pan, ms, out, workers, method=method)
        log(
            f"[scale {size}^2] {measured.seconds:.1f} s, client {measured.client_peak / MIB:.0f} MiB, "
            f"workers {[round(p / MIB) for p in measured.worker_peaks]} MiB"
        )
        rows.append(ScaleRow(size, measured))
        out.unlink(missing_ok=True)
    return rows


def run_big(size: int, work_dir: Path, method: str, workers: int | None, log: Callable[[str], None]) -> dict:
    """One uncompressed COG larger than RAM; returns its facts. The inputs and the COG are removed afterwards."""
    from rio_cogeo.cogeo import cog_validate

    data = shared_data()
    log(f"[big {size}^2] mosaicking {SOURCE} ...")
    pan, ms = mosaic_pair(data / SOURCE, data / SOURCE, size, work_dir)
    out = work_dir / f"big_{size}.tif"
    log(f"[big {size}^2] pipeline ({method}, uncompressed COG) ...")
    measured = measured_run(pan, ms, out, workers, method=method, compress="NONE")
    log(f"[big {size}^2] validating {out.stat().st_size / 2**30:.1f} GiB ...")
    start = time.perf_counter()
    valid, errors, _ = cog_validate(str(out), strict=True)
    facts = {
        "size": size,
        "run": measured,
        "bytes": out.stat().st_size,
        "ram": psutil.virtual_memory().total,
        "valid": valid,
        "errors": errors,
        "validate_s": time.perf_counter() - start,
        "tail": _tail_matches(pan, ms, out) if method == "brovey" else None,
    }
    for path in (out, pan, ms):
        path.unlink(missing_ok=True)
    return facts


def _tail_matches(pan: Path, ms: Path, cog: Path) -> bool:
    """Whether the COG's last full-resolution tile, the one stored furthest into the file, equals Brovey
    (equal weights) recomputed on that corner of the inputs with its halo: a tiled run equals a single pass."""
    scene = open_scene(pan, ms)
    height, width = scene.shape
    fuser = Brovey(tuple([1.0 / scene.bands] * scene.bands), scene.ratio)
    y0, x0, r = height - TILE - fuser.halo, width - TILE - fuser.halo, scene.ratio
    pan_px, ms_px = scene.pan.data[y0:, x0:].compute(), scene.ms.data[:, y0 // r :, x0 // r :].compute()
    expected = render(fuser, pan_px, ms_px, OutputSpec.for_scene(scene))[:, fuser.halo :, fuser.halo :]
    with rasterio.open(cog) as src:
        return bool(np.array_equal(src.read(window=Window(width - TILE, height - TILE, TILE, TILE)), expected))


def _bare_forward_rate(store, fuser, tile: int, blocks: int, first: int = 0) -> tuple[float, int]:
    """PAN megapixels/s of ``fuser.fuse`` alone (one thread) over the tiles of ``blocks`` blocks from block
    ``first`` (row-major)."""
    grid = tile_grid(store, fuser, tile)
    height, width = store.shape
    side = block_size(tile)
    pan, ms, r = store.pan, store.ms, store.ratio
    torch.set_num_threads(1)
    seconds, pixels = 0.0, 0
    for b in range(first, first + blocks):
        by, bx = divmod(b, math.ceil(width / side))
        y0, x0 = by * side, bx * side
        for tiles in tile_batches(grid, y0, min(y0 + side, height), x0, min(x0 + side, width), fuser.batch):
            p = np.stack([pan[t.read[0] : t.read[1], t.read[2] : t.read[3]].values for t in tiles]).astype(np.float32)
            m = np.stack(
                [ms[:, t.read[0] // r : t.read[1] // r, t.read[2] // r : t.read[3] // r].values for t in tiles]
            ).astype(np.float32)
            start = time.perf_counter()
            fuser.fuse(p, m)
            seconds += time.perf_counter() - start
            pixels += sum((t.core[1] - t.core[0]) * (t.core[3] - t.core[2]) for t in tiles)
    torch.set_num_threads(os.cpu_count() or 1)
    return pixels / 1e6 / seconds, pixels


def _bare_forward_beside(store_path: Path, model: str, tile: int, first: int, start, rates) -> None:
    """:func:`_bare_forward_rate` over block ``first`` in a process of its own, once every such process has
    loaded its network (``start``, a barrier); puts ``(MP/s, pixels)`` on ``rates``."""
    store = open_store(store_path)
    fuser = make_fuser(store, model, device="cpu")
    _bare_forward_rate(store, fuser, tile, blocks=1, first=first)  # warm: the network loaded, its caches filled
    start.wait()
    rates.put(_bare_forward_rate(store, fuser, tile, blocks=1, first=first))


def bare_forward_side_by_side(store_path: Path, model: str, tile: int, processes: int = 2) -> float:
    """PAN megapixels/s of the bare forward in ``processes`` single-threaded processes at once, each over a
    block of its own (the same blocks again past the scene's): what the cores give the forward when they all
    run it (shared caches and memory)."""
    height, width = open_store(store_path).shape
    side = block_size(tile)
    blocks = math.ceil(height / side) * math.ceil(width / side)
    context = multiprocessing.get_context("spawn")
    start, rates = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_bare_forward_beside, args=(store_path, model, tile, k % blocks, start, rates))
        for k in range(processes)
    ]
    for worker in workers:
        worker.start()
    total = sum(rates.get(timeout=1800)[0] for _ in workers)
    for worker in workers:
        worker.join()
    return total


def run_parallel(size: int, model: str, work_dir: Path, log: Callable[[str], None], tile: int = 512) -> dict:
    """Fuse-phase throughput with 1 and 2 workers, end to end with 2, and the bare forward rate."""
    data = shared_data()
    pan, ms = mosaic_pair(data / SOURCE, data / SOURCE, size, work_dir)
    store_path = work_dir / f"parallel_{size}.tiles.zarr"
    shutil.rmtree(store_path, ignore_errors=True)
    store = ingest_scene(pan, ms, store_path, tile=tile, workers=2, overwrite=True)
    fuser = make_fuser(store, model, device="cpu")
    mp = size * size / 1e6
    fuse_rate = {}
    for workers in (1, 2):
        with connect("local", workers) as client:
            hrms = pansharpen(store, fuser, client, tile=tile)
            start = time.perf_counter()
            encode_output(hrms, work_dir / "parallel.hrms.zarr", compress="ZSTD:1", client=client)
            fuse_rate[workers] = mp / (time.perf_counter() - start)
        log(f"[parallel] {model} fuse phase, {workers} worker(s): {fuse_rate[workers]:.3f} MP/s")
    runs = {}
    for codec in CODECS:  # the CPU's default level, and the fast one a GPU node uses
        runs[codec] = measured_run(
            pan, ms, work_dir / "parallel.tif", 2, method=model, device="cpu", adapt="none", tile=tile, compress=codec
        )
        log(f"[parallel] end to end at {codec}, 2 workers: {mp / runs[codec].seconds:.3f} MP/s")
    bare_rate, bare_pixels = _bare_forward_rate(store, fuser, tile, blocks=2)
    log(f"[parallel] bare forward, 1 thread: {bare_rate:.3f} MP/s over {bare_pixels / 1e6:.1f} MP")
    beside = bare_forward_side_by_side(store_path, model, tile)
    log(f"[parallel] bare forward, 2 single-threaded processes at once: {beside:.3f} MP/s")
    shutil.rmtree(store_path, ignore_errors=True)
    shutil.rmtree(work_dir / "parallel.hrms.zarr", ignore_errors=True)
    (work_dir / "parallel.tif").unlink(missing_ok=True)
    return {
        "size": size,
        "model": model,
        "fuse": fuse_rate,
        "end_to_end": {codec: mp / r.seconds for codec, r in runs.items()},
        "phases": {codec: r.phases for codec, r in runs.items()},
        "seconds": {codec: r.seconds for codec, r in runs.items()},
        "bare": bare_rate,
        "bare_beside": beside,
    }


CODECS = ("ZSTD:9", "ZSTD:1")


CUDA_SOURCE = ("zpnn_wv3_example/WV3_example.mat", "wv3")


def run_parallel_cuda(
    size: int,
    model: str,
    work_dir: Path,
    workers: int | None,
    log: Callable[[str], None],
    tile: int = 512,
    device: str = "cuda",
) -> dict:
    """On one GPU (``device``): the end-to-end run with a tailor against the bare tailored forward pass."""
    data = shared_data()
    source, sensor = CUDA_SOURCE
    pan, ms = mosaic_pair(data / source, data / source, size, work_dir)
    mp = size * size / 1e6
    log(f"[parallel cuda] {size}² end to end, {model} with a tailor, {workers or os.cpu_count()} workers ...")
    run_ = measured_run(
        pan,
        ms,
        work_dir / "parallel-cuda.tif",
        workers,
        method=model,
        sensor=sensor,
        device=device,
        adapt="tailor",
        tile=tile,
    )
    ph = run_.phases
    facts = {
        "size": size,
        "model": model,
        "seconds": run_.seconds,
        "phases": ph,
        "end_to_end": mp / run_.seconds,
        "fuse": mp / (ph["fuse"] - ph["adapt"]),
        "workers": len(run_.worker_peaks),
    }
    log(f"[parallel cuda] {run_.seconds:.1f} s: {facts['end_to_end']:.2f} MP/s; fuse phase {facts['fuse']:.2f} MP/s")
    scene = open_scene(pan, ms, sensor)
    fuser, _ = adapt_fuser(scene, make_fuser(scene, model, device=device), "tailor", AdaptOptions())
    tiles_pan, tiles_ms = sample_tiles(scene, tile + 2 * fuser.halo, fuser.batch)
    facts["bare"], facts["call"] = throughput(fuser, tiles_pan, tiles_ms, tile, seconds=5.0)
    facts["batch"], facts["halo"] = fuser.batch, fuser.halo
    log(f"[parallel cuda] bare tailored forward {facts['bare']:.2f} MP/s, fuser call {facts['call']:.2f} MP/s")
    for path in (work_dir / "parallel-cuda.tif", pan, ms):
        path.unlink(missing_ok=True)
    return facts


def run_scale_bench(
    results: Path,
    work_dir: Path,
    sizes: list[int],
    big: int | None,
    parallel: int | None,
    method: str = "brovey",
    model: str = "fusionnet-wv2",
    workers: int | None = None,
    log: Callable[[str], None] = lambda _: None,
    device: str = "cpu",
) -> None:
    """Run the parts asked for and write their sections into ``results`` (a folder of Markdown tables) (``device``: of the parallel part)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    n_workers = workers or os.cpu_count() or 1
    if sizes:
        write_result(
            results, "scale", _scale_section(run_scale(sizes, work_dir, method, workers, log), method, n_workers)
        )
    if big:
        write_result(results, "big", _big_section(run_big(big, work_dir, method, workers, log), method, n_workers))
    if parallel and device.startswith("cuda"):
        write_result(
            results, "parallel-cuda", _parallel_cuda_section(run_parallel_cuda(parallel, model, work_dir, workers, log))
        )
    elif parallel:
        write_result(results, "parallel", _parallel_section(run_parallel(parallel, model, work_dir, log)))


def _scale_section(rows: list[ScaleRow], method: str, workers: int) -> str:
    lines = [
        "## Cost against scene size (`python -m benchmarks scale --sizes ...`)",
        "",
        f"Machine: {machine()}. LocalCluster of {workers} single-threaded workers; method {method}; tile 512,",
        "tasks of 2048² PAN pixels (4 MP). Scenes: `grip_unina_pnn/imgWV2.mat` (WorldView-2, 8 bands, uint16)",
        "mosaicked with mirrored copies. Wall time is end to end (ingest, fit, fuse, ZSTD COG; cluster start",
        "excluded); peaks are resident memory sampled every 0.1 s.",
        "",
        "| PAN size | PAN MP | wall (s) | ingest / fuse / COG (s) | MP/s | peak client (MiB) | peak per worker (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ph = row.run.phases
        ingest, fuse, cog = ph.get("ingest", 0), ph.get("fuse", 0), ph.get("cog", 0)
        lines.append(
            f"| {row.size}² | {row.megapixels:.0f} | {row.run.seconds:.1f} | {ingest:.1f} / {fuse - ingest:.1f} / "
            f"{cog - fuse:.1f} | {row.megapixels / row.run.seconds:.2f} | {row.run.client_peak / MIB:.0f} | "
            f"{' / '.join(f'{p / MIB:.0f}' for p in row.run.worker_peaks)} |"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        exponent = fitted_exponent([r.megapixels for r in rows], [r.run.seconds for r in rows])
        lines += [
            "",
            f"Time against pixels, least squares in log-log: exponent **{exponent:.2f}** (1.00 is linear). "
            f"From {first.size}² to {last.size}² ({last.megapixels / first.megapixels:.0f}x the pixels) the client "
            f"peak changes x{last.run.client_peak / first.run.client_peak:.2f} and the largest worker peak "
            f"x{last.run.worker_peak / first.run.worker_peak:.2f}.",
        ]
    return "\n".join(lines)


def _big_section(facts: dict, method: str, workers: int) -> str:
    run_: MeasuredRun = facts["run"]
    size = facts["size"]
    ph = run_.phases
    return "\n".join(
        [
            "## An output larger than RAM (`python -m benchmarks scale --sizes '' --big SIZE`)",
            "",
            f"Machine: {machine()}. LocalCluster of {workers} single-threaded workers; method {method}; COG written",
            "uncompressed (`--compress NONE`) with average overviews. Scene mosaicked from `grip_unina_pnn/imgWV2.mat`.",
            "",
            "| PAN size | COG size | RAM | wall (s) | ingest / fuse / COG (s) | peak client (MiB) | peak per worker (MiB) "
            "| rio-cogeo validate |",
            "|---|---|---|---|---|---|---|---|",
            f"| {size}² ({size * size / 1e9:.2f} GP, 8 bands) | {facts['bytes'] / 2**30:.1f} GiB | "
            f"{facts['ram'] / 2**30:.1f} GiB | {run_.seconds:.0f} | {ph.get('ingest', 0):.0f} / "
            f"{ph.get('fuse', 0) - ph.get('ingest', 0):.0f} / {ph.get('cog', 0) - ph.get('fuse', 0):.0f} | "
            f"{run_.client_peak / MIB:.0f} | {' / '.join(f'{p / MIB:.0f}' for p in run_.worker_peaks)} | "
            f"{'valid' if facts['valid'] else 'INVALID: ' + '; '.join(facts['errors'])} ({facts['validate_s']:.1f} s) |",
            "",
            "`rio-cogeo validate` is run with `strict=True`. Last full-resolution tile (the data furthest into the file) "
            "against Brovey recomputed on that corner of the inputs: "
            + {True: "**identical**.", False: "**different**.", None: "not checked (only for Brovey)."}[facts["tail"]],
        ]
    )


def _parallel_section(facts: dict) -> str:
    fuse, bare = facts["fuse"], facts["bare"]
    speedup = fuse[2] / fuse[1]
    lines = [
        "## Parallel efficiency (`python -m benchmarks scale --sizes '' --parallel SIZE`)",
        "",
        f"Machine: {machine()}. Network {facts['model']} on CPU, no adaptation, tile 512, on a "
        f"{facts['size']}² scene mosaicked from `grip_unina_pnn/imgWV2.mat`. Rates are PAN megapixels per second; "
        "core-seconds outside the forward are the run's 2 cores x wall time less the bare forward's single-thread "
        "time for the same pixels, per PAN megapixel.",
        "",
        "| measure | MP/s | of the bare forward on 2 workers | core-s per PAN MP outside the forward |",
        "|---|---|---|---|",
        f"| bare forward pass, 1 thread, same tiles (halos included) | {bare:.3f} | | |",
        f"| bare forward pass, 2 single-threaded processes at once, a block each | {facts['bare_beside']:.3f} | "
        f"{facts['bare_beside'] / (2 * bare) * 100:.0f}% | |",
        f"| fuse phase (read tiles, infer, encode COG tiles ZSTD:1), 1 worker | {fuse[1]:.3f} | | |",
        f"| fuse phase, 2 workers | {fuse[2]:.3f} | {fuse[2] / (2 * bare) * 100:.0f}% | {2 / fuse[2] - 1 / bare:.2f} |",
    ]
    for codec, rate in facts["end_to_end"].items():
        lines.append(
            f"| end to end (ingest, infer and encode, COG {codec}), 2 workers | {rate:.3f} | "
            f"{rate / (2 * bare) * 100:.0f}% "
            f"| {2 / rate - 1 / bare:.2f} |"
        )
    lines += [
        "",
        f"Two workers against one: **x{speedup:.2f}** (target x1.8); end to end against the bare forward target 85%. "
        f"Two forwards side by side give {facts['bare_beside'] / bare:.2f} times one: against that, the fuse phase "
        f"reaches {fuse[2] / facts['bare_beside'] * 100:.0f}% and end to end at ZSTD:1 "
        f"{facts['end_to_end'].get('ZSTD:1', 0) / facts['bare_beside'] * 100:.0f}%.",
    ]
    for codec, ph in facts["phases"].items():
        lines.append(
            f"At {codec} the run took {facts['seconds'][codec]:.1f} s: ingest {ph.get('ingest', 0):.1f} s, fuse to "
            f"{ph.get('fuse', 0):.1f} s, COG to {ph.get('cog', 0):.1f} s."
        )
    return "\n".join(lines)


def _parallel_cuda_section(facts: dict) -> str:
    ph = facts["phases"]
    bare, e2e = facts["bare"], facts["end_to_end"]
    return "\n".join(
        [
            "## Parallel efficiency on a GPU (`python -m benchmarks scale --sizes '' --parallel SIZE --device cuda`)",
            "",
            f"Machine: {device_machine('cuda')}; {os.cpu_count()} cores. Network {facts['model']} with a Feature Tailor "
            f"fitted on the scene (default options), tile 512, on a {facts['size']}² 8-band WorldView-3 scene mosaicked "
            f"from `zpnn_wv3_example`; LocalCluster of {facts['workers']} single-threaded workers sharing the GPU. "
            "Rates are PAN megapixels per second on one GPU.",
            "",
            "| measure | MP/s |",
            "|---|---|",
            f"| bare tailored forward, inputs on the GPU ({facts['batch']} tiles of 512² + {facts['halo']} halo) | {bare:.2f} |",
            f"| fuser call (host arrays in and out), same batch | {facts['call']:.2f} |",
            f"| fuse phase (read tiles, infer, encode COG tiles), {facts['workers']} workers | {facts['fuse']:.2f} |",
            f"| end to end (ingest, adapt, infer, write, COG) | {e2e:.2f} |",
            "",
            f"End to end against the bare forward pass: **{e2e / bare * 100:.1f}%** (target 85%). The run took "
            f"{facts['seconds']:.1f} s: ingest to {ph.get('ingest', 0):.1f} s, adaptation to {ph.get('adapt', 0):.1f} s, "
            f"fuse to {ph.get('fuse', 0):.1f} s, COG to {ph.get('cog', 0):.1f} s.",
        ]
    )
