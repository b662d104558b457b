"""The COG writer against GDAL's COG driver, on real pansharpened scenes.

``write_cog`` encodes the output store's tiles on the workers and assembles the
file itself; GDAL's COG driver converting the same store is the reference:
same pixels at full resolution, same georeferencing, nodata, overview sizes,
compression and predictor, a valid COG that GDAL reports with ``LAYOUT=COG``.
Overview pixels are the rounded mean of the valid full-resolution pixels under
them (checked against that definition exactly). GDAL's are sometimes averaged
from its previous, rounded, overview, so they may differ by one count, and
below a level of odd size it resamples by a ratio just over 2, so only sizes
are compared there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import rioxarray  # noqa: F401  (the .rio accessor)
import zarr
from conftest import DATA, GDAL_HPF
from rasterio.enums import MaskFlags
from test_pipeline import cog_valid

from benchmarks.mosaic import mosaic_pair
from pansharp_dist.errors import StoreError
from pansharp_dist.export import cog_options, write_cog
from pansharp_dist.fusion import pansharpen
from pansharp_dist.pipeline import run
from pansharp_dist.scene import open_scene
from pansharp_dist.store import write_output

SAMPLE = Path(__file__).resolve().parents[1] / "pansharp_dist" / "sample"
SPACENET_NODATA = (DATA / "spacenet6_solaris" / "pan2.tif", DATA / "spacenet6_solaris" / "ms2.tif")


def _output_store(pan: Path, ms: Path, folder: Path, client) -> Path:
    """The output Zarr store of Brovey on ``pan`` + ``ms``."""
    store = folder / "hrms.zarr"
    write_output(pansharpen(open_scene(pan, ms), "brovey", tile=256), store, client)
    return store


def _gdal_cog(store: Path, out: Path) -> Path:
    with rasterio.open(f'ZARR:"{store}":/hrms') as src:
        size = src.count * src.width * src.height * np.dtype(src.dtypes[0]).itemsize
        rasterio.shutil.copy(src, out, driver="COG", **cog_options(src.dtypes[0], size))
    return out


def _levels(path: Path) -> list[np.ndarray]:
    with rasterio.open(path) as src:
        count = len(src.overviews(1))
    levels = []
    for level in range(-1, count):
        with rasterio.open(path, **({} if level < 0 else {"overview_level": level})) as src:
            levels.append(src.read())
    return levels


@pytest.mark.parametrize(
    "scene",
    [
        pytest.param("mosaic", id="2052px-mosaic-two-pyramid-passes", marks=pytest.mark.slow),
        pytest.param(SPACENET_NODATA, id="spacenet6-with-nodata"),
    ],
)
def test_cog_equals_gdal_cog_driver_at_every_level(scene, tmp_path, client):
    pan, ms = mosaic_pair(SAMPLE / "pan.tif", SAMPLE / "ms.tif", 2052, tmp_path) if scene == "mosaic" else scene
    store = _output_store(pan, ms, tmp_path, client)
    ours = write_cog(store, tmp_path / "ours.tif", client=client)
    gdal = _gdal_cog(store, tmp_path / "gdal.tif")
    assert cog_valid(ours)
    with rasterio.open(ours) as a, rasterio.open(gdal) as b:
        assert (a.crs, a.dtypes, a.block_shapes) == (b.crs, b.dtypes, b.block_shapes)
        assert a.transform.almost_equals(b.transform, 1e-12)  # GDAL's from the stored coordinates, ours exact
        assert np.array_equal([a.nodata], [b.nodata], equal_nan=True)  # a float output's nodata is NaN
        assert a.overviews(1) == b.overviews(1)
        assert a.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert a.compression == b.compression
        assert a.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == b.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"]
    if scene == "mosaic":
        assert len(_levels(ours)) == 4  # 2052, 1026, 513 and 256 pixels: levels from two passes
    ours, gdal = _levels(ours), _levels(gdal)
    np.testing.assert_array_equal(ours[0], gdal[0])
    for level in range(1, len(ours)):
        assert ours[level].shape == gdal[level].shape
        np.testing.assert_array_equal(ours[level], _footprint_mean(ours[0], 2**level), err_msg=f"level {level}")
        if all(side % 2 == 0 for above in ours[:level] for side in above.shape[1:]):
            assert np.nanmax(np.abs(ours[level].astype(np.float64) - gdal[level].astype(np.float64))) <= 1
    if scene != "mosaic":
        assert _nodata(ours[0]).all(axis=0).any(), "the scene has nodata pixels"


def _nodata(a: np.ndarray) -> np.ndarray:
    """Where ``a`` holds the output's nodata: 0 in integer outputs, NaN in float ones."""
    return np.isnan(a) if a.dtype.kind == "f" else a == 0


def _footprint_mean(full: np.ndarray, factor: int) -> np.ndarray:
    """Each whole ``factor`` x ``factor`` cell's mean over its valid pixels (integers rounded half up), nodata
    (:func:`_nodata`) if none."""
    bands, height, width = full.shape
    rows, cols = height // factor, width // factor
    cells = full[:, : rows * factor, : cols * factor].astype(np.float64).reshape(bands, rows, factor, cols, factor)
    valid = ~_nodata(cells)
    sums, counts = np.where(valid, cells, 0).sum(axis=(2, 4)), valid.sum(axis=(2, 4))
    with np.errstate(invalid="ignore"):
        mean = sums / counts
    if full.dtype.kind in "iu":
        mean = np.floor(mean + 0.5)
    return np.where(counts > 0, mean, 0 if full.dtype.kind in "iu" else np.nan).astype(full.dtype)


@pytest.fixture(scope="module")
def brovey_hpf(tmp_path_factory, client) -> Path:
    """A Brovey COG of gdal_hpf_wv3 (float32), converted by the tests to every dtype."""
    cog = tmp_path_factory.mktemp("brovey") / "hrms.tif"
    run(*GDAL_HPF, cog, method="brovey", tile=128, client=client)
    return cog


@pytest.mark.parametrize(
    "dtype, compress, predictor",
    [
        ("float32", "ZSTD", "3"),
        ("float64", "DEFLATE", "3"),
        ("int16", "DEFLATE", "2"),
        ("uint8", "NONE", None),
        ("uint16", "zstd:1", "2"),
        ("float32", "DEFLATE:9", "3"),
    ],
)
def test_every_dtype_and_compression_reads_back_exactly(dtype, compress, predictor, brovey_hpf, tmp_path, client):
    hrms = rioxarray.open_rasterio(brovey_hpf, chunks={"x": 256, "y": 256})
    scaled = (hrms / 7.3 if dtype.startswith("float") else hrms // 8).astype(dtype)
    scaled.attrs = {"_FillValue": 0}
    out = write_cog(scaled.rio.write_crs(hrms.rio.crs), tmp_path / f"{dtype}.tif", client=client, compress=compress)
    assert cog_valid(out)
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(), scaled.values)
        assert src.dtypes[0] == dtype and src.transform.almost_equals(hrms.rio.transform()) and src.crs == hrms.rio.crs
        assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == predictor


def test_bigtiff_on_request_and_nothing_left_when_encoding_fails(tmp_path, client):
    store = _output_store(*GDAL_HPF, tmp_path, client)
    big = write_cog(store, tmp_path / "big.tif", client=client, bigtiff=True)
    assert big.read_bytes()[:4] == b"II+\x00" and cog_valid(big)
    classic = write_cog(store, tmp_path / "classic.tif", client=client)
    assert classic.read_bytes()[:4] == b"II*\x00"
    np.testing.assert_array_equal(_levels(big)[1], _levels(classic)[1])

    chunk = next(p for p in (store / "hrms").rglob("*") if p.is_file() and not p.name.startswith("."))
    intact = chunk.read_bytes()
    before = sorted(p.name for p in tmp_path.iterdir())
    # damaged chunks: cut short, one bit flipped (which decompressed, to other pixels, before checksums), emptied
    # and deleted (which read as nodata before all-fill chunks were stored)
    for damaged in (intact[:10], intact[:1000] + bytes([intact[1000] ^ 0x10]) + intact[1001:], b"", None):
        if damaged is None:
            chunk.unlink()
        else:
            chunk.write_bytes(damaged)
        with pytest.raises(StoreError, match="is damaged .*rerun without `resume`"):
            write_cog(store, tmp_path / "broken.tif", client=client)
        assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_cog_names_its_bands_and_says_what_made_it(tmp_path):
    out = tmp_path / "gsa.tif"
    run(SAMPLE / "pan.tif", SAMPLE / "ms.tif", out, method="gsa", sensor="qb", scheduler="threads")
    with rasterio.open(out) as src:
        assert src.descriptions == ("blue", "green", "red", "nir")  # QuickBird's bands, in the product's order
        tags = src.tags()
        assert tags["PANSHARP_METHOD"] == "gsa" and tags["PANSHARP_ADAPTATION"] == "none"
        assert tags["PANSHARP_SOFTWARE"].startswith("pansharp-dist ") and src.nodata == 0
    assert cog_valid(out)
    unknown = tmp_path / "unknown.tif"
    run(SAMPLE / "pan.tif", SAMPLE / "ms.tif", unknown, method="gsa", scheduler="threads")
    with rasterio.open(unknown) as src:
        assert src.descriptions == ("band 1", "band 2", "band 3", "band 4")  # no sensor: numbered, not guessed


def test_a_cog_goes_to_an_fsspec_url_whole_and_reads_back_the_same(tmp_path):
    import fsspec

    from pansharp_dist.errors import OutputExistsError

    hrms = pansharpen(open_scene(SAMPLE / "pan.tif", SAMPLE / "ms.tif", sensor="qb"), "brovey", tile=256)
    local = write_cog(hrms, tmp_path / "local.tif")
    url = "memory://pansharp-test/out.tif"
    assert write_cog(hrms, url) == url
    fs = fsspec.filesystem("memory")
    assert fs.cat_file("/pansharp-test/out.tif") == local.read_bytes()  # the same file, uploaded once complete
    with pytest.raises(OutputExistsError, match="memory://pansharp-test/out.tif already exists"):
        write_cog(hrms, url)
    fs.rm("/pansharp-test", recursive=True)


def test_a_higher_level_gives_a_smaller_file_of_the_same_pixels(tmp_path):
    store = _output_store(SAMPLE / "pan.tif", SAMPLE / "ms.tif", tmp_path, None)
    sizes, pixels = {}, []
    for level in ("zstd:1", "zstd:19", "none"):
        out = write_cog(store, tmp_path / f"{level.replace(':', '-')}.tif", compress=level)
        with rasterio.open(out) as src:
            pixels.append(src.read())
            assert src.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION") == ("ZSTD" if level != "none" else None)
        sizes[level] = out.stat().st_size
    np.testing.assert_array_equal(pixels[0], pixels[1])
    np.testing.assert_array_equal(pixels[0], pixels[2])
    assert sizes["zstd:19"] < sizes["zstd:1"] < sizes["none"]


def test_a_window_beyond_the_output_is_nodata_there_and_georeferenced_where_it_starts(tmp_path):
    from affine import Affine

    from pansharp_dist.errors import InvalidParameterError

    store = _output_store(SAMPLE / "pan.tif", SAMPLE / "ms.tif", tmp_path, None)
    with rasterio.open(write_cog(store, tmp_path / "own.tif")) as src:
        own, t = src.read(), src.transform
    wide = write_cog(store, tmp_path / "wide.tif", window=(-3, 2100, -2050, 900))  # two blocks of rows and columns
    assert cog_valid(wide)
    with rasterio.open(wide) as src:
        assert src.shape == (2103, 2950) and src.transform.almost_equals(t * Affine.translation(-2050, -3))
        pixels, nodata, overviews = src.read(), src.nodata, src.overviews(1)
        # GDAL's mask of every band, at full resolution and in an overview, is the nodata tag's
        assert all(flags == [MaskFlags.nodata] for flags in src.mask_flag_enums)
        np.testing.assert_array_equal(src.read_masks(), np.where(pixels != nodata, 255, 0))
        with rasterio.open(wide, overview_level=1) as ovr:
            np.testing.assert_array_equal(ovr.read_masks(), np.where(ovr.read() != nodata, 255, 0))
    np.testing.assert_array_equal(pixels[:, 3:803, 2050:2850], own)
    pixels[:, 3:803, 2050:2850] = nodata
    assert (pixels == nodata).all() and overviews == [2, 4, 8]
    part = write_cog(store, tmp_path / "part.tif", window=(100, 300, 200, 500))
    with rasterio.open(part) as src:
        np.testing.assert_array_equal(src.read(), own[:, 100:300, 200:500])
        assert src.transform.almost_equals(t * Affine.translation(200, 100))
    bare = zarr.open_group(tmp_path / "bare.zarr", mode="w", zarr_format=2)  # a store written by other means
    bare.create_array("hrms", shape=(2, 8, 8), dtype="uint8", fill_value=None)
    bare["hrms"].attrs["_ARRAY_DIMENSIONS"] = ["band", "y", "x"]
    with pytest.raises(InvalidParameterError, match="no nodata value to fill it with"):
        write_cog(tmp_path / "bare.zarr", tmp_path / "bare.tif", window=(0, 10, 0, 8))
    with pytest.raises(InvalidParameterError, match="is empty"):
        write_cog(store, tmp_path / "empty.tif", window=(5, 5, 0, 8))


def test_the_ms_radiometry_is_kept_as_each_bands_scale_and_offset(tmp_path):
    import shutil

    from pansharp_dist.stac import output_item

    ms = tmp_path / "ms.tif"
    shutil.copy(SAMPLE / "ms.tif", ms)
    scales, offsets = (0.01, 0.02, 0.03, 0.04), (-0.1, 0.0, 0.1, 0.2)
    with rasterio.open(ms, "r+") as dst:  # a product that declares its radiometry
        dst.scales, dst.offsets = scales, offsets
    out = tmp_path / "fused.tif"
    run(SAMPLE / "pan.tif", ms, out, method="gsa", scheduler="threads")
    with rasterio.open(out) as src:
        assert src.scales == scales and src.offsets == offsets
    bands = output_item(out, item_id="o", sources=[], method="gsa", adaptation=None).assets["hrms"]
    assert [(b["scale"], b["offset"]) for b in bands.extra_fields["raster:bands"]] == list(zip(scales, offsets))
    plain = tmp_path / "plain.tif"
    run(SAMPLE / "pan.tif", SAMPLE / "ms.tif", plain, method="gsa", scheduler="threads")
    with rasterio.open(plain) as src:
        assert src.scales == (1.0,) * 4 and src.offsets == (0.0,) * 4  # none declared, none written


def test_the_assembly_copies_each_run_of_a_part_whole_keeps_the_parts_and_refuses_a_short_part(tmp_path):
    from pansharp_dist.pyramid import _assemble

    rng = np.random.default_rng(0)
    parts = {name: rng.integers(0, 256, size, dtype=np.uint8).tobytes() for name, size in (("a", 5000), ("b", 300))}
    for name, data in parts.items():
        (tmp_path / name).write_bytes(data)
    runs = [(str(tmp_path / "b"), 10, 200), (str(tmp_path / "a"), 0, 4000), (str(tmp_path / "a"), 4100, 900)]
    size = _assemble(str(tmp_path / "cog.tif"), b"HEADER", runs)
    expected = b"HEADER" + parts["b"][10:210] + parts["a"][:4000] + parts["a"][4100:5000]
    assert (tmp_path / "cog.tif").read_bytes() == expected and size == len(expected)
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists()  # kept for a retried assembly or a resume
    (tmp_path / "c").write_bytes(parts["b"])
    with pytest.raises(OSError, match="ends at byte 300, before 400"):
        _assemble(str(tmp_path / "short.tif"), b"H", [(str(tmp_path / "c"), 100, 300)])
