"""Large benchmark scenes mosaicked from a real PAN + MS pair.

The pair is repeated with mirrored copies (every other copy flipped, so that
edges meet continuously) up to the requested PAN size, and written as tiled
GeoTIFFs with a real georeference. Pixels are the source's real counts; no
synthetic noise is added.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from ..scene import open_scene

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
    with rasterio.open(pan_path, "w", width=size, height=size, count=1, dtype=src_pan.dtype,
                       transform=pan_t, **common) as dst:
        for row in range(0, size, strip):
            n = min(strip, size - row)
            dst.write(src_pan[np.ix_(_mirror_index(n, ph, row), cols_pan)][None], window=((row, row + n), (0, size)))
    ms_strip = strip // r
    with rasterio.open(ms_path, "w", width=size // r, height=size // r, count=src_ms.shape[0], dtype=src_ms.dtype,
                       transform=pan_t @ Affine.scale(r), interleave="pixel", **common) as dst:
        for row in range(0, size // r, ms_strip):
            n = min(ms_strip, size // r - row)
            block = src_ms[:, _mirror_index(n, mh, row)][:, :, cols_ms]
            dst.write(block, window=((row, row + n), (0, size // r)))
    return pan_path, ms_path


def _complete(path: Path, size: int) -> bool:
    if not path.exists():
        return False
    try:
        with rasterio.open(path) as src:
            return src.width == size and src.height == size
    except rasterio.errors.RasterioIOError:
        return False
