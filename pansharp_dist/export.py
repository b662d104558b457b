"""Exports: the cloud-optimized GeoTIFF and the PNG quicklook.

The COG is one GDAL conversion (the COG driver) from the output Zarr store:
512 x 512 blocks, overviews by averaging, ZSTD (or DEFLATE) with a predictor,
BigTIFF when large, nodata, and the PAN grid's CRS and transform. It is written
under a temporary name beside the target and renamed only when complete.
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
import rasterio.shutil
from rasterio.enums import Resampling

import xarray as xr

from .errors import InvalidParameterError, OutputExistsError, OutputNotWritableError
from .store import write_output

COG_BLOCK = 512


def check_output(out: str | Path, overwrite: bool) -> Path:
    """Fail early, before any work, if ``out`` cannot be written.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
        OutputNotWritableError: the folder is missing or not writable.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    folder = out.parent
    if not folder.is_dir():
        raise OutputNotWritableError(f"output folder {folder} does not exist; create it first")
    probe = folder / f".{out.name}.probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot write to output folder {folder} ({exc.strerror or exc}); choose a writable --out"
        ) from None
    return out


COMPRESSIONS = ("ZSTD", "DEFLATE", "NONE")


def cog_options(dtype: str, size_bytes: int, compress: str = "ZSTD") -> dict[str, str]:
    """GDAL COG creation options for an output of ``dtype`` and uncompressed size in bytes.

    ``compress`` is ZSTD (default), DEFLATE (older readers) or NONE (fastest to write, largest).
    """
    compress = compress.upper()
    if compress not in COMPRESSIONS:
        raise InvalidParameterError(f"--compress must be one of {', '.join(COMPRESSIONS)}, got {compress!r}")
    options = {
        "BLOCKSIZE": str(COG_BLOCK),
        "COMPRESS": compress,
        "OVERVIEW_RESAMPLING": "AVERAGE",
        "BIGTIFF": "YES" if size_bytes > 3_500_000_000 else "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }
    if compress != "NONE":
        options["PREDICTOR"] = "3" if np.dtype(dtype).kind == "f" else "2"
    return options


def write_cog(
    source: xr.DataArray | str | Path,
    out: str | Path,
    *,
    client=None,
    overwrite: bool = False,
    progress=None,
    compress: str = "ZSTD",
) -> Path:
    """Write a COG at ``out`` from a lazy ``(band, y, x)`` DataArray or an output Zarr store.

    A DataArray (from :func:`~pansharp_dist.pansharpen`) is first computed by the
    workers into a temporary Zarr store beside ``out``; a store path is
    converted directly. CRS, transform and nodata (0) come from the store. The
    file appears at ``out`` only once complete; a failure leaves nothing there.
    """
    out = check_output(out, overwrite)
    cog_options("uint8", 0, compress)  # refuse an unknown compression before any work
    if isinstance(source, (str, Path)):
        return _zarr_to_cog(Path(source), out, compress)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.work-", dir=out.parent) as tmp:
        store = Path(tmp) / "hrms.zarr"
        write_output(source, store, client, progress)
        return _zarr_to_cog(store, out, compress)


def _zarr_to_cog(store: Path, out: Path, compress: str) -> Path:
    """The one GDAL COG conversion, from ``store``'s ``hrms`` array to ``out`` (atomic)."""
    source = f'ZARR:"{store.resolve()}":/hrms'
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
            with rasterio.open(source) as src:
                size = src.count * src.width * src.height * np.dtype(src.dtypes[0]).itemsize
                rasterio.shutil.copy(src, tmp, driver="COG", **cog_options(src.dtypes[0], size, compress))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def write_quicklook(cog: str | Path, png: str | Path, rgb: tuple[int, int, int], max_size: int = 1024) -> Path:
    """An 8-bit RGB PNG of the COG, at most ``max_size`` pixels wide, read from its overviews.

    Each band is stretched between its 2nd and 98th percentile of valid pixels.
    ``rgb`` holds 0-based band indexes of red, green and blue.
    """
    png = Path(png)
    with rasterio.open(cog) as src:
        scale = max(1, -(-max(src.width, src.height) // max_size))
        shape = (3, max(1, src.height // scale), max(1, src.width // scale))
        data = src.read([i + 1 for i in rgb], out_shape=shape, resampling=Resampling.average).astype(np.float64)
        valid = np.all(data != (src.nodata if src.nodata is not None else np.nan), axis=0)
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
