"""scene.py: PAN and MS opened lazily and aligned (GeoTIFF, .mat, URLs); malformed .mat files, symlink loops."""

import os
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from conftest import DATA, GDAL_HPF, LANDSAT, QB, VHR, WV2_MAT, _one_error_line, cli

from pansharp_dist import open_scene
from pansharp_dist.alignment import NotGeoreferencedWarning
from pansharp_dist.errors import BandCountError, InvalidParameterError


def test_georeferenced_pair_is_aligned_through_geotransforms_not_indices():
    # gdal_hpf_wv3: the MS origin lies 0.6 m east and 0.3 m south of the PAN origin.
    scene = open_scene(*GDAL_HPF)
    with rasterio.open(GDAL_HPF[0]) as pan, rasterio.open(GDAL_HPF[1]) as ms:
        pan_arr, ms_t = pan.read(1), ms.transform
        ms_arr = ms.read()
    assert scene.ratio == 4
    assert scene.shape == (572, 576) and scene.ms.shape == (8, 143, 144)
    # the scene starts where the MS starts: PAN row 1, column 2
    assert scene.transform.c == pytest.approx(ms_t.c) and scene.transform.f == pytest.approx(ms_t.f)
    np.testing.assert_array_equal(scene.pan.values, pan_arr[1:573, 2:578])
    np.testing.assert_array_equal(scene.ms.values, ms_arr)
    assert scene.ms.rio.transform().a == pytest.approx(4 * scene.transform.a)
    assert scene.crs.to_epsg() == 32642


def test_scene_is_lazy_and_carries_coordinates_and_crs():
    scene = open_scene(*VHR, chunk=256)
    assert isinstance(scene.pan.data, da.Array) and isinstance(scene.ms.data, da.Array)
    assert scene.pan.chunks == ((256, 256, 256, 32), (256, 256, 256, 32))
    assert scene.ms.chunks[1][0] == 64  # one PAN chunk = ratio x one MS chunk
    assert scene.pan.dims == ("y", "x") and scene.ms.dims == ("band", "y", "x")
    assert scene.pan.rio.crs.to_epsg() == 32649
    x0 = scene.transform.c + scene.transform.a / 2
    assert float(scene.pan.x[0]) == pytest.approx(x0)


def test_landsat_ratio_two_is_detected():
    scene = open_scene(*LANDSAT)
    assert scene.ratio == 2 and scene.ms.shape[0] == 4


def test_non_georeferenced_pair_is_accepted_with_a_warning():
    with pytest.warns(NotGeoreferencedWarning, match="assuming the grids share their top-left corner"):
        scene = open_scene(*QB)
    assert scene.ratio == 4 and scene.shape == (1000, 1000) and scene.crs is None


def test_mat_file_given_as_both_pan_and_ms_with_sensor_from_metadata():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        scene = open_scene(WV2_MAT, WV2_MAT)
        forced = open_scene(WV2_MAT, WV2_MAT, sensor="WorldView-3")
    assert scene.sensor == "wv2" and forced.sensor == "wv3"
    assert scene.shape == (1280, 1280) and scene.ms.shape == (8, 320, 320)
    assert scene.pan_nodata is None


def test_mat_patch_stacks_need_a_patch_index():
    path = DATA / "fusionnet_wv3_patches" / "train.mat"
    with pytest.raises(InvalidParameterError, match="stack of 100 patches; choose one with `patch=N`"):
        open_scene(path, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        scene = open_scene(path, path, patch=7)
    import scipy.io

    ref = scipy.io.loadmat(path)
    np.testing.assert_array_equal(scene.pan.values, ref["pan"][7])
    np.testing.assert_array_equal(scene.ms.values, np.moveaxis(ref["ms"][7], -1, 0))


def test_fsspec_url_reads_the_same_pixels():
    url = (f"file://{VHR[0]}", f"file://{VHR[1]}")
    a, b = open_scene(*url), open_scene(*VHR)
    np.testing.assert_array_equal(a.ms.values, b.ms.values)


def _mat(path: Path, **arrays) -> Path:
    import scipy.io

    scipy.io.savemat(path, arrays)
    return path


@pytest.mark.parametrize(
    "case, words",
    [
        ("empty sensor field", None),
        ("4-D image", "4-D"),
        ("fake v7.3 header", "MATLAB v7.3"),
    ],
)
def test_malformed_mat_files_are_one_error_line(tmp_path, case, words):
    import scipy.io

    real = scipy.io.loadmat(DATA / "grip_unina_pnn" / "imgGE1.mat")
    pan, ms = real["I_PAN"][:256, :256], real["I_MS"][:64, :64]
    path = tmp_path / "scene.mat"
    if case == "empty sensor field":
        _mat(path, I_PAN=pan, I_MS=ms, sensor=np.array([], dtype="<U1"))
    elif case == "4-D image":
        _mat(path, I_PAN=pan[None, :, :, None].repeat(2, 0), I_MS=ms)
    else:
        text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
        path.write_bytes(text.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM" + os.urandom(4096))  # version 0x0200
    result = cli("run", "--pan", str(path), "--ms", str(path), "--out", str(tmp_path / "o.tif"), "--json")
    if words is None:  # a file whose sensor field is empty is read as a file that names no sensor
        assert result.returncode == 0, result.stderr
    else:
        assert words in _one_error_line(result) and not (tmp_path / "o.tif").exists()


def test_a_symlink_loop_is_named_as_one(tmp_path):
    (tmp_path / "a.tif").symlink_to(tmp_path / "b.tif")
    (tmp_path / "b.tif").symlink_to(tmp_path / "a.tif")
    result = cli("run", "--pan", str(tmp_path / "a.tif"), "--ms", str(GDAL_HPF[1]), "--out", str(tmp_path / "o.tif"))
    assert "loop of symbolic links" in _one_error_line(result)


def test_dataarrays_from_rioxarray_open_the_same_scene_as_their_files():
    import rioxarray

    from pansharp_dist import pansharpen

    files = open_scene(*GDAL_HPF)
    arrays = open_scene(*(rioxarray.open_rasterio(path, chunks={"x": 256, "y": 256}) for path in GDAL_HPF))
    assert arrays.shape == files.shape and arrays.ratio == files.ratio and arrays.crs == files.crs
    assert arrays.transform == files.transform  # the same overlap, cut the same way
    np.testing.assert_array_equal(arrays.pan.values, files.pan.values)
    np.testing.assert_array_equal(arrays.ms.values, files.ms.values)
    fused = [pansharpen(scene, "brovey", tile=128).values for scene in (files, arrays)]
    np.testing.assert_array_equal(*fused)
    with pytest.raises(BandCountError, match="has dims"):
        open_scene(rioxarray.open_rasterio(GDAL_HPF[0]).expand_dims(time=[0]), files.ms)
