"""store.py: the Zarr tile store (layout, round trip, statistics, damaged chunks or metadata) and tile sizes."""

import json

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from conftest import GDAL_HPF, VHR, _one_error_line, cli, copy_raster

from pansharp_dist import open_scene
from pansharp_dist.errors import StoreError
from pansharp_dist.fusion import pansharpen
from pansharp_dist.stats import valid_mask
from pansharp_dist.store import ingest, open_store, scene_stats, write_output


@pytest.fixture(scope="module")
def stored(tmp_path_factory, client):
    scene = open_scene(*GDAL_HPF)
    path = tmp_path_factory.mktemp("store") / "hpf.zarr"
    return scene, path, ingest(scene, path, tile=64, block=128, client=client)


def test_store_is_zarr_v3_sharded_with_aligned_chunk_grids(stored):
    scene, path, _ = stored
    meta = {name: json.loads((path / name / "zarr.json").read_text()) for name in ("pan", "ms", "mask")}
    assert all(m["zarr_format"] == 3 for m in meta.values())
    pan_codec, ms_codec = meta["pan"]["codecs"][0], meta["ms"]["codecs"][0]
    assert pan_codec["name"] == ms_codec["name"] == "sharding_indexed"
    assert pan_codec["configuration"]["chunk_shape"] == [64, 64]
    assert ms_codec["configuration"]["chunk_shape"] == [8, 16, 16]  # ratio 4: one PAN chunk = 4 x one MS chunk
    assert meta["pan"]["chunk_grid"]["configuration"]["chunk_shape"] == [128, 128]
    assert meta["ms"]["chunk_grid"]["configuration"]["chunk_shape"] == [8, 32, 32]


def test_store_round_trips_pixels_crs_and_transform(stored):
    scene, path, reopened = stored
    ds = xr.open_zarr(path, consolidated=False)
    assert ds.rio.crs == scene.crs
    assert ds.rio.transform().almost_equals(scene.transform)
    np.testing.assert_array_equal(ds["pan"].values, scene.pan.values)
    np.testing.assert_array_equal(ds["ms"].values, scene.ms.values)
    hr, _ = valid_mask(scene.pan.values, scene.ms.values, 4, 0.0, 0.0)
    np.testing.assert_array_equal(ds["mask"].values, hr.astype(np.uint8))
    assert reopened.ms.rio.transform().almost_equals(scene.ms.rio.transform())


def test_store_statistics_are_per_scene_and_exact_where_they_can_be(stored):
    scene, _, reopened = stored
    stats = reopened.stats
    pan, ms = scene.pan.values.astype(np.float64), scene.ms.values
    hr, lr = valid_mask(scene.pan.values, ms, 4, 0.0, 0.0)
    assert stats.pan_count == hr.sum()
    assert stats.pan_mean == pytest.approx(pan[hr].mean(), rel=1e-9)
    assert stats.pan_std == pytest.approx(pan[hr].std(), rel=1e-6)
    mean, _ = stats.lr_moments()
    np.testing.assert_allclose(mean[:8], ms[:, lr].astype(np.float64).mean(axis=1), rtol=1e-9)
    assert len(stats.ms_percentiles) == 8 and len(stats.ms_percentiles[0]) == len(stats.percentiles)
    for band in range(8):
        p2, p98 = np.percentile(ms[band][lr], (2, 98))
        q = dict(zip(stats.percentiles, stats.ms_percentiles[band]))
        assert q[2.0] == pytest.approx(p2, rel=0.05) and q[98.0] == pytest.approx(p98, rel=0.05)


def test_a_damaged_tile_chunk_fails_its_read_instead_of_giving_other_pixels(tmp_path, client):
    path = tmp_path / "hpf.zarr"
    ingest(open_scene(*GDAL_HPF), path, tile=64, block=128, client=client)
    shard = path / "pan" / "c" / "0" / "0"
    data = shard.read_bytes()
    at = len(data) // 3
    shard.write_bytes(data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :])  # one bit: Blosc alone decodes it
    with pytest.raises(StoreError, match="hpf.zarr: the pan data at PAN rows 0:128, columns 0:128 is damaged"):
        _ = open_store(path).pan[:128, :128].values
    np.testing.assert_array_equal(open_store(path).pan[128:, 128:].values, open_scene(*GDAL_HPF).pan[128:, 128:].values)


def test_all_nodata_chunks_are_stored_so_a_missing_or_empty_one_fails_its_read(tmp_path, client):
    pan, ms = VHR  # uint16, whose fill value 0 zarr would not store
    with rasterio.open(pan) as src:
        data = src.read()
    data[:, :256, :256] = 0  # the scene's first shard all nodata (its PAN grid is aligned to the MS one)
    scene = open_scene(copy_raster(pan, tmp_path / "pan.tif", data=data, nodata=0), ms)
    path = tmp_path / "hole.zarr"
    store = ingest(scene, path, tile=64, block=128, client=client)
    assert not store.pan[:128, :128].values.any()
    write_output(pansharpen(store, "brovey"), tmp_path / "out.zarr", client=client)
    assert all(
        (folder / key).stat().st_size
        for folder, key in (
            (path / "pan", "c/0/0"),
            (path / "mask", "c/0/0"),
            (tmp_path / "out.zarr" / "hrms", "0.0.0"),
        )
    )

    (path / "pan" / "c" / "0" / "0").unlink()
    with pytest.raises(
        StoreError,
        match=r"hole.zarr: the pan data at PAN rows 0:128, columns 0:128 is damaged "
        r"\(its chunk file c/0/0 is missing or empty\); delete the store",
    ):
        _ = open_store(path).pan[:128, :128].values
    (path / "ms" / "c" / "0" / "1" / "1").write_bytes(b"")
    with pytest.raises(
        StoreError,
        match=r"the ms data at MS rows 40:50, columns 40:50 is damaged \(its chunk file "
        r"c/0/1/1 is missing or empty\)",
    ):
        _ = open_store(path).ms[:, 40:50, 40:50].values
    np.testing.assert_array_equal(open_store(path).pan[128:, 128:].values, scene.pan[128:, 128:].values)


def test_incomplete_or_foreign_store_is_refused(tmp_path):
    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a pansharp-dist tile store"):
        open_store(tmp_path / "foreign.zarr")


@pytest.mark.slow
def test_ingest_from_the_cli_writes_a_store(tmp_path):
    from conftest import cli

    result = cli(
        "ingest",
        "--pan",
        str(VHR[0]),
        "--ms",
        str(VHR[1]),
        "--out",
        str(tmp_path / "s.zarr"),
        "--workers",
        "1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["height"] == 800 and summary["bands"] == 4 and summary["valid_pixels"] > 0
    assert open_store(tmp_path / "s.zarr").shape == (800, 800)


def test_a_ratio_3_pair_is_told_which_tile_sizes_work(tmp_path):
    from rasterio.warp import Resampling, reproject

    with rasterio.open(GDAL_HPF[0]) as src:  # the real pair, its MS resampled to 3 PAN pixels a pixel
        pan_profile, pan_transform, (h, w) = src.profile, src.transform, (src.height // 3 * 3, src.width // 3 * 3)
        pan = src.read(window=((0, h), (0, w)))
    with rasterio.open(GDAL_HPF[1]) as src:
        ms = np.zeros((src.count, h // 3, w // 3), np.float32)
        ms_transform = pan_transform * pan_transform.scale(3)
        reproject(
            src.read(),
            ms,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=ms_transform,
            dst_crs=src.crs,
            resampling=Resampling.average,
        )
        ms_profile = src.profile
    pan_path, ms_path = tmp_path / "pan3.tif", tmp_path / "ms3.tif"
    with rasterio.open(pan_path, "w", **{**pan_profile, "width": w, "height": h, "tiled": False}) as dst:
        dst.write(pan)
    with rasterio.open(
        ms_path, "w", **{**ms_profile, "width": w // 3, "height": h // 3, "transform": ms_transform, "tiled": False}
    ) as dst:
        dst.write(ms)
    common = ["--pan", str(pan_path), "--ms", str(ms_path)]
    refused = cli("run", *common, "--out", str(tmp_path / "a.tif"))
    assert "not a multiple of the resolution ratio 3; use a tile size of 192, 384 or 768" in _one_error_line(refused)
    fitted = cli("run", *common, "--out", str(tmp_path / "b.tif"), "--tile", "384", "--json")
    assert fitted.returncode == 0, fitted.stderr and json.loads(fitted.stdout)["ratio"] == 3


def test_a_damaged_store_json_is_one_error_line(tmp_path, inputs):
    store = tmp_path / "s.zarr"
    assert cli("ingest", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(store)).returncode == 0
    (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attri')
    result = cli("adapt", "--zarr", str(store), "--model", "fusionnet-wv3", "--out", str(tmp_path / "t.safetensors"))
    assert "metadata (zarr.json) is damaged" in _one_error_line(result)


def test_statistics_do_not_depend_on_the_order_the_blocks_finish(monkeypatch):
    import pansharp_dist.store as store

    scene = open_scene(*GDAL_HPF).rechunk(64)  # 90 blocks: float sums in another order differ in their last bits
    first = scene_stats(scene).to_dict()
    in_order = store.run_tasks
    monkeypatch.setattr(store, "run_tasks", lambda *args, **kwargs: reversed(list(in_order(*args, **kwargs))))
    assert scene_stats(scene).to_dict() == first  # as a cluster finishing them the other way round
