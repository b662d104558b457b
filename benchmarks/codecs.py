"""COG codecs: encode speed on one core and file size for each codec and level, on tiles of a real fused scene.

The tiles are those a run writes: 512 x 512 pixel-interleaved tiles of a Brovey-fused mirror mosaic of
``imgWV2`` (WorldView-2, 8 bands, uint16), predictor included, encoded one after the other on one thread as
a COG task encodes them. From the speed follows how many encoder cores keep up with a network on a GPU:
a PAN megapixel of 8-band uint16 output is 16 MB, and the forward rates are those measured on an H100
(``docs/results/models-cuda.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from pansharp_dist import open_scene, pansharpen
from pansharp_dist.store import write_output
from pansharp_dist.tiff import TILE, encode_tile

from .classical import SOURCE
from .mosaic import mosaic_pair
from .results import machine, shared_data, write_result

SPECS = ("NONE", "ZSTD:1", "ZSTD:3", "ZSTD:6", "ZSTD:9", "ZSTD:15", "DEFLATE:1", "DEFLATE:6", "DEFLATE:9")
GPU_FORWARD = {"fusionnet-wv3, float16, H100": 311.66, "dicnn-wv3, float16, H100": 457.92}
"""Bare forward PAN MP/s of two 8-band networks on one H100 (docs/results/models-cuda.md)."""


def _tiles(store: Path, count: int) -> list[np.ndarray]:
    """``count`` full ``(TILE, TILE, bands)`` tiles spread over the output store."""
    hrms = zarr.open_array(str(store / "hrms"), mode="r", zarr_format=2)
    _, height, width = hrms.shape
    rows, cols = height // TILE, width // TILE
    picks = np.linspace(0, rows * cols - 1, count).astype(int)
    return [
        np.moveaxis(
            hrms[:, (k // cols) * TILE : (k // cols + 1) * TILE, (k % cols) * TILE : (k % cols + 1) * TILE], 0, -1
        )
        for k in picks
    ]


def _rate(tiles: list[np.ndarray], spec: str, seconds: float) -> tuple[float, float]:
    """Raw MB encoded per second on this thread, and the encoded size as a fraction of the raw size."""
    raw = sum(t.nbytes for t in tiles)
    encoded = sum(len(encode_tile(t, spec)) for t in tiles)  # also the warm-up
    rounds, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for t in tiles:
            encode_tile(t, spec)
        rounds += 1
    return raw * rounds / (time.perf_counter() - start) / 1e6, encoded / raw


def run_codecs_bench(
    results: Path,
    work: Path,
    size: int = 4096,
    count: int = 16,
    seconds: float = 2.0,
    log: Callable[[str], None] = lambda _: None,
) -> None:
    """Measure every codec of :data:`SPECS` and write ``results/codecs.md``."""
    work.mkdir(parents=True, exist_ok=True)
    data = shared_data()
    store = work / f"codecs_{size}.zarr"
    if not (store / "hrms").exists():
        log(f"[codecs] fusing a {size}^2 mosaic of {SOURCE} ...")
        pan, ms = mosaic_pair(data / SOURCE, data / SOURCE, size, work)
        write_output(pansharpen(open_scene(pan, ms, "wv2"), "brovey", tile=TILE), store)
    tiles = _tiles(store, count)
    rows = []
    for spec in SPECS:
        mb_s, ratio = _rate(tiles, spec, seconds)
        cores = " | ".join(f"{forward * 16 / mb_s:.1f}" for forward in GPU_FORWARD.values())
        rows.append(f"| {spec} | {mb_s:.0f} | {100 * ratio:.1f} | {1e3 / mb_s * 16:.1f} | {cores} |")
        log(rows[-1])
    write_result(
        results,
        "codecs",
        "\n".join(
            [
                "## COG codecs: encode speed and size (`python -m benchmarks codecs`)",
                "",
                f"Machine: {machine()}. {count} tiles of {TILE} x {TILE} x 8 uint16 from a Brovey-fused {size}² mirror "
                f"mosaic of `{SOURCE}`, predictor 2, encoded on one thread for at least {seconds:g} s per codec. MB are "
                "raw (uncompressed) megabytes; a PAN megapixel of 8-band uint16 output is 16 MB. Cores per GPU: encoder "
                "cores that keep up with the bare forward of one network on one H100 (docs/results/models-cuda.md).",
                "",
                "| codec | MB/s per core | size (% of raw) | core-ms per PAN MP | "
                + " | ".join(f"cores per GPU ({name})" for name in GPU_FORWARD)
                + " |",
                "|---|---|---|---|" + "---|" * len(GPU_FORWARD),
                *rows,
            ]
        ),
    )
