"""A pretrained backbone on the method interface (a :class:`~pansharp_dist.methods.Fuser`).

The fitted fuser is a few numbers, the model id and the SHA-256 of its
adaptation weights; it pickles to well under a kilobyte. The backbone is
loaded once per process (a Dask worker keeps it resident) and moved to the
device there; adaptation weights are installed once per process by hash
(:func:`install_weights`; on a cluster, :class:`~pansharp_dist.resident.ResidentFuser`
does it on every worker, present and future). Inference runs under ``torch.inference_mode()``, channels-last,
on batches of tiles; on CUDA under float16 autocast unless ``half=False``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import threading
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
from safetensors.torch import load as safetensors_load

from ..errors import ClusterError, InvalidParameterError
from ..sensors import Sensor
from ..stats import SceneStats
from .backbones import Backbone
from .cards import card
from .checkpoints import load
from .radiometry import radiometry_for
from .tailor import Tailored, tailor_from_bytes

CPU_BATCH = 4
GPU_BATCH = 16


def default_device() -> str:
    """``"cuda"`` when a CUDA device is present, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """``device`` itself when networks can run on it here: ``cpu``, or ``cuda``/``cuda:N`` with a CUDA device.

    Raises:
        InvalidParameterError: another device, or CUDA where torch sees none.
    """
    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda"):
        raise InvalidParameterError(f"unknown device {device!r}: use cpu or cuda (cuda:N for one GPU of several)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(f"device {device} asked for, but torch sees no CUDA device: use `device='cpu'`")
    return device


def _halo(radius: int, ratio: int) -> int:
    """A receptive radius in PAN pixels, rounded up to a multiple of the ratio (tile halos are)."""
    return ratio * math.ceil(radius / ratio)


@lru_cache(maxsize=8)
def resident(model_id: str, device: str) -> Backbone:
    """The backbone ``model_id`` on ``device``, channels-last, loaded once per process and device.

    Off the CPU it is a copy of :func:`load`'s: ``Module.to`` moves a module in place, and a
    process that runs a network on the CPU and on a GPU (the adaptation and its reference, a
    benchmark) must keep both."""
    model = load(model_id)
    if torch.device(device).type != "cpu":
        model = copy.deepcopy(model)
    # Module.to takes memory_format; torch's stubs omit it
    return model.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]


_WEIGHTS: dict[str, bytes] = {}
"""Adaptation weights installed in this process, by SHA-256 hex digest."""


def install_weights(data: bytes) -> str:
    """Keep adaptation weights (safetensors bytes) in this process; returns their SHA-256 hex digest."""
    sha = hashlib.sha256(data).hexdigest()
    _WEIGHTS.setdefault(sha, data)
    return sha


def installed_weights(sha: str) -> bytes:
    """The adaptation weights of digest ``sha`` installed in this process.

    Raises:
        ClusterError: they were never installed here (a worker that did not get the fuser's plugin).
    """
    try:
        return _WEIGHTS[sha]
    except KeyError:
        raise ClusterError(
            f"adaptation weights {sha[:12]} are not installed in this process; on a Dask cluster install the "
            "fuser on the workers first: pansharp_dist.resident.install_fuser(client, fuser)"
        ) from None


@lru_cache(maxsize=8)
def adapted_model(model_id: str, device: str, mode: str, sha: str) -> torch.nn.Module:
    """The backbone with a tailor (``mode="tailor"``) or fine-tuned weights (``"full"``), once per process."""
    weights = installed_weights(sha)
    if mode == "tailor":
        tailor, _ = tailor_from_bytes(weights)
        # Module.to takes memory_format; torch's stubs omit it
        return Tailored(resident(model_id, device), tailor.to(device=device, memory_format=torch.channels_last)).eval()  # type: ignore[call-overload]
    model = copy.deepcopy(load(model_id))
    model.load_state_dict(safetensors_load(weights))
    # Module.to takes memory_format; torch's stubs omit it
    return model.to(device=device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]


@lru_cache(maxsize=8)
def _pinned(shape: tuple[int, ...], thread: int) -> torch.Tensor:
    """A page-locked float32 host buffer of ``shape`` for ``thread``."""
    return torch.empty(shape, dtype=torch.float32, pin_memory=True)


@dataclass(frozen=True)
class NetworkFuser:
    """A backbone fitted to one scene.

    Attributes:
        name: the model id (``fusionnet-wv3``).
        ratio: PAN/MS ratio.
        halo: PAN pixels of context per tile (the receptive radius, rounded up to the ratio).
        pan_scale, ms_scale: model units per scene unit (:mod:`~pansharp_dist.models.radiometry`).
        rule: the radiometry rule that gave them, in words.
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...).
        half: float16 autocast (CUDA only).
        batch: tiles per forward pass.
        adaptation: ``"none"`` (direct transfer), ``"tailor"`` or ``"full"``.
        weights_sha: SHA-256 of the adaptation weights (the tailor, kilobytes, or the fine-tuned
            network), installed in this process; ``None`` for ``"none"``.
        worker_resources: ``(name, amount)`` pairs of Dask worker resources each task needs
            (``(("GPU", 1),)`` on CUDA by default).
    """

    name: str
    ratio: int
    halo: int
    pan_scale: float
    ms_scale: tuple[float, ...]
    rule: str
    device: str
    half: bool
    batch: int
    adaptation: str = "none"
    weights_sha: str | None = None
    worker_resources: tuple[tuple[str, float], ...] = ()

    @property
    def weights(self) -> bytes | None:
        """The adaptation weights (safetensors bytes), ``None`` for direct transfer."""
        return None if self.weights_sha is None else installed_weights(self.weights_sha)

    @property
    def resources(self) -> dict[str, float]:
        """Dask worker resources each task of this fuser needs."""
        return dict(self.worker_resources)

    def adapted(self, mode: str, weights: bytes) -> NetworkFuser:
        """This fuser with an adaptation (installed in this process); the halo grows by the tailor's receptive field."""
        extra = tailor_from_bytes(weights)[0].spec.radius if mode == "tailor" else 0
        halo = _halo(card(self.name).receptive_radius + extra, self.ratio)
        return replace(self, adaptation=mode, weights_sha=install_weights(weights), halo=halo)

    @property
    def resident_key(self) -> str:
        """Checkpoint hash, adaptation hash and device: what a worker keeps resident for this fuser."""
        return f"{card(self.name).sha256[:16]}-{(self.weights_sha or 'none')[:16]}-{self.device}"

    def resident_payload(self) -> bytes | None:
        """What a worker needs besides this object: the adaptation weights (kilobytes for a tailor)."""
        return self.weights

    def make_resident(self, payload: bytes | None) -> None:
        """Install ``payload`` and load the model in this process, so that tasks find them ready."""
        if payload is not None:
            install_weights(payload)
        self.model()

    def model(self) -> torch.nn.Module:
        """The network this fuser runs (with its adaptation), resident on its device in this process."""
        if self.weights_sha is None:
            return resident(self.name, self.device)
        return adapted_model(self.name, self.device, self.adaptation, self.weights_sha)

    def fuse(self, pan: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """``pan (N, H, W)``, ``ms (N, B, H/r, W/r)`` float32 scene units to ``(N, B, H, W)`` float32.

        On CUDA the result is copied to a page-locked buffer kept per thread and
        shape, then to the returned array: device-to-host copies straight into
        pageable memory ran at a fifth of the speed.
        """
        model = self.model()
        cuda = self.device.startswith("cuda")
        shape = (pan.shape[0], ms.shape[1], *pan.shape[1:])
        out = _pinned(shape, threading.get_ident()) if cuda else torch.empty(shape)
        ms_scale = torch.tensor(self.ms_scale, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=cuda and self.half):
            for i in range(0, pan.shape[0], self.batch):
                p, m = (
                    torch.from_numpy(np.ascontiguousarray(a[i : i + self.batch], np.float32))
                    .to(self.device, non_blocking=True)
                    .contiguous(memory_format=torch.channels_last)
                    for a in (pan[:, None], ms)
                )
                out[i : i + self.batch].copy_(model(p, m, self.pan_scale, ms_scale), non_blocking=cuda)
        if cuda:
            torch.cuda.synchronize(self.device)
            return out.numpy().copy()
        return out.numpy()


def network_fuser(
    model_id: str,
    stats: SceneStats,
    ratio: int,
    sensor: Sensor,
    *,
    device: str | None = None,
    half: bool = True,
    batch: int | None = None,
    resources: dict[str, float] | None = None,
) -> NetworkFuser:
    """Fit the backbone ``model_id`` to a scene: check bands and ratio, choose the radiometry.

    ``resources`` are the Dask worker resources its tasks request (default: ``{"GPU": 1}`` on CUDA, none on CPU).
    """
    meta = card(model_id)
    meta.check_fits(stats.bands, ratio)
    device = check_device(device or default_device())
    radiometry = radiometry_for(stats, sensor, meta.input_p99_ms, meta.input_p99_pan)
    cuda = device.startswith("cuda")
    return NetworkFuser(
        name=meta.id,
        ratio=ratio,
        halo=_halo(meta.receptive_radius, ratio),
        pan_scale=radiometry.pan_scale,
        ms_scale=radiometry.ms_scale,
        rule=radiometry.rule,
        device=device,
        half=half and cuda,
        batch=batch or (GPU_BATCH if cuda else CPU_BATCH),
        worker_resources=tuple(sorted((resources if resources is not None else {"GPU": 1} if cuda else {}).items())),
    )
