"""alignment.py and resample.position: the MS placed on the PAN grid by georeference, and the output extents
(pan, overlap, union) against gdal_pansharpen's -spat_adjust."""

import subprocess

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import GDAL_HPF, LANDSAT, VHR

from pansharp_dist import open_scene
from pansharp_dist.alignment import RasterGrid, align, extent_window
from pansharp_dist.errors import InvalidParameterError
from pansharp_dist.resample import AxisMap, position


def test_ms_on_whole_pan_pixels_is_cropped_not_resampled():
    scene = open_scene(*GDAL_HPF)  # MS origin 2 PAN columns right of and 1 row below PAN's
    a = scene.alignment
    assert not a.resampled and a.pan == (1, 573, 2, 578) and a.ms == (0, 143, 0, 144)
    assert a.pan_footprint == (-1, 574, -2, 578) and a.ms_footprint == (0, 572, 0, 576)
    with rasterio.open(GDAL_HPF[1]) as ms:
        np.testing.assert_array_equal(scene.ms.values, ms.read())


def test_ms_off_by_a_fraction_is_resampled_at_its_true_place():
    # Landsat 8: the MS origin is 0.45 PAN pixels left of and 0.33 below the PAN's
    scene = open_scene(*LANDSAT)
    a = scene.alignment
    assert a.resampled and a.ratio == 2
    assert a.ms_cols.start == pytest.approx(0.223, abs=1e-3) and a.ms_rows.start == pytest.approx(-0.166, abs=1e-3)
    with rasterio.open(LANDSAT[1]) as src:
        raw = src.read().astype(np.float64)
    moved = scene.ms.values.astype(np.float64)
    # inside, each aligned pixel lies between the MS pixels around its true place
    at = (slice(None), slice(5, -5), slice(5, -5))
    shifted = raw[:, 5 : 5 + moved.shape[1] - 10, 5 : 5 + moved.shape[2] - 10]
    assert np.abs(moved[at] - shifted).mean() < np.abs(raw[:, 5:-5, 5:-5] - raw[:, 5:-5, 4:-6]).mean()


def test_pixel_sizes_not_exactly_r_apart_are_resampled_without_a_warning(recwarn):
    scene = open_scene(*VHR)  # 0.498 m PAN, 2.0 m MS: 4.015 PAN pixels per MS pixel, 1.5 PAN pixels off at the edges
    assert scene.alignment.resampled and scene.alignment.ms_cols.step == pytest.approx(4 / 4.015, abs=1e-3)
    assert scene.shape == (800, 800) and scene.ms.shape == (4, 200, 200)
    assert not [w for w in recwarn if "PAN pixels" in str(w.message)]


def test_output_windows_for_each_extent():
    scene = open_scene(*GDAL_HPF)
    assert scene.output_window("overlap") == (0, 572, 0, 576)
    assert scene.output_window("pan") == scene.output_window("union") == (-1, 574, -2, 578)
    with pytest.raises(InvalidParameterError, match="`extent` must be one of pan, overlap, union, got 'ms'"):
        scene.output_window("ms")


def test_extents_match_gdal_pansharpen_spat_adjust(tmp_path):
    """An MS moved 20.6 m east and 10 m north of its PAN: the PAN grid is GDAL's `none`; the union GDAL's
    `union` to the pixel (GDAL truncates a partial pixel at the top, where ours takes it in whole)."""
    with rasterio.open(GDAL_HPF[1]) as src:
        profile, data = src.profile, src.read()
    moved = tmp_path / "moved.tif"
    profile["transform"] = Affine.translation(20.6, 10.0) * profile["transform"]
    with rasterio.open(moved, "w", **profile) as dst:
        dst.write(data)
    scene = open_scene(GDAL_HPF[0], moved)
    with rasterio.open(GDAL_HPF[0]) as pan:
        pan_t = pan.transform
    for extent, gdal_mode in (("pan", "none"), ("union", "union")):
        ours = _window_grid(scene, extent)
        out = tmp_path / f"gdal-{gdal_mode}.vrt"
        subprocess.run(
            ["gdal_pansharpen.py", "-q", "-of", "VRT", "-spat_adjust", gdal_mode, str(GDAL_HPF[0]), str(moved), out],
            check=True,
        )
        with rasterio.open(out) as g:
            theirs = (g.transform, g.height, g.width)
        if extent == "pan":
            assert ours[1:] == theirs[1:] and ours[0].almost_equals(theirs[0]) and ours[0].almost_equals(pan_t)
        else:
            (t, h, w), (gt, gh, gw) = ours, theirs
            assert (t.c, w) == pytest.approx((gt.c, gw)) and t.f == pytest.approx(gt.f - t.e) and h == gh + 1


def _window_grid(scene, extent) -> tuple[Affine, int, int]:
    r0, r1, c0, c1 = scene.output_window(extent)
    return scene.transform * Affine.translation(c0, r0), r1 - r0, c1 - c0


def test_pairs_without_georeferencing_share_their_corner():
    pan = RasterGrid(1003, 1000, None, None, "pan")
    a = align(pan, RasterGrid(250, 250, None, None, "ms"))
    assert a.pan == (0, 1000, 0, 1000) and not a.resampled
    assert extent_window(a, "pan") == (0, 1003, 0, 1000) and extent_window(a, "overlap") == (0, 1000, 0, 1000)


# --------------------------------------------------------------------------- resample.position


def test_position_reproduces_a_linear_ramp_at_any_fraction_and_scale():
    y, x = np.mgrid[0:40, 0:50].astype(np.float32)
    ramp = np.stack([3 * y + 2 * x + 10, 100 - x])
    rows, cols = AxisMap(2.3, 0.97, 30), AxisMap(3.71, 1.004, 40)
    out = position(da.from_array(ramp, chunks=(2, 16, 16)), rows, cols, None, 8).compute()
    yy, xx = np.meshgrid(2.3 + 0.97 * np.arange(30), 3.71 + 1.004 * np.arange(40), indexing="ij")
    np.testing.assert_allclose(out[0], 3 * yy + 2 * xx + 10, atol=1e-3)
    np.testing.assert_allclose(out[1], 100 - xx, atol=1e-3)


def test_position_leaves_nodata_out_and_keeps_the_dtype():
    data = np.full((1, 12, 12), 500, np.uint16)
    data[0, 6, 6] = 0  # nodata
    data[0, 2, 2] = 900
    out = position(da.from_array(data), AxisMap(0.25, 1.0, 11), AxisMap(0.25, 1.0, 11), 0.0, 4).compute()
    assert out.dtype == np.uint16
    assert out[0, 6, 6] == 0  # its nearest MS pixel is nodata
    assert out[0, 5, 6] == 500 and out[0, 6, 5] == 500  # nodata left out of the neighbours' sums
    assert 500 < out[0, 2, 2] < 900  # a valid peak is interpolated
    whole = position(da.from_array(data), AxisMap(0.25, 1.0, 11), AxisMap(0.25, 1.0, 11), 0.0, 64).compute()
    np.testing.assert_array_equal(out, whole)  # chunking changes no pixel


def test_an_ms_within_the_tolerance_is_cropped_and_its_union_is_its_own_pixels():
    crs = "EPSG:32642"
    pan = RasterGrid(100, 100, Affine(0.5, 0, 1000, 0, -0.5, 2000), crs, "pan")
    ms = RasterGrid(25, 25, Affine(2.0, 0, 1000 + 0.05 * 0.5, 0, -2.0, 2000), crs, "ms")  # 0.05 PAN pixels off
    a = align(pan, ms)
    assert not a.resampled and a.ms == (0, 25, 0, 25)
    assert extent_window(a, "union") == extent_window(a, "pan") == (0, 100, 0, 100)


def test_position_stays_within_the_valid_taps_next_to_nodata():
    ring = np.full((1, 9, 9), 1000.0, np.float32)
    ring[0, 3:6, 3:6] = np.nan
    ring[0, 4, 4] = 100  # a valid pixel among nodata, inside a bright ring: the kernel's lobes would overshoot
    out = position(da.from_array(ring), AxisMap(2.3, 1.0, 5), AxisMap(2.3, 1.0, 5), None, 8).compute()
    assert np.nanmin(out) >= 100 and np.nanmax(out) <= 1000 and np.isnan(out).any()
