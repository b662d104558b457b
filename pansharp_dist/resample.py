"""Cubic convolution upsampling of MS to the PAN grid, the kernel every method and network shares.

Keys' cubic convolution (``a = -0.5``, GDAL's ``cubic`` resampling) with
pixel-is-area geometry: output centres fall between input centres. The
per-phase weights (:func:`cubic_phases`) are used by the NumPy upsampler here
(:func:`upsample`, for the classical methods) and by the networks' torch one
(:mod:`pansharp_dist.models.backbones`), so both give the same interpolation.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_CUBIC_A = -0.5  # Keys' cubic convolution, as GDAL's "cubic" resampling


@lru_cache(maxsize=16)
def cubic_phases(ratio: int) -> tuple[tuple[int, tuple[float, float, float, float]], ...]:
    """For each output phase ``p``: first MS offset and the 4 cubic weights.

    Output pixel ``r*k + p`` has its centre at MS coordinate ``k + (p + 0.5)/r - 0.5``.
    """
    a = _CUBIC_A

    def w(x: float) -> float:
        x = abs(x)
        if x < 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    phases = []
    for p in range(ratio):
        u = (p + 0.5) / ratio - 0.5
        i0 = math.floor(u)
        t = u - i0
        phases.append((i0 - 1, (w(t + 1), w(t), w(1 - t), w(2 - t))))
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
