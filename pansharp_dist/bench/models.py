"""``pansharp-dist bench models``: PAN megapixels per second of each network's forward pass.

The bare forward (radiometry, upsampling, network) through
:meth:`NetworkFuser.fuse <pansharp_dist.models.network.NetworkFuser.fuse>` on
batches of real tiles cut from ``msdcnn_quickbird`` (4-band networks) and
``imgWV2`` (8-band networks), with the tile halo each network declares, so
that the figure is what a worker does per tile. Host transfers are included.
Written to ``docs/benchmarks.md``, one section per device.
"""

from __future__ import annotations

import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..infer import fit
from ..models import list_models
from ..models.network import default_device
from ..scene import open_scene
from .classical import _replace_section, _shared_data

SOURCES = {4: ("msdcnn_quickbird/QB-PAN.tif", "msdcnn_quickbird/QB-MS.tif", "qb"),
           8: ("grip_unina_pnn/imgWV2.mat", "grip_unina_pnn/imgWV2.mat", "wv2")}


def _tiles(scene, size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` real ``size`` x ``size`` PAN tiles and their MS, float32 (wrapping over the scene)."""
    r = scene.ratio
    pan, ms = scene.pan.values.astype(np.float32), scene.ms.values.astype(np.float32)
    reps = -(-size // min(pan.shape)) + 1
    pan, ms = np.tile(pan, (reps, reps)), np.tile(ms, (1, reps, reps))
    rng = np.random.default_rng(0)
    ys = rng.integers(0, (pan.shape[0] - size) // r, count) * r
    xs = rng.integers(0, (pan.shape[1] - size) // r, count) * r
    return (np.stack([pan[y : y + size, x : x + size] for y, x in zip(ys, xs)]),
            np.stack([ms[:, y // r : (y + size) // r, x // r : (x + size) // r] for y, x in zip(ys, xs)]))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(fuser, pan: np.ndarray, ms: np.ndarray, core: int, seconds: float) -> float:
    """Core PAN megapixels per second of ``fuser.fuse`` on ``pan``/``ms`` batches, after a warm-up."""
    fuser.fuse(pan, ms)
    _sync(fuser.device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 2:
        fuser.fuse(pan, ms)
        runs += 1
    _sync(fuser.device)
    return runs * pan.shape[0] * core * core / (time.perf_counter() - start) / 1e6


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def run_models_bench(
    report: Path, device: str | None, tile: int, seconds: float, log: Callable[[str], None] = lambda _: None
) -> None:
    """Time every shipped network on ``device`` and write a section of ``report``."""
    device = device or default_device()
    data = _shared_data()
    rows = []
    for bands, (pan_path, ms_path, sensor) in SOURCES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # these research pairs carry no georeferencing
            scene = open_scene(data / pan_path, data / ms_path, sensor)
        for meta in (c for c in list_models() if len(c.bands) == bands and c.sensor == sensor):
            precisions = (True, False) if device.startswith("cuda") else (False,)
            for half in precisions:
                fuser = fit(scene, meta.id, device=device, half=half)
                batch = fuser.batch
                pan, ms = _tiles(scene, tile + 2 * fuser.halo, batch)
                mps = throughput(fuser, pan, ms, tile, seconds)
                label = "float16" if half else "float32"
                log(f"{meta.id} {label}: {mps:.2f} PAN MP/s")
                rows.append(f"| {meta.id} | {label} | {batch} x {tile}² (+{fuser.halo} halo) | {mps:.2f} |")
    kind = "cuda" if device.startswith("cuda") else "cpu"
    _replace_section(report, f"models-{kind}", "\n".join([
        f"<!-- bench:models-{kind}:start -->",
        f"## Network forward throughput on {kind.upper()} (`pansharp-dist bench models --device {kind}`)",
        "",
        f"Machine: {_machine(device)}. Core PAN megapixels per second of one fuser call on a batch",
        "of real tiles (read windows with the network's halo; host transfers included), after a",
        f"warm-up, over at least {seconds:g} s per row.",
        "",
        "| network | precision | batch | PAN MP/s |",
        "|---|---|---|---|",
        *rows,
        f"<!-- bench:models-{kind}:end -->",
    ]))
