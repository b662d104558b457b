"""Per-scene statistics and the nodata mask, computed block by block.

Statistics are per scene, never per tile (per-tile statistics draw seams): each
block of the scene gives a :class:`BlockStats`, and blocks are merged into one
:class:`SceneStats` that normalisation and method fitting use.

Besides PAN moments and per-band extremes, the stats carry the Gram matrix of
``[ms_1 .. ms_B, pan_lr, 1]`` over valid MS-resolution pixels, where ``pan_lr``
is the PAN block-averaged by the ratio. Means, variances and covariances of the
MS bands and of the degraded PAN, and least-squares fits between them (GSA),
all follow from it without another pass over the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

PERCENTILES = (0.1, 1.0, 2.0, 5.0, 50.0, 95.0, 98.0, 99.0, 99.9)
SAMPLES_PER_BLOCK = 2048
MAX_POOLED_SAMPLES = 262_144


def valid_mask(
    pan: np.ndarray, ms: np.ndarray, ratio: int, pan_nodata: float | None, ms_nodata: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Valid pixels at PAN and at MS resolution.

    Args:
        pan: ``(H, W)`` PAN block; ``ms``: ``(B, H/r, W/r)`` MS block.

    Returns:
        ``(hr, lr)`` boolean arrays: ``hr[H, W]`` where the PAN and every MS band
        covering the pixel are valid; ``lr[H/r, W/r]`` where every band and every
        PAN pixel inside the MS pixel are valid.
    """
    pan_ok = np.isfinite(pan) if pan.dtype.kind == "f" else np.ones(pan.shape, bool)
    if pan_nodata is not None:
        pan_ok &= pan != pan_nodata
    ms_ok: np.ndarray = np.all(np.isfinite(ms), axis=0) if ms.dtype.kind == "f" else np.ones(ms.shape[1:], bool)
    if ms_nodata is not None:
        ms_ok &= np.all(ms != ms_nodata, axis=0)
    hr = pan_ok & np.repeat(np.repeat(ms_ok, ratio, axis=0), ratio, axis=1)
    h, w = ms_ok.shape
    lr = ms_ok & pan_ok.reshape(h, ratio, w, ratio).all(axis=(1, 3))
    return hr, lr


@dataclass
class BlockStats:
    """Sufficient statistics of one block (or of several, merged)."""

    bands: int
    pan_count: int = 0
    pan_sum: float = 0.0
    pan_sumsq: float = 0.0
    pan_min: float = np.inf
    pan_max: float = -np.inf
    # the arrays' None default means "not given": __post_init__ replaces it, so they are never None after it
    ms_min: np.ndarray = field(default=cast(np.ndarray, None))  # (B,)
    ms_max: np.ndarray = field(default=cast(np.ndarray, None))  # (B,)
    lr_count: int = 0
    gram: np.ndarray = field(default=cast(np.ndarray, None))  # (B + 2, B + 2) float64
    pan_samples: np.ndarray = field(default=cast(np.ndarray, None))  # (n,) float32
    ms_samples: np.ndarray = field(default=cast(np.ndarray, None))  # (B, m) float32

    def __post_init__(self) -> None:
        b = self.bands
        if self.ms_min is None:
            self.ms_min = np.full(b, np.inf)
            self.ms_max = np.full(b, -np.inf)
            self.gram = np.zeros((b + 2, b + 2))
            self.pan_samples = np.zeros(0, np.float32)
            self.ms_samples = np.zeros((b, 0), np.float32)

    def merge(self, other: BlockStats) -> BlockStats:
        """Statistics of both blocks together."""
        return BlockStats(
            bands=self.bands,
            pan_count=self.pan_count + other.pan_count,
            pan_sum=self.pan_sum + other.pan_sum,
            pan_sumsq=self.pan_sumsq + other.pan_sumsq,
            pan_min=min(self.pan_min, other.pan_min),
            pan_max=max(self.pan_max, other.pan_max),
            ms_min=np.minimum(self.ms_min, other.ms_min),
            ms_max=np.maximum(self.ms_max, other.ms_max),
            lr_count=self.lr_count + other.lr_count,
            gram=self.gram + other.gram,
            pan_samples=_thin(np.concatenate([self.pan_samples, other.pan_samples])),
            ms_samples=_thin(np.concatenate([self.ms_samples, other.ms_samples], axis=1)),
        )


def _thin(samples: np.ndarray) -> np.ndarray:
    n = samples.shape[-1]
    if n <= MAX_POOLED_SAMPLES:
        return samples
    step = int(np.ceil(n / MAX_POOLED_SAMPLES))
    return samples[..., ::step]


def block_stats(
    pan: np.ndarray, ms: np.ndarray, ratio: int, pan_nodata: float | None, ms_nodata: float | None
) -> BlockStats:
    """Statistics of one aligned block: ``pan (H, W)``, ``ms (B, H/r, W/r)``, any dtype."""
    bands, h, w = ms.shape
    hr, lr = valid_mask(pan, ms, ratio, pan_nodata, ms_nodata)
    out = BlockStats(bands)
    pan_valid = pan[hr].astype(np.float64)
    if pan_valid.size:
        out.pan_count = int(pan_valid.size)
        out.pan_sum = float(pan_valid.sum())
        out.pan_sumsq = float(np.square(pan_valid).sum())
        out.pan_min, out.pan_max = float(pan_valid.min()), float(pan_valid.max())
        out.pan_samples = _stride_sample(pan_valid).astype(np.float32)
    if lr.any():
        ms_valid = ms[:, lr].astype(np.float64)  # (B, n)
        pan_lr = pan.astype(np.float64).reshape(h, ratio, w, ratio).mean(axis=(1, 3))[lr]
        x = np.vstack([ms_valid, pan_lr[None], np.ones((1, pan_lr.size))])
        out.lr_count = int(pan_lr.size)
        out.gram = x @ x.T
        out.ms_min, out.ms_max = ms_valid.min(axis=1), ms_valid.max(axis=1)
        out.ms_samples = _stride_sample(ms_valid).astype(np.float32)
    return out


def _stride_sample(values: np.ndarray) -> np.ndarray:
    n = values.shape[-1]
    step = max(1, n // SAMPLES_PER_BLOCK)
    return values[..., ::step]


@dataclass(frozen=True)
class SceneStats:
    """Per-scene statistics of valid pixels, for normalisation and method fitting.

    All values are in the scene's own units: counts or reflectance, held in
    ``ms_dtype`` (the MS dtype name, ``"uint16"``).
    """

    ms_dtype: str
    bands: int
    pan_count: int
    pan_mean: float
    pan_std: float
    pan_min: float
    pan_max: float
    ms_min: tuple[float, ...]
    ms_max: tuple[float, ...]
    lr_count: int
    gram: tuple[tuple[float, ...], ...]
    percentiles: tuple[float, ...]
    pan_percentiles: tuple[float, ...]
    ms_percentiles: tuple[tuple[float, ...], ...]

    @classmethod
    def from_blocks(cls, s: BlockStats, ms_dtype: str | np.dtype = "float32") -> SceneStats:
        """Finalise merged block statistics of a scene whose MS is ``ms_dtype``."""
        n = max(s.pan_count, 1)
        mean = s.pan_sum / n
        var = max(s.pan_sumsq / n - mean * mean, 0.0)
        q = np.asarray(PERCENTILES)
        pan_pct = np.percentile(s.pan_samples, q) if s.pan_samples.size else np.full(q.size, np.nan)
        ms_pct = (
            np.percentile(s.ms_samples, q, axis=1).T if s.ms_samples.shape[1] else np.full((s.bands, q.size), np.nan)
        )
        return cls(
            ms_dtype=str(ms_dtype),
            bands=s.bands,
            pan_count=s.pan_count,
            pan_mean=mean,
            pan_std=float(np.sqrt(var)),
            pan_min=s.pan_min,
            pan_max=s.pan_max,
            ms_min=tuple(map(float, s.ms_min)),
            ms_max=tuple(map(float, s.ms_max)),
            lr_count=s.lr_count,
            gram=tuple(tuple(map(float, row)) for row in s.gram),
            percentiles=PERCENTILES,
            pan_percentiles=tuple(map(float, pan_pct)),
            ms_percentiles=tuple(tuple(map(float, row)) for row in ms_pct),
        )

    @property
    def empty(self) -> bool:
        """True when no pixel of the scene is valid."""
        return self.pan_count == 0 or self.lr_count == 0

    def lr_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``(B+1,)`` and covariance ``(B+1, B+1)`` of ``[ms_1..ms_B, pan_lr]`` at MS resolution."""
        g = np.asarray(self.gram) / max(self.lr_count, 1)
        mean = g[:-1, -1]
        cov = g[:-1, :-1] - np.outer(mean, mean)
        return mean, cov

    def to_dict(self) -> dict:
        """JSON-ready form (stored in the tile store's attributes)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> SceneStats:
        """Inverse of :meth:`to_dict`."""
        tup: Callable[[Any], Any] = lambda v: tuple(tup(x) for x in v) if isinstance(v, list) else v  # noqa: E731
        return cls(**{k: tup(d[k]) for k in cls.__dataclass_fields__})
