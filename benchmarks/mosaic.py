"""Benchmark scenes cut or mosaicked from a real PAN + MS pair.

A mosaic repeats the pair with mirrored copies (every other copy flipped, so
that edges meet continuously) up to the requested PAN size; a crop keeps its
centre. Both are written as tiled GeoTIFFs with a real georeference. Pixels are
the source's real counts; no synthetic noise is added.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from pansharp_dist.scene import open_scene

BENCH_CRS = "EPSG:32633"  # UTM zone 33N
BENCH_ORIGIN = (500_000.0, 5_000_000.0)
BENCH_PAN_PIXEL = 0.5  # metres


def _mirror_index(length: int, period: int, start: int = 0) -> np.ndarray:
    i = np.arange(start, start + length)
    copy, pos = np.divmod(i, period)
    return np.where(copy % 2 == 1, period - 1 - pos, pos)


def mosaic_pair(pan: str | Path, ms: str | Path, size: int, folder: str | Path, strip: int = 2048) -> tuple[Path, Path]:
    """Write ``pan.tif`` (``size`` x ``size``) and ``ms.tif`` mosaicked from a real pair.

    Returns the two paths; existing files of the right size are reused.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scene = open_scene(pan, ms)
    src_pan, src_ms, r = scene.pan.values, scene.ms.values, scene.ratio
    if size % r:
        raise ValueError(f"size {size} must be a multiple of the ratio {r}")
    pan_path, ms_path = folder / f"pan_{size}.tif", folder / f"ms_{size}.tif"
    if _complete(pan_path, size) and _complete(ms_path, size // r):
        return pan_path, ms_path
    x0, y0 = BENCH_ORIGIN
    pan_t = Affine(BENCH_PAN_PIXEL, 0, x0, 0, -BENCH_PAN_PIXEL, y0)
    common = {"driver": "GTiff", "tiled": True, "blockxsize": 512, "blockysize": 512, "crs": BENCH_CRS}
    ph, pw = src_pan.shape
    _, mh, mw = src_ms.shape
    cols_pan = _mirror_index(size, pw)
    cols_ms = _mirror_index(size // r, mw)
    with rasterio.open(
        pan_path, "w", width=size, height=size, count=1, dtype=src_pan.dtype, transform=pan_t, **common
    ) as dst:
        for row in range(0, size, strip):
            n = min(strip, size - row)
            dst.write(src_pan[np.ix_(_mirror_index(n, ph, row), cols_pan)][None], window=((row, row + n), (0, size)))
    ms_strip = strip // r
    with rasterio.open(
        ms_path,
        "w",
        width=size // r,
        height=size // r,
        count=src_ms.shape[0],
        dtype=src_ms.dtype,
        transform=pan_t @ Affine.scale(r),
        interleave="pixel",
        **common,
    ) as dst:
        for row in range(0, size // r, ms_strip):
            n = min(ms_strip, size // r - row)
            block = src_ms[:, _mirror_index(n, mh, row)][:, :, cols_ms]
            dst.write(block, window=((row, row + n), (0, size // r)))
    return pan_path, ms_path


def crop_pair(pan: str | Path, ms: str | Path, size: int, folder: str | Path) -> tuple[Path, Path]:
    """Write ``pan_crop_{size}.tif`` and ``ms_crop_{size}.tif``: the central ``size`` x ``size`` PAN pixels of a
    real pair (the start rounded down to a whole MS pixel) and the MS under them.

    Returns the two paths; existing files of the right size are reused.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scene = open_scene(pan, ms)
    r = scene.ratio
    if size % r or size > min(scene.shape):
        raise ValueError(f"size {size} must be a multiple of the ratio {r} and fit the scene {scene.shape}")
    pan_path, ms_path = folder / f"pan_crop_{size}.tif", folder / f"ms_crop_{size}.tif"
    if _complete(pan_path, size) and _complete(ms_path, size // r):
        return pan_path, ms_path
    y0, x0 = ((n - size) // 2 // r * r for n in scene.shape)
    x, y = BENCH_ORIGIN
    pan_t = Affine(BENCH_PAN_PIXEL, 0, x, 0, -BENCH_PAN_PIXEL, y)
    common = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256, "crs": BENCH_CRS}
    pan_pixels = scene.pan.values[y0 : y0 + size, x0 : x0 + size]
    ms_pixels = scene.ms.values[:, y0 // r : (y0 + size) // r, x0 // r : (x0 + size) // r]
    with rasterio.open(
        pan_path, "w", width=size, height=size, count=1, dtype=pan_pixels.dtype, transform=pan_t, **common
    ) as dst:
        dst.write(pan_pixels[None])
    with rasterio.open(
        ms_path,
        "w",
        width=size // r,
        height=size // r,
        count=ms_pixels.shape[0],
        dtype=ms_pixels.dtype,
        transform=pan_t @ Affine.scale(r),
        interleave="pixel",
        **common,
    ) as dst:
        dst.write(ms_pixels)
    return pan_path, ms_path


def _complete(path: Path, size: int) -> bool:
    if not path.exists():
        return False
    try:
        with rasterio.open(path) as src:
            return src.width == size and src.height == size
    except rasterio.errors.RasterioIOError:
        return False
