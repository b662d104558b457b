"""Adapting a pretrained network to one scene: the tailor (or, for comparison, the whole network).

:func:`adapt_fuser` samples tiles from the scene (:mod:`.sampling`), reads
only those, and trains with the unsupervised losses of :mod:`.losses`:

* ``tailor``: the backbone stays frozen; its features of the sampled tiles are
  computed once, and only the tailor (kilobytes) is trained on them;
* ``full``: every weight of the network is fine-tuned on the same tiles and
  losses, as zero-shot methods do (features recomputed at every step);
* ``none``: direct transfer, nothing trained.

Training stops at the step budget, the time budget, or when the loss has not
improved by ``min_delta`` (relative) for ``patience`` steps.

On CUDA the training step (forward, losses, backward, Adam) is captured once as
a CUDA graph after a few eager steps and replayed at every later step: at 16
tiles of 64 px a step is a few hundred small kernels, and launching them one
by one from Python, not the arithmetic, is what a step costs on a GPU (300
tailor steps on an H100: 1.6 s eager, 0.4 s replayed).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from safetensors.torch import save
from torch import Tensor

from ..errors import InvalidParameterError
from ..models.backbones import Backbone, Inputs
from ..models.cards import card as model_card
from ..models.network import NetworkFuser, resident
from ..models.tailor import Tailor, TailorCard, TailorSpec, tailor_bytes
from ..scene import Scene
from ..sensors import get_sensor
from . import MODES
from .losses import SceneLoss
from .options import AdaptOptions, AdaptReport
from .sampling import adaptation_grid, sample_valid_tiles


@dataclass
class AdaptBatch:
    """The sampled tiles of one scene, prepared once for a fit, in model units on the fuser's device.

    ``x``: the prepared PAN ``(k, 1, P, P)``, MS ``(k, C, P/r, P/r)`` and upsampled MS; ``features``:
    the frozen backbone's ``(k, K, P', P')``; ``reference``: its output ``(k, C, P, P)``; ``rho_ref``:
    the local correlation of the upsampled MS with the PAN (the spatial loss's floor).
    """

    tiles: list[int]
    backbone: Backbone
    loss: SceneLoss
    x: Inputs
    features: Tensor
    reference: Tensor
    rho_ref: Tensor

    def objective(self, out: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The adaptation loss of an output ``(k, C, P, P)`` of these tiles, and its terms."""
        return self.loss(out, self.x.ms, self.x.pan, self.rho_ref, self.reference)


def adaptation_batch(scene: Scene, fuser: NetworkFuser, options: AdaptOptions = AdaptOptions()) -> AdaptBatch:
    """Sample ``options.k`` tiles of ``scene`` (:mod:`.sampling`), read only those, and compute what every
    step of a fit reuses: the prepared inputs, the frozen features and output, the spatial loss's floor."""
    sensor = get_sensor(scene.sensor)
    loss = SceneLoss(sensor.mtf_gains(scene.bands), scene.ratio, options.weights, degradation=options.degradation)
    tiles, pan_np, ms_np = sample_valid_tiles(
        scene, adaptation_grid(scene, options.patch), options.k, options.strategy, options.seed
    )
    dev = fuser.device
    backbone = resident(fuser.name, dev)
    pan, ms = torch.from_numpy(pan_np[:, None]).to(dev), torch.from_numpy(ms_np).to(dev)
    ms_scale = torch.tensor(fuser.ms_scale, device=dev).view(1, -1, 1, 1)
    with torch.no_grad():
        x = backbone.prepare(pan, ms, fuser.pan_scale, ms_scale)
        features = backbone.features(x)
        reference = backbone.head(features, x)
        rho_ref = loss.reference_correlation(x.pan, x.lms)
    return AdaptBatch(tiles, backbone, loss, x, features, reference, rho_ref)


StepProgress = Callable[[int, int, float], None]
"""``callback(steps_done, step_budget, loss)``, called as the loss of each step is read back."""


def adapt_fuser(
    scene: Scene,
    fuser: NetworkFuser,
    mode: str = "tailor",
    options: AdaptOptions = AdaptOptions(),
    progress: StepProgress | None = None,
) -> tuple[NetworkFuser, AdaptReport]:
    """Adapt the network of ``fuser`` (fitted to this scene, or to the scene it was degraded from)
    to ``scene``; returns the adapted fuser (for :func:`~pansharp_dist.fusion.pansharpen`) and the report.

    ``progress`` follows the training steps (on CUDA in groups of :data:`CHECK_EVERY`)."""
    if mode not in MODES:
        raise InvalidParameterError(f"unknown adaptation {mode!r}; choose one of {', '.join(MODES)}")
    model_id = fuser.name
    report = AdaptReport(mode)
    if mode == "none":
        return fuser, report
    start = time.perf_counter()
    batch = adaptation_batch(scene, fuser, options)
    report.tiles = batch.tiles
    backbone, x, feats = batch.backbone, batch.x, batch.features
    torch.manual_seed(options.seed)  # here: loading the backbone the first time draws from the generator
    module: Tailor | Backbone
    if mode == "tailor":
        module = Tailor(
            TailorSpec(feats.shape[1], options.spec_width, options.spec_depth, options.spec_kernel, options.spec_linear)
        ).to(fuser.device)
        forward = lambda: backbone.head(module(feats), x)  # noqa: E731
        lr = options.lr
    else:
        module = copy.deepcopy(backbone).requires_grad_(True).train()
        forward = lambda: module.head(module.features(x), x)  # noqa: E731
        lr = options.full_lr
    _train(module, forward, batch.objective, lr, options, report, start, fuser.device, progress)
    meta = model_card(model_id)
    if mode == "tailor":
        assert isinstance(module, Tailor)  # made above for this mode
        card = TailorCard(
            backbone=model_id,
            backbone_sha256=meta.sha256,
            scene=scene.name,
            spec=asdict(module.spec),
            losses={**options.weights.as_dict(), "degradation": options.degradation},
            steps=report.steps,
            seconds=round(report.seconds, 3),
            tiles=report.tiles,
            loss_history=[round(v, 6) for v in report.losses],
            kept_step=report.kept_step,
        )
        data = tailor_bytes(module.cpu(), card)
    else:
        data = save({k: v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()})
    return fuser.adapted(mode, data), report


CHECK_EVERY = 10  # steps between reading the loss back on CUDA (each read waits for the device); 1 on the CPU
GRAPH_WARMUP = 3  # eager steps before the step is captured (lazy initialisation of kernels and Adam's state)

Step = Callable[[], tuple[Tensor, dict[str, Tensor]]]


def _train(
    module,
    forward,
    objective,
    lr: float,
    options: AdaptOptions,
    report: AdaptReport,
    start: float,
    device: str,
    progress: StepProgress | None = None,
) -> None:
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(
        params, lr=lr, capturable=_on_cuda(device)
    )  # on CUDA, eager or graphed: the same Adam arithmetic

    def eager() -> tuple[Tensor, dict[str, Tensor]]:
        opt.zero_grad(set_to_none=True)
        total, terms = objective(forward())
        total.backward()
        opt.step()
        return total.detach(), terms

    step = training_step(eager, device, options)
    check_every = CHECK_EVERY if _on_cuda(device) else 1
    best, since = float("inf"), 0
    kept, report.kept_loss = None, float("inf")
    pending: list[Tensor] = []
    weights_before: list[list[Tensor]] = []  # of each pending step: a few kilobytes for a tailor
    report.stopped = "steps"
    for i in range(options.steps):
        weights_before.append([p.detach().clone() for p in params])
        total, terms = step()
        pending.append(total)
        report.steps = i + 1
        if len(pending) < check_every and i + 1 < options.steps:
            continue
        values = torch.stack(pending).tolist()
        pending.clear()
        report.losses += values
        report.terms = {k: float(v) for k, v in terms.items()}
        for j, (value, weights) in enumerate(zip(values, weights_before), start=len(report.losses) - len(values)):
            if value < report.kept_loss:
                kept, report.kept_loss, report.kept_step = weights, value, j
            if value < best * (1 - options.min_delta):
                best, since = value, 0
            else:
                since += 1
        weights_before.clear()
        if progress:
            progress(report.steps, options.steps, values[-1])
        if since >= options.patience:
            report.stopped = "converged"
            break
        if time.perf_counter() - start > options.seconds:
            report.stopped = "time budget"
            break
    _keep_best(params, kept, forward, objective, report)
    report.seconds = time.perf_counter() - start


def _keep_best(params: list[Tensor], kept: list[Tensor] | None, forward, objective, report: AdaptReport) -> None:
    """Leave in ``params`` the weights of the lowest loss: the last step's, or ``kept`` (a copy of earlier ones)."""
    with torch.no_grad():
        final = float(objective(forward())[0])
    assert report.kept_loss is not None  # _train set it before the first step
    if kept is None or final <= report.kept_loss:
        report.kept_step, report.kept_loss = report.steps, final
        return
    with torch.no_grad():
        for p, value in zip(params, kept):
            p.copy_(value)


def _on_cuda(device: str) -> bool:
    return torch.device(device).type == "cuda"


def training_step(eager: Step, device: str, options: AdaptOptions) -> Step:
    """How a fit on ``device`` runs the step ``eager``: as it is, or on CUDA (unless ``options.cuda_graph``
    is off) replayed as a graph (:class:`_GraphedStep`) after :data:`GRAPH_WARMUP` eager calls."""
    return _GraphedStep(eager) if _on_cuda(device) and options.cuda_graph else eager


class _GraphedStep:
    """A CUDA training step: :data:`GRAPH_WARMUP` eager steps on a side stream, then one capture of the
    step as a CUDA graph, replayed at every call from then on (the capture itself computes nothing).

    Returns, like the eager step, the step's total loss (a tensor of its own) and its terms (for a
    replayed step, tensors that the next replay overwrites)."""

    def __init__(self, eager: Step) -> None:
        self.eager = eager
        self.warm = 0
        self.side = torch.cuda.Stream()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[Tensor, dict[str, Tensor]] | None = None

    def __call__(self) -> tuple[Tensor, dict[str, Tensor]]:
        if self.warm < GRAPH_WARMUP:
            self.warm += 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                out = self.eager()
            torch.cuda.current_stream().wait_stream(self.side)
            return out
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static = self.eager()
        self.graph.replay()
        assert self.static is not None  # set by the capture, with the graph
        total, terms = self.static
        return total.clone(), terms
