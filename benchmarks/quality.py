"""``python -m benchmarks quality``: every dataset, every classical method, both protocols.

For each real pair in ``../shared/data``: the reduced-resolution metrics (Wald
protocol: MTF degradation by the sensor's gains, fuse, score against the
original MS) and the full-resolution metrics of the upsampled MS (EXP, 23-tap
interpolator) and of each classical method. Written to ``docs/quality.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pansharp_dist.fusion import pansharpen
from pansharp_dist.methods import method_names
from pansharp_dist.quality.evaluate import scene_full_scores
from pansharp_dist.quality.metrics import reduced_scores
from pansharp_dist.quality.mtf import degrade, interp23
from pansharp_dist.scene import Scene, open_scene

from .results import shared_data, write_result


@dataclass(frozen=True)
class Dataset:
    """One real pair of ``../shared/data``."""

    label: str
    pan: str
    ms: str
    sensor: str | None
    patch: int | None = None


DATASETS = (
    Dataset("imgWV2 (WorldView-2)", "grip_unina_pnn/imgWV2.mat", "grip_unina_pnn/imgWV2.mat", "wv2"),
    Dataset("imgGE1 (GeoEye-1, 8-bit)", "grip_unina_pnn/imgGE1.mat", "grip_unina_pnn/imgGE1.mat", "ge1"),
    Dataset("imgIK (IKONOS)", "grip_unina_pnn/imgIK.mat", "grip_unina_pnn/imgIK.mat", "ikonos"),
    Dataset("zpnn WV3 example", "zpnn_wv3_example/WV3_example.mat", "zpnn_wv3_example/WV3_example.mat", "wv3"),
    Dataset("fusionnet WV3 patch 0", "fusionnet_wv3_patches/train.mat", "fusionnet_wv3_patches/train.mat", "wv3", 0),
    Dataset("gdal_hpf_wv3", "gdal_hpf_wv3/pan.tif", "gdal_hpf_wv3/mul.tif", "wv3"),
    *(
        Dataset(
            f"spacenet6 pair {i} (WV-2, MS as stored: ratio 2)",
            f"spacenet6_solaris/pan{i}.tif",
            f"spacenet6_solaris/ms{i}.tif",
            "wv2",
        )
        for i in (1, 2, 3)
    ),
    Dataset("dgif pair 2 (WV-2, inferred)", "dgif_pairs/Pan2.tif", "dgif_pairs/MS2.tif", "wv2"),
    *(
        Dataset(f"dgif pair {i} (Pleiades, inferred)", f"dgif_pairs/Pan{i}.tif", f"dgif_pairs/MS{i}.tif", "pleiades")
        for i in (3, 4)
    ),
    Dataset("msdcnn QuickBird", "msdcnn_quickbird/QB-PAN.tif", "msdcnn_quickbird/QB-MS.tif", "qb"),
    *(
        Dataset(
            f"gppnn Landsat-8 {name}",
            f"gppnn_landsat8/{name}/Landsat8-{n}.mat",
            f"gppnn_landsat8/{name}/Landsat8-{n}.mat",
            "landsat8",
        )
        for name, n in (("test", 6), ("train", 5), ("validation", 12))
    ),
    Dataset(
        "pansharpen_r Landsat-8",
        "pansharpen_r_landsat8/pan_example.tif",
        "pansharpen_r_landsat8/ms_example.tif",
        "landsat8",
    ),
    Dataset("Istanbul Landsat 8/9", "landsat_istanbul_toolkit/pan.tif", "landsat_istanbul_toolkit/ms.tif", "landsat8"),
    Dataset("vhr_china (unknown VHR sensor)", "vhr_china_toolkit/pan.tif", "vhr_china_toolkit/ms.tif", None),
)
REDUCED = ("SAM", "ERGAS", "Q2n", "SCC", "PSNR")
FULL = ("D_lambda", "D_lambda_K", "D_s", "QNR", "HQNR")


def _fuse(scene: Scene, method: str) -> np.ndarray:
    if method == "EXP":
        return interp23(scene.ms.values, scene.ratio)
    return pansharpen(scene, method, tile=256).values.astype(np.float64)


def score_dataset(scene: Scene, methods: list[str]) -> dict[str, dict[str, float]]:
    """``{method: metrics}`` for EXP and ``methods``, reduced and full resolution together."""
    reduced = degrade(scene)
    truth = scene.ms.values[:, : reduced.shape[0], : reduced.shape[1]].astype(np.float64)
    out = {}
    for method in ["EXP", *methods]:
        scores = reduced_scores(truth, _fuse(reduced, method), scene.ratio)
        scores.update(scene_full_scores(scene, _fuse(scene, method)))
        out[method] = scores
    return out


def run_quality_bench(results: Path, log: Callable[[str], None] = lambda _: None) -> None:
    """Score every dataset and write the tables into ``results`` (a folder of Markdown tables)."""
    data = shared_data()
    methods = method_names("classical")
    sections = []
    for ds in DATASETS:
        log(f"{ds.label} ...")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scene = open_scene(data / ds.pan, data / ds.ms, ds.sensor, patch=ds.patch)
            scores = score_dataset(scene, methods)
        sections.append(_table(ds, scene, scores))
    body = "\n".join(
        [
            "## Classical methods on every dataset (`python -m benchmarks quality`)",
            "",
            "Reduced resolution: Wald protocol (each image filtered by its sensor's MTF, toolbox `genMTF`",
            "design, and decimated by the ratio), scored against the original MS. Full resolution: the",
            "fused scene against its own PAN and MS. EXP is the MS upsampled with the 23-tap interpolator.",
            "Metric conventions: `pansharp_dist/quality/` (Vivone et al.'s MATLAB toolbox, 2020). Ideal values:",
            "SAM 0, ERGAS 0, Q2n 1, SCC 1, PSNR high; D_lambda, D_lambda_K, D_s 0; QNR and HQNR 1.",
            "No-data pixels are not masked (spacenet6 pairs 2 and 3 are 32% and 39% zero fill); Q blocks that",
            "are flat in both images are left out of the full-resolution means.",
            "",
            *sections,
        ]
    )
    write_result(results, "quality", body)


def _table(ds: Dataset, scene: Scene, results: dict[str, dict[str, float]]) -> str:
    head = (
        f"### {ds.label}\n\n`{ds.pan}`, sensor {scene.sensor or 'unknown (default MTF gains)'}, "
        f"ratio {scene.ratio}, PAN {scene.shape[0]} x {scene.shape[1]}, {scene.bands} bands\n"
    )
    cols = REDUCED + FULL
    lines = [head, "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for method, scores in results.items():
        lines.append(f"| {method} | " + " | ".join(f"{scores[c]:.4f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"
