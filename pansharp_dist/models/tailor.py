"""The Feature Tailor: a small residual module between a frozen backbone's ``features`` and ``head``.

``tailored(x) = head(T(features(x)), x)`` with ``T(F) = F + L(F) + B(F)``: ``L`` a
1 x 1 linear map of the feature channels and ``B`` a stack of convolutions with
ReLU, whose last layers start at zero, so that an untrained tailor gives the
backbone's output exactly. ``L`` corrects the features' gains and mixing
directly, which ``B`` alone reaches slowly through its ReLU (see
:class:`~pansharp_dist.adapt.training.AdaptOptions`). The default (the linear map and
one hidden layer of 64 channels, 1 x 1 kernels) has 5,248 weights on a
32-channel backbone, 21 KB in float32, and leaves the receptive field alone;
``kernel=3`` widens it by ``depth + 1`` pixels (the fuser's halo grows with it).

A trained tailor is saved as safetensors with a card in the file's metadata
(backbone id and SHA-256, scene, losses, steps, seconds, tiles used).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor, nn

from ..errors import CorruptInputError, InvalidParameterError
from .backbones import Backbone


@dataclass(frozen=True)
class TailorSpec:
    """Shape of a tailor: ``channels`` of the backbone's features, ``width`` hidden channels,
    ``depth`` hidden layers, ``kernel`` size (odd), ``linear``: with the 1 x 1 linear map ``L``."""

    channels: int
    width: int = 64
    depth: int = 1
    kernel: int = 1
    linear: bool = True

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise InvalidParameterError(
                f"tailor width {self.width} and depth {self.depth} must be >= 1 and its kernel {self.kernel} odd"
            )

    @property
    def radius(self) -> int:
        """PAN pixels the tailor adds to the receptive field on each side."""
        return (self.depth + 1) * (self.kernel // 2)


class Tailor(nn.Module):
    """``F + L(F) + B(F)``: ``L`` a zero-initialised 1 x 1 convolution (when ``spec.linear``), ``B``
    ``depth`` convolutions with ReLU, then a zero-initialised one back to ``channels``."""

    def __init__(self, spec: TailorSpec) -> None:
        super().__init__()
        self.spec = spec
        pad = spec.kernel // 2
        layers: list[nn.Module] = []
        c = spec.channels
        for _ in range(spec.depth):
            layers += [nn.Conv2d(c, spec.width, spec.kernel, padding=pad), nn.ReLU()]
            c = spec.width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(c, spec.channels, spec.kernel, padding=pad)
        self.linear = nn.Conv2d(spec.channels, spec.channels, 1) if spec.linear else None
        for conv in (self.out, self.linear):
            if conv is not None:
                assert conv.bias is not None  # Conv2d's default bias=True
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, f: Tensor) -> Tensor:
        out = f + self.out(self.body(f))
        return out if self.linear is None else out + self.linear(f)


class Tailored(nn.Module):
    """A frozen backbone with a tailor between its features and its head."""

    def __init__(self, backbone: Backbone, tailor: Tailor) -> None:
        super().__init__()
        self.backbone = backbone
        self.tailor = tailor

    def forward(self, pan: Tensor, ms: Tensor, pan_scale: float, ms_scale: Tensor | float) -> Tensor:
        """As :meth:`Backbone.forward`, with the tailor between ``features`` and ``head``."""
        x = self.backbone.prepare(pan, ms, pan_scale, ms_scale)
        return self.backbone.head(self.tailor(self.backbone.features(x)), x) / ms_scale


@dataclass
class TailorCard:
    """Where a tailor came from: what it adapts, to which scene, and how it was trained.

    ``kept_step``: the weights are those before that training step (``steps``: after the last;
    0: the untrained tailor, which reproduces the backbone), the lowest loss the fit saw.
    """

    backbone: str
    backbone_sha256: str
    scene: str
    spec: dict
    losses: dict
    steps: int
    seconds: float
    tiles: list = field(default_factory=list)
    loss_history: list = field(default_factory=list)
    kept_step: int | None = None


def tailor_bytes(tailor: Tailor, card: TailorCard) -> bytes:
    """The tailor as safetensors bytes, its card in the metadata."""
    state = {k: v.detach().float().cpu().contiguous() for k, v in tailor.state_dict().items()}
    return save(state, metadata={"card": json.dumps(asdict(card), sort_keys=True)})


def tailor_from_bytes(data: bytes) -> tuple[Tailor, TailorCard]:
    """Inverse of :func:`tailor_bytes`."""
    try:
        state = load(data)
        meta = json.loads(_metadata(data)["card"])
        card = TailorCard(**meta)
        tailor = Tailor(TailorSpec(**{"linear": False, **card.spec}))  # files from before the linear map
        tailor.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CorruptInputError(f"not a pansharp-dist tailor ({type(exc).__name__}: {exc})") from None
    return tailor.eval(), card


def _metadata(data: bytes) -> dict:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]).get("__metadata__", {})
