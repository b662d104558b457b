"""Reduced-resolution pansharpening metrics, in memory.

Arrays are ``(B, H, W)``: ``reference`` is the ground truth (the original MS in
the Wald protocol), ``fused`` the pansharpened image, both in the same units
(counts). Conventions follow the MATLAB toolbox of Vivone et al. ("A new
benchmark based on recent advances in multispectral pansharpening", IEEE GRSM
2021), the one PanCollection and DLPan-Toolbox evaluate with; where a choice
was needed it is stated in the function's docstring.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate

from ..errors import InvalidParameterError


def _pair(reference: np.ndarray, fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    fus = np.asarray(fused, dtype=np.float64)
    if ref.shape != fus.shape or ref.ndim != 3:
        raise InvalidParameterError(
            f"reference and fused must both be (bands, height, width); got {ref.shape} and {fus.shape}"
        )
    return ref, fus


def sam(reference: np.ndarray, fused: np.ndarray) -> float:
    """Spectral Angle Mapper, mean over pixels, in degrees.

    ``SAM = mean_p arccos(<r_p, f_p> / (|r_p| |f_p|))`` over the pixels where
    neither spectrum is zero (toolbox ``SAM.m``). Yuhas, Goetz and Boardman,
    JPL AVIRIS workshop 1992.
    """
    ref, fus = _pair(reference, fused)
    dot = np.einsum("bhw,bhw->hw", ref, fus)
    norms = np.sqrt(np.einsum("bhw,bhw->hw", ref, ref) * np.einsum("bhw,bhw->hw", fus, fus))
    keep = norms != 0
    if not keep.any():
        return 0.0
    angles = np.arccos(np.clip(dot[keep] / norms[keep], -1.0, 1.0))
    return float(np.degrees(angles.mean()))


def ergas(reference: np.ndarray, fused: np.ndarray, ratio: int) -> float:
    """ERGAS (Wald 2000): ``100/r * sqrt(mean_b( MSE_b / mean(ref_b)^2 ))``.

    ``ratio`` is the PAN/MS resolution ratio (toolbox ``ERGAS.m``).
    """
    ref, fus = _pair(reference, fused)
    mse = ((ref - fus) ** 2).mean(axis=(1, 2))
    means = ref.mean(axis=(1, 2))
    return float(100.0 / ratio * np.sqrt(np.mean(mse / means**2)))


def psnr(reference: np.ndarray, fused: np.ndarray, peak: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB over all bands: ``10 log10(peak^2 / MSE)``.

    ``peak`` defaults to the reference's maximum; pass ``2**bits - 1`` to use
    the radiometric range instead. Identical images give ``inf``.
    """
    ref, fus = _pair(reference, fused)
    mse = float(((ref - fus) ** 2).mean())
    peak = float(ref.max()) if peak is None else float(peak)
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


_SOBEL = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def sobel_magnitude(band: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a 2-D array, zero padding (MATLAB ``imfilter`` default)."""
    gy = correlate(band, _SOBEL, mode="constant", cval=0.0)
    gx = correlate(band, _SOBEL.T, mode="constant", cval=0.0)
    return np.sqrt(gx**2 + gy**2)


def _gradient_magnitude(band: np.ndarray) -> np.ndarray:
    return sobel_magnitude(band[1:-1, 1:-1])


def scc(reference: np.ndarray, fused: np.ndarray) -> float:
    """Spatial correlation coefficient of Sobel gradient magnitudes (toolbox ``SCC.m``, 2020).

    Both images lose a one-pixel border, each band's Sobel gradient magnitude
    is taken with zero padding, and ``SCC = <Gf, Gr> / (|Gf| |Gr|)`` over all
    bands and pixels. Zhou, Civco and Silander, IJRS 1998.
    """
    ref, fus = _pair(reference, fused)
    gr = np.stack([_gradient_magnitude(b) for b in ref])
    gf = np.stack([_gradient_magnitude(b) for b in fus])
    denom = np.sqrt((gf**2).sum()) * np.sqrt((gr**2).sum())
    return float((gf * gr).sum() / denom) if denom else 1.0


# --------------------------------------------------------------------------- Q2n


def _conjugate(x: np.ndarray) -> np.ndarray:
    """Hypercomplex conjugate along axis 0 (keep the real part, negate the rest)."""
    out = -x
    out[0] = x[0]
    return out


def _hypercomplex_mult(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cayley-Dickson product of hypercomplex numbers stored along axis 0 (2^k components)."""
    n = a.shape[0]
    if n == 1:
        return a * b
    half = n // 2
    p, q = a[:half], _conjugate(a[half:])
    r, s = b[:half], _conjugate(b[half:])
    if n == 2:
        return np.concatenate([p * r - s * q, p * s + r * q])
    first = _hypercomplex_mult(p, r) - _hypercomplex_mult(s, _conjugate(q))
    second = _hypercomplex_mult(_conjugate(p), s) + _hypercomplex_mult(r, q)
    return np.concatenate([first, second])


def _block_q2n(ref: np.ndarray, fus: np.ndarray) -> np.ndarray:
    """Q2n vector of one block (toolbox ``onions_quality``); ``ref``/``fus`` are ``(2^k, S, S)``."""
    n, h, w = ref.shape
    count = h * w
    unbias = count / (count - 1)
    fus = _conjugate(fus)
    ref_n = np.empty_like(ref)
    fus_n = np.empty_like(fus)
    for i in range(n):
        mean, std = ref[i].mean(), ref[i].std(ddof=1)
        std = std if std != 0 else np.finfo(float).eps
        ref_n[i] = (ref[i] - mean) / std + 1
        sign = 1.0 if i == 0 else -1.0  # imaginary parts arrive conjugated: normalise the original
        if mean == 0:  # the toolbox's branch (on the block mean, not its std)
            fus_n[i] = sign * (sign * fus[i] - mean + 1)
        else:
            fus_n[i] = sign * ((sign * fus[i] - mean) / std + 1)
    m1 = ref_n.mean(axis=(1, 2))
    m2 = fus_n.mean(axis=(1, 2))
    mod_m1, mod_m2 = np.sqrt((m1**2).sum()), np.sqrt((m2**2).sum())
    var_terms = unbias * ((ref_n**2).sum(axis=0).mean() + (fus_n**2).sum(axis=0).mean())
    spread = var_terms - unbias * (mod_m1**2 + mod_m2**2)
    mean_bias = 2 * mod_m1 * mod_m2 / (mod_m1**2 + mod_m2**2)
    if spread == 0:
        q = np.zeros(n)
        q[-1] = mean_bias
        return q
    cov = unbias * _hypercomplex_mult(ref_n, fus_n).mean(axis=(1, 2))
    cov = cov - unbias * _hypercomplex_mult(m1[:, None, None], m2[:, None, None])[:, 0, 0]
    return cov * mean_bias * 2 / spread


def q2n(reference: np.ndarray, fused: np.ndarray, block: int = 32, shift: int = 32, quantize: bool = True) -> float:
    """Q2n (Q4 for 4 bands, Q8 for 8), Garzelli and Nencini, IEEE GRSL 2009.

    The hypercomplex universal image quality index on ``block`` x ``block``
    blocks every ``shift`` pixels, averaged (toolbox ``q2n.m``): images are
    padded by mirroring to whole blocks, bands are padded with zeros to a power
    of two, and, as in the toolbox, both images are first cast to uint16
    (rounded, clipped to 0..65535) unless ``quantize`` is False; pass counts,
    not reflectance, when quantizing.
    """
    ref, fus = _pair(reference, fused)
    return float(np.mean(q2n_scores(ref, fus, block, shift, quantize)))


def q2n_scores(ref: np.ndarray, fus: np.ndarray, block: int = 32, shift: int = 32, quantize: bool = True) -> np.ndarray:
    """The Q2n value of every block of a ``(B, H, W)`` window, in row-major block order.

    The window is mirror-padded at its bottom and right to whole blocks, so a
    window that ends where the image ends gives the same blocks as the image.
    """
    b, h, w = ref.shape
    steps_y, steps_x = -(-h // shift), -(-w // shift)
    pad_y, pad_x = (steps_y - 1) * shift + block - h, (steps_x - 1) * shift + block - w
    ref, fus = (_mirror_pad(x, pad_y, pad_x) for x in (ref, fus))
    if quantize:
        ref, fus = (np.clip(np.floor(x + 0.5), 0, 65535) for x in (ref, fus))
    bands = 1 << int(np.ceil(np.log2(b))) if b > 1 else 1
    if bands != b:
        zeros = np.zeros((bands - b,) + ref.shape[1:])
        ref, fus = np.concatenate([ref, zeros]), np.concatenate([fus, zeros])
    scores = []
    for i in range(steps_y):
        for j in range(steps_x):
            win = (slice(None), slice(i * shift, i * shift + block), slice(j * shift, j * shift + block))
            q = _block_q2n(ref[win], fus[win])
            scores.append(np.sqrt((q**2).sum()))
    return np.asarray(scores)


def _mirror_pad(x: np.ndarray, pad_y: int, pad_x: int) -> np.ndarray:
    """Pad bottom and right with the last rows/columns mirrored, edge included (as q2n.m)."""
    if pad_x > 0:
        x = np.concatenate([x, x[:, :, -1 : -pad_x - 1 : -1]], axis=2)
    if pad_y > 0:
        x = np.concatenate([x, x[:, -1 : -pad_y - 1 : -1, :]], axis=1)
    return x


def reduced_scores(reference: np.ndarray, fused: np.ndarray, ratio: int, quantize: bool = True) -> dict[str, float]:
    """Every reduced-resolution metric of ``fused`` against ``reference`` (both ``(B, H, W)``), in memory."""
    return {
        "SAM": sam(reference, fused),
        "ERGAS": ergas(reference, fused, ratio),
        "Q2n": q2n(reference, fused, quantize=quantize),
        "SCC": scc(reference, fused),
        "PSNR": psnr(reference, fused),
    }
