"""Classical pansharpening: weighted Brovey, GSA and MTF-GLP-HPM.

They are the baselines of every comparison and the no-network fast path. Each
is a frozen :class:`~pansharp_dist.methods.Fuser` whose global parameters come
from the scene's statistics, so every tile uses the same ones (no seams), and
whose per-pixel work is local within its declared halo. Operations are written
as explicit, fixed-order loops over bands and taps so that a tiled run gives
the same bits as a single pass.

References:
    GDAL, "Pansharpened VRT" (weighted Brovey semantics).
    Aiazzi, Baronti, Selva, "Improving component substitution pansharpening
    through multivariate regression of MS+Pan data", IEEE TGRS 2007 (GSA).
    Vivone et al., "A critical comparison among pansharpening algorithms",
    IEEE TGRS 2015 (MTF-GLP-HPM, Gaussian MTF-matched filters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from .errors import EmptySceneError, InvalidParameterError
from .resample import CUBIC_HALO_MS, upsample
from .sensors import Sensor
from .stats import SceneStats

MTF_TAPS = 41


@lru_cache(maxsize=64)
def separable_mtf_kernel(gain: float, ratio: int, taps: int = MTF_TAPS) -> np.ndarray:
    """1-D Gaussian whose frequency response at the MS Nyquist equals ``gain``.

    ``sigma = ratio * sqrt(-2 ln gain) / pi`` PAN pixels, truncated to ``taps``
    taps and normalised to unit sum, applied separably along rows and columns:
    a fast stand-in for the toolbox's 41 x 41 windowed design
    (:func:`pansharp_dist.quality.mtf.mtf_kernel`), which the quality metrics use.
    """
    if not 0 < gain < 1:
        raise InvalidParameterError(f"MTF gain {gain} must lie strictly between 0 and 1")
    sigma = ratio * math.sqrt(-2 * math.log(gain)) / math.pi
    x = np.arange(taps) - taps // 2
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float64)


def _lowpass(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy.ndimage import correlate1d  # SciPy is imported by the methods that filter, not by Brovey's runs

    out = correlate1d(img, kernel, axis=-2, mode="reflect", output=np.float32)
    return correlate1d(out, kernel, axis=-1, mode="reflect", output=np.float32)


def _batch(pan: np.ndarray, ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return pan.astype(np.float32, copy=False), ms.astype(np.float32, copy=False)


def _weighted_sum(lms: np.ndarray, weights: tuple[float, ...], start: float = 0.0) -> np.ndarray:
    """``start + sum_k weights[k] * lms[:, k]`` for ``lms (N, B, H, W)``, in a fixed band order."""
    total = np.full((lms.shape[0],) + lms.shape[2:], np.float32(start), np.float32)
    for k, w in enumerate(weights):
        total += np.float32(w) * lms[:, k]
    return total


BATCH = 4  # tiles per fuse call, a row of a 2048-pixel block: 36 MB per float32 array of 8 bands, 528² with halo


class _CubicSupport:
    """Methods whose only spatial support is the cubic MS upsampling."""

    ratio: int
    batch: ClassVar[int] = BATCH

    @property
    def halo(self) -> int:
        return CUBIC_HALO_MS * self.ratio


def _require(stats: SceneStats) -> None:
    if stats.empty:
        raise EmptySceneError("the scene has no valid pixel; nothing to fit the method on")


# --------------------------------------------------------------------------- Brovey


@dataclass(frozen=True)
class Brovey(_CubicSupport):
    """Weighted Brovey with GDAL's semantics.

    ``pseudo = sum_i w_i * lms_i``; ``out_i = lms_i * pan / pseudo`` (0 where
    ``pseudo`` is 0), with ``lms`` the cubic-upsampled MS.
    """

    weights: tuple[float, ...]
    ratio: int
    name: str = "brovey"

    def fuse(self, pan: np.ndarray, ms: np.ndarray) -> np.ndarray:
        pan, ms = _batch(pan, ms)
        lms = upsample(ms, self.ratio)
        pseudo = _weighted_sum(lms, self.weights)
        factor = np.zeros_like(pan)
        np.divide(pan, pseudo, out=factor, where=pseudo != 0)
        return lms * factor[:, None]


def brovey_fuser(stats: SceneStats, ratio: int, sensor: Sensor, weights: tuple[float, ...] | None = None) -> Brovey:
    """Brovey with the given pseudo-PAN weights, or equal weights ``1/B`` (GDAL's default)."""
    bands = stats.bands
    weights = check_weights((1.0 / bands,) * bands if weights is None else weights, bands)
    mean, _ = stats.lr_moments()  # MS bands, then the PAN averaged to the MS grid
    intensity, pan = float(np.dot(weights, mean[:bands])) / sum(weights), float(mean[bands])
    if not (intensity > 0 and pan > 0 and 1 / BROVEY_SCALE_GAP <= pan / intensity <= BROVEY_SCALE_GAP):
        raise InvalidParameterError(
            f"the PAN (mean {pan:.4g}) and the MS (mean intensity {intensity:.4g}) are not in the same units: Brovey "
            "multiplies each MS band by PAN / intensity, so its output would be scaled by that gap (and clipped to "
            f"the {stats.ms_dtype} range); rescale one of them, or use gsa or mtf-glp-hpm, which match the PAN to "
            "the MS",
            "method",
        )
    return Brovey(weights, ratio)


BROVEY_SCALE_GAP = 8.0
"""Largest ratio of the PAN's mean to the MS intensity's mean (or its inverse) that Brovey accepts. The
pairs in ``../shared/data`` lie between 0.64 and 2.0; a uint8 MS beside a uint16 PAN, or reflectance beside
counts, is off by 100 or more."""


def check_brovey_dtypes(pan_dtype: np.dtype, ms_dtype: np.dtype) -> None:
    """Refuse, before any work, a PAN and an MS of integer types of different widths (uint16 beside uint8):
    Brovey would scale the output by their gap. (:func:`brovey_fuser` checks the units of any pair on the
    scene's statistics.)

    Raises:
        InvalidParameterError: the widths differ (``parameter="method"``).
    """
    pan_dtype, ms_dtype = np.dtype(pan_dtype), np.dtype(ms_dtype)
    if pan_dtype.kind in "ui" and ms_dtype.kind in "ui" and pan_dtype.itemsize != ms_dtype.itemsize:
        raise InvalidParameterError(
            f"the PAN is {pan_dtype} and the MS {ms_dtype}: Brovey multiplies each MS band by PAN / intensity, so "
            f"its output would be scaled by their gap and clipped to the {ms_dtype} range; rescale one of them, or "
            "use gsa or mtf-glp-hpm, which match the PAN to the MS",
            "method",
        )


def check_weights(weights: tuple[float, ...], bands: int) -> tuple[float, ...]:
    """Brovey's pseudo-PAN weights as floats, if there is one per MS band, finite, not negative, not all zero.

    Raises:
        InvalidParameterError: they are not (``parameter="weights"``).
    """
    if len(weights) != bands:
        raise InvalidParameterError(f"Brovey needs {bands} weights (one per MS band); got {len(weights)}", "weights")
    weights = tuple(float(w) for w in weights)
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise InvalidParameterError(
            f"Brovey's weights must be finite, not negative, and not all zero (they weight the MS bands into the "
            f"intensity that the PAN replaces); got {', '.join(map(str, weights))}",
            "weights",
        )
    return weights


# --------------------------------------------------------------------------- GSA


@dataclass(frozen=True)
class GSA(_CubicSupport):
    """Gram-Schmidt adaptive component substitution (Aiazzi et al. 2007).

    ``I = sum_k alpha_k * lms_k + alpha_0`` (alpha regressed from the MS onto
    the degraded PAN); ``pan_eq = pan * gain + offset`` (PAN matched to I's mean
    and std); ``out_k = lms_k + g_k * (pan_eq - I)``, ``g_k = cov(ms_k, I)/var(I)``.
    """

    alpha: tuple[float, ...]
    intercept: float
    pan_gain: float
    pan_offset: float
    injection: tuple[float, ...]
    ratio: int
    name: str = "gsa"

    def fuse(self, pan: np.ndarray, ms: np.ndarray) -> np.ndarray:
        pan, ms = _batch(pan, ms)
        lms = upsample(ms, self.ratio)
        intensity = _weighted_sum(lms, self.alpha, self.intercept)
        detail = pan * np.float32(self.pan_gain) + np.float32(self.pan_offset) - intensity
        for k, g in enumerate(self.injection):
            lms[:, k] += np.float32(g) * detail
        return lms


def gsa_fuser(stats: SceneStats, ratio: int, sensor: Sensor) -> GSA:
    """Fit GSA's regression and injection gains from the scene's MS-resolution moments.

    Moments of the synthetic intensity are taken at MS resolution (where the
    Gram matrix lives) instead of on the upsampled MS: interpolation keeps the
    mean and changes the variance by well under a percent on real scenes.
    """
    _require(stats)
    b = stats.bands
    g = np.asarray(stats.gram)
    ms_idx = list(range(b)) + [b + 1]  # MS bands and the constant
    coef = np.linalg.lstsq(g[np.ix_(ms_idx, ms_idx)], g[ms_idx, b], rcond=None)[0]
    alpha, intercept = coef[:b], coef[b]
    mean, cov = stats.lr_moments()
    mean_i = float(alpha @ mean[:b] + intercept)
    var_i = float(alpha @ cov[:b, :b] @ alpha)
    if var_i <= 0 or stats.pan_std <= 0:
        raise EmptySceneError("the scene is flat (zero variance); GSA cannot be fitted, try brovey")
    gain = math.sqrt(var_i) / stats.pan_std
    injection = cov[:b, :b] @ alpha / var_i
    return GSA(
        alpha=tuple(map(float, alpha)),
        intercept=float(intercept),
        pan_gain=gain,
        pan_offset=mean_i - stats.pan_mean * gain,
        injection=tuple(map(float, injection)),
        ratio=ratio,
    )


# --------------------------------------------------------------------------- MTF-GLP-HPM


@dataclass(frozen=True)
class MTFGLPHPM:
    """Generalised Laplacian pyramid with MTF-matched filters, high-pass modulation.

    Per band: ``pan_eq = (pan - mean_pan) * scale_k + mean_k``; ``lp`` = pan_eq
    filtered by the band's MTF Gaussian, decimated by the ratio and upsampled
    back; ``out_k = lms_k * pan_eq / lp`` (Vivone et al. 2015, 2018).
    """

    gains: tuple[float, ...]
    pan_mean: float
    scales: tuple[float, ...]
    means: tuple[float, ...]
    ratio: int
    name: str = "mtf-glp-hpm"
    batch: ClassVar[int] = BATCH

    @property
    def halo(self) -> int:
        r = self.ratio
        return r * math.ceil((MTF_TAPS // 2 + CUBIC_HALO_MS * r + 1) / r)

    def fuse(self, pan: np.ndarray, ms: np.ndarray) -> np.ndarray:
        pan, ms = _batch(pan, ms)
        r = self.ratio
        lms = upsample(ms, r)
        centred = pan - np.float32(self.pan_mean)
        lowpassed: dict[float, np.ndarray] = {}
        for k, gain in enumerate(self.gains):
            if gain not in lowpassed:
                lp = _lowpass(centred, separable_mtf_kernel(gain, r))
                lowpassed[gain] = upsample(lp[:, r // 2 :: r, r // 2 :: r], r)
            scale, mean = np.float32(self.scales[k]), np.float32(self.means[k])
            detail = centred * scale + mean
            low = lowpassed[gain] * scale + mean
            ratio_k = np.ones_like(detail)
            np.divide(detail, low, out=ratio_k, where=np.abs(low) > np.float32(1e-6) * max(abs(mean), np.float32(1)))
            lms[:, k] *= ratio_k
        return lms


def mtf_glp_hpm_fuser(stats: SceneStats, ratio: int, sensor: Sensor) -> MTFGLPHPM:
    """MTF-GLP-HPM with the sensor's MS MTF gains and the scene's PAN/MS moments.

    The PAN is equalised to each band's mean and std, using the std of the PAN
    degraded to MS resolution (the low-pass version the toolbox equalises on).
    """
    _require(stats)
    b = stats.bands
    mean, cov = stats.lr_moments()
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    if std[b] <= 0:
        raise EmptySceneError("the PAN is flat (zero variance); MTF-GLP-HPM cannot be fitted, try brovey")
    return MTFGLPHPM(
        gains=tuple(sensor.mtf_gains(b)),
        pan_mean=stats.pan_mean,
        scales=tuple(float(s / std[b]) for s in std[:b]),
        means=tuple(map(float, mean[:b])),
        ratio=ratio,
    )
