"""Metrics at scene scale: block by block on dask arrays, reduced and full resolution.

Each block of the scene gives partial sums (a few numbers per band); only
those reach the caller, so memory is bounded by the block size whatever the
scene size. Blocks are aligned to the 32-pixel Q2n grid and carry a one-pixel
halo for SCC's Sobel filter, so the result equals the in-memory metrics of
:mod:`pansharp_dist.quality.metrics` on the same data (to rounding).
"""

from __future__ import annotations

from typing import cast

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..errors import InvalidParameterError
from ..tiling import axis_chunks
from .metrics import q2n_scores, sobel_magnitude

PARTS = ("err2", "ref_sum", "n", "angles", "n_angles", "ref_max", "scc_fr", "scc_ff", "scc_rr", "q_sum", "q_n")


def _partials(
    ref: np.ndarray, fus: np.ndarray, y0: int, x0: int, shape: tuple[int, int], block: int, quantize: bool
) -> dict[str, np.ndarray | float]:
    """Partial sums of one block; ``ref``/``fus`` are ``(B, h+2, w+2)`` with a one-pixel halo (0 outside)."""
    ref, fus = ref.astype(np.float64), fus.astype(np.float64)
    core_r, core_f = ref[:, 1:-1, 1:-1], fus[:, 1:-1, 1:-1]
    _, h, w = core_r.shape
    height, width = shape
    err2 = ((core_r - core_f) ** 2).sum(axis=(1, 2))
    dot = np.einsum("bhw,bhw->hw", core_r, core_f)
    norms = np.sqrt(np.einsum("bhw,bhw->hw", core_r, core_r) * np.einsum("bhw,bhw->hw", core_f, core_f))
    keep = norms != 0
    angles = np.arccos(np.clip(dot[keep] / norms[keep], -1.0, 1.0))
    # SCC: the image loses its outer ring, then Sobel with zero padding (as SCC.m)
    rows = np.arange(y0 - 1, y0 + h + 1)
    cols = np.arange(x0 - 1, x0 + w + 1)
    ring = (rows[:, None] <= 0) | (rows[:, None] >= height - 1) | (cols[None, :] <= 0) | (cols[None, :] >= width - 1)
    inner = ~ring[1:-1, 1:-1]
    gr = np.stack([sobel_magnitude(np.where(ring, 0.0, b))[1:-1, 1:-1][inner] for b in ref])
    gf = np.stack([sobel_magnitude(np.where(ring, 0.0, b))[1:-1, 1:-1][inner] for b in fus])
    q_sum, q_n = _defined_sum(q2n_scores(core_r, core_f, block, block, quantize))
    return {
        "err2": err2,
        "ref_sum": core_r.sum(axis=(1, 2)),
        "n": float(h * w),
        "angles": float(angles.sum()),
        "n_angles": float(angles.size),
        "ref_max": float(core_r.max()),
        "scc_fr": float((gf * gr).sum()),
        "scc_ff": float((gf**2).sum()),
        "scc_rr": float((gr**2).sum()),
        "q_sum": q_sum,
        "q_n": q_n,
    }


def _merge(parts: list[dict]) -> dict:
    out = {k: sum(p[k] for p in parts) for k in PARTS if k != "ref_max"}
    out["ref_max"] = max(p["ref_max"] for p in parts)
    return out


def reduced_scores_blockwise(
    reference: xr.DataArray | da.Array | np.ndarray,
    fused: xr.DataArray | da.Array | np.ndarray,
    ratio: int,
    *,
    chunk: int = 1024,
    block: int = 32,
    quantize: bool = True,
    client=None,
) -> dict[str, float]:
    """SAM (degrees), ERGAS, Q2n, SCC and PSNR of ``fused`` against ``reference``, blockwise.

    Both are ``(band, y, x)`` arrays of the same shape (lazy or not). Equal to
    :func:`pansharp_dist.quality.metrics.reduced_scores` on the same data.
    """
    from ..tasks import run_tasks

    ref = _as_dask(reference)
    fus = _as_dask(fused)
    if ref.shape != fus.shape or ref.ndim != 3:
        raise InvalidParameterError(f"reference {ref.shape} and fused {fus.shape} must be equal (band, y, x) shapes")
    _, height, width = ref.shape
    step = max(block, chunk - chunk % block)
    ys, xs = axis_chunks(height, step, block), axis_chunks(width, step, block)
    chunks = ((ref.shape[0],), ys, xs)
    halo = {0: 0, 1: 1, 2: 1}
    ref_o = da.overlap.overlap(ref.rechunk(chunks), depth=halo, boundary=0).to_delayed()
    fus_o = da.overlap.overlap(fus.rechunk(chunks), depth=halo, boundary=0).to_delayed()
    y_starts, x_starts = np.cumsum((0,) + ys[:-1]), np.cumsum((0,) + xs[:-1])
    tasks = [
        dask.delayed(_partials, pure=True)(
            ref_o[0, i, j], fus_o[0, i, j], int(y0), int(x0), (height, width), block, quantize
        )
        for i, y0 in enumerate(y_starts)
        for j, x0 in enumerate(x_starts)
    ]
    total = _merge(cast("list[dict]", list(run_tasks(client, tasks))))  # _partials' dicts
    return _finish(total, ratio)


def _as_dask(x) -> da.Array:
    if isinstance(x, xr.DataArray):
        x = x.data
    return x if isinstance(x, da.Array) else da.from_array(np.asarray(x))


def _finish(t: dict, ratio: int) -> dict[str, float]:
    mse_band = t["err2"] / t["n"]
    mean_band = t["ref_sum"] / t["n"]
    mse = float(t["err2"].sum() / (t["n"] * t["err2"].size))
    return {
        "SAM": float(np.degrees(t["angles"] / t["n_angles"])) if t["n_angles"] else 0.0,
        "ERGAS": float(100.0 / ratio * np.sqrt(np.mean(mse_band / mean_band**2))),
        "Q2n": float(t["q_sum"] / t["q_n"]),
        "SCC": float(t["scc_fr"] / np.sqrt(t["scc_ff"]) / np.sqrt(t["scc_rr"])) if t["scc_ff"] and t["scc_rr"] else 1.0,
        "PSNR": float("inf") if mse == 0 else float(10 * np.log10(t["ref_max"] ** 2 / mse)),
    }


# --------------------------------------------------------------------------- full resolution

_INTERP_HALO = 12  # MS pixels: the two 23-tap stages reach 9
_RESIZE_HALO = 12  # PAN pixels: MATLAB's antialiased bicubic at 1/4 reaches 4k+1.5 +- 8


def _haloed(x: da.Array, depth: int, boundary: str, fn, scale: float, **kwargs) -> da.Array:
    """Apply ``fn`` to every chunk with a halo of ``depth`` on both spatial axes, then cut the halo.

    ``fn`` maps a chunk of shape ``(..., h, w)`` to ``(..., h*scale, w*scale)``.
    """
    nd = x.ndim
    grown = da.overlap.overlap(
        x, depth={**{i: 0 for i in range(nd - 2)}, nd - 2: depth, nd - 1: depth}, boundary=boundary
    )
    cut = int(round(depth * scale))
    out_chunks = x.chunks[:-2] + tuple(tuple(int(round(c * scale)) for c in ax) for ax in x.chunks[-2:])

    def apply(block):
        res = fn(block, **kwargs)
        return res[..., cut : res.shape[-2] - cut, cut : res.shape[-1] - cut]

    return grown.map_blocks(apply, dtype=np.float64, chunks=out_chunks)


def _q_sums(x: np.ndarray, y: np.ndarray, block: int) -> tuple[float, float]:
    """Sum and count of the defined Wang-Bovik Q values over the distinct blocks of one chunk."""
    from .fullres import q_block_values

    return _defined_sum(q_block_values(x, y, block))


def _defined_sum(scores: np.ndarray) -> tuple[float, float]:
    """Sum and count of the defined (finite) block scores: undefined blocks (flat in both images) left out."""
    finite = np.isfinite(scores)
    return float(scores[finite].sum()), float(finite.sum())


def _full_partials(fused, msexp, fused_mtf, pan, pan_low, block: int, quantize: bool) -> dict:
    b = fused.shape[0]
    pairs = [(i, j) for i in range(b - 1) for j in range(i + 1, b)]
    q_sum, q_n = _defined_sum(q2n_scores(msexp, fused_mtf, block, block, quantize))
    return {
        "pair_f": np.array([_q_sums(fused[i], fused[j], block) for i, j in pairs]),
        "pair_m": np.array([_q_sums(msexp[i], msexp[j], block) for i, j in pairs]),
        "pan_f": np.array([_q_sums(fused[i], pan, block) for i in range(b)]),
        "pan_m": np.array([_q_sums(msexp[i], pan_low, block) for i in range(b)]),
        "q_sum": q_sum,
        "q_n": q_n,
    }


def full_scores_blockwise(
    fused,
    ms,
    pan,
    ratio: int,
    gains: tuple[float, ...],
    *,
    chunk: int = 1024,
    block: int = 32,
    quantize: bool = True,
    client=None,
) -> dict[str, float]:
    """D_lambda, D_lambda_K, D_s, QNR and HQNR blockwise on dask arrays.

    ``fused (B, H, W)`` and ``pan (H, W)`` on the PAN grid, ``ms (B, H/r, W/r)``;
    ``H`` and ``W`` multiples of ``block`` and of the ratio. Equal to
    :func:`pansharp_dist.quality.fullres.full_scores` on the same data:
    borders are handled as there (circular for the 23-tap interpolator,
    symmetric for ``imresize``, replicated for the MTF filter).
    """
    from ..tasks import run_tasks
    from .fullres import imresize_down
    from .mtf import interp23, mtf_filter

    fused, ms, pan = (
        _as_dask(fused).astype(np.float64),
        _as_dask(ms).astype(np.float64),
        _as_dask(pan).astype(np.float64),
    )
    b, height, width = fused.shape
    if height % block or width % block or height % ratio or width % ratio:
        raise InvalidParameterError(
            f"the image ({height} x {width}) must be a multiple of the block {block} and ratio {ratio}"
        )
    unit = block * ratio // np.gcd(block, ratio)
    step = max(unit, chunk - chunk % unit)
    ys, xs = axis_chunks(height, step, unit), axis_chunks(width, step, unit)
    fused = fused.rechunk(((b,), ys, xs))
    pan = pan.rechunk((ys, xs))
    ms = ms.rechunk(((b,), tuple(y // ratio for y in ys), tuple(x // ratio for x in xs)))
    msexp = _haloed(ms, _INTERP_HALO, "periodic", interp23, ratio, ratio=ratio)
    fused_mtf = _haloed(fused, 20, "nearest", mtf_filter, 1, gains=tuple(gains), ratio=ratio)
    pan_small = _haloed(pan, _RESIZE_HALO * ratio // 4 * 4, "reflect", imresize_down, 1 / ratio, ratio=ratio)
    pan_low = _haloed(pan_small, _INTERP_HALO, "periodic", interp23, ratio, ratio=ratio)
    parts = [a.to_delayed() for a in (fused, msexp, fused_mtf)]
    pans = [a.to_delayed() for a in (pan, pan_low)]
    tasks = [
        dask.delayed(_full_partials, pure=True)(
            parts[0][0, i, j], parts[1][0, i, j], parts[2][0, i, j], pans[0][i, j], pans[1][i, j], block, quantize
        )
        for i in range(len(ys))
        for j in range(len(xs))
    ]
    results = cast("list[dict]", list(run_tasks(client, tasks)))  # _full_partials' dicts
    total = {k: sum(r[k] for r in results) for k in results[0]}
    mean = lambda sums: sums[:, 0] / sums[:, 1]  # noqa: E731
    d_lambda = float(np.mean(np.abs(mean(total["pair_f"]) - mean(total["pair_m"]))))
    d_s = float(np.mean(np.abs(mean(total["pan_f"]) - mean(total["pan_m"]))))
    d_lambda_k = 1.0 - total["q_sum"] / total["q_n"] if total["q_n"] else float("nan")
    return {
        "D_lambda": d_lambda,
        "D_lambda_K": d_lambda_k,
        "D_s": d_s,
        "QNR": (1 - d_lambda) * (1 - d_s),
        "HQNR": (1 - d_lambda_k) * (1 - d_s),
    }
