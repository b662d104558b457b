"""stac.py: the PAN and MS assets of an input item (Maxar's keys too), and the item of an output COG."""

from __future__ import annotations

import datetime as dt
import shutil

import pystac
import pystac.validation
import pytest
import rasterio
from conftest import REPO
from rasterio.warp import transform_bounds

from pansharp_dist.catalog import scene_request
from pansharp_dist.errors import InvalidParameterError
from pansharp_dist.pipeline import run
from pansharp_dist.stac import output_item, scene_assets, write_item

SAMPLE = REPO / "pansharp_dist" / "sample"


def _input_item(folder, keys=("pan_analytic", "ms_analytic")) -> str:
    taken = dt.datetime(2021, 6, 3, 3, 12, tzinfo=dt.UTC)
    item = pystac.Item("scene-1", geometry=None, bbox=None, datetime=taken, properties={})
    for key, name in zip(keys, ("pan.tif", "ms.tif")):
        shutil.copy(SAMPLE / name, folder / name)
        item.add_asset(key, pystac.Asset(str(folder / name), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
    path = folder / "item.json"
    item.save_object(dest_href=str(path), include_self_link=False)
    return str(path)


def test_maxar_asset_keys_and_the_acquisition_time_are_taken_from_the_input_item(tmp_path):
    href = _input_item(tmp_path)
    assets = scene_assets(pystac.Item.from_file(href))
    assert assets.pan.endswith("pan.tif") and assets.ms.endswith("ms.tif")
    request = scene_request(None, None, href, [str(tmp_path)])
    assert request.acquired == dt.datetime(2021, 6, 3, 3, 12, tzinfo=dt.UTC) and request.name == "scene-1"


def test_assets_under_other_keys_are_told_apart_by_their_eo_bands(tmp_path):
    href = _input_item(tmp_path, keys=("P001", "M001"))
    item = pystac.Item.from_file(href)
    item.assets["P001"].extra_fields["eo:bands"] = [{"name": "PAN", "common_name": "pan"}]
    item.assets["M001"].extra_fields["eo:bands"] = [{"name": n, "common_name": n} for n in ("blue", "green", "red")]
    assets = scene_assets(item)
    assert assets.pan.endswith("pan.tif") and assets.ms.endswith("ms.tif")
    del item.assets["P001"].extra_fields["eo:bands"]
    with pytest.raises(InvalidParameterError, match="needs a PAN and an MS asset"):
        scene_assets(item)


def test_the_output_item_has_the_acquisition_time_band_names_and_processing_fields(tmp_path):
    cog = tmp_path / "out.tif"
    run(SAMPLE / "pan.tif", SAMPLE / "ms.tif", cog, method="gsa", sensor="qb", scheduler="threads")
    taken = dt.datetime(2021, 6, 3, 3, 12, tzinfo=dt.UTC)
    item = output_item(cog, item_id="out", sources=["/in/item.json"], method="gsa", adaptation=None, datetime=taken)
    path = write_item(item, tmp_path / "out.json")
    back = pystac.Item.from_file(str(path))
    assert back.datetime == taken  # when the scene was taken, not when it was processed
    assert [b["name"] for b in back.assets["hrms"].extra_fields["eo:bands"]] == ["blue", "green", "red", "nir"]
    assert back.properties["processing:software"]["pansharp-dist"] and back.properties["processing:level"] == "L2"
    assert [b["common_name"] for b in back.assets["hrms"].extra_fields["eo:bands"]] == ["blue", "green", "red", "nir"]
    with rasterio.open(cog) as src:
        assert back.properties["proj:shape"] == [src.height, src.width]
        assert back.properties["proj:transform"] == list(src.transform)[:6]
        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    assert back.bbox == list(bounds) and back.geometry["coordinates"][0][0] == [bounds[0], bounds[1]]
    assert [link.href for link in back.links if link.rel == "derived_from"] == ["/in/item.json"]
    core = back.to_dict()
    core["stac_extensions"] = []  # the extensions' schemas are fetched from their URLs, out of reach offline
    pystac.validation.validate_dict(core)  # the core item schema pystac ships
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.tif"]  # written whole, no temporary left


def test_an_item_of_a_float_output_is_json_that_pystac_reads(tmp_path):
    from conftest import GDAL_HPF

    cog = tmp_path / "float.tif"
    run(*GDAL_HPF, cog, method="brovey", scheduler="threads")  # float32: nodata NaN
    path = write_item(output_item(cog, item_id="f", sources=[], method="brovey", adaptation=None), tmp_path / "f.json")
    assert pystac.Item.from_file(str(path)).assets["hrms"].extra_fields["raster:bands"][0]["nodata"] is None
