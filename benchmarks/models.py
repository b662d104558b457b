"""``python -m benchmarks models``: PAN megapixels per second of each network's forward pass.

The bare forward (radiometry, upsampling, network) through
:meth:`NetworkFuser.fuse <pansharp_dist.models.network.NetworkFuser.fuse>` on
batches of real tiles cut from the embedded sample scene (the 4-band networks)
and ``zpnn_wv3_example`` (the 8-band ones; small, so that a GPU machine
can be sent it), with the tile halo each network declares, so that the figure
is what a worker does per tile. Host transfers are included.
Written to ``docs/benchmarks.md``, one section per device.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from pansharp_dist.fusion import make_fuser
from pansharp_dist.models import list_models
from pansharp_dist.models.network import default_device
from pansharp_dist.scene import open_scene

from .results import shared_data, write_result

SAMPLE = resources.files("pansharp_dist") / "sample"
# (PAN, MS, scene sensor, MS bands of the networks timed on it); relative paths are under ../shared/data
SOURCES = (
    (str(SAMPLE / "pan.tif"), str(SAMPLE / "ms.tif"), None, 4),
    ("zpnn_wv3_example/WV3_example.mat", "zpnn_wv3_example/WV3_example.mat", "wv3", 8),
)


def sample_tiles(scene, size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` real ``size`` x ``size`` PAN tiles and their MS, float32 (wrapping over the scene)."""
    r = scene.ratio
    pan, ms = scene.pan.values.astype(np.float32), scene.ms.values.astype(np.float32)
    reps = -(-size // min(pan.shape)) + 1
    pan, ms = np.tile(pan, (reps, reps)), np.tile(ms, (1, reps, reps))
    rng = np.random.default_rng(0)
    ys = rng.integers(0, (pan.shape[0] - size) // r, count) * r
    xs = rng.integers(0, (pan.shape[1] - size) // r, count) * r
    return (
        np.stack([pan[y : y + size, x : x + size] for y, x in zip(ys, xs)]),
        np.stack([ms[:, y // r : (y + size) // r, x // r : (x + size) // r] for y, x in zip(ys, xs)]),
    )


def sync_device(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def megapixels_per_second(call: Callable[[], object], device: str, pixels: int, seconds: float) -> float:
    """Megapixels per second of ``call`` (``pixels`` each), after a warm-up, over at least ``seconds``."""
    call()
    sync_device(device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 2:
        call()
        runs += 1
    sync_device(device)
    return runs * pixels / (time.perf_counter() - start) / 1e6


def throughput(fuser, pan: np.ndarray, ms: np.ndarray, core: int, seconds: float) -> tuple[float, float]:
    """Core PAN megapixels per second of the bare forward (inputs already on the device) and of
    ``fuser.fuse`` (host arrays in and out) on one batch of tiles."""
    model = fuser.model()
    cuda = fuser.device.startswith("cuda")
    p, m = (
        torch.from_numpy(a).to(fuser.device).contiguous(memory_format=torch.channels_last) for a in (pan[:, None], ms)
    )
    scale = torch.tensor(fuser.ms_scale, device=fuser.device).view(1, -1, 1, 1)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=cuda and fuser.half):
            model(p, m, fuser.pan_scale, scale)

    pixels = pan.shape[0] * core * core
    return (
        megapixels_per_second(forward, fuser.device, pixels, seconds),
        megapixels_per_second(lambda: fuser.fuse(pan, ms), fuser.device, pixels, seconds),
    )


def device_machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    names = (
        [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        if Path("/proc/cpuinfo").exists()
        else []
    )
    cpu = names[0] if names else platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def run_models_bench(
    results: Path, device: str | None, tile: int, seconds: float, log: Callable[[str], None] = lambda _: None
) -> None:
    """Time every shipped network on ``device`` and write a section of ``results`` (a folder of Markdown tables)."""
    device = device or default_device()
    kind = "cuda" if device.startswith("cuda") else "cpu"
    data = shared_data()
    rows = []
    for pan_path, ms_path, sensor, bands in SOURCES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # research pairs without georeferencing
            scene = open_scene(data / pan_path, data / ms_path, sensor)
        for meta in (c for c in list_models() if len(c.bands) == bands):
            precisions = (True, False) if device.startswith("cuda") else (False,)
            for half in precisions:
                fuser = make_fuser(scene, meta.id, device=device, half=half)
                batch = fuser.batch
                pan, ms = sample_tiles(scene, tile + 2 * fuser.halo, batch)
                bare, whole = throughput(fuser, pan, ms, tile, seconds)
                label = "float16 autocast" if half else ("float32 (TF32 convolutions)" if kind == "cuda" else "float32")
                log(f"{meta.id} {label}: forward {bare:.2f}, fuse call {whole:.2f} PAN MP/s")
                rows.append(
                    f"| {meta.id} | {label} | {batch} x {tile}² (+{fuser.halo} halo) | {bare:.2f} | {whole:.2f} |"
                )
    write_result(
        results,
        f"models-{kind}",
        "\n".join(
            [
                f"## Network forward throughput on {kind.upper()} (`python -m benchmarks models --device {kind}`)",
                "",
                f"Machine: {device_machine(device)}. Core PAN megapixels per second on one batch of real tiles",
                f"(read windows with the network's halo), after a warm-up, over at least {seconds:g} s per figure:",
                "the bare forward with inputs already on the device, and the whole fuser call (float32",
                "host arrays in and out, transfers included), which is what a worker does per batch.",
                "",
                "| network | precision | batch | forward PAN MP/s | fuser call PAN MP/s |",
                "|---|---|---|---|---|",
                *rows,
            ]
        ),
    )
