"""Pretrained pansharpening networks, split where fused features meet the channel mapper.

Every backbone maps a PAN batch ``(N, 1, H, W)`` and an MS batch ``(N, C, H/r, W/r)``,
both float32 in the scene's units, to an HRMS batch ``(N, C, H, W)`` in the same
units. Inside, in three steps that the Feature Tailor can separate:

* :meth:`Backbone.prepare`: scale to the model's input units (model units per
  scene unit, for the PAN and for each MS band, from
  :mod:`~pansharp_dist.models.radiometry`) and
  upsample the MS to the PAN grid with the cubic kernel the training data
  used (``lms``);
* :meth:`Backbone.features`: everything up to the input of the last
  convolution, ``F (N, K, H', W')``;
* :meth:`Backbone.head`: the last convolution (the channel mapper) plus the
  ``lms`` skip where the network has one, in model units.

``forward(pan, ms, pan_scale, ms_scale) = head(features(prepare(...))) / ms_scale``.

Layouts and forwards follow the DLPan-Toolbox checkpoints in
``../shared/weights/pancollection`` (their README); the PanNet high-pass and the
PNN forward were settled on the FusionNet WorldView-3 patches (ERGAS 4.3 and
4.2 against 8.6 for ``lms``; the alternatives scored 7.1 and above).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..resample import CUBIC_HALO_MS, cubic_phases


class Inputs(NamedTuple):
    """A prepared batch, in model units: ``pan (N,1,H,W)``, ``ms (N,C,h,w)``, ``lms (N,C,H,W)``."""

    pan: Tensor
    ms: Tensor
    lms: Tensor


def _upsample_axis(x: Tensor, ratio: int, dim: int) -> Tensor:
    n = x.shape[dim]
    pad = (0, 0, 2, 2) if dim == -2 else (2, 2, 0, 0)
    xp = F.pad(x, pad, mode="replicate")
    phases: list[Tensor] = []
    for first, weights in cubic_phases(ratio):
        start = first + 2
        # a sum of four tensors is a tensor (sum()'s type also allows the 0 of an empty sum)
        phases.append(cast(Tensor, sum(w * xp.narrow(dim, start + m, n) for m, w in enumerate(weights))))
    out = torch.stack(phases, dim=dim)
    return out.flatten(-3, -2) if dim == -2 else out.flatten(-2, -1)


def upsample_cubic(ms: Tensor, ratio: int) -> Tensor:
    """Upsample ``(N, C, h, w)`` to ``(N, C, h*r, w*r)``: Keys cubic (a = -0.5), pixel-is-area, edges replicated.

    The same kernel as :func:`pansharp_dist.resample.upsample` and MATLAB's
    ``imresize(..., 'bicubic')``: it reproduces the ``lms`` of PanCollection's
    training data to 0.3 counts away from the patch border. Each output pixel
    reads the 4 x 4 nearest MS pixels.
    """
    return _upsample_axis(_upsample_axis(ms, ratio, -2), ratio, -1)


def box_highpass(x: Tensor, size: int = 5) -> Tensor:
    """``x`` minus its ``size`` x ``size`` box mean (reflected borders): PanNet's high-pass."""
    half = size // 2
    return x - F.avg_pool2d(F.pad(x, (half,) * 4, mode="reflect"), size, stride=1)


class ResBlock(nn.Module):
    """``x + conv21(relu(conv20(x)))``, 3x3 'same' convolutions, no activation after the sum."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv20 = nn.Conv2d(width, width, 3, padding=1)
        self.conv21 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv21(F.relu(self.conv20(x)))


class Backbone(nn.Module):
    """A pretrained network with :meth:`features` and :meth:`head` apart.

    Attributes:
        arch: architecture id (``"fusionnet"``).
        bands: number of MS bands ``C`` it was trained on.
        ratio: PAN/MS resolution ratio it was trained on.
        width: feature channels ``K`` of ``F``.
    """

    arch: ClassVar[str]
    width: ClassVar[int]
    conv3: nn.Conv2d  # the last convolution (the channel mapper), made by each architecture

    def __init__(self, bands: int, ratio: int = 4) -> None:
        super().__init__()
        self.bands = bands
        self.ratio = ratio

    def prepare(self, pan: Tensor, ms: Tensor, pan_scale: float, ms_scale: Tensor | float) -> Inputs:
        """Scene units to model units, and the MS upsampled to the PAN grid.

        ``ms_scale`` is a number or a ``(1, C, 1, 1)`` tensor of per-band scales.
        """
        pan, ms = pan * pan_scale, ms * ms_scale
        return Inputs(pan, ms, upsample_cubic(ms, self.ratio))

    def features(self, x: Inputs) -> Tensor:
        """``F (N, width, H', W')``: the input of the last convolution."""
        raise NotImplementedError

    def head(self, f: Tensor, x: Inputs) -> Tensor:
        """``(N, C, H, W)`` in model units from ``F`` (and ``lms`` for the skip)."""
        return x.lms + self.conv3(f)

    def forward(
        self, pan: Tensor, ms: Tensor, pan_scale: float = 1 / 2047, ms_scale: Tensor | float = 1 / 2047
    ) -> Tensor:
        """``(N, C, H, W)`` HRMS in scene units from scene-unit ``pan`` and ``ms``."""
        x = self.prepare(pan, ms, pan_scale, ms_scale)
        return self.head(self.features(x), x) / ms_scale

    def conv_radius(self) -> int:
        """PAN pixels of context on each side that the convolutions add to the prepared inputs."""
        raise NotImplementedError

    def receptive_radius(self) -> int:
        """PAN pixels on each side that one output pixel depends on, from the scene's PAN and MS."""
        return self.conv_radius() + CUBIC_HALO_MS * self.ratio


class FusionNet(Backbone):
    """Deng et al., TGRS 2021: residual blocks on ``PAN - lms``; ``out = lms + conv3(F)``."""

    arch = "fusionnet"
    width = 32

    def __init__(self, bands: int, ratio: int = 4) -> None:
        super().__init__(bands, ratio)
        self.conv1 = nn.Conv2d(bands, self.width, 3, padding=1)
        self.res1, self.res2, self.res3, self.res4 = (ResBlock(self.width) for _ in range(4))
        self.conv3 = nn.Conv2d(self.width, bands, 3, padding=1)

    def features(self, x: Inputs) -> Tensor:
        f = F.relu(self.conv1(x.pan.expand_as(x.lms) - x.lms))
        return self.res4(self.res3(self.res2(self.res1(f))))

    def conv_radius(self) -> int:
        return 10


class DiCNN(Backbone):
    """He et al., JSTARS 2019 (DiCNN1): three convolutions on ``[lms, PAN]``; ``out = lms + conv3(F)``."""

    arch = "dicnn"
    width = 64

    def __init__(self, bands: int, ratio: int = 4) -> None:
        super().__init__(bands, ratio)
        self.conv1 = nn.Conv2d(bands + 1, self.width, 3, padding=1)
        self.conv2 = nn.Conv2d(self.width, self.width, 3, padding=1)
        self.conv3 = nn.Conv2d(self.width, bands, 3, padding=1)

    def features(self, x: Inputs) -> Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(torch.cat([x.lms, x.pan], 1)))))

    def conv_radius(self) -> int:
        return 3


class PanNet(Backbone):
    """Yang et al., ICCV 2017: high-pass inputs, the MS one upsampled by a learnt transposed convolution.

    ``F = res(relu(conv1([deconv(hp(ms)), hp(PAN)])))`` with ``hp`` a 5 x 5 box
    high-pass; ``out = lms + conv3(F)``.
    """

    arch = "pannet"
    width = 32

    def __init__(self, bands: int, ratio: int = 4) -> None:
        super().__init__(bands, ratio)
        self.deconv = nn.ConvTranspose2d(bands, bands, 2 * ratio, stride=ratio, padding=ratio // 2)
        self.conv1 = nn.Conv2d(bands + 1, self.width, 3, padding=1)
        self.res1, self.res2, self.res3, self.res4 = (ResBlock(self.width) for _ in range(4))
        self.conv3 = nn.Conv2d(self.width, bands, 3, padding=1)

    def features(self, x: Inputs) -> Tensor:
        up = self.deconv(box_highpass(x.ms))
        f = F.relu(self.conv1(torch.cat([up, box_highpass(x.pan)], 1)))
        return self.res4(self.res3(self.res2(self.res1(f))))

    def conv_radius(self) -> int:
        return 10

    def receptive_radius(self) -> int:
        ms_path = (2 + 2) * self.ratio + self.conv_radius()  # box (2 MS px), deconv (2 MS px), convs
        return max(ms_path, CUBIC_HALO_MS * self.ratio)


class PNN(Backbone):
    """Masi et al., Remote Sensing 2016: valid 9/5/5 convolutions on ``[lms, PAN]``, no skip.

    The network was trained on unpadded convolutions, which shrink the image by
    8 pixels on each side; the input is padded by 8 replicated pixels so that
    the output covers the input (on the WorldView-3 patches: ERGAS 4.29 with
    replicated borders, 4.32 reflected, 6.8 zero-padded). ``F`` is therefore 2
    pixels larger than the output on each side (the last 5 x 5 convolution is unpadded).
    """

    arch = "pnn"
    width = 32
    shrink = 8

    def __init__(self, bands: int, ratio: int = 4) -> None:
        super().__init__(bands, ratio)
        self.conv1 = nn.Conv2d(bands + 1, 64, 9)
        self.conv2 = nn.Conv2d(64, self.width, 5)
        self.conv3 = nn.Conv2d(self.width, bands, 5)

    def features(self, x: Inputs) -> Tensor:
        inp = F.pad(torch.cat([x.lms, x.pan], 1), (self.shrink,) * 4, mode="replicate")
        return F.relu(self.conv2(F.relu(self.conv1(inp))))

    def head(self, f: Tensor, x: Inputs) -> Tensor:
        return self.conv3(f)

    def conv_radius(self) -> int:
        return self.shrink


ARCHITECTURES: dict[str, type[Backbone]] = {cls.arch: cls for cls in (FusionNet, PanNet, DiCNN, PNN)}
