"""The one interface every fusion method implements, and the registry of methods.

A method is fitted once per scene (from the scene's statistics) into a
:class:`Fuser`: a small, frozen, picklable object that declares its halo and
maps a batch of PAN tiles and MS tiles to HRMS tiles. The tiler, the cluster
and the exporter only ever see a ``Fuser``; they never ask which kind it is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import UnknownMethodError
from .sensors import Sensor
from .stats import SceneStats


@runtime_checkable
class Fuser(Protocol):
    """A method fitted to one scene.

    Attributes:
        name: method name as given on the command line.
        ratio: PAN/MS resolution ratio it was fitted for.
        halo: PAN pixels of context each tile needs on every side so that a
            tiled run equals a single pass over the whole scene.
        batch: tiles given to one :meth:`fuse` call; it bounds a task's working memory.
    """

    # read-only: fusers are frozen dataclasses, and some compute ``halo`` or share ``batch`` as a class variable
    @property
    def name(self) -> str: ...
    @property
    def ratio(self) -> int: ...
    @property
    def halo(self) -> int: ...
    @property
    def batch(self) -> int: ...

    def fuse(self, pan: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """Fuse a batch of tiles.

        Args:
            pan: ``(N, H, W)`` float32 PAN tiles.
            ms: ``(N, B, H/r, W/r)`` float32 MS tiles covering the same ground.

        Returns:
            ``(N, B, H, W)`` float32 pansharpened tiles, in the units of ``ms``.
        """
        ...


@runtime_checkable
class ResidentState(Protocol):
    """A fuser whose heavy state (a network) stays resident on each worker instead of travelling with tasks.

    The fuser itself stays small (kilobytes, pickled into every task); what it
    needs besides is sent to each worker once, by
    :class:`~pansharp_dist.resident.ResidentFuser`.

    Attributes:
        resources: Dask worker resources every task of this fuser needs (``{"GPU": 1}`` on CUDA).
        resident_key: names the resident state (checkpoint hash, adaptation hash, device).
        device: where the resident state lives (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
    """

    @property
    def resources(self) -> dict[str, float]: ...
    @property
    def resident_key(self) -> str: ...
    @property
    def device(self) -> str: ...

    def resident_payload(self) -> bytes | None:
        """Bytes each worker needs once (adaptation weights), or ``None``."""
        ...

    def make_resident(self, payload: bytes | None) -> None:
        """Install ``payload`` and load the heavy state in the calling process."""
        ...


def task_resources(fuser: Fuser) -> dict[str, float]:
    """Worker resources each fusion task of ``fuser`` requests (none for classical methods)."""
    return dict(fuser.resources) if isinstance(fuser, ResidentState) else {}


FuserFactory = Callable[..., Fuser]
"""``factory(stats, ratio, sensor, **options) -> Fuser``: a method made for one scene from its statistics."""


def _classical() -> dict[str, FuserFactory]:
    from . import classical

    return {
        "brovey": classical.brovey_fuser,
        "gsa": classical.gsa_fuser,
        "mtf-glp-hpm": classical.mtf_glp_hpm_fuser,
    }


def _network_fuser(model_id: str, stats: SceneStats, ratio: int, sensor: Sensor, **options: Any) -> Fuser:
    from .models.network import network_fuser  # torch is imported when a network is fitted, not before

    return network_fuser(model_id, stats, ratio, sensor, **options)


def _registry() -> dict[str, FuserFactory]:
    from .models.cards import model_ids

    return {**_classical(), **{model_id: partial(_network_fuser, model_id) for model_id in model_ids()}}


def method_names(kind: str | None = None) -> list[str]:
    """Names of the registered methods: all, or only ``"classical"`` ones, or only ``"network"`` ones."""
    if kind == "classical":
        return list(_classical())
    if kind == "network":
        from .models.cards import model_ids

        return model_ids()
    return list(_registry())


def is_network(name: str) -> bool:
    """Whether the method called ``name`` is a pretrained network (any case)."""
    return name.lower() in method_names("network")


def build_fuser(name: str, stats: SceneStats, ratio: int, sensor: Sensor, **options: object) -> Fuser:
    """Fit the method called ``name`` to a scene's statistics.

    Args:
        name: a name from :func:`method_names`.
        stats: the scene's statistics (from the tile store or :func:`scene_stats`).
        ratio: PAN/MS resolution ratio.
        sensor: sensor facts (MTF gains) for methods that use them.
        options: method-specific options (``weights`` for Brovey; ``device``, ``half``,
            ``batch`` for networks).
    """
    return _registry()[check_method(name)](stats, ratio, sensor, **options)


def check_method(name: str) -> str:
    """``name`` in lower case, the key of a registered method.

    Raises:
        UnknownMethodError: no method is called ``name``; the message lists those there are (and says
            why, for a network that is not shipped).
    """
    if name.lower() not in _registry():
        from .models.cards import withheld_note

        raise UnknownMethodError(
            f"unknown method {name!r}; choose one of {', '.join(method_names())}{withheld_note(name)}"
        )
    return name.lower()
