"""MTF-matched filters, the 23-tap interpolator and Wald-protocol degradation.

Conventions follow the MATLAB toolbox of Vivone et al. (``genMTF.m``,
``MTF.m``, ``interp23tap.m``) used by PanCollection and DLPan-Toolbox:

* the filter of a band is designed in the frequency domain: a 41 x 41 Gaussian
  whose value at the MS Nyquist frequency equals the band's MTF gain,
  normalised to a peak of 1, turned into an impulse response by frequency
  sampling and windowed by a rotated 1-D Kaiser window (beta 0.5);
* filtering is a 2-D correlation with replicated borders;
* decimation keeps pixel ``r // 2`` of every ``r`` x ``r`` cell (MATLAB's
  ``imresize(..., 1/r, 'nearest')``);
* ``interp23`` upsamples by powers of two with the 23-tap polynomial kernel,
  circular borders, placing MS sample ``k`` at PAN index ``r*k + r//2``
  (toolbox phase; the toolbox's loop runs ``ratio/2`` times, which equals
  ``log2(ratio)`` for the ratios 2 and 4 used here).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, cast

import numpy as np
from scipy.ndimage import correlate1d
from scipy.signal import fftconvolve

from ..errors import InvalidParameterError

if TYPE_CHECKING:
    from ..scene import Scene

MTF_TAPS = 41
_CDF23_HALF = (
    0.5,
    0.305334091185,
    0,
    -0.072698593239,
    0,
    0.021809577942,
    0,
    -0.005192756653,
    0,
    0.000807762146,
    0,
    -0.000060081482,
)


@lru_cache(maxsize=64)
def mtf_kernel(gain: float, ratio: int, taps: int = MTF_TAPS) -> np.ndarray:
    """``(taps, taps)`` float64 impulse response of the MTF-matched filter (genMTF)."""
    if not 0 < gain < 1:
        raise InvalidParameterError(f"MTF gain {gain} must lie strictly between 0 and 1")
    fcut = 1.0 / ratio
    alpha = np.sqrt(((taps - 1) * (fcut / 2)) ** 2 / (-2 * np.log(gain)))
    x = np.arange(taps) - (taps - 1) / 2
    gauss = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * alpha**2))
    gauss /= gauss.sum()
    gauss[gauss < np.finfo(float).eps * gauss.max()] = 0  # as MATLAB's fspecial
    desired = gauss / gauss.max()
    return _frequency_sampling(desired) * _rotated_window(np.kaiser(taps, 0.5))


def _frequency_sampling(hd: np.ndarray) -> np.ndarray:
    """Impulse response whose centred frequency response samples are ``hd`` (fsamp2)."""
    hd = np.rot90(np.fft.fftshift(np.rot90(hd, 2)), 2)
    h = np.fft.fftshift(np.fft.ifft2(hd))
    return np.real(np.rot90(h, 2))


def _rotated_window(w1: np.ndarray) -> np.ndarray:
    """2-D window from a 1-D one by rotation (Huang's method, as fwind1)."""
    n = w1.size
    t = np.linspace(-1, 1, n)
    radius = np.hypot(t[:, None], t[None, :])
    window = np.zeros((n, n))
    inside = radius < 1
    window[inside] = np.interp(radius[inside], t, w1)
    return window


def mtf_filter(image: np.ndarray, gains: tuple[float, ...] | float, ratio: int) -> np.ndarray:
    """Filter each band of ``image (B, H, W)`` (or one band ``(H, W)``) with its MTF filter.

    Returns float64 of the same shape (correlation, replicated borders).
    """
    img = np.asarray(image, dtype=np.float64)
    single = img.ndim == 2
    bands = img[None] if single else img
    # np.isscalar narrows only its True branch: here gains is the tuple
    gains = (gains,) * bands.shape[0] if np.isscalar(gains) else tuple(cast("tuple[float, ...]", gains))
    if len(gains) != bands.shape[0]:
        raise InvalidParameterError(f"{len(gains)} MTF gains for {bands.shape[0]} bands")
    out = np.stack([_correlate_nearest(b, mtf_kernel(float(g), ratio)) for b, g in zip(bands, gains)])
    return out[0] if single else out


def _correlate_nearest(band: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation with replicated borders, through the FFT (41 x 41 taps are slow directly)."""
    half = kernel.shape[0] // 2
    padded = np.pad(band, half, mode="edge")
    return fftconvolve(padded, kernel[::-1, ::-1], mode="valid")


def _interp23_taps() -> np.ndarray:
    half = 2 * np.asarray(_CDF23_HALF)
    return np.concatenate([half[:0:-1], half])


def interp23(image: np.ndarray, ratio: int) -> np.ndarray:
    """Upsample ``(..., h, w)`` by ``ratio`` (2 or 4, powers of two) with the 23-tap kernel (float64)."""
    steps = int(np.log2(ratio))
    if ratio < 2 or 2**steps != ratio:
        raise InvalidParameterError(f"interp23 needs a power-of-two ratio, got {ratio}")
    out = np.asarray(image, dtype=np.float64)
    taps = _interp23_taps()
    for step in range(steps):
        h, w = out.shape[-2:]
        up = np.zeros(out.shape[:-2] + (2 * h, 2 * w))
        offset = 1 if step == 0 else 0
        up[..., offset::2, offset::2] = out
        up = correlate1d(up, taps, axis=-2, mode="wrap")
        out = correlate1d(up, taps, axis=-1, mode="wrap")
    return out


def decimate(image, ratio: int):
    """Keep pixel ``ratio // 2`` of each ``ratio`` x ``ratio`` cell (``imresize`` nearest); numpy or dask."""
    return image[..., ratio // 2 :: ratio, ratio // 2 :: ratio]


def degrade_arrays(
    pan: np.ndarray, ms: np.ndarray, ratio: int, ms_gains: tuple[float, ...], pan_gain: float
) -> tuple[np.ndarray, np.ndarray]:
    """Wald protocol on arrays: the reduced-resolution pair whose ground truth is ``ms``.

    Args:
        pan: ``(H, W)`` PAN; ms: ``(B, H/r, W/r)`` MS.

    Returns:
        ``(pan_lr (H/r, W/r), ms_lr (B, H/r², W/r²))`` float64: each image MTF-filtered
        with its sensor gains and decimated by the ratio.
    """
    pan_lr = decimate(mtf_filter(pan, pan_gain, ratio), ratio)
    ms_lr = decimate(mtf_filter(ms, ms_gains, ratio), ratio)
    return pan_lr, ms_lr


def _lazy_filter(x, gains, ratio: int):
    """:func:`mtf_filter` on a dask array: blockwise with a halo, or whole when it is one chunk."""
    import dask.array as da

    if x.numblocks[-2:] == (1, 1):
        return x.map_blocks(mtf_filter, dtype=np.float64, gains=gains, ratio=ratio)
    half = MTF_TAPS // 2
    depth = {x.ndim - 2: half, x.ndim - 1: half} | ({0: 0} if x.ndim == 3 else {})
    return da.map_overlap(mtf_filter, x, depth=depth, boundary="nearest", dtype=np.float64, gains=gains, ratio=ratio)


def degrade(scene: Scene) -> Scene:
    """Wald protocol on a scene, lazily: the reduced-resolution scene (float64).

    The PAN and MS are MTF-filtered with the scene sensor's gains (replicated
    borders, as :func:`mtf_filter`) and decimated by the ratio; the result's
    ground truth is ``scene.ms`` cropped to whole ``ratio²`` cells, on the grid
    of the degraded PAN. Equal to :func:`degrade_arrays` on the same data.
    """
    from dataclasses import replace

    from affine import Affine

    from ..scene import with_grid
    from ..sensors import get_sensor

    r = scene.ratio
    sensor = get_sensor(scene.sensor)
    h, w = (n - n % (r * r) for n in scene.shape)
    pan = scene.pan.data[:h, :w].astype(np.float64)
    ms = scene.ms.data[:, : h // r, : w // r].astype(np.float64)
    pan_f = _lazy_filter(pan, sensor.mtf_pan, r)
    ms_f = _lazy_filter(ms, tuple(sensor.mtf_gains(scene.bands)), r)
    t = scene.transform @ Affine.scale(r)
    pan_lr = with_grid(scene.pan[: h // r, : w // r].copy(data=decimate(pan_f, r)), t, scene.crs)
    ms_lr = with_grid(
        scene.ms[:, : h // (r * r), : w // (r * r)].copy(data=decimate(ms_f, r)), t @ Affine.scale(r), scene.crs
    )
    return replace(
        scene, pan=pan_lr, ms=ms_lr, pan_nodata=None, ms_nodata=None, stats=None, name=f"{scene.name}-reduced"
    )
