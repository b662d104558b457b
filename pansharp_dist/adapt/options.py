"""What an adaptation is asked to do and what it reports: plain values, no torch.

The command line and the pipeline build these before deciding whether a network
runs at all, so they live apart from the fit (:mod:`.training`), which needs torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..errors import InvalidParameterError


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms of the adaptation loss."""

    spectral: float = 1.0
    spatial: float = 1.0
    consistency: float = 0.1

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class AdaptReport:
    """What a fit did: mode, steps, seconds, tiles (grid indices), loss per step, final terms, why it stopped.

    ``losses[i]`` is the loss of the weights before step ``i`` (``losses[0]``: the backbone's own).
    The fit returns the weights of the lowest loss it saw: those before step ``kept_step``
    (``kept_step == steps``: the weights after the last step), whose loss is ``kept_loss``.
    """

    mode: str
    steps: int = 0
    seconds: float = 0.0
    tiles: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    terms: dict[str, float] = field(default_factory=dict)
    stopped: str = "not trained"
    kept_step: int = 0
    kept_loss: float | None = None


@dataclass(frozen=True)
class AdaptOptions:
    """Knobs of the fit. ``k``: tiles; ``patch``: their side in PAN pixels; ``steps``/``seconds``: budgets;
    ``lr``: Adam's step for the tailor, ``full_lr`` for the whole network; ``spec_*``: the tailor's shape;
    ``cuda_graph``: on CUDA, replay the training step as a captured graph (``False``: eager steps);
    ``degradation``: how the spectral loss reduces the output to the MS grid (:data:`~.losses.DEGRADATIONS`).

    The tailor's shape (the linear map, one hidden layer of 64 channels, 1 x 1 kernels) was chosen
    with FusionNet on the two reduced-resolution pairs that have a native model, WorldView-3 on
    imgWV2 and WorldView-2 on the WorldView-3 patches: share of the SAM gap to the native model
    closed, 53% and 51%. Without the linear map (16 channels, 3 x 3): 51% and 32%; with it,
    3 x 3 kernels: 54% and 45% (one-off scripts, these options). The linear map also lifts the
    full-resolution HQNR where direct transfer is worst (FusionNet GeoEye-1 on dgif pair 4, 300
    steps as in ``python -m benchmarks tailor``: 0.06 direct, 0.67 without it, 0.84 with it; full
    fine-tuning 0.94).
    """

    k: int = 16
    patch: int = 64
    strategy: str = "manifold"
    steps: int = 300
    seconds: float = 120.0
    lr: float = 3e-3
    full_lr: float = 1e-4
    patience: int = 30
    min_delta: float = 1e-3
    seed: int = 0
    weights: LossWeights = LossWeights()
    spec_width: int = 64
    spec_depth: int = 1
    spec_kernel: int = 1
    spec_linear: bool = True
    cuda_graph: bool = True
    degradation: str = "mtf"

    def __post_init__(self) -> None:
        whole = {
            "k": (self.k, "tiles to train on"),
            "patch": (self.patch, "the side of a training tile"),
            "steps": (self.steps, "the step budget"),
            "patience": (self.patience, "the steps without gain"),
        }
        for name, (value, what) in whole.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{what} ({name}) must be a whole number of at least 1, got {value}", name)
        positive = {
            "seconds": "the time budget",
            "lr": "the tailor's learning rate",
            "full_lr": "the whole network's learning rate",
        }
        for name, what in positive.items():
            value = getattr(self, name)
            if (
                not (isinstance(value, (int, float)) and value > 0)
                or math.isnan(value)
                or (name != "seconds" and math.isinf(value))
            ):
                raise InvalidParameterError(f"{what} ({name}) must be a positive number, got {value}", name)
        if not (isinstance(self.min_delta, (int, float)) and 0 <= self.min_delta < 1):
            raise InvalidParameterError(f"min_delta must lie in [0, 1), got {self.min_delta}", "min_delta")
