"""``python -m benchmarks tailor``: direct transfer, the Feature Tailor and full fine-tuning, side by side.

Quality (``docs/quality.md``), for each cross-sensor pair, with the same tiles,
losses and step budget for ``tailor`` and ``full``:

* reduced resolution (Wald protocol; the network fitted on the full scene, so
  that its radiometry is the sensor's, and adapted on the degraded one):
  WorldView-3 networks on ``imgWV2``, WorldView-2 networks on ``gdal_hpf_wv3``
  and on the ``fusionnet_wv3_patches`` (adapted once on the mosaic of the
  patches, each patch then fused alone and scored against its ``gt``; their MS
  is a bicubic reduction of ``gt``, so the spectral loss uses that degradation
  there); with the native network's scores and the share of the gap the tailor closes;
* full resolution: QuickBird and GeoEye-1 networks on every other 4-band scene
  and WorldView-3 networks on ``imgWV2``: HQNR of none, tailor and full.

Speed (``docs/benchmarks.md``): adaptation plus inference seconds of the
WorldView-2 FusionNet on 8-band WorldView-3 scenes mirror-mosaicked from
``zpnn_wv3_example`` (small enough to send to a GPU machine), tailor against
full at the same steps and tiles, and the most any tailor could gain at those
steps: every tailor step runs the frozen head and the losses, timed alone
(:func:`shared_step_seconds`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import dask.array as da
import numpy as np
import scipy.io
import torch
import xarray as xr
from affine import Affine

from pansharp_dist.adapt.options import AdaptOptions
from pansharp_dist.adapt.training import GRAPH_WARMUP, adapt_fuser, adaptation_batch, training_step
from pansharp_dist.fusion import OutputSpec, make_fuser, pansharpen, render
from pansharp_dist.models.network import default_device
from pansharp_dist.quality.evaluate import scene_full_scores
from pansharp_dist.quality.metrics import reduced_scores
from pansharp_dist.quality.mtf import degrade
from pansharp_dist.scene import Scene, open_scene, with_grid

from .models import device_machine, sync_device
from .mosaic import mosaic_pair
from .networks import (
    GDAL_WV3,
    IMG_GE1,
    IMG_WV2,
    MSDCNN_QB,
    OTHER_4BAND,
    PATCHES,
    _fused,
    _open,
    shipped_networks,
)
from .quality import Dataset
from .results import shared_data, write_result
from .time_to_quality import MODEL as TTQ_MODEL
from .time_to_quality import TAILOR_BUDGETS, full_budgets, time_to_quality

MODES = ("none", "tailor", "full")
SPEED_MODES = ("tailor", "full")
SPEED_SOURCE = Dataset(
    "zpnn WV3 example", "zpnn_wv3_example/WV3_example.mat", "zpnn_wv3_example/WV3_example.mat", "wv3"
)
SPEED_MODEL = "fusionnet-wv2"
REDUCED = ("ERGAS", "SAM", "Q2n")


def _adapted(scene: Scene, base, options: AdaptOptions) -> dict:
    """``{mode: (fuser, report)}`` for none, tailor and full on ``scene``."""
    return {mode: adapt_fuser(scene, base, mode, options) for mode in MODES}


def reduced_pair(data: Path, ds: Dataset, arch: str, cross: str, native: str, options: AdaptOptions) -> dict:
    """Scores of none/tailor/full (network trained on ``cross``) and of the native network, reduced resolution."""
    scene = open_scene(data / ds.pan, data / ds.ms, ds.sensor)
    reduced = degrade(scene)
    truth = scene.ms.values[:, : reduced.shape[0], : reduced.shape[1]].astype(np.float64)
    rows = {}
    for mode, (fuser, _) in _adapted(reduced, make_fuser(scene, f"{arch}-{cross}"), options).items():
        rows[mode] = reduced_scores(truth, _fused(reduced, fuser), scene.ratio)
    rows["native"] = reduced_scores(truth, _fused(reduced, make_fuser(scene, f"{arch}-{native}")), scene.ratio)
    return rows


def _patch_mosaic(path: Path) -> tuple[Scene, np.ndarray, np.ndarray, np.ndarray]:
    """The reduced-resolution patches as one mosaic scene (each 64-pixel adaptation tile is one patch)."""
    mat = scipy.io.loadmat(path, variable_names=["pan", "ms", "gt"])
    n = mat["pan"].shape[0]
    side = int(np.sqrt(n))
    pan, ms = mat["pan"][: side * side], np.moveaxis(mat["ms"][: side * side], -1, 1)
    h, w = pan.shape[1:]
    pan_m = pan.reshape(side, side, h, w).transpose(0, 2, 1, 3).reshape(side * h, side * w)
    b, hh, ww = ms.shape[1:]
    ms_m = ms.reshape(side, side, b, hh, ww).transpose(2, 0, 3, 1, 4).reshape(b, side * hh, side * ww)
    grid = Affine.identity()
    scene = Scene(
        pan=with_grid(xr.DataArray(da.from_array(pan_m), dims=("y", "x")), grid, None),
        ms=with_grid(xr.DataArray(da.from_array(ms_m), dims=("band", "y", "x")), grid * Affine.scale(h // hh), None),
        ratio=h // hh,
        sensor="wv3",
        name="fusionnet_wv3_patches mosaic",
    )
    return scene, pan, ms, np.moveaxis(mat["gt"][: side * side], -1, 1)


def reduced_patches(data: Path, arch: str, options: AdaptOptions) -> dict:
    """As :func:`reduced_pair` for WorldView-2 networks on the WorldView-3 patches, whose MS were reduced
    from ``gt`` as MATLAB's ``imresize`` does: the spectral loss uses that degradation (``"bicubic"``)."""
    mosaic, pans, mss, gts = _patch_mosaic(data / PATCHES.pan)
    spec = OutputSpec.for_scene(mosaic)
    options = replace(options, degradation="bicubic")
    fusers = {mode: f for mode, (f, _) in _adapted(mosaic, make_fuser(mosaic, f"{arch}-wv2"), options).items()}
    fusers["native"] = make_fuser(mosaic, f"{arch}-wv3")
    rows = {}
    for mode, fuser in fusers.items():
        scores = [
            reduced_scores(g.astype(np.float64), render(fuser, p, m, spec).astype(np.float64), mosaic.ratio)
            for p, m, g in zip(pans, mss, gts)
        ]
        rows[mode] = {k: float(np.nanmean([s[k] for s in scores])) for k in scores[0]}
    return rows


def full_scene(scene: Scene, model: str, options: AdaptOptions) -> dict:
    """Full-resolution metrics of none/tailor/full for ``model`` on ``scene``."""
    return {
        mode: scene_full_scores(scene, _fused(scene, fuser))
        for mode, (fuser, _) in _adapted(scene, make_fuser(scene, model), options).items()
    }


def _gap(rows: dict, metric: str) -> float:
    higher_better = metric == "Q2n"
    none, tailor, native = (rows[m][metric] for m in ("none", "tailor", "native"))
    gap = (native - none) if higher_better else (none - native)
    gain = (tailor - none) if higher_better else (none - tailor)
    return gain / gap if gap > 0 else float("nan")


def _reduced_table(label: str, rows: dict) -> str:
    improves = (
        all(rows["tailor"][k] < rows["none"][k] for k in ("ERGAS", "SAM"))
        and rows["tailor"]["Q2n"] > rows["none"]["Q2n"]
    )
    gaps = {k: _gap(rows, k) for k in REDUCED}
    lines = [f"#### {label}\n", "| | " + " | ".join(REDUCED) + " |", "|---" * (len(REDUCED) + 1) + "|"]
    for mode in (*MODES, "native"):
        lines.append(f"| {mode} | " + " | ".join(f"{rows[mode][k]:.4f}" for k in REDUCED) + " |")
    lines.append(
        "| gap closed by the tailor | "
        + " | ".join(f"{100 * gaps[k]:.0f}%" if np.isfinite(gaps[k]) else "no gap (native not better)" for k in REDUCED)
        + " |"
    )
    half = all(g >= 0.5 for g in gaps.values() if np.isfinite(g))
    lines.append(
        f"\nTailor better than direct transfer on ERGAS, SAM and Q2n: {'yes' if improves else '**no**'}; "
        f"at least half of every gap there is: {'yes' if half else '**no**'}.\n"
    )
    return "\n".join(lines)


def run_tailor_bench(
    results: Path,
    work: Path,
    archs: tuple[str, ...],
    options: AdaptOptions,
    sizes: tuple[int, ...],
    device: str | None,
    log: Callable[[str], None] = lambda _: None,
    parts: tuple[str, ...] = ("quality", "speed"),
) -> None:
    """Run the ``parts`` asked for (``quality``, ``speed``, ``time``) and write their sections."""
    data = shared_data()
    options = replace(options, patience=options.steps)  # the same number of steps for tailor and full
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "time" in parts:
            write_result(results, f"tailor-time-{_kind(device)}", _time(data, work, device, results, log))
        if "speed" in parts:
            write_result(results, f"tailor-speed-{_kind(device)}", _speed(data, work, sizes, options, device, log))
        if "quality" in parts:
            _write_quality(results, _quality(data, work, archs, options, log), options)


def _time(data: Path, work: Path, device: str | None, results: Path, log) -> str:
    kind = _kind(device)
    plot = results.parent / f"tailor-time-to-quality-{kind}.png"
    rows, _ = time_to_quality(data, work, device, plot, log)
    return "\n".join(
        [
            f"## Feature Tailor time to quality on {kind.upper()} (`python -m benchmarks tailor --parts time --device {kind}`)",
            "",
            f"Machine: {device_machine(device or default_device())}.",
            f"{TTQ_MODEL} adapted to WorldView-2 `imgWV2` (cross-sensor), 16 tiles of 64 px, manifold sampling, the",
            "default losses; each mode fitted with growing step budgets from the same start (tailor: "
            f"{', '.join(map(str, TAILOR_BUDGETS))}; full: {', '.join(map(str, full_budgets()))}, until its convergence test",
            "stops it), each fit's adaptation seconds and the HQNR of the scene fused with its result. Tailor s: the",
            "first tailor fit at or above the tailor's final HQNR (its 300-step or converged fit); full s: the first",
            "full fit at or above that HQNR, or its best fit's when none gets there. Plot: "
            f"[`{plot.name}`](../{plot.name}).",
            "",
            "| scene | none HQNR | tailor HQNR | tailor s | full best HQNR (steps, stop) | full s to the tailor's HQNR | "
            "full s / tailor s |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


def _kind(device: str | None) -> str:
    return "cuda" if (device or default_device()).startswith("cuda") else "cpu"


def _tailor_shape(options: AdaptOptions) -> str:
    linear = "a linear map and " if options.spec_linear else ""
    k = options.spec_kernel
    return (
        f"Tailor: {linear}{options.spec_depth} hidden layer(s) of {options.spec_width} channels, "
        f"{k} x {k} kernels, lr {options.lr:g}."
    )


def _write_quality(results: Path, sections: list[str], options: AdaptOptions) -> None:
    write_result(
        results,
        "tailor",
        "\n".join(
            [
                "## Feature Tailor against direct transfer and full fine-tuning (`python -m benchmarks tailor`)",
                "",
                f"Same tiles ({options.k} of {options.patch} x {options.patch} PAN pixels, {options.strategy} sampling),",
                f"losses and {options.steps} steps for `tailor` and `full`; `none` is direct transfer; `native` is",
                f"the network trained on the scene's own sensor. {_tailor_shape(options)}",
                "Reduced resolution: Wald protocol. Gap closed:",
                "(none - tailor) / (none - native). The spectral loss degrades the output by the sensor's MTF, except",
                "on `fusionnet_wv3_patches`, whose MS is a bicubic reduction of their `gt` (`imresize`; it reproduces",
                "their MS to 0.07% away from the borders, the MTF model to 9%): there it uses that reduction.",
                "",
                *sections,
            ]
        ),
    )


def _quality(data: Path, work: Path, archs, options: AdaptOptions, log) -> list[str]:
    sections = ["### Reduced resolution\n"]
    for arch in archs:
        if len(shipped_networks(("wv3", "wv2"), (arch,))) < 2:
            log(f"tailor reduced: {arch} skipped, it needs {arch}-wv3 and {arch}-wv2 and not both are shipped")
            continue
        for label, run in (
            (
                f"{arch}-wv3 on imgWV2 (native: {arch}-wv2)",
                lambda arch=arch: reduced_pair(data, IMG_WV2, arch, "wv3", "wv2", options),
            ),
            (
                f"{arch}-wv2 on gdal_hpf_wv3 (native: {arch}-wv3)",
                lambda arch=arch: reduced_pair(data, GDAL_WV3, arch, "wv2", "wv3", options),
            ),
            (
                f"{arch}-wv2 on fusionnet_wv3_patches (native: {arch}-wv3)",
                lambda arch=arch: reduced_patches(data, arch, options),
            ),
        ):
            log(f"tailor reduced: {label} ...")
            sections.append(_reduced_table(label, run()))
    sections += [
        "### Full resolution (HQNR)\n",
        "| scene | network | none | tailor | full | tailor >= none | tailor within 0.01 of full or better |",
        "|---|---|---|---|---|---|---|",
    ]
    scenes = [(ds, ("qb", "ge1")) for ds in OTHER_4BAND] + [
        (MSDCNN_QB, ("ge1",)),
        (IMG_GE1, ("qb",)),
        (IMG_WV2, ("wv3",)),
    ]
    for arch in archs:
        for ds, sensors in scenes:
            models = shipped_networks(sensors, (arch,))
            scene = _open(data, ds, work) if models else None
            for model in models:
                log(f"tailor full resolution: {model} on {ds.label} ...")
                h = {mode: s["HQNR"] for mode, s in full_scene(scene, model, options).items()}
                sections.append(
                    f"| {ds.label} | {model} | {h['none']:.4f} | {h['tailor']:.4f} | {h['full']:.4f} | "
                    f"{'yes' if h['tailor'] >= h['none'] else '**no**'} | "
                    f"{'yes' if h['tailor'] >= h['full'] - 0.01 else '**no**'} |"
                )
    return sections


def _adapt_and_infer(scene: Scene, base, mode: str, options: AdaptOptions) -> tuple[float, float, int]:
    """Seconds to adapt, seconds to adapt and pansharpen the whole scene, and the steps taken."""
    start = time.perf_counter()
    fuser, report = adapt_fuser(scene, base, mode, options)
    adapted = time.perf_counter() - start
    pansharpen(scene, fuser, tile=512).data.compute(scheduler="threads")
    return adapted, time.perf_counter() - start, report.steps


SHARED_STEPS = 50


def shared_step_seconds(scene: Scene, base, options: AdaptOptions, steps: int = SHARED_STEPS) -> float:
    """Seconds per step of what a tailor's training step runs whatever the tailor: the frozen head on the
    sampled tiles' features, the losses, and their gradient back to the features. Eager on the CPU; on
    CUDA replayed as a graph, as :func:`~pansharp_dist.adapt.training.adapt_fuser` runs its steps."""
    batch = adaptation_batch(scene, base, options)
    features = batch.features.clone().requires_grad_(True)

    def eager() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        features.grad = None
        total, terms = batch.objective(batch.backbone.head(features, batch.x))
        total.backward()
        return total.detach(), terms

    step = training_step(eager, base.device, options)
    for _ in range(GRAPH_WARMUP + 1):
        step()
    sync_device(base.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync_device(base.device)
    return (time.perf_counter() - start) / steps


def _speed(data: Path, work: Path, sizes, options: AdaptOptions, device: str | None, log) -> str:
    device = device or default_device()
    rows = []
    for size in sizes:
        pan_path, ms_path = mosaic_pair(data / SPEED_SOURCE.pan, data / SPEED_SOURCE.ms, size, work / f"tailor-{size}")
        scene = open_scene(pan_path, ms_path, SPEED_SOURCE.sensor)
        base = make_fuser(scene, SPEED_MODEL, device=device)
        if not rows:  # warm-up of both modes (model loads, kernel selection), so neither pays it in the table
            for mode in SPEED_MODES:
                _adapt_and_infer(scene, base, mode, replace(options, steps=2))
        seconds = {}
        for mode in SPEED_MODES:
            seconds[mode] = _adapt_and_infer(scene, base, mode, options)
            log(f"{size}²: {mode} adapt {seconds[mode][0]:.2f} s, total {seconds[mode][1]:.2f} s")
        t, f = seconds["tailor"], seconds["full"]
        shared = shared_step_seconds(scene, base, options)
        rows.append(
            f"| {size} x {size} x 8 | {t[2]} | {t[0]:.2f} | {f[0]:.2f} | {f[0] / t[0]:.1f}x | "
            f"{t[1]:.2f} | {f[1]:.2f} | {f[1] / t[1]:.1f}x | {shared * 1e3:.1f} | "
            f"{f[0] / (options.steps * shared):.1f}x |"
        )
    kind = _kind(device)
    return "\n".join(
        [
            f"## Feature Tailor speed on {kind.upper()} (`python -m benchmarks tailor --device {kind}`)",
            "",
            f"Machine: {device_machine(device)}.",
            f"{SPEED_MODEL} adapted to 8-band WorldView-3 scenes mirror-mosaicked from zpnn_wv3_example,",
            f"{options.k} tiles of {options.patch} px, the same steps for both (no early stop), after a warm-up",
            "adaptation and inference of each; total = adaptation + inference of the whole scene (in-process,",
            "threaded dask, no COG).",
            _tailor_shape(options),
            "Shared step: what every tailor step runs whatever the tailor's shape (the frozen head, the losses,",
            "their gradient back to the features), ms per step; ceiling: full adapt s / (steps x shared step),",
            "the adaptation speed-up of a tailor that cost nothing.",
            "",
            "| scene | steps | tailor adapt s | full adapt s | adapt speed-up | tailor total s | full total s | total speed-up "
            "| shared step ms | ceiling |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
