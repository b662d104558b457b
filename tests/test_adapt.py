"""Feature Tailor: the module, its losses on cases with known values, tile sampling, the fit, and the
adapted network on the tile pipeline and the CLI."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from conftest import DATA, GDAL_HPF, ONE_PER_ARCH, WV2_MAT, cli

from benchmarks.networks import PATCHES
from benchmarks.tailor import shared_step_seconds
from pansharp_dist import open_scene
from pansharp_dist.adapt.losses import (
    BicubicDecimation,
    LossWeights,
    MTFDecimation,
    SceneLoss,
    box_mean,
    local_correlation,
)
from pansharp_dist.adapt.options import AdaptOptions
from pansharp_dist.adapt.sampling import (
    STRATEGIES,
    adaptation_grid,
    sample_tiles,
    sample_valid_tiles,
    tile_descriptors,
)
from pansharp_dist.adapt.training import GRAPH_WARMUP, adapt_fuser, adaptation_batch
from pansharp_dist.errors import CorruptInputError, InvalidParameterError
from pansharp_dist.fusion import OutputSpec, make_fuser, pansharpen, render
from pansharp_dist.models import card, load
from pansharp_dist.models.tailor import Tailor, TailorCard, Tailored, TailorSpec, tailor_bytes, tailor_from_bytes
from pansharp_dist.plan import plan_run
from pansharp_dist.quality.metrics import reduced_scores
from pansharp_dist.quality.mtf import degrade, degrade_arrays, mtf_kernel
from pansharp_dist.sensors import get_sensor
from pansharp_dist.store import scene_stats

SAMPLE = Path(__file__).resolve().parents[1] / "pansharp_dist" / "sample"
FAST = AdaptOptions(k=8, patch=64, steps=40, seconds=60)


@pytest.fixture(scope="module")
def wv2_scene():
    return open_scene(WV2_MAT, WV2_MAT, "wv2")


# --------------------------------------------------------------------------- the module


def test_untrained_tailor_reproduces_the_backbone_exactly(wv2_scene):
    backbone = load("fusionnet-wv3")
    tailor = Tailor(TailorSpec(backbone.width))
    pan = torch.from_numpy(wv2_scene.pan.values[:128, :128].astype(np.float32))[None, None]
    ms = torch.from_numpy(wv2_scene.ms.values[:, :32, :32].astype(np.float32))[None]
    with torch.no_grad():
        np.testing.assert_array_equal(
            Tailored(backbone, tailor)(pan, ms, 1 / 2047, 1 / 2047).numpy(),
            backbone(pan, ms, 1 / 2047, 1 / 2047).numpy(),
        )
    weights = sum(p.numel() for p in tailor.parameters())
    assert weights == 5248 and weights * 4 < 25_000  # tens of kilobytes in float32


def test_the_linear_map_and_the_branch_both_start_at_zero_and_both_learn():
    tailor = Tailor(TailorSpec(32))
    f = torch.rand(2, 32, 9, 9)
    assert torch.equal(tailor(f), f)
    tailor(f).pow(2).sum().backward()
    assert tailor.linear.weight.grad.abs().sum() > 0 and tailor.out.weight.grad.abs().sum() > 0
    with torch.no_grad():
        tailor.linear.weight.copy_(torch.eye(32)[:, :, None, None])  # L(F) = F: the features doubled
    np.testing.assert_allclose(tailor(f).detach().numpy(), 2 * f.numpy(), rtol=1e-6)
    assert Tailor(TailorSpec(32, linear=False)).linear is None


@pytest.mark.parametrize("linear", [True, False])
def test_tailor_bytes_roundtrip_with_card(linear):
    tailor = Tailor(TailorSpec(32, width=8, depth=2, kernel=3, linear=linear))
    torch.nn.init.normal_(tailor.out.weight)
    spec = {"channels": 32, "width": 8, "depth": 2, "kernel": 3}  # a card from before the linear map has no "linear"
    card_in = TailorCard(
        "fusionnet-wv3",
        card("fusionnet-wv3").sha256,
        "scene-x",
        spec | ({"linear": True} if linear else {}),
        LossWeights().as_dict(),
        12,
        0.5,
        [1, 2],
        [0.3, 0.2],
    )
    back, card_out = tailor_from_bytes(tailor_bytes(tailor, card_in))
    assert card_out == card_in and back.spec == tailor.spec
    assert tailor.state_dict().keys() == back.state_dict().keys()
    for (k, a), (_, b) in zip(tailor.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(CorruptInputError, match="not a pansharp-dist tailor"):
        tailor_from_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")


# --------------------------------------------------------------------------- losses


def test_losses_on_known_cases(wv2_scene):
    loss = SceneLoss((0.35,) * 8, 4)
    out = torch.from_numpy(wv2_scene.ms.values[:, :64, :64].astype(np.float32) / 2047)[None]
    ms = loss.degrade(out)
    # the degradation is the Wald protocol's filter and decimation
    _, expected = degrade_arrays(np.zeros((64, 64)), out[0].double().numpy(), 4, (0.35,) * 8, 0.11)
    np.testing.assert_allclose(ms[0].numpy(), expected, atol=1e-5)
    assert float(loss.spectral(out, ms)) == pytest.approx(0, abs=1e-7)
    assert float(loss.spectral(out, ms + 0.1)) == pytest.approx(0.1, abs=1e-6)
    pan = out.mean(1, keepdim=True)
    rho_ref = torch.full((1, 8, 56, 56), 0.5)
    assert float(loss.spatial(2 * pan.expand_as(out) + 1, pan, rho_ref)) == pytest.approx(0, abs=1e-4)
    assert float(loss.spatial(-pan.expand_as(out), pan, rho_ref)) == pytest.approx(1.5, abs=1e-3)
    assert float(loss.consistency(out + 0.2, out)) == pytest.approx(0.2, abs=1e-6)
    total, terms = loss(out + 0.1, ms, pan, torch.zeros_like(rho_ref), out)
    w = LossWeights()
    assert float(total) == pytest.approx(
        w.spectral * float(terms["spectral"])
        + w.spatial * float(terms["spatial"])
        + w.consistency * float(terms["consistency"]),
        rel=1e-5,
    )


@pytest.mark.parametrize("ratio", [2, 4])
def test_mtf_decimation_equals_the_strided_2d_filter(ratio):
    gains = (0.11, 0.27, 0.35)
    kernels = np.stack([mtf_kernel(g, ratio) for g in gains])
    image = torch.rand(2, 3, 37, 50, dtype=torch.float64)
    half = kernels.shape[-1] // 2
    padded = torch.nn.functional.pad(image, (half,) * 4, mode="replicate")[..., ratio // 2 :, ratio // 2 :]
    expected = torch.nn.functional.conv2d(padded, torch.from_numpy(kernels)[:, None], stride=ratio, groups=3)
    got = MTFDecimation(kernels, ratio)(image)
    assert got.shape == expected.shape == (2, 3, -(-(37 - ratio // 2) // ratio), -(-(50 - ratio // 2) // ratio))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-7 * float(image.abs().max()))


def test_the_bicubic_degradation_is_how_the_pancollection_patches_were_reduced():
    mat = scipy.io.loadmat(DATA / PATCHES.pan, variable_names=["ms", "gt"])
    gt, ms = (torch.from_numpy(np.moveaxis(mat[k][:20], -1, 1).astype(np.float64)) for k in ("gt", "ms"))
    inner = (Ellipsis, slice(5, 11), slice(5, 11))  # away from the borders, which each reduction pads its own way
    relative = lambda reduced: float((reduced[inner] - ms[inner]).abs().mean() / ms[inner].mean())  # noqa: E731
    assert relative(BicubicDecimation(4)(gt)) < 2e-3
    mtf = MTFDecimation(np.stack([mtf_kernel(g, 4) for g in get_sensor("wv3").mtf_gains(8)]), 4)
    assert relative(mtf(gt)) > 0.05  # the sensor's MTF does not describe these patches
    with pytest.raises(InvalidParameterError, match="degradation"):
        SceneLoss((0.3,) * 8, 4, degradation="gaussian")


def test_box_mean_and_correlation():
    t = torch.rand(2, 3, 30, 40, dtype=torch.float64)
    np.testing.assert_allclose(box_mean(t, 5).numpy(), torch.nn.functional.avg_pool2d(t, 5, 1).numpy(), atol=1e-12)
    flat = torch.ones(1, 1, 20, 20, dtype=torch.float64)
    assert float(local_correlation(flat, t[:1, :1, :20, :20], 5).abs().max()) == 0


# --------------------------------------------------------------------------- sampling


def test_sampling_is_deterministic_and_never_picks_nodata(tmp_path):
    pan_src, ms_src = DATA / "spacenet6_solaris" / "pan2.tif", DATA / "spacenet6_solaris" / "ms2.tif"
    scene = open_scene(pan_src, ms_src, "wv2")  # 32% zero fill at a strip edge
    grid = adaptation_grid(scene, 64)
    eligible, desc = tile_descriptors(scene, grid)
    assert 0 < eligible.sum() < len(grid)
    tiles = list(grid)
    pan = scene.pan.values
    for strategy in STRATEGIES:
        picked, pan_tiles, _ = sample_valid_tiles(scene, grid, 6, strategy, seed=3)
        assert picked == sample_valid_tiles(scene, grid, 6, strategy, seed=3)[0]
        assert len(picked) == len(set(picked)) == 6
        for i, pixels in zip(picked, pan_tiles):
            r0, r1, c0, c1 = tiles[i].core
            assert (pan[r0:r1, c0:c1] != 0).all()
            np.testing.assert_array_equal(pixels, pan[r0:r1, c0:c1])
    assert sample_tiles(grid, eligible, desc, 6, "random", seed=3) != sample_tiles(
        grid, eligible, desc, 6, "random", seed=4
    )
    everything = sample_tiles(grid, eligible, desc, 10_000, "manifold")
    assert everything == sorted(np.flatnonzero(eligible).tolist())


def test_the_manifold_sampler_clusters_as_scikit_learn_kmeans_does():
    from sklearn.cluster import KMeans

    from pansharp_dist.adapt.sampling import _kmeans_plus_plus, _lloyd

    scene = open_scene(*GDAL_HPF, sensor="wv3")
    grid = adaptation_grid(scene, 32)
    eligible, desc = tile_descriptors(scene, grid)
    tiles = desc[eligible]
    seeds = _kmeans_plus_plus(tiles, 16, np.random.default_rng(0))
    ours = _lloyd(tiles, seeds, 25)
    theirs = KMeans(16, init=seeds, n_init=1, max_iter=25, tol=0, algorithm="lloyd").fit(tiles)
    np.testing.assert_allclose(ours, theirs.cluster_centers_, rtol=1e-9, atol=1e-9)
    inertia = ((tiles - ours[np.argmin(((tiles[:, None] - ours[None]) ** 2).sum(-1), axis=1)]) ** 2).sum()
    assert inertia == pytest.approx(theirs.inertia_, rel=1e-9)


# --------------------------------------------------------------------------- the fit


@pytest.mark.slow
def test_tailor_fit_lowers_the_loss_and_keeps_to_its_budgets(wv2_scene):
    base = make_fuser(wv2_scene, "fusionnet-wv3")
    adapted, report = adapt_fuser(wv2_scene, base, "tailor", FAST)
    assert report.mode == "tailor" and len(report.tiles) == 8 and report.steps <= 40
    assert report.losses[-1] < report.losses[0]
    assert adapted.adaptation == "tailor" and len(adapted.weights) < 50_000
    # the default 1 x 1 tailor leaves the receptive field alone (18 pixels, rounded up to the ratio: 20)
    assert adapted.halo == 20 == make_fuser(wv2_scene, "fusionnet-wv3").halo
    wide = adapt_fuser(wv2_scene, base, "tailor", replace(FAST, steps=1, spec_kernel=3, spec_depth=2))[0]
    assert wide.halo == 24  # three 3 x 3 convolutions add 3 pixels: 18 + 3, rounded up to 24
    _, card_out = tailor_from_bytes(adapted.weights)
    assert card_out.backbone == "fusionnet-wv3" and card_out.tiles == report.tiles and card_out.steps == report.steps
    _, timed = adapt_fuser(wv2_scene, base, "tailor", AdaptOptions(k=8, patch=64, steps=10_000, seconds=2))
    assert timed.stopped in ("time budget", "converged") and timed.steps < 10_000
    assert len(timed.losses) == timed.steps  # on the CPU each step's loss is read back at once
    none, nothing = adapt_fuser(wv2_scene, base, "none")
    assert none == base and nothing.steps == 0


def test_the_fit_returns_the_weights_of_the_lowest_loss_it_saw(wv2_scene):
    base = make_fuser(wv2_scene, "fusionnet-wv3")
    spec = OutputSpec.for_scene(wv2_scene)
    pan, ms = wv2_scene.pan.values[:256, :256], wv2_scene.ms.values[:, :64, :64]
    diverged, report = adapt_fuser(wv2_scene, base, "tailor", replace(FAST, lr=1.0, steps=20))
    assert min(report.losses[1:]) > report.losses[0]  # a step of 1.0 wrecks the tailor at once
    assert (report.kept_step, report.kept_loss) == (0, report.losses[0])
    np.testing.assert_array_equal(render(diverged, pan, ms, spec), render(base, pan, ms, spec))
    _, report = adapt_fuser(wv2_scene, base, "tailor", FAST)
    assert report.kept_loss <= min(report.losses) < report.losses[0] and 0 < report.kept_step <= report.steps
    assert report.kept_step == report.steps or report.kept_loss == report.losses[report.kept_step]


def test_the_fit_is_reproducible_whether_or_not_the_backbone_was_loaded_before(wv2_scene):
    from pansharp_dist.models.network import resident

    resident.cache_clear()  # the first fit loads the backbone, which draws from torch's generator
    base = make_fuser(wv2_scene, "pannet-wv3")
    first = adapt_fuser(wv2_scene, base, "tailor", AdaptOptions(k=4, patch=64, steps=5))[1]
    again = adapt_fuser(wv2_scene, base, "tailor", AdaptOptions(k=4, patch=64, steps=5))[1]
    assert first.losses == again.losses and first.tiles == again.tiles


def test_the_benchmarks_shared_step_runs_the_fits_problem_and_trains_nothing(wv2_scene):
    base = make_fuser(wv2_scene, "fusionnet-wv3")
    options = AdaptOptions(k=4, patch=64, steps=3)
    batch = adaptation_batch(wv2_scene, base, options)
    backbone_loss = float(batch.objective(batch.backbone.head(batch.features, batch.x))[0])
    _, report = adapt_fuser(wv2_scene, base, "tailor", options)
    assert batch.tiles == report.tiles and backbone_loss == report.losses[0]  # an untrained tailor is the backbone
    before = {k: v.clone() for k, v in batch.backbone.state_dict().items()}
    assert shared_step_seconds(wv2_scene, base, options, steps=2) > 0
    assert all(p.grad is None for p in batch.backbone.parameters())
    assert all(torch.equal(v, before[k]) for k, v in batch.backbone.state_dict().items())


@pytest.mark.slow
def test_tailor_improves_cross_sensor_transfer_on_degraded_imgwv2(wv2_scene):
    reduced = degrade(wv2_scene)
    truth = wv2_scene.ms.values[:, : reduced.shape[0], : reduced.shape[1]].astype(np.float64)
    base = make_fuser(wv2_scene, "fusionnet-wv3")  # the radiometry of the real scene
    score = lambda f: reduced_scores(truth, pansharpen(reduced, f, tile=256).values.astype(np.float64), 4)  # noqa: E731
    direct = score(base)
    tailored, _ = adapt_fuser(reduced, base, "tailor", AdaptOptions(k=16, patch=64, steps=120))
    adapted = score(tailored)
    assert adapted["ERGAS"] < direct["ERGAS"] and adapted["SAM"] < direct["SAM"] and adapted["Q2n"] > direct["Q2n"]


@pytest.mark.slow
def test_adapted_network_tiled_equals_single_pass(wv2_scene):
    base = make_fuser(wv2_scene, "dicnn-wv2")
    adapted, _ = adapt_fuser(wv2_scene, base, "tailor", FAST)
    scene = open_scene(DATA / "gdal_hpf_wv3" / "pan.tif", DATA / "gdal_hpf_wv3" / "mul.tif", "wv3")  # float32
    fuser = make_fuser(scene, "dicnn-wv2").adapted("tailor", adapted.weights)
    single = render(fuser, scene.pan.values, scene.ms.values, OutputSpec.for_scene(scene))
    tiled = pansharpen(scene, fuser, tile=64, block=128).values
    h = fuser.halo
    core = (slice(None), slice(h, -h), slice(h, -h))
    assert np.abs(tiled[core] - single[core]).max() < 1e-5 * np.abs(single[core]).max()
    untailored = render(make_fuser(scene, "dicnn-wv2"), scene.pan.values, scene.ms.values, OutputSpec.for_scene(scene))
    assert np.abs(untailored - single).max() > 0


def test_full_fine_tuning_mode(wv2_scene):
    base = make_fuser(wv2_scene, "dicnn-wv2")
    adapted, report = adapt_fuser(wv2_scene, base, "full", AdaptOptions(k=4, patch=64, steps=5))
    assert report.mode == "full" and report.steps == 5
    assert len(adapted.weights) > 100_000  # the whole network travels
    out = adapted.fuse(
        wv2_scene.pan.values[None, :64, :64].astype(np.float32),
        wv2_scene.ms.values[None, :, :16, :16].astype(np.float32),
    )
    assert out.shape == (1, 8, 64, 64) and np.isfinite(out).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["tailor", "full"])
@pytest.mark.parametrize("model", ONE_PER_ARCH)
def test_graphed_cuda_steps_follow_the_eager_ones(model, mode, monkeypatch, wv2_scene):
    # cuDNN's default weight-gradient kernels sum in no fixed order: two eager fits of the whole
    # network differed by 1e-4 after two Adam steps (pannet, H100), so compare deterministic kernels
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    scene = open_scene(SAMPLE / "pan.tif", SAMPLE / "ms.tif") if len(card(model).bands) == 4 else wv2_scene
    base = make_fuser(scene, model, device="cuda")
    options = AdaptOptions(k=8, patch=64, steps=30, patience=30)
    _, eager = adapt_fuser(scene, base, mode, replace(options, cuda_graph=False))
    graphed, report = adapt_fuser(scene, base, mode, options)
    assert report.steps == eager.steps == 30 and report.tiles == eager.tiles
    # the same kernels and the same Adam arithmetic: the first replayed step (after the eager warm-up) matches
    # closely; replayed kernels may still round differently, and Adam amplifies that over the steps
    np.testing.assert_allclose(report.losses[: GRAPH_WARMUP + 1], eager.losses[: GRAPH_WARMUP + 1], rtol=1e-4)
    np.testing.assert_allclose(report.losses, eager.losses, rtol=1e-2)
    assert report.losses[-1] < report.losses[0]
    out = graphed.fuse(
        scene.pan.values[None, :128, :128].astype(np.float32), scene.ms.values[None, :, :32, :32].astype(np.float32)
    )
    assert np.isfinite(out).all()


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_adapt_cli_and_run_with_adapt(tmp_path, client):
    store = tmp_path / "sample.zarr"
    done = cli(
        "ingest", "--pan", str(SAMPLE / "pan.tif"), "--ms", str(SAMPLE / "ms.tif"), "--out", str(store), "--json"
    )
    assert done.returncode == 0, done.stderr
    tailor = tmp_path / "tailor.safetensors"
    done = cli(
        "adapt",
        "--zarr",
        str(store),
        "--model",
        "pannet-qb",
        "--out",
        str(tailor),
        "--tiles",
        "4",
        "--steps",
        "15",
        "--degradation",
        "bicubic",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["steps"] <= 15 and len(summary["tiles"]) == 4
    made = tailor_from_bytes(tailor.read_bytes())[1]
    assert made.backbone == "pannet-qb" and made.losses["degradation"] == "bicubic"
    unknown = cli(
        "adapt",
        "--zarr",
        str(store),
        "--model",
        "pannet-qb",
        "--out",
        str(tmp_path / "u.safetensors"),
        "--degradation",
        "gaussian",
    )
    assert (
        unknown.returncode == 2
        and "Invalid value for '--degradation'" in unknown.stderr
        and not (tmp_path / "u.safetensors").exists()
    )
    again = cli("adapt", "--zarr", str(store), "--model", "pannet-qb", "--out", str(tailor))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    wrong = cli("adapt", "--zarr", str(store), "--model", "fusionnet-wv3", "--out", str(tmp_path / "x.safetensors"))
    assert wrong.returncode == 2 and "takes 8 MS bands" in wrong.stderr and "Traceback" not in wrong.stderr
    for mode in ("none", None):  # None: the default, a tailor for networks
        extra = ["--adapt", mode] if mode else []
        done = cli(
            "run",
            "--pan",
            str(SAMPLE / "pan.tif"),
            "--ms",
            str(SAMPLE / "ms.tif"),
            "--out",
            str(tmp_path / f"fused-{mode}.tif"),
            "--method",
            "pnn-ge1",
            *extra,
            "--adapt-steps",
            "20",
            "--json",
        )
        assert done.returncode == 0, done.stderr
        adaptation = json.loads(done.stdout)["adaptation"]
        if mode == "none":
            assert adaptation is None
        else:
            assert adaptation["mode"] == "tailor" and adaptation["tiles"] == 16 and 0 < adaptation["steps"] <= 20
    refused = cli(
        "run",
        "--pan",
        str(SAMPLE / "pan.tif"),
        "--ms",
        str(SAMPLE / "ms.tif"),
        "--out",
        str(tmp_path / "y.tif"),
        "--method",
        "brovey",
        "--adapt",
        "tailor",
    )
    assert refused.returncode == 2 and "network methods only" in refused.stderr


@pytest.mark.slow
def test_adapt_needs_a_tile_store(tmp_path):
    done = cli(
        "adapt", "--zarr", str(tmp_path / "missing.zarr"), "--model", "pannet-qb", "--out", str(tmp_path / "t.st")
    )
    assert done.returncode == 2 and "not a pansharp-dist tile store" in done.stderr


def test_scene_stats_ms_dtype_drives_the_rule(wv2_scene):
    assert scene_stats(wv2_scene).ms_dtype == "uint16"
    assert make_fuser(wv2_scene, "pannet-wv2").rule.startswith("11-bit")


@pytest.mark.slow
def test_the_cli_shows_the_adaptation_step_by_step_and_json_carries_the_loss_curve(tmp_path):
    common = [
        "--pan",
        str(GDAL_HPF[0]),
        "--ms",
        str(GDAL_HPF[1]),
        "--method",
        "fusionnet-wv3",
        "--device",
        "cpu",
        "--adapt-steps",
        "4",
        "--tile",
        "256",
    ]
    shown = cli("run", *common, "--out", str(tmp_path / "a.tif"))
    assert shown.returncode == 0, shown.stderr
    assert "adapt" in shown.stderr and "4/4" in shown.stderr and "loss" in shown.stderr
    quiet = cli("run", *common, "--out", str(tmp_path / "b.tif"), "--json")
    assert quiet.returncode == 0, quiet.stderr
    adaptation = json.loads(quiet.stdout)["adaptation"]
    assert len(adaptation["losses"]) == adaptation["steps"] == 4
    assert adaptation["kept_loss"] == min(adaptation["losses"] + [adaptation["kept_loss"]])


@pytest.mark.slow
def test_run_applies_a_saved_tailor_made_for_its_checkpoint_only(tmp_path):
    import rasterio

    store, tailor = tmp_path / "sample.zarr", tmp_path / "tailor.safetensors"
    assert (
        cli("ingest", "--pan", str(SAMPLE / "pan.tif"), "--ms", str(SAMPLE / "ms.tif"), "--out", str(store)).returncode
        == 0
    )
    made = cli("adapt", "--zarr", str(store), "--model", "pannet-qb", "--out", str(tailor), "--steps", "20")
    assert made.returncode == 0, made.stderr
    pair = ["--pan", str(SAMPLE / "pan.tif"), "--ms", str(SAMPLE / "ms.tif")]
    applied = cli(
        "run",
        *pair,
        "--out",
        str(tmp_path / "tailored.tif"),
        "--method",
        "pannet-qb",
        "--tailor",
        str(tailor),
        "--json",
    )
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["adaptation"] == {"mode": "tailor", "reused": str(tailor)}  # not trained again
    direct = cli("run", *pair, "--out", str(tmp_path / "direct.tif"), "--method", "pannet-qb", "--adapt", "none")
    assert direct.returncode == 0, direct.stderr
    with rasterio.open(tmp_path / "tailored.tif") as a, rasterio.open(tmp_path / "direct.tif") as b:
        assert a.shape == b.shape and (a.read() != b.read()).any()  # the tailor changed the output
    sample = (SAMPLE / "pan.tif", SAMPLE / "ms.tif")
    with pytest.raises(InvalidParameterError, match="adapts pannet-qb, not pannet-ge1"):
        plan_run(*sample, tmp_path / "x.tif", method="pannet-ge1", tailor=tailor)
    both = cli(
        "run",
        *pair,
        "--out",
        str(tmp_path / "y.tif"),
        "--method",
        "pannet-qb",
        "--tailor",
        str(tailor),
        "--adapt",
        "full",
    )
    assert both.returncode == 2 and "--adapt full cannot go with it" in both.stderr
    (tmp_path / "junk.safetensors").write_bytes(b"not a tailor")
    with pytest.raises(CorruptInputError, match="not a pansharp-dist tailor"):
        plan_run(*sample, tmp_path / "z.tif", method="pannet-qb", tailor=tmp_path / "junk.safetensors")
