"""Exports: the cloud-optimized GeoTIFF and the PNG quicklook.

The COG is encoded by the Dask workers, block by block, into a parts store, and
assembled into one file by a single task (:mod:`pansharp_dist.pyramid`): a run
encodes each fused block's tiles in the task that fused it where the blocks line
up with the COG's, and :func:`write_cog` encodes a lazy output the same way, or
reads an output Zarr store. Tiles are 512 x 512, ZSTD or DEFLATE with a
predictor, as GDAL's COG driver writes them; overviews are averages; the
georeferencing tags are the ones GDAL writes. The file is written under a
temporary name beside the target and renamed only when complete.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
import xarray as xr
from rasterio.enums import Resampling

from .errors import InvalidParameterError, OutputExistsError, OutputNotWritableError
from .outputs import check_output, output_lock, remove_leftovers
from .pyramid import assemble, encode_output, encode_stored, is_parts_store, open_parts
from .tiff import COMPRESSION_CODES, LEVELS, TILE, codec_and_level, predictor
from .tiling import Window

COMPRESSIONS = tuple(COMPRESSION_CODES)


def check_compress(compress: str) -> str:
    """``compress`` as ``CODEC:LEVEL`` (``ZSTD:9``, ``DEFLATE:6``) or ``NONE``: a codec of
    :data:`COMPRESSIONS`, any case, with a level in its range (:data:`~.tiff.LEVELS`) or its default.

    Raises:
        InvalidParameterError: an unknown codec or a level out of range.
    """
    try:
        codec, level = codec_and_level(compress)
    except ValueError as exc:
        ranges = ", ".join(f"{codec}:{low}..{high}" for codec, (low, high, _) in LEVELS.items())
        raise InvalidParameterError(
            f"`compress` is CODEC or CODEC:LEVEL ({ranges}) or NONE, got {compress!r}: {exc}"
        ) from None
    return codec if level is None else f"{codec}:{level}"


def cog_options(dtype: str, size_bytes: int, compress: str = "ZSTD") -> dict[str, str]:
    """GDAL COG driver creation options equal to what :func:`write_cog` writes, for an output of ``dtype``
    and uncompressed size in bytes (the reference in benchmarks and tests)."""
    codec, level = codec_and_level(check_compress(compress))
    options = {
        "BLOCKSIZE": str(TILE),
        "COMPRESS": codec,
        "OVERVIEW_RESAMPLING": "AVERAGE",
        "BIGTIFF": "YES" if size_bytes > 3_500_000_000 else "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }
    if level is not None:
        options["PREDICTOR"] = str(predictor(np.dtype(dtype), codec))
        options["LEVEL"] = str(level)
    return options


def write_cog(
    source: xr.DataArray | str | Path,
    out: str | Path,
    *,
    client=None,
    overwrite: bool = False,
    progress=None,
    compress: str = "ZSTD",
    bigtiff: bool = False,
    window: Window | None = None,
) -> Path | str:
    """Write a COG at ``out`` from a lazy ``(band, y, x)`` DataArray, an output Zarr store or a run's parts
    store (:func:`~pansharp_dist.pyramid.encode_output`, made for this ``compress`` and ``window``).

    ``window`` is the COG's grid as a window ``(row0, row1, col0, col1)`` of the source's, in its pixels, as
    :meth:`Scene.output_window <pansharp_dist.scene.Scene.output_window>` gives it for an extent: it may reach
    beyond the source, whose nodata fills the COG there (default: the source's own grid).

    ``out`` is a local path, or an fsspec URL (``s3://``, ``gs://``, ``memory://``...): the COG is then
    written to a temporary local folder and uploaded whole, once complete (returned as the URL).

    A DataArray (from :func:`~pansharp_dist.pansharpen`) is computed by the workers, each block's tiles
    encoded in the task that computes it where its blocks line up with the COG's (else through a temporary
    Zarr store beside ``out``). CRS, transform and nodata come from the source. ``client`` is a
    ``distributed.Client`` (``None``: the current one, else threads); ``progress`` is ``callback(done,
    total)`` over the tasks of each step in turn (encoding, then the overviews and assembly). The file is
    BigTIFF when it needs 64-bit offsets, or always with ``bigtiff``. It appears at ``out`` only once
    complete; a failure leaves nothing there.

    Raises:
        InvalidParameterError: a bad codec or window, or a parts store made for another one.
        StoreError: a damaged output store, or a parts store that lacks blocks.
    """
    if _is_url(out):
        return _write_remote_cog(source, str(out), client, overwrite, progress, compress, bigtiff, window)
    out = check_output(out, overwrite)
    compress = check_compress(compress)
    with output_lock(out):
        remove_leftovers(out, LEFTOVERS)
        if isinstance(source, (str, Path)) and is_parts_store(source):
            _check_parts(Path(source), compress, window)
            return _assembled(Path(source), out, client, progress, bigtiff)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.encode-", dir=out.parent) as tmp:
            parts = Path(tmp) / "parts.zarr"
            if isinstance(source, xr.DataArray):  # encoded where it is computed, or written to a store first
                store = Path(tmp) / "hrms.zarr"
                encode_output(source, store, compress=compress, window=window, client=client, progress=progress)
            else:
                store = Path(source)
            if is_parts_store(store):
                parts = store
            else:
                encode_stored(store, parts, compress=compress, window=window, client=client, progress=progress)
            return _assembled(parts, out, client, progress, bigtiff)


def _check_parts(parts: Path, compress: str, window: Window | None) -> None:
    """Refuse a parts store encoded with another codec or for another window than asked for."""
    layout, encoded, _ = open_parts(parts)
    if check_compress(encoded) != compress or (window is not None and tuple(window) != layout.window):
        raise InvalidParameterError(
            f"{parts} holds COG tiles encoded as {encoded} for the window {layout.window}, not as {compress} for "
            f"{window or 'the whole output'}; ask for the same, or encode the output again"
        )


def _assembled(parts: Path, out: Path, client, progress, bigtiff: bool) -> Path:
    """The COG of the parts store ``parts`` at ``out``, written under a temporary name and renamed."""
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        assemble(parts, tmp, client=client, progress=progress, bigtiff=bigtiff)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _is_url(out: str | Path) -> bool:
    """Whether ``out`` names a file through fsspec (a scheme other than ``file://``) rather than a local path."""
    scheme, sep, _ = str(out).partition("://")
    return bool(sep) and scheme not in ("", "file")


def _write_remote_cog(
    source, url: str, client, overwrite: bool, progress, compress: str, bigtiff: bool, window: Window | None
) -> str:
    """The COG written locally, then uploaded to ``url`` in one piece."""
    import fsspec

    compress = check_compress(compress)
    try:
        fs, target = fsspec.core.url_to_fs(url)
        exists = fs.exists(target)
    except (ImportError, ValueError) as exc:
        raise InvalidParameterError(f"cannot write to {url}: {exc}", "out") from None
    if exists and not overwrite:
        raise OutputExistsError(f"{url} already exists; pass `overwrite=True` to replace it")
    with tempfile.TemporaryDirectory(prefix="pansharp-cog-") as local:
        path = Path(local) / (Path(target).name or "out.tif")
        write_cog(source, path, client=client, progress=progress, compress=compress, bigtiff=bigtiff, window=window)
        try:
            fs.put_file(str(path), target)
        except OSError as exc:
            raise OutputNotWritableError(f"cannot upload the COG to {url} ({exc}); nothing was written there") from None
    return url


LEFTOVERS = ("partial", "encode", "parts")
"""What a killed COG writer leaves beside its output (``.<name>.partial-*``, ``.<name>.encode-*``, and
``.<name>.parts-*`` from versions that encoded there); the next writer of the same output removes them."""


def write_quicklook(
    cog: str | Path, png: str | Path, rgb: tuple[int, int, int] | None = None, max_size: int = 1024
) -> Path:
    """An 8-bit RGB PNG of the COG, at most ``max_size`` pixels wide, read from its overviews.

    Each band is stretched between its 2nd and 98th percentile of valid pixels.
    ``rgb`` holds 0-based band indexes of red, green and blue (default: the usual ones for the band count,
    :func:`~pansharp_dist.sensors.default_rgb`).
    """
    png = Path(png)
    with rasterio.open(cog) as src:
        if rgb is None:
            from .sensors import default_rgb

            rgb = default_rgb(src.count)
        scale = max(1, -(-max(src.width, src.height) // max_size))
        shape = (3, max(1, src.height // scale), max(1, src.width // scale))
        data = src.read([i + 1 for i in rgb], out_shape=shape, resampling=Resampling.average).astype(np.float64)
        valid = np.all(np.isfinite(data) if src.nodata is None or np.isnan(src.nodata) else data != src.nodata, axis=0)
    out = np.zeros(shape, np.uint8)
    for k in range(3):
        band = data[k]
        if valid.any():
            lo, hi = np.percentile(band[valid], (2, 98))
            out[k] = np.clip((band - lo) / max(hi - lo, 1e-12) * 254 + 1, 1, 255).astype(np.uint8)
        out[k][~valid] = 0
    with warnings.catch_warnings():  # a PNG carries no georeferencing, by design
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(png, "w", driver="PNG", width=shape[2], height=shape[1], count=3, dtype="uint8") as dst:
            dst.write(out)
    return png
