"""STAC in and out: the PAN and MS hrefs of an input item, and the item describing a pansharpened COG.

An input item names its PAN and MS assets by key (``pan``/``ms``, any case,
Maxar's ``pan-analytic``/``ms-analytic``), by role (``pan``/``panchromatic``,
``ms``/``multispectral``), or by their ``eo:bands``: one band of common name
``pan`` is the PAN, several bands none of which is ``pan`` the MS.
The output item has the COG (and quicklook) as assets, ``derived_from`` links
to the input item(s), and the projection, raster and processing extension fields.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pystac
import rasterio
import rasterio.errors
from pystac.extensions.eo import Band as EOBand
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.warp import transform_bounds

from .errors import InvalidParameterError

PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
_PAN_NAMES = {"pan", "panchromatic", "pan_analytic", "pan-analytic"}  # the last two: Maxar's asset keys
_MS_NAMES = {"ms", "multispectral", "mul", "ms_analytic", "ms-analytic"}


@dataclass(frozen=True)
class SceneAssets:
    """The hrefs (absolute) of an input item's PAN and MS assets, and the item's identity."""

    item_id: str
    pan: str
    ms: str
    updated: str | None
    self_href: str | None
    sensor: str | None = None
    acquired: dt.datetime | None = None


def scene_assets(item: pystac.Item) -> SceneAssets:
    """Find the PAN and MS assets of ``item``.

    Raises:
        InvalidParameterError: the item has no recognisable PAN or MS asset.
    """
    pan = ms = None
    for key, asset in item.assets.items():
        names = {key.lower(), *(r.lower() for r in asset.roles or []), *_band_kind(asset)}
        if names & _PAN_NAMES and pan is None:
            pan = asset.get_absolute_href()
        elif names & _MS_NAMES and ms is None:
            ms = asset.get_absolute_href()
    if pan is None or ms is None:
        raise InvalidParameterError(
            f"STAC item {item.id} needs a PAN and an MS asset (keys or roles 'pan' and 'ms', or eo:bands); it has "
            f"{', '.join(item.assets) or 'no assets'}"
        )
    updated = item.properties.get("updated") or item.properties.get("datetime")
    acquired = item.datetime or item.common_metadata.start_datetime
    return SceneAssets(
        item.id, pan, ms, updated, item.get_self_href(), item.properties.get("pansharp:sensor"), acquired
    )


def _band_kind(asset: pystac.Asset) -> set[str]:
    """``{"pan"}`` for an asset whose ``eo:bands`` are one band of common name ``pan``, ``{"ms"}`` for several
    bands none of which is, else nothing."""
    bands = asset.extra_fields.get("eo:bands") or []
    common = [b.get("common_name") for b in bands if isinstance(b, dict)]
    if common == ["pan"]:
        return {"pan"}
    return {"ms"} if len(common) > 1 and "pan" not in common else set()


def acquisition_time(href: str | Path) -> dt.datetime | None:
    """When the image at ``href`` was taken, from its TIFF ``DateTime`` tag (UTC assumed), if it has one."""
    try:
        with rasterio.open(href) as src:
            text = src.tags().get("TIFFTAG_DATETIME")
        return dt.datetime.strptime(text, "%Y:%m:%d %H:%M:%S").replace(tzinfo=dt.UTC) if text else None
    except (rasterio.errors.RasterioIOError, ValueError):
        return None


COMMON_NAMES = {
    **{name: name for name in ("coastal", "blue", "green", "yellow", "red", "rededge", "nir", "pan")},
    "nir1": "nir",
    "nir2": "nir09",
    "swir1": "swir16",
    "swir2": "swir22",
}
"""STAC ``eo:common_name`` of the sensor registry's band names (WorldView's NIR2 at 860-1040 nm is ``nir09``)."""


def output_item(
    cog: str | Path,
    *,
    item_id: str,
    sources: list[str],
    method: str,
    adaptation: str | None,
    software_version: str | None = None,
    quicklook: str | Path | None = None,
    datetime: dt.datetime | None = None,
    properties: dict | None = None,
) -> pystac.Item:
    """The STAC item of a pansharpened COG (projection, raster and processing fields; ``derived_from`` links).

    ``sources`` are the hrefs of the input items (or of the input files when the run did not start from STAC);
    ``software_version`` defaults to this package's.
    """
    from . import __version__

    cog = Path(cog)
    with rasterio.open(cog) as src:
        crs, transform, shape = src.crs, src.transform, (src.height, src.width)
        dtype, nodata, bounds, descriptions = src.dtypes[0], src.nodata, src.bounds, src.descriptions
        radiometry = list(zip(src.scales, src.offsets))
    lon_lat = transform_bounds(crs, "EPSG:4326", *bounds) if crs is not None else tuple(bounds)
    west, south, east, north = lon_lat
    geometry = {
        "type": "Polygon",
        "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
    }
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=list(lon_lat),
        datetime=datetime or dt.datetime.now(dt.UTC),
        properties={
            "processing:software": {"pansharp-dist": software_version or __version__},
            "processing:lineage": f"pansharpened with {method}" + (f", adaptation {adaptation}" if adaptation else ""),
            "processing:level": "L2",
            **(properties or {}),
        },
    )
    item.stac_extensions.append(PROCESSING_SCHEMA)
    asset = pystac.Asset(
        href=str(cog.resolve()), media_type=pystac.MediaType.COG, roles=["data"], title=f"pansharpened ({method})"
    )
    item.add_asset("hrms", asset)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    if crs is not None:
        proj.code = crs.to_string()
    proj.shape = list(shape)
    proj.transform = list(transform)[:6]
    if any(descriptions):
        EOExtension.ext(asset, add_if_missing=True).bands = [
            EOBand.create(name=name, common_name=COMMON_NAMES.get(name)) for name in descriptions
        ]
    raster = RasterExtension.ext(asset, add_if_missing=True)
    raster.bands = [
        RasterBand.create(
            nodata=nodata,
            data_type=DataType(dtype),
            scale=scale if (scale, offset) != (1, 0) else None,
            offset=offset if (scale, offset) != (1, 0) else None,
        )
        for scale, offset in radiometry
    ]
    if quicklook is not None:
        item.add_asset(
            "thumbnail",
            pystac.Asset(href=str(Path(quicklook).resolve()), media_type=pystac.MediaType.PNG, roles=["thumbnail"]),
        )
    for source in sources:
        item.add_link(pystac.Link("derived_from", source))
    return item


def write_item(item: pystac.Item, path: str | Path) -> Path:
    """Save ``item`` as JSON at ``path`` (:func:`~pansharp_dist.outputs.atomic_write`: whole or not at all)."""
    from .outputs import atomic_write

    path = Path(path)
    item.set_self_href(str(path.resolve()))
    # pystac's own serialiser: a float output's NaN nodata becomes null (json.dumps would write NaN, not JSON)
    text = pystac.StacIO.default().json_dumps(item.to_dict(include_self_link=True))
    return atomic_write(path, text.encode() if isinstance(text, str) else text)
