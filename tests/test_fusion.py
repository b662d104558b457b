"""Classical methods on the tile pipeline: tiled equals single pass, bit for bit;
Brovey agrees with GDAL's pansharpening; every method is physically sane; NaN and Inf inputs are nodata
and do not spread."""

import dataclasses
import os
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from conftest import GDAL_HPF, REPO, VHR, WV2_MAT, cli, copy_raster
from rasterio.windows import from_bounds

from pansharp_dist import open_scene
from pansharp_dist.fusion import OutputSpec, make_fuser, pansharpen, render, tile_batches
from pansharp_dist.methods import method_names
from pansharp_dist.store import ingest
from pansharp_dist.tiling import TileGrid

SCENES = {"gdal_hpf_wv3": GDAL_HPF, "vhr_china": VHR, "imgWV2": (WV2_MAT, WV2_MAT)}
SLOW_SCENES = {"vhr_china", "imgWV2"}  # 800² and 648²: the tiled-equals-whole check on them is in the slow tier
CROP = {"imgWV2": 648}  # PAN pixels of a side kept: 14 x 14 tiles of 48 are as telling as 27 x 27


@pytest.fixture(scope="module")
def stores(tmp_path_factory, client):
    root = tmp_path_factory.mktemp("fusion")
    return {
        name: ingest(
            _cropped(open_scene(*paths), CROP.get(name)), root / f"{name}.zarr", tile=48, block=96, client=client
        )
        for name, paths in SCENES.items()
    }


def _cropped(scene, side: int | None):
    """The scene's top-left ``side`` x ``side`` PAN pixels (and the MS under them), or the whole scene."""
    if side is None:
        return scene
    r = scene.ratio
    return dataclasses.replace(scene, pan=scene.pan[:side, :side], ms=scene.ms[:, : side // r, : side // r])


@pytest.mark.parametrize("method", method_names("classical"))
@pytest.mark.parametrize(
    "scene_name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_SCENES else []) for n in SCENES]
)
def test_tiled_run_equals_single_pass_bit_for_bit(stores, client, scene_name, method):
    scene = stores[scene_name]
    fuser = make_fuser(scene, method)
    # awkward sizes: 48-pixel tiles, 96- or 128-pixel blocks, scene sides not multiples of either
    for tile, block in ((48, 96), (64, 128)):
        tiled = pansharpen(scene, fuser, tile=tile, block=max(block, fuser.halo)).data.compute()
        single = render(fuser, scene.pan.values, scene.ms.values, OutputSpec.for_scene(scene))
        assert tiled.dtype == single.dtype
        np.testing.assert_array_equal(tiled, single)


@dataclasses.dataclass(frozen=True)
class _ShortHalo:
    """A fitted method that claims less context than its filters reach."""

    inner: object
    halo: int = 8

    name = "short-halo"

    @property
    def ratio(self) -> int:
        return self.inner.ratio

    @property
    def batch(self) -> int:
        return self.inner.batch

    def fuse(self, pan, ms):
        return self.inner.fuse(pan, ms)


def test_each_fuse_task_reads_its_own_window(stores):
    # no task shares a read with a neighbour, so no worker holds one for the next row of blocks
    hrms = pansharpen(stores["imgWV2"], "mtf-glp-hpm", tile=48, block=96)
    dependencies = hrms.data.__dask_graph__().get_all_dependencies()
    assert len(dependencies) == hrms.data.npartitions > 4
    assert not any(dependencies.values())


@pytest.mark.parametrize("y0, x0, tiles", [(0, 0, 16), (2048, 2048, 16), (6144, 6144, 4)])
def test_tile_batches_cover_a_block_once_in_bounded_batches_of_one_read_size(y0, x0, tiles):
    grid = TileGrid(8192, 6656, 512, 8, 4)
    batches = tile_batches(grid, y0, min(y0 + 2048, 8192), x0, min(x0 + 2048, 6656), 3)
    cores = [tile.core for batch in batches for tile in batch]
    assert len(cores) == len(set(cores)) == tiles
    assert all(1 <= len(batch) <= 3 for batch in batches)
    for batch in batches:
        assert len({(t.read[1] - t.read[0], t.read[3] - t.read[2]) for t in batch}) == 1


@pytest.mark.slow
def test_a_halo_below_the_support_draws_seams(stores):
    scene = stores["imgWV2"]
    fuser = make_fuser(scene, "mtf-glp-hpm")
    tiled = pansharpen(scene, _ShortHalo(fuser), tile=48, block=96).data.compute(scheduler="threads")
    single = render(fuser, scene.pan.values, scene.ms.values, OutputSpec.for_scene(scene))
    assert not np.array_equal(tiled, single)


@pytest.mark.parametrize("method", method_names("classical"))
def test_methods_keep_the_ms_spectra_and_add_pan_detail(stores, method):
    scene = stores["imgWV2"]
    fuser = make_fuser(scene, method)
    out = render(fuser, scene.pan.values, scene.ms.values, OutputSpec.for_scene(scene)).astype(np.float64)
    ms = scene.ms.values.astype(np.float64)
    b, h, w = ms.shape
    degraded = out.reshape(b, h, 4, w, 4).mean(axis=(2, 4))
    cos = (degraded * ms).sum(axis=0) / np.linalg.norm(degraded, axis=0) / np.linalg.norm(ms, axis=0)
    sam = np.degrees(np.arccos(np.clip(cos, -1, 1))).mean()
    assert sam < 3.0, sam  # averaged back to MS pixels, every method keeps the MS spectral angles
    if method != "brovey":  # Brovey rescales radiometry to the PAN's; the others keep the MS's
        rel = np.abs(degraded - ms).mean() / ms.mean()
        assert rel < 0.08, rel
    pan = scene.pan.values.astype(np.float64)
    detail = lambda img: img - np.repeat(np.repeat(img.reshape(h, 4, w, 4).mean(axis=(1, 3)), 4, 0), 4, 1)  # noqa: E731
    corr = np.corrcoef(detail(out.mean(axis=0)).ravel(), detail(pan).ravel())[0, 1]
    assert corr > 0.8, corr  # high-frequency detail comes from the PAN


def _gdal_pansharpen():
    exe = shutil.which("gdal_pansharpen.py") or shutil.which("gdal_pansharpen")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("gdal_pansharpen.py is missing: .ci/run installs Debian's gdal-bin and python3-gdal")
        pytest.skip("gdal_pansharpen.py (Debian gdal-bin + python3-gdal) is not installed")
    return exe


@pytest.mark.parametrize(
    "paths, weights",
    [(GDAL_HPF, (0.125,) * 8), (VHR, (0.1, 0.2, 0.3, 0.4))],
    ids=["gdal_hpf_wv3-equal", "vhr_china-custom"],
)
def test_brovey_matches_gdal_pansharpen(tmp_path, paths, weights):
    exe = _gdal_pansharpen()
    reference = tmp_path / "gdal.tif"
    wargs = [a for w in weights for a in ("-w", str(w))]
    subprocess.run(
        [exe, "-q", str(paths[0]), str(paths[1]), str(reference), "-r", "cubic", *wargs],
        check=True,
        capture_output=True,
    )
    scene = open_scene(*paths)
    fuser = make_fuser(scene, "brovey", weights=weights)
    ours = render(fuser, scene.pan.values, scene.ms.values, OutputSpec.for_scene(scene)).astype(np.float64)
    with rasterio.open(reference) as src:
        window = from_bounds(*scene.pan.rio.bounds(), transform=src.transform).round_offsets().round_lengths()
        ref = src.read(window=window).astype(np.float64)
    assert ref.shape == ours.shape
    valid = (ours > 0).all(axis=0) & (ref > 0).all(axis=0)
    assert valid.mean() > 0.95
    for band in range(ref.shape[0]):
        mad = np.abs(ours[band] - ref[band])[valid].mean()
        data_range = np.ptp(ref[band][valid])
        assert mad < 0.01 * data_range, (band, mad, data_range)


@pytest.mark.slow  # two CLI runs
def test_nan_and_inf_inputs_are_nodata_and_do_not_spread(tmp_path, inputs):
    with rasterio.open(inputs[0]) as src:
        pan = src.read()
    with rasterio.open(inputs[1]) as src:
        ms = src.read()
    pan[0, 300, 300] = np.inf
    ms[:, 40, 60] = np.nan
    copy_raster(inputs[0], inputs[0], data=pan)
    copy_raster(inputs[1], inputs[1], data=ms)
    for method in ("brovey", "mtf-glp-hpm"):
        out = tmp_path / f"{method}.tif"
        args = ("--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(out), "--extent", "overlap")
        result = cli("run", *args, "--method", method)
        assert result.returncode == 0, result.stderr
        with rasterio.open(out) as cog:
            fused, nodata = cog.read(), cog.nodata
        assert np.isnan(nodata)  # float output: NaN, not 0, marks nodata
        bad = np.isnan(fused).any(axis=0)
        assert bad.sum() == 1 + 16  # the Inf PAN pixel and the 4 x 4 PAN pixels under the NaN MS pixel
        assert np.isfinite(fused[:, ~bad]).all()


def test_the_lazy_result_carries_band_names_and_attributes_that_serialise(tmp_path):
    import xarray as xr

    from pansharp_dist import open_scene, pansharpen

    scene = open_scene(
        REPO / "pansharp_dist" / "sample" / "pan.tif", REPO / "pansharp_dist" / "sample" / "ms.tif", sensor="qb"
    )
    hrms = pansharpen(scene, "brovey", tile=256)
    assert list(hrms.band_name.values) == ["blue", "green", "red", "nir"]
    assert hrms.attrs["pansharp_method"] == "brovey" and hrms.rio.crs == scene.crs
    small = hrms.isel(x=slice(0, 64), y=slice(0, 64)).compute()  # scipy's netCDF writer takes no dask graph
    small.to_netcdf(tmp_path / "hrms.nc")
    small.to_dataset().to_zarr(tmp_path / "hrms.zarr")
    back = xr.open_dataset(tmp_path / "hrms.nc")["hrms"]  # beside spatial_ref, the CRS (rioxarray)
    np.testing.assert_array_equal(back.values, small.values)
    assert list(back.band_name.values) == ["blue", "green", "red", "nir"] and back.attrs["pansharp_method"] == "brovey"
