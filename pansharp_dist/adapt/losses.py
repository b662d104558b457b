"""Physics-aware unsupervised losses for adapting a network to one scene.

All tensors are in model units (:mod:`pansharp_dist.models.radiometry`), NCHW:
``out (N, C, H, W)`` the network's output, ``ms (N, C, H/r, W/r)``, ``pan (N, 1, H, W)``.

* **spectral consistency**: the output, filtered by the sensor's MTF (the
  toolbox ``genMTF`` design of :mod:`pansharp_dist.quality.mtf`, per band) and
  decimated by the ratio, against the MS: mean absolute difference;
* **spatial consistency**: the local correlation (``window`` x ``window`` boxes)
  of each output band with the PAN, penalised only where it falls below the
  correlation that the MS-PAN pair itself shows (the upsampled MS against the
  PAN degraded to MS resolution and upsampled back): mean of
  ``max(0, rho_ref - rho_out)``;
* **consistency**: mean absolute difference between the adapted output and the
  frozen backbone's, which keeps the adaptation a correction.

``total = spectral * w_spectral + spatial * w_spatial + consistency * w_consistency``
with the weights of :class:`LossWeights` (defaults: 1, 0.36, 0.1; the spatial
weight is Z-PNN's beta for its structural term).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.backbones import upsample_cubic
from ..quality.mtf import mtf_kernel

EPS = 1e-6


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms of the adaptation loss."""

    spectral: float = 1.0
    spatial: float = 0.36
    consistency: float = 0.1

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def box_mean(t: Tensor, window: int) -> Tensor:
    """Mean over sliding ``window`` x ``window`` boxes (valid), through running sums along each axis."""
    rows = F.pad(t.cumsum(-2), (0, 0, 1, 0))
    rows = rows[..., window:, :] - rows[..., :-window, :]
    cols = F.pad(rows.cumsum(-1), (1, 0))
    return (cols[..., window:] - cols[..., :-window]) / (window * window)


def local_correlation(a: Tensor, b: Tensor, window: int) -> Tensor:
    """Correlation coefficient of ``a`` and ``b`` (broadcast over channels) in sliding boxes (valid).

    Flat boxes (zero variance in either image) give 0.
    """
    mean = lambda t: box_mean(t, window)  # noqa: E731
    ma, mb = mean(a), mean(b)
    cov = mean(a * b) - ma * mb
    va = (mean(a * a) - ma * ma).clamp_min(0)
    vb = (mean(b * b) - mb * mb).clamp_min(0)
    return cov / (torch.sqrt(va * vb) + EPS)


class SceneLoss(nn.Module):
    """The adaptation loss for one sensor: MTF filters per band, the ratio and the weights.

    Args:
        ms_gains: MTF gain at Nyquist of each MS band (the sensor registry's).
        pan_gain: MTF gain of the PAN.
        ratio: PAN/MS ratio.
        weights: term weights.
        window: side of the local-correlation boxes, PAN pixels (default ``2 * ratio + 1``).
    """

    def __init__(
        self, ms_gains: tuple[float, ...], pan_gain: float, ratio: int,
        weights: LossWeights = LossWeights(), window: int | None = None,
    ) -> None:
        super().__init__()
        self.ratio = ratio
        self.weights = weights
        self.window = window or 2 * ratio + 1
        ms_k = np.stack([mtf_kernel(float(g), ratio) for g in ms_gains])[:, None]
        self.register_buffer("ms_kernel", torch.as_tensor(ms_k, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "pan_kernel", torch.as_tensor(mtf_kernel(float(pan_gain), ratio)[None, None], dtype=torch.float32),
            persistent=False,
        )

    def degrade(self, image: Tensor, kernel: Tensor) -> Tensor:
        """MTF-filter each channel (replicated borders) and keep pixel ``ratio // 2`` of each cell.

        The filter is evaluated at the kept pixels only (a strided convolution).
        """
        half, r = kernel.shape[-1] // 2, self.ratio
        padded = F.pad(image, (half,) * 4, mode="replicate")[..., r // 2 :, r // 2 :]
        return F.conv2d(padded, kernel, stride=r, groups=image.shape[1])

    def spectral(self, out: Tensor, ms: Tensor) -> Tensor:
        return (self.degrade(out, self.ms_kernel) - ms).abs().mean()

    def reference_correlation(self, pan: Tensor, lms: Tensor) -> Tensor:
        """``rho_ref``: local correlation of the upsampled MS with the PAN seen at MS resolution.

        The degraded PAN is upsampled with the backbones' MS upsampler, so both images went
        through the same interpolator.
        """
        pan_lr = upsample_cubic(self.degrade(pan, self.pan_kernel), self.ratio)
        return local_correlation(lms, pan_lr, self.window)

    def spatial(self, out: Tensor, pan: Tensor, rho_ref: Tensor) -> Tensor:
        return (rho_ref - local_correlation(out, pan, self.window)).clamp_min(0).mean()

    @staticmethod
    def consistency(out: Tensor, reference: Tensor) -> Tensor:
        return (out - reference).abs().mean()

    def forward(
        self, out: Tensor, ms: Tensor, pan: Tensor, rho_ref: Tensor, reference: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted total and each term (detached tensors: reading them waits for the device)."""
        terms = {
            "spectral": self.spectral(out, ms),
            "spatial": self.spatial(out, pan, rho_ref),
            "consistency": self.consistency(out, reference),
        }
        w = self.weights
        total = w.spectral * terms["spectral"] + w.spatial * terms["spatial"] + w.consistency * terms["consistency"]
        return total, {k: v.detach() for k, v in terms.items()}
