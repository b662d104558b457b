"""Full-resolution (no reference) metrics: D_lambda, D_s, QNR and HQNR, in memory.

Arrays: ``fused (B, H, W)`` the pansharpened image, ``msexp (B, H, W)`` the MS
upsampled to the PAN grid (23-tap interpolator), ``pan (H, W)``; ``H`` and
``W`` multiples of the block size. Conventions follow the MATLAB toolbox of
Vivone et al. 2020 ("toolbox 1.0" options of ``D_lambda.m`` and ``D_s.m``,
and ``D_lambda_K.m`` / ``HQNR.m``):

* Q is Wang and Bovik's universal image quality index on distinct
  ``block`` x ``block`` blocks (covariances with N-1), averaged over the
  blocks where it is defined (the toolbox gives NaN when any block is flat);
* D_lambda (QNR, Alparone et al. 2008) compares the Q of every band pair of
  the fused image with that of ``msexp``; D_s compares each band's Q against
  the PAN with its Q against the PAN degraded (bicubic ``imresize`` by 1/r,
  then the 23-tap interpolator back);
* D_lambda (Khan et al., IEEE TGRS 2009) is ``1 - Q2n(msexp, MTF(fused))``
  with the fused image filtered by the sensor's MTF and kept at PAN scale
  (the 2020 toolbox; older versions also decimated it);
* QNR = (1 - D_lambda) (1 - D_s); HQNR = (1 - D_lambda Khan) (1 - D_s).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError
from .metrics import q2n_scores
from .mtf import interp23, mtf_filter


def _check_blocks(shape: tuple[int, ...], block: int) -> None:
    if shape[-2] % block or shape[-1] % block:
        raise InvalidParameterError(f"image size {shape[-2]}x{shape[-1]} must be a multiple of the block size {block}")


def q_block_values(x: np.ndarray, y: np.ndarray, block: int = 32) -> np.ndarray:
    """Wang-Bovik's Q between two bands on each distinct ``block`` x ``block`` block (NaN where undefined)."""
    _check_blocks(x.shape, block)
    h, w = x.shape
    xb = np.asarray(x, np.float64).reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3)
    yb = np.asarray(y, np.float64).reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3)
    n = block * block
    mx, my = xb.mean(axis=(2, 3)), yb.mean(axis=(2, 3))
    dx, dy = xb - mx[..., None, None], yb - my[..., None, None]
    cov = (dx * dy).sum(axis=(2, 3)) / (n - 1)
    vx, vy = (dx**2).sum(axis=(2, 3)) / (n - 1), (dy**2).sum(axis=(2, 3)) / (n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 4 * cov * mx * my / (vx + vy) / (mx**2 + my**2)


def q_blocks(x: np.ndarray, y: np.ndarray, block: int = 32) -> float:
    """Mean over distinct ``block`` x ``block`` blocks of Wang-Bovik's Q between two bands.

    Blocks where Q is undefined (both blocks constant, as in no-data fill) are
    left out of the mean, where the toolbox would return NaN for the scene.
    """
    return defined_mean(q_block_values(x, y, block))


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1) + (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2))


def _resize_axis(img: np.ndarray, ratio: int, axis: int) -> np.ndarray:
    n_in = img.shape[axis]
    n_out = n_in // ratio
    scale = 1.0 / ratio
    width = 4.0 / scale
    x = np.arange(1, n_out + 1)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    weights = scale * _cubic(scale * (u[:, None] - idx))
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
    idx = mirror[((idx - 1) % mirror.size).astype(int)]
    moved = np.moveaxis(img, axis, -1)
    out = (moved[..., idx] * weights).sum(axis=-1)
    return np.moveaxis(out, -1, axis)


def imresize_down(img: np.ndarray, ratio: int) -> np.ndarray:
    """MATLAB's ``imresize(img, 1/ratio)``: bicubic with antialiasing, symmetric borders (float64)."""
    out = np.asarray(img, np.float64)
    return _resize_axis(_resize_axis(out, ratio, -2), ratio, -1)


def d_lambda_qnr(fused: np.ndarray, msexp: np.ndarray, block: int = 32, p: float = 1) -> float:
    """QNR's spectral distortion: band-pair Q of ``fused`` against that of ``msexp``."""
    b = fused.shape[0]
    total = 0.0
    for i in range(b - 1):
        for j in range(i + 1, b):
            total += abs(q_blocks(fused[i], fused[j], block) - q_blocks(msexp[i], msexp[j], block)) ** p
    return float((total / (b * (b - 1) / 2)) ** (1 / p))


def d_s(fused: np.ndarray, msexp: np.ndarray, pan: np.ndarray, ratio: int, block: int = 32, q: float = 1) -> float:
    """QNR's spatial distortion: each band's Q with the PAN against its Q with the degraded PAN."""
    pan_low = interp23(imresize_down(pan, ratio), ratio)
    total = sum(abs(q_blocks(f, pan, block) - q_blocks(m, pan_low, block)) ** q for f, m in zip(fused, msexp))
    return float((total / fused.shape[0]) ** (1 / q))


def d_lambda_khan(fused: np.ndarray, msexp: np.ndarray, ratio: int, gains: tuple[float, ...], block: int = 32) -> float:
    """Khan's spectral distortion: ``1 - Q2n(msexp, MTF-filtered fused)`` at PAN scale.

    Blocks where Q2n is undefined (flat in both images, as no-data fill) are left out of the mean, as
    :func:`q_blocks` leaves them out of QNR's distortions, where the toolbox would return NaN for the scene.
    """
    _check_blocks(fused.shape, block)
    scores = q2n_scores(np.asarray(msexp, np.float64), mtf_filter(fused, gains, ratio).astype(np.float64), block, block)
    return 1.0 - defined_mean(scores)


def defined_mean(scores: np.ndarray) -> float:
    """The mean of the defined (finite) block scores, NaN when none is."""
    finite = np.isfinite(scores)
    return float(scores[finite].mean()) if finite.any() else float("nan")


def full_scores(
    fused: np.ndarray, ms: np.ndarray, pan: np.ndarray, ratio: int, gains: tuple[float, ...], block: int = 32
) -> dict[str, float]:
    """Every full-resolution metric of ``fused (B, H, W)`` given ``ms (B, H/r, W/r)`` and ``pan (H, W)``."""
    msexp = interp23(ms, ratio)
    dl_qnr = d_lambda_qnr(fused, msexp, block)
    dl_khan = d_lambda_khan(fused, msexp, ratio, gains, block)
    ds = d_s(fused, msexp, pan, ratio, block)
    return {
        "D_lambda": dl_qnr,
        "D_lambda_K": dl_khan,
        "D_s": ds,
        "QNR": (1 - dl_qnr) * (1 - ds),
        "HQNR": (1 - dl_khan) * (1 - ds),
    }
