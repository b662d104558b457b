"""``python -m benchmarks networks``: the pretrained networks on real data, native and cross-sensor.

Two tables for ``docs/quality.md``:

* **native**: each network on data of the sensor it was trained on, reduced
  resolution, as trained and adapted by the tailor, against the upsampled MS
  (EXP) and every classical method: the check that the ports are right, which
  is also recorded in the model cards;
* **cross-sensor**: each 8-band network on both 8-band sensors and each 4-band
  network on every 4-band scene, reduced and full resolution, with the native
  network's row where one exists: the gap the Feature Tailor has to close.

Reduced resolution is the Wald protocol of :func:`~pansharp_dist.quality.mtf.degrade`;
a network is fitted on the full scene (its radiometry is the sensor's) and run
on the degraded one. ``fusionnet_wv3_patches`` are already reduced-resolution
pairs with their ground truth: they are scored as they are, averaged over the
patches.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import scipy.io

from pansharp_dist.adapt.training import adapt_fuser
from pansharp_dist.fusion import OutputSpec, make_fuser, pansharpen, render
from pansharp_dist.methods import is_network, method_names
from pansharp_dist.models import NativeCheck, card, model_ids, record_native_checks
from pansharp_dist.quality.evaluate import scene_full_scores
from pansharp_dist.quality.metrics import reduced_scores
from pansharp_dist.quality.mtf import degrade, interp23
from pansharp_dist.scene import Scene, open_scene

from .quality import Dataset
from .results import shared_data, write_result

ARCHS = ("fusionnet", "pannet", "dicnn", "pnn")
PATCHES = Dataset(
    "fusionnet_wv3_patches (100 reduced-resolution patches)",
    "fusionnet_wv3_patches/train.mat",
    "fusionnet_wv3_patches/train.mat",
    "wv3",
)
GDAL_WV3 = Dataset(
    "gdal_hpf_wv3 (WorldView-3, DOS-corrected float)", "gdal_hpf_wv3/pan.tif", "gdal_hpf_wv3/mul.tif", "wv3"
)
IMG_WV2 = Dataset("imgWV2 (WorldView-2)", "grip_unina_pnn/imgWV2.mat", "grip_unina_pnn/imgWV2.mat", "wv2")
MSDCNN_QB = Dataset("msdcnn QuickBird", "msdcnn_quickbird/QB-PAN.tif", "msdcnn_quickbird/QB-MS.tif", "qb")
IMG_GE1 = Dataset("imgGE1 (GeoEye-1, 8-bit)", "grip_unina_pnn/imgGE1.mat", "grip_unina_pnn/imgGE1.mat", "ge1")
NATIVE = {"wv3": (PATCHES, GDAL_WV3), "wv2": (IMG_WV2,), "qb": (MSDCNN_QB,), "ge1": (IMG_GE1,)}
OTHER_4BAND = (
    Dataset("imgIK (IKONOS)", "grip_unina_pnn/imgIK.mat", "grip_unina_pnn/imgIK.mat", "ikonos"),
    *(
        Dataset(f"dgif pair {i} (Pleiades, inferred)", f"dgif_pairs/Pan{i}.tif", f"dgif_pairs/MS{i}.tif", "pleiades")
        for i in (3, 4)
    ),
    Dataset("dgif pair 2 (WorldView-2 4-band, inferred)", "dgif_pairs/Pan2.tif", "dgif_pairs/MS2.tif", "wv2"),
    *(
        Dataset(
            f"spacenet6 pair {i} (WorldView-2 4-band, MS decimated to its native 2 m)",
            f"spacenet6_solaris/pan{i}.tif",
            f"spacenet6_solaris/ms{i}.tif",
            "wv2",
        )
        for i in (1, 2, 3)
    ),
    Dataset("vhr_china (unknown VHR sensor)", "vhr_china_toolkit/pan.tif", "vhr_china_toolkit/ms.tif", None),
)
REDUCED = ("ERGAS", "SAM", "Q2n")
TAILORED = "+ tailor"
FULL = ("D_lambda", "D_s", "HQNR")


def shipped_networks(sensors: tuple[str, ...], archs: tuple[str, ...] = ARCHS) -> list[str]:
    """Ids of the shipped networks of ``archs`` trained on ``sensors``, sensor by sensor, each in ``archs`` order
    (checkpoints that failed their own-sensor check even adapted are not shipped: ``models/weights/README.md``)."""
    ids = set(model_ids())
    return [f"{arch}-{s}" for s in sensors for arch in archs if f"{arch}-{s}" in ids]


def _fused(scene: Scene, method) -> np.ndarray:
    """``scene`` fused by a method name (fitted on ``scene``) or a fitted fuser, float64."""
    return pansharpen(scene, method, tile=256).values.astype(np.float64)


def wald_scores(scene: Scene, methods: list[str], adapt: str = "none") -> dict[str, dict[str, float]]:
    """Wald protocol: ``{method: metrics}`` for EXP and ``methods`` on the degraded ``scene``.

    Networks are adapted to the degraded scene by ``adapt`` (``tailor``: what a
    run does by default), with the default :class:`AdaptOptions`.
    """
    reduced = degrade(scene)
    truth = scene.ms.values[:, : reduced.shape[0], : reduced.shape[1]].astype(np.float64)
    out = {"EXP": reduced_scores(truth, interp23(reduced.ms.values, scene.ratio), scene.ratio)}
    for method in methods:
        fuser = (
            adapt_fuser(reduced, make_fuser(scene, method), adapt)[0]
            if is_network(method)
            else make_fuser(reduced, method)
        )
        out[method] = reduced_scores(truth, _fused(reduced, fuser), scene.ratio)
    return out


def patch_scores(path: Path, methods: list[str], count: int | None = None) -> dict[str, dict[str, float]]:
    """Mean metrics over the reduced-resolution patches of ``path`` (keys ``pan``, ``ms``, ``gt``)."""
    gt = scipy.io.loadmat(path, variable_names=["gt"])["gt"]
    count = count or gt.shape[0]
    totals: dict[str, list[dict[str, float]]] = {m: [] for m in ["EXP", *methods]}
    for i in range(count):
        scene = open_scene(path, path, "wv3", patch=i)
        truth = np.moveaxis(gt[i], -1, 0).astype(np.float64)
        totals["EXP"].append(reduced_scores(truth, interp23(scene.ms.values, scene.ratio), scene.ratio))
        spec = OutputSpec.for_scene(scene)
        for method in methods:
            fused = render(make_fuser(scene, method), scene.pan.values, scene.ms.values, spec).astype(np.float64)
            totals[method].append(reduced_scores(truth, fused, scene.ratio))
    return {m: {k: float(np.nanmean([s[k] for s in rows])) for k in rows[0]} for m, rows in totals.items()}


def _open(data: Path, ds: Dataset, work: Path) -> Scene:
    ms = data / ds.ms
    if ds.ms.startswith("spacenet6_solaris/"):
        ms = _native_spacenet_ms(ms, work)
    return open_scene(data / ds.pan, ms, ds.sensor, patch=ds.patch)


def _native_spacenet_ms(path: Path, work: Path) -> Path:
    """SpaceNet-6 MS as stored is nearest-upsampled x2 from 2 m: keep every other pixel (lossless), as uint16."""
    out = work / "spacenet6_native" / path.name
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path) as src:
            ms = src.read()[:, ::2, ::2]
            if not np.array_equal(ms, np.rint(ms)):
                raise ValueError(f"{path} does not hold integer counts")
            profile = src.profile | {
                "dtype": "uint16",
                "width": ms.shape[2],
                "height": ms.shape[1],
                "transform": src.transform * src.transform.scale(2),
                "nodata": src.nodata,
            }
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(ms.astype(np.uint16))
    return out


def native_table(
    data: Path, log: Callable[[str], None], patches: int | None = None
) -> tuple[str, dict[str, list[NativeCheck]]]:
    """Markdown: each network on its own sensor's data against EXP and the classical methods; and the checks.

    On whole scenes each network runs as trained and adapted by the tailor (rows ``<id> + tailor``);
    on the WV3 patches as trained only.
    """
    baselines = ["EXP", *method_names("classical")]
    sections, checks = [], {}
    for sensor, datasets in NATIVE.items():
        nets = shipped_networks((sensor,))
        for ds in datasets:
            log(f"native {ds.label} ...")
            rows = [(net, net, "none") for net in nets]  # (table row, network, adaptation)
            if ds is PATCHES:
                scores = patch_scores(data / ds.pan, baselines[1:] + nets, patches)
            else:
                scene = open_scene(data / ds.pan, data / ds.ms, ds.sensor)
                scores = wald_scores(scene, baselines[1:] + nets)
                tailored = wald_scores(scene, nets, adapt="tailor")
                scores |= {f"{net} {TAILORED}": tailored[net] for net in nets}
                rows += [(f"{net} {TAILORED}", net, "tailor") for net in nets]
            verdicts = {}
            for row, net, mode in rows:
                check = NativeCheck.from_scores(ds.label.split(" (")[0], row, scores, baselines, adapt=mode)
                checks.setdefault(net, []).append(check)
                verdicts[row] = "yes" if check.passed else "**no**"
            sections.append(_table(ds.label, scores, REDUCED, verdicts))
    return "\n".join(sections), checks


def cross_table(data: Path, work: Path, log: Callable[[str], None], patches: int | None = None) -> str:
    """Markdown: every network on the scenes of the other sensors with as many bands."""
    sections = []
    eight, four = shipped_networks(("wv3", "wv2")), shipped_networks(("qb", "ge1"))
    log(f"cross-sensor {PATCHES.label} ...")
    sections.append(
        _table(PATCHES.label, patch_scores(data / PATCHES.pan, eight, patches), REDUCED, _native_marks(eight, "wv3"))
    )
    for ds, models in [
        (GDAL_WV3, eight),
        (IMG_WV2, eight),
        (MSDCNN_QB, four),
        (IMG_GE1, four),
        *((d, four) for d in OTHER_4BAND),
    ]:
        log(f"cross-sensor {ds.label} ...")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scene = _open(data, ds, work)
            scores = wald_scores(scene, models)
            for method in ["EXP", *models]:
                fused = interp23(scene.ms.values, scene.ratio) if method == "EXP" else _fused(scene, method)
                scores[method].update(scene_full_scores(scene, fused))
        sections.append(_table(ds.label, scores, REDUCED + FULL, _native_marks(models, ds.sensor)))
    return "\n".join(sections)


def _native_marks(models: list[str], sensor: str | None) -> dict[str, str]:
    return {m: "native" if card(m).sensor == sensor else "cross" for m in models}


def _table(label: str, scores: dict[str, dict[str, float]], cols: tuple[str, ...], notes: dict[str, str]) -> str:
    note_col = (
        "beats EXP and classical (ERGAS, SAM)" if "yes" in notes.values() or "**no**" in notes.values() else "model"
    )
    lines = [f"### {label}\n", f"| method | {note_col} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for method, s in scores.items():
        lines.append(f"| {method} | {notes.get(method, '')} | " + " | ".join(f"{s[c]:.4f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def run_networks_bench(
    results: Path, work: Path, log: Callable[[str], None] = lambda _: None, patches: int | None = None
) -> None:
    """Score the networks natively and across sensors; write both tables into ``results`` (a folder of Markdown tables).

    A full run (all patches) also records each network's own-sensor check in its
    shipped model card (:func:`~pansharp_dist.models.record_native_checks`).
    """
    data = shared_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native, checks = native_table(data, log, patches)
    if patches is None:
        record_native_checks(checks)
    cross = cross_table(data, work, log, patches)
    write_result(
        results,
        "networks",
        "\n".join(
            [
                "## Pretrained networks, native and cross-sensor (`python -m benchmarks networks`)",
                "",
                "Reduced resolution: the Wald protocol above (a network is fitted on the full scene, so that",
                "its radiometry is the sensor's, and run on the degraded one); `fusionnet_wv3_patches` are",
                "PanCollection's own reduced pairs, scored against their `gt` and averaged over the patches.",
                "Full resolution: the fused scene against its own PAN and MS. Radiometry",
                "(`pansharp_dist/models/radiometry.py`): counts of a known bit depth map full scale to 1;",
                "float data and unknown sensors have each band's 99th percentile matched to the training data's.",
                "",
                "### Native sensor: are the ports right?",
                "",
                "`<id> + tailor` rows: the network adapted to the degraded scene by the Feature Tailor first",
                "(default options, what `run` does by default; not on the patches). Each verdict is written into",
                "the network's model card (`native_checks`) and shown by `pansharp-dist models list`; a run of a",
                "network that failed it in the run's mode warns.",
                "",
                native,
                "### Cross-sensor: the gap the Feature Tailor has to close",
                "",
                "`native` rows are networks trained on the scene's own sensor; `cross` rows were trained on",
                "another sensor with the same number of bands.",
                "",
                cross,
            ]
        ),
    )
