"""`pansharp-dist eval`: full resolution, with a reference, and the reduced-resolution protocol."""

import json

import numpy as np
import pytest
import rasterio
from conftest import GDAL_HPF, VHR, WV2_MAT, cli


@pytest.fixture(scope="module")
def fused_hpf(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "hpf.tif"
    result = cli(
        "run",
        "--pan",
        str(GDAL_HPF[0]),
        "--ms",
        str(GDAL_HPF[1]),
        "--out",
        str(out),
        "--method",
        "mtf-glp-hpm",
        "--sensor",
        "wv3",
        "--workers",
        "1",
        "--extent",
        "overlap",  # the fused pixels alone: the tests place them on other grids
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_full_resolution_metrics_and_a_reference(fused_hpf):
    common = [
        "--pan",
        str(GDAL_HPF[0]),
        "--ms",
        str(GDAL_HPF[1]),
        "--fused",
        str(fused_hpf),
        "--sensor",
        "wv3",
        "--workers",
        "1",
        "--json",
    ]
    full = json.loads(cli("eval", *common).stdout)
    assert set(full) == {"D_lambda", "D_lambda_K", "D_s", "QNR", "HQNR"}
    assert all(0 <= v <= 1 for v in full.values())
    assert full["QNR"] == pytest.approx((1 - full["D_lambda"]) * (1 - full["D_s"]))
    with_ref = json.loads(cli("eval", *common, "--reference", str(fused_hpf)).stdout)
    assert (
        with_ref["SAM"] == pytest.approx(0, abs=1e-6) and with_ref["ERGAS"] == 0 and with_ref["Q2n"] == pytest.approx(1)
    )


@pytest.mark.slow
def test_reduced_resolution_protocol_scores_a_method():
    result = cli(
        "eval",
        "--protocol",
        "reduced",
        "--pan",
        str(WV2_MAT),
        "--ms",
        str(WV2_MAT),
        "--method",
        "mtf-glp-hpm",
        "--workers",
        "1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert set(scores) == {"SAM", "ERGAS", "Q2n", "SCC", "PSNR"}
    assert 0 < scores["ERGAS"] < 10 and 0.5 < scores["Q2n"] < 1 and 0 < scores["SAM"] < 15


@pytest.mark.slow
def test_fused_image_on_another_grid_is_a_clear_error(fused_hpf):
    result = cli("eval", "--pan", str(VHR[0]), "--ms", str(VHR[1]), "--fused", str(fused_hpf), "--workers", "1")
    assert result.returncode == 2 and result.stderr.count("error:") == 1
    assert "has 8 bands, the scene's MS 4: pass a pansharpened image of this --pan/--ms pair" in " ".join(
        result.stderr.split()
    )


@pytest.mark.slow
def test_quality_bench_scores_a_dataset_with_both_protocols():
    import warnings

    from conftest import DATA

    from benchmarks.quality import FULL, REDUCED, score_dataset
    from pansharp_dist import open_scene

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = open_scene(DATA / "grip_unina_pnn" / "imgGE1.mat", DATA / "grip_unina_pnn" / "imgGE1.mat", "ge1")
        scores = score_dataset(scene, ["gsa"])
    assert set(scores) == {"EXP", "gsa"} and set(scores["gsa"]) == set(REDUCED + FULL)
    assert scores["EXP"]["D_lambda"] == pytest.approx(0, abs=1e-12)  # the upsampled MS has the MS's band relations
    assert scores["gsa"]["ERGAS"] < scores["EXP"]["ERGAS"] and scores["gsa"]["D_s"] > 0


def _placed(source, out, shape, transform, at=(0, 0), window=None):
    """A copy of ``source``'s pixels (or of its ``window``) at row/column ``at`` of a raster of ``shape`` on
    ``transform``: another tool's output on another extent of the same pixel grid."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(source) as src:
        pixels = src.read(window=Window(*window) if window else None)
        profile = {"driver": "GTiff", "count": src.count, "dtype": src.dtypes[0], "crs": src.crs, "nodata": 0}
    canvas = np.zeros((pixels.shape[0], *shape), pixels.dtype)
    canvas[:, at[0] : at[0] + pixels.shape[1], at[1] : at[1] + pixels.shape[2]] = pixels
    with rasterio.open(out, "w", height=shape[0], width=shape[1], transform=transform, **profile) as dst:
        dst.write(canvas)
    return out


@pytest.mark.slow
def test_any_tools_output_on_the_pan_grid_is_scored_on_the_common_window(fused_hpf, tmp_path):
    import rasterio
    from affine import Affine

    from pansharp_dist.errors import InvalidParameterError
    from pansharp_dist.quality.evaluate import evaluate

    pan, ms = GDAL_HPF
    ours = evaluate(pan, ms, fused_hpf, sensor="wv3")
    with rasterio.open(pan) as src, rasterio.open(fused_hpf) as out:
        at = (
            round((out.transform.f - src.transform.f) / src.transform.e),
            round((out.transform.c - src.transform.c) / src.transform.a),
        )
        assert at != (0, 0) and out.shape != src.shape  # this one is on the PAN/MS overlap, GDAL's on the PAN grid
        whole = _placed(fused_hpf, tmp_path / "pan-grid.tif", src.shape, src.transform, at)
        t = out.transform
    assert evaluate(pan, ms, whole, sensor="wv3") == ours  # the same pixels found at their place
    part = _placed(
        fused_hpf, tmp_path / "part.tif", (256, 256), t * Affine.translation(12, 8), window=(12, 8, 256, 256)
    )
    scores = evaluate(pan, ms, part, sensor="wv3")
    assert 0 < scores["HQNR"] <= 1 and scores != ours  # scored on its own window
    assert evaluate(pan, ms, fused_hpf, reference=whole, sensor="wv3")["ERGAS"] == 0  # a truth on another grid
    with pytest.raises(InvalidParameterError, match="give the ground truth on the fused image's grid"):
        evaluate(pan, ms, fused_hpf, reference=part, sensor="wv3")  # covering another window
    shifted = _placed(
        fused_hpf, tmp_path / "shifted.tif", (256, 256), t * Affine.translation(0.5, 0), window=(0, 0, 256, 256)
    )
    with pytest.raises(InvalidParameterError, match="0.00 of a row and 0.50 of a column off the PAN pixel grid"):
        evaluate(pan, ms, shifted, sensor="wv3")


def test_a_float_output_with_nodata_scores_finite_distortions(tmp_path):
    """spacenet6 pair 2: a float MS with 32% zero fill gives a float COG whose nodata is NaN; the MTF filter of
    D_lambda_K must not spread it over the scene (nodata is scored as 0, as an integer output's)."""
    from conftest import DATA

    from pansharp_dist.pipeline import run
    from pansharp_dist.quality.evaluate import evaluate

    pan, ms = DATA / "spacenet6_solaris" / "pan2.tif", DATA / "spacenet6_solaris" / "ms2.tif"
    out = tmp_path / "fused.tif"
    run(pan, ms, out, method="brovey", sensor="wv2", scheduler="threads")
    with rasterio.open(out) as src:
        assert np.isnan(src.nodata) and np.isnan(src.read(1)).mean() > 0.3
    scores = evaluate(pan, ms, out, sensor="wv2")
    assert all(np.isfinite(v) for v in scores.values()) and 0 < scores["HQNR"] < 1, scores
