"""Cubic convolution: MS upsampled to the PAN grid, and MS moved onto the PAN's own grid.

Keys' cubic convolution (``a = -0.5``, GDAL's ``cubic`` resampling) with
pixel-is-area geometry: output centres fall between input centres. The
per-phase weights (:func:`cubic_phases`) are used by the NumPy upsampler here
(:func:`upsample`, for the classical methods) and by the networks' torch one
(:mod:`pansharp_dist.models.backbones`), so both give the same interpolation.
:func:`position` uses the same kernel to move an MS raster whose grid is off
the PAN's by a fraction of a pixel (or whose pixel size is not exactly a
multiple of PAN's) onto the aligned grid, lazily, as GDAL positions the
spectral bands of a pansharpened VRT by their georeferencing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, partial

import dask.array as da
import numpy as np

_CUBIC_A = -0.5  # Keys' cubic convolution, as GDAL's "cubic" resampling


def _keys(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel at distances ``x`` (pixels)."""
    a, x = _CUBIC_A, np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


@lru_cache(maxsize=16)
def cubic_phases(ratio: int) -> tuple[tuple[int, tuple[float, float, float, float]], ...]:
    """For each output phase ``p``: first MS offset and the 4 cubic weights.

    Output pixel ``r*k + p`` has its centre at MS coordinate ``k + (p + 0.5)/r - 0.5``.
    """
    phases = []
    for p in range(ratio):
        u = (p + 0.5) / ratio - 0.5
        i0 = math.floor(u)
        t = u - i0
        w = _keys(np.array([t + 1, t, 1 - t, 2 - t]))
        phases.append((i0 - 1, (float(w[0]), float(w[1]), float(w[2]), float(w[3]))))
    return tuple(phases)


def _upsample_axis(x: np.ndarray, ratio: int, axis: int) -> np.ndarray:
    """Cubic upsampling along ``axis`` (``-2`` or ``-1``) by ``ratio``, edges replicated.

    Each phase's four terms are summed in order into a contiguous float32 array,
    then interleaved into the output: strided arithmetic along a moved axis was
    a third slower, and the sums are the same whatever the tile.
    """
    n, after = x.shape[axis], x.ndim + axis + 1
    pad = [(0, 0)] * x.ndim
    pad[axis] = (2, 2)
    xp = np.pad(x, pad, mode="edge")
    out = np.empty(x.shape[:after] + (ratio,) + x.shape[after:], np.float32)
    acc, term = np.empty(x.shape, np.float32), np.empty(x.shape, np.float32)
    for p, (first, weights) in enumerate(cubic_phases(ratio)):
        for m, weight in enumerate(weights):
            window = [slice(None)] * x.ndim
            window[axis] = slice(first + 2 + m, first + 2 + m + n)
            np.multiply(xp[tuple(window)], np.float32(weight), out=term if m else acc)
            if m:
                acc += term
        out[(slice(None),) * after + (p,)] = acc
    shape = list(x.shape)
    shape[axis] = n * ratio
    return out.reshape(shape)


def upsample(ms: np.ndarray, ratio: int) -> np.ndarray:
    """Upsample ``(..., h, w)`` float32 to ``(..., h*r, w*r)`` with cubic convolution.

    Pixel-is-area geometry (output centres fall between input centres, as GDAL's
    cubic resampling); edge samples are replicated. Each output pixel reads the
    4 x 4 nearest inputs, so a halo of ``2 * ratio`` PAN pixels makes it tile-exact.
    """
    return _upsample_axis(_upsample_axis(ms.astype(np.float32, copy=False), ratio, -2), ratio, -1)


CUBIC_HALO_MS = 2  # MS pixels of context :func:`upsample` needs on each side


@dataclass(frozen=True)
class AxisMap:
    """Where the pixels of a resampled axis lie in the source: pixel ``k``'s centre at source pixel coordinate
    ``start + step * k`` (source pixel centres at 0, 1, ...), for ``k`` in ``0 .. size - 1``."""

    start: float
    step: float
    size: int

    def taps(self, lo: int, hi: int, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For pixels ``lo .. hi - 1``: the source index of the 4 cubic taps ``(n, 4)`` (edges replicated:
        clipped to ``0 .. length - 1``), their weights ``(n, 4)`` and the nearest source pixel ``(n,)``."""
        at = self.start + self.step * np.arange(lo, hi)
        first = np.floor(at).astype(np.int64)
        offsets = np.arange(-1, 3)
        weights = _keys(at[:, None] - (first[:, None] + offsets)).astype(np.float32)
        index = np.clip(first[:, None] + offsets, 0, length - 1)
        return index, weights, np.clip(np.floor(at + 0.5).astype(np.int64), 0, length - 1)


def position(data: da.Array, rows: AxisMap, cols: AxisMap, nodata: float | None, chunk: int) -> da.Array:
    """``(bands, h, w)`` resampled by cubic convolution to ``(bands, rows.size, cols.size)`` where ``rows`` and
    ``cols`` say, lazily, in chunks of ``chunk`` pixels; the dtype is kept (integers rounded and clipped to
    their range). Nodata taps are left out of each sum (the weights of the others renormalised, the result
    kept within the valid taps' range, where the kernel's negative lobes would otherwise overshoot); a pixel
    whose nearest source pixel is nodata is nodata."""
    bands, height, width = data.shape
    dtype = np.dtype(data.dtype)
    edges = [[(lo, min(lo + chunk, axis.size)) for lo in range(0, axis.size, chunk)] for axis in (rows, cols)]
    blocks = []
    for y0, y1 in edges[0]:
        y_taps = rows.taps(y0, y1, height)
        row = []
        for x0, x1 in edges[1]:
            x_taps = cols.taps(x0, x1, width)
            (ya, yb), (xa, xb) = (
                (int(y_taps[0].min()), int(y_taps[0].max()) + 1),
                (
                    int(x_taps[0].min()),
                    int(x_taps[0].max()) + 1,
                ),
            )
            source = data[:, ya:yb, xa:xb].rechunk(-1)
            local = partial(_position_block, y_taps=_shifted(y_taps, ya), x_taps=_shifted(x_taps, xa), nodata=nodata)
            row.append(source.map_blocks(local, chunks=(bands, y1 - y0, x1 - x0), dtype=dtype))
        blocks.append(row)
    return da.block(blocks)


def _shifted(taps: tuple[np.ndarray, np.ndarray, np.ndarray], by: int):
    index, weights, nearest = taps
    return index - by, weights, nearest - by


def _position_block(block: np.ndarray, y_taps, x_taps, nodata: float | None) -> np.ndarray:
    """One chunk of :func:`position`: ``block`` holds every source pixel its taps read."""
    (y_index, y_weights, y_nearest), (x_index, x_weights, x_nearest) = y_taps, x_taps
    dtype = block.dtype
    work = np.float64 if dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize >= 4) else np.float32
    values = block.astype(work)
    valid = np.isfinite(values)
    if nodata is not None and not np.isnan(nodata):
        valid &= block != nodata
    mass = valid.astype(work)
    values = np.where(valid, values, work(0))

    def along(a: np.ndarray, reduce) -> np.ndarray:
        """``reduce`` over the 4 taps along rows, then along columns: ``reduce(terms)`` of each output pixel."""
        rows = reduce([(y_weights[:, m, None], a[:, y_index[:, m], :]) for m in range(4)])
        return reduce([(x_weights[None, None, :, m], rows[:, :, x_index[:, m]]) for m in range(4)])

    weighted = lambda terms: sum(w.astype(work) * a for w, a in terms)  # noqa: E731
    total, weight = along(values, weighted), along(mass, weighted)
    keep = valid[:, y_nearest][:, :, x_nearest]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / weight
    partial = along(mass, lambda terms: np.minimum.reduce([a for _, a in terms])) < 1  # a nodata tap among them
    if partial.any():
        low = along(np.where(valid, values, np.inf), lambda terms: np.minimum.reduce([a for _, a in terms]))
        high = along(np.where(valid, values, -np.inf), lambda terms: np.maximum.reduce([a for _, a in terms]))
        out = np.where(partial, np.clip(out, low, high), out)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = np.clip(np.floor(out + 0.5), info.min, info.max)
        if nodata is not None:  # a valid pixel never takes the nodata value
            out[keep & (out == nodata)] = nodata + 1 if nodata < info.max else nodata - 1
    fill = nodata if nodata is not None else (np.nan if dtype.kind == "f" else 0)
    return np.where(keep, out, fill).astype(dtype)
