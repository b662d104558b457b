"""Quality metrics and MTF tools: ideal values, hand-computable cases, invariances, known orderings."""

import numpy as np
import pytest
from conftest import WV2_MAT

from pansharp_dist import open_scene
from pansharp_dist.methods import build_fuser
from pansharp_dist.quality import degrade, degrade_arrays, ergas, interp23, mtf_filter, mtf_kernel, psnr, q2n, sam, scc
from pansharp_dist.resample import upsample
from pansharp_dist.sensors import get_sensor
from pansharp_dist.stats import SceneStats, block_stats

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def wv2():
    scene = open_scene(WV2_MAT, WV2_MAT)
    return scene.pan.values.astype(np.float64), scene.ms.values.astype(np.float64)


def test_perfect_fusion_gets_the_ideal_values(wv2):
    _, ms = wv2
    assert sam(ms, ms) == pytest.approx(0, abs=1e-6)
    assert ergas(ms, ms, 4) == 0
    assert q2n(ms, ms) == pytest.approx(1, abs=1e-12)
    assert q2n(ms[:4], ms[:4]) == pytest.approx(1, abs=1e-12)
    assert scc(ms, ms) == pytest.approx(1)
    assert psnr(ms, ms) == float("inf")


def test_hand_computable_values():
    ref = np.stack([np.full((8, 8), 100.0), np.full((8, 8), 200.0)])
    fus = ref + np.stack([np.full((8, 8), 10.0), np.full((8, 8), -20.0)])
    # ERGAS = 100/4 * sqrt(mean(10²/100², 20²/200²)) = 25 * 0.1
    assert ergas(ref, fus, 4) == pytest.approx(2.5)
    # two-band spectra (1, 0) against (1, 1): 45 degrees everywhere
    a = np.stack([np.ones((4, 4)), np.zeros((4, 4))])
    b = np.stack([np.ones((4, 4)), np.ones((4, 4))])
    assert sam(a, b) == pytest.approx(45.0)
    # PSNR with a peak of 255 and an MSE of 25
    assert psnr(np.full((1, 4, 4), 255.0), np.full((1, 4, 4), 250.0)) == pytest.approx(10 * np.log10(255**2 / 25))


def _normalised(ref: np.ndarray, fus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per band, both blocks shifted and scaled by the reference block's mean and std (as q2n)."""
    m = ref.mean(axis=(1, 2), keepdims=True)
    s = ref.std(axis=(1, 2), ddof=1, keepdims=True)
    return (ref - m) / s + 1, (fus - m) / s + 1


def _q_complex(x: np.ndarray, y: np.ndarray) -> float:
    """Wang-Bovik Q of complex (or real) blocks: 4|cov| |mx| |my| / ((vx + vy)(|mx|^2 + |my|^2))."""
    mx, my = x.mean(), y.mean()
    n = x.size
    cov = ((x - mx) * np.conj(y - my)).sum() / (n - 1)
    vx, vy = (np.abs(x - mx) ** 2).sum() / (n - 1), (np.abs(y - my) ** 2).sum() / (n - 1)
    return abs(4 * cov * abs(mx) * abs(my) / ((vx + vy) * (abs(mx) ** 2 + abs(my) ** 2)))


def test_q2n_reduces_to_q_for_one_band_and_to_complex_q_for_two():
    ref = RNG.integers(100, 2000, (2, 32, 64)).astype(np.float64)
    fus = np.clip(ref + RNG.normal(0, 80, ref.shape), 0, None).round()
    blocks = [(slice(None), slice(None), slice(j, j + 32)) for j in (0, 32)]
    one = np.mean([_q_complex(*_normalised(ref[:1][b], fus[:1][b])) for b in blocks])
    assert q2n(ref[:1], fus[:1]) == pytest.approx(one, rel=1e-10)
    two = []
    for b in blocks:
        r, f = _normalised(ref[b], fus[b])
        two.append(_q_complex(r[0] + 1j * r[1], f[0] + 1j * f[1]))
    assert q2n(ref, fus) == pytest.approx(np.mean(two), rel=1e-10)


def test_invariances(wv2):
    _, ms = wv2
    noisy = ms + RNG.normal(0, 20, ms.shape)
    scale = RNG.uniform(0.5, 2.0, ms.shape[1:])
    assert sam(ms, noisy * scale) == pytest.approx(sam(ms, noisy), rel=1e-9)  # per-pixel scaling
    assert ergas(ms * 3, noisy * 3, 4) == pytest.approx(ergas(ms, noisy, 4), rel=1e-12)  # global gain
    assert scc(ms, noisy * 2) == pytest.approx(scc(ms, noisy), rel=1e-12)
    worse = ms + RNG.normal(0, 80, ms.shape)
    assert q2n(ms, noisy) > q2n(ms, worse) and ergas(ms, noisy, 4) < ergas(ms, worse, 4)


def test_mtf_kernel_has_the_gain_at_nyquist_and_unit_dc():
    for gain in (0.15, 0.3, 0.35):
        k = mtf_kernel(gain, 4)
        assert k.shape == (41, 41) and k.sum() == pytest.approx(1, abs=5e-3)  # the Kaiser window trims the DC a little
        x = np.arange(41) - 20
        # the toolbox samples its Gaussian on the 41-point DFT grid and puts the gain (N-1)/2r = 5
        # samples from DC, i.e. at 5/41 cycles per pixel (just under the MS Nyquist 1/8)
        response = (k.sum(axis=0) * np.cos(2 * np.pi * 5 / 41 * x)).sum()
        assert response == pytest.approx(gain, abs=0.005)


def test_interp23_keeps_samples_at_the_toolbox_phase_and_constants():
    img = RNG.normal(size=(3, 16, 20))
    for ratio in (2, 4):
        up = interp23(img, ratio)
        assert up.shape == (3, 16 * ratio, 20 * ratio)
        np.testing.assert_allclose(up[:, ratio // 2 :: ratio, ratio // 2 :: ratio], img, atol=1e-12)
    np.testing.assert_allclose(interp23(np.full((1, 8, 8), 5.0), 4), 5.0, rtol=1e-8)  # taps given to 12 digits


def test_wald_degradation_and_the_known_ordering_on_real_data(wv2):
    pan, ms = wv2
    sensor = get_sensor("wv2")
    pan_lr, ms_lr = degrade_arrays(pan, ms, 4, sensor.mtf_ms, sensor.mtf_pan)
    assert pan_lr.shape == (320, 320) and ms_lr.shape == (8, 80, 80)
    flat = mtf_filter(np.full((2, 50, 50), 7.0), (0.3, 0.3), 4)
    np.testing.assert_allclose(flat, 7.0, rtol=2e-3)
    lms = interp23(ms_lr, 4)
    stats = SceneStats.from_blocks(block_stats(pan_lr, ms_lr, 4, None, None))
    fuser = build_fuser("mtf-glp-hpm", stats, 4, sensor)
    fused = fuser.fuse(pan_lr[None].astype(np.float32), ms_lr[None].astype(np.float32))[0]
    # the upsampled MS alone scores worse than MTF-GLP-HPM, with either interpolator
    assert ergas(ms, fused, 4) < ergas(ms, lms, 4)
    assert ergas(ms, fused, 4) < ergas(ms, upsample(ms_lr.astype(np.float32)[None], 4)[0], 4)


def test_lazy_scene_degradation_equals_the_array_version():
    scene = open_scene(WV2_MAT, WV2_MAT).rechunk(256)
    reduced = degrade(scene)
    sensor = get_sensor("wv2")
    pan_lr, ms_lr = degrade_arrays(scene.pan.values, scene.ms.values, 4, sensor.mtf_ms, sensor.mtf_pan)
    np.testing.assert_allclose(reduced.pan.values, pan_lr, rtol=1e-9)  # FFT filtering per chunk vs whole
    np.testing.assert_allclose(reduced.ms.values, ms_lr, rtol=1e-9)
    assert reduced.ratio == 4 and reduced.ms.rio.transform().a == 16 * scene.transform.a


def test_user_sensor_from_a_toml_file(tmp_path, monkeypatch):
    path = tmp_path / "sensors.toml"
    path.write_text(
        '[[sensor]]\nid = "spot6"\nname = "SPOT-6"\nbands = ["blue", "green", "red", "nir"]\n'
        "bit_depth = 12\nratio = 4\nmtf_ms = [0.33, 0.33, 0.33, 0.33]\nmtf_pan = 0.15\nrgb = [2, 1, 0]\n"
        'aliases = ["spot-6"]\n'
    )
    monkeypatch.setenv("PANSHARP_SENSORS", str(path))
    sensor = get_sensor("SPOT-6")
    assert sensor.id == "spot6" and sensor.mtf_gains(4) == (0.33,) * 4 and sensor.bit_depth == 12


def test_full_resolution_metrics_ideal_cases_and_ordering(wv2):
    from pansharp_dist.quality.fullres import d_lambda_qnr, full_scores, imresize_down, q_blocks

    pan, ms = wv2
    pan, ms = pan[:512, :512], ms[:, :128, :128]
    band = ms[0].repeat(4, 0).repeat(4, 1)
    assert q_blocks(band, band) == pytest.approx(1.0)
    np.testing.assert_allclose(imresize_down(np.full((64, 64), 3.0), 4), 3.0, rtol=1e-12)
    ramp = np.add.outer(np.arange(64.0), np.arange(64.0))
    centres = 4 * np.arange(16) + 1.5  # output pixel k covers input pixels 4k..4k+3
    expected = np.add.outer(centres, centres)
    np.testing.assert_allclose(imresize_down(ramp, 4)[2:-2, 2:-2], expected[2:-2, 2:-2], rtol=1e-12)
    msexp = interp23(ms, 4)
    assert d_lambda_qnr(msexp, msexp) == 0.0
    gains = get_sensor("wv2").mtf_ms
    stats = SceneStats.from_blocks(block_stats(pan, ms, 4, None, None))
    fused = (
        build_fuser("mtf-glp-hpm", stats, 4, get_sensor("wv2"))
        .fuse(pan[None].astype(np.float32), ms[None].astype(np.float32))[0]
        .astype(np.float64)
    )
    scores_fused = full_scores(fused, ms, pan, 4, gains)
    scores_exp = full_scores(msexp, ms, pan, 4, gains)
    assert scores_fused["D_s"] < scores_exp["D_s"]  # the PAN's detail is in the fused image, not in the upsampled MS
    assert scores_fused["HQNR"] > scores_exp["HQNR"]
    assert all(0 <= scores_fused[k] <= 1 for k in ("D_lambda", "D_lambda_K", "D_s", "QNR", "HQNR"))


def test_blockwise_metrics_equal_the_in_memory_ones(wv2, client):
    import dask.array as da

    from pansharp_dist.quality import reduced_scores, reduced_scores_blockwise

    pan, ms = wv2
    sensor = get_sensor("wv2")
    pan_lr, ms_lr = degrade_arrays(pan, ms, 4, sensor.mtf_ms, sensor.mtf_pan)
    stats = SceneStats.from_blocks(block_stats(pan_lr, ms_lr, 4, None, None))
    fused = build_fuser("gsa", stats, 4, sensor).fuse(pan_lr[None].astype(np.float32), ms_lr[None].astype(np.float32))[
        0
    ]
    ref, fus = ms[:, :300, :310], fused[:, :300, :310].astype(np.float64)  # sides not multiples of 32
    expected = reduced_scores(ref, fus, 4)
    lazy = da.from_array(fus, chunks=(8, 70, 90))
    got = reduced_scores_blockwise(ref, lazy, 4, chunk=96, client=client)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6), name


def test_blockwise_full_resolution_metrics_equal_the_in_memory_ones(wv2, client):
    import dask.array as da

    from pansharp_dist.quality import full_scores
    from pansharp_dist.quality.blockwise import full_scores_blockwise

    pan, ms = wv2
    pan, ms = pan[:576, :640], ms[:, :144, :160]
    sensor = get_sensor("wv2")
    stats = SceneStats.from_blocks(block_stats(pan, ms, 4, None, None))
    fused = (
        build_fuser("mtf-glp-hpm", stats, 4, sensor)
        .fuse(pan[None].astype(np.float32), ms[None].astype(np.float32))[0]
        .astype(np.float64)
    )
    expected = full_scores(fused, ms, pan, 4, sensor.mtf_ms)
    got = full_scores_blockwise(
        da.from_array(fused, chunks=(8, 200, 200)), ms, pan, 4, sensor.mtf_ms, chunk=192, client=client
    )
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6), name
