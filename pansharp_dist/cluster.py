"""Getting a Dask client from a cluster spec: start a local cluster or join a running scheduler.

Cluster specs (``--scheduler``):

- ``auto`` (the command line's default): no cluster for a scene of at most
  :data:`IN_PROCESS_MEGAPIXELS` PAN megapixels (as ``threads``), else ``local``;
- ``threads``: no cluster: the run stays in this process, on dask's threads (the
  client is ``None``). Nothing to start or stop, so a small scene takes about
  as long as its computation;
- ``local``: a :class:`distributed.LocalCluster` sized to the machine, one
  single-threaded worker process per core. When torch sees a CUDA device, each
  worker advertises one ``GPU`` resource (they share the device).
- ``cuda``: dask-cuda's ``LocalCUDACluster``, one worker per GPU, each
  advertising one ``GPU`` resource; needs dask-cuda and a GPU.
- ``tcp://HOST:PORT`` or ``tls://HOST:PORT``: join a running scheduler, whose
  workers must see the same paths as the client. For ``tls://`` the
  certificates come from a Dask config file (``--tls-config``, the
  ``distributed.comm.tls`` section) or from Dask's own configuration.

What runs on the workers once connected is elsewhere: the resident network
(:mod:`.resident`) and the block tasks (:mod:`.tasks`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import dask
import yaml

if TYPE_CHECKING:
    import distributed

from .errors import ClusterError

CONNECT_TIMEOUT = "10s"
WORKER_TTL = "60s"
"""How long the scheduler of a cluster this module starts waits for a silent worker (a hung GPU driver, a
stopped or swapping node) before it gives the worker's tasks to the others (Dask's default: 5 minutes). For
a scheduler you start yourself: ``DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL=60s dask scheduler``, or
``distributed.scheduler.worker-ttl`` in its Dask configuration (``deploy/README.md``)."""
IN_PROCESS_MEGAPIXELS = 256.0
"""PAN megapixels up to which ``auto`` runs in this process: starting worker processes costs seconds (2 to 3 s
on a 2-core machine, and as much again to stop them), more than such a scene takes to compute on threads."""
SPECS = ("auto", "threads", "local", "cuda")
"""The cluster specs besides a scheduler address."""
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(256 << 20), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}
"""glibc settings for the worker processes of a cluster this module starts.

Distributed's default (``MALLOC_TRIM_THRESHOLD_=65536``) hands freed heap back
to the kernel at once, so the next tile-sized buffer is faulted in afresh, page
by page. With up to 256 MiB of free heap kept per worker and buffers below
32 MiB taken from the heap, the 8192² Brovey benchmark scene ran 76 and 94 s
instead of 99 and 109 s (alternating runs), a run's page faults fell from 8.2
million to 0.56 million, and each worker's peak grew by 120 to 190 MiB (see
``docs/benchmarks.md``). A variable already in the environment wins.
"""


@contextlib.contextmanager
def connect(
    scheduler: str = "local",
    workers: int | None = None,
    tls_config: str | Path | None = None,
    megapixels: float | None = None,
) -> Iterator[distributed.Client | None]:
    """A client for the cluster spec ``scheduler``, closed (with any cluster it started) on exit.

    Args:
        scheduler: ``"auto"``, ``"threads"``, ``"local"``, ``"cuda"``, ``tcp://HOST:PORT`` or ``tls://HOST:PORT``.
        workers: worker processes of a ``local`` cluster (default: one per core; naming them with ``auto``
            asks for the local cluster).
        tls_config: a Dask YAML config file with the ``distributed.comm.tls`` certificates (``tls://`` only).
        megapixels: the PAN megapixels of the work, for ``auto`` (``None``: start the local cluster).

    Yields:
        The client, or ``None`` for a run in this process on dask's threads (``threads``, or ``auto`` for a
        small scene): every function taking ``client`` runs there when given ``None``.

    Raises:
        ClusterError: the cluster cannot be started or reached; the message says what to do.
    """
    if scheduler == "auto":
        small = megapixels is not None and megapixels <= IN_PROCESS_MEGAPIXELS and workers is None
        scheduler = "threads" if small else "local"
    if workers is not None and scheduler != "local":
        raise ClusterError("`workers` applies to `scheduler='local'` only; size other clusters where they run")
    if tls_config is not None and not scheduler.startswith("tls://"):
        raise ClusterError("`tls_config` applies to a tls:// scheduler address only")
    if scheduler == "threads":
        yield None
        return
    from distributed import Client

    if scheduler in ("local", "cuda"):
        with _start(scheduler, workers) as cluster, Client(cluster) as client:
            yield client
        return
    if not scheduler.startswith(("tcp://", "tls://")):
        raise ClusterError(f"unknown cluster {scheduler!r}: use {', '.join(SPECS)}, tcp://HOST:PORT or tls://HOST:PORT")
    security = _security(tls_config) if scheduler.startswith("tls://") else None
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT, security=security)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"could not reach the Dask scheduler at {scheduler} ({exc}); start one with "
            "'dask scheduler' or use `scheduler='local'`"
        ) from None
    with client:
        yield client


@contextlib.contextmanager
def _start(kind: str, workers: int | None) -> Iterator[object]:
    """Start a LocalCluster or a LocalCUDACluster, turning any start-up failure into one clear error."""
    from distributed import LocalCluster

    # Any free dashboard port: no clash warnings. A failed task's error reaches the caller (the CLI's one
    # line; the API's exception, with the worker's traceback), so the workers' own log of it is silenced.
    common = {"dashboard_address": ":0", "silence_logs": logging.CRITICAL, "preload": ["pansharp_dist.worker_signals"]}
    if kind == "cuda":
        try:
            from dask_cuda import LocalCUDACluster
            from dask_cuda.utils import get_n_gpus
        except ImportError:
            raise ClusterError(
                "`scheduler='cuda'` needs dask-cuda: pip install dask-cuda (on a machine with GPUs)"
            ) from None
        try:
            gpus = get_n_gpus()
        except Exception:  # noqa: BLE001  (NVML missing or failing both mean: no usable GPU)
            gpus = 0
        if gpus == 0:
            raise ClusterError("`scheduler='cuda'` found no GPU (NVML sees none); use `scheduler='local'`")
        make = lambda: LocalCUDACluster(threads_per_worker=1, resources={"GPU": 1}, **common)  # noqa: E731
    else:
        n = workers or os.cpu_count() or 1
        resources = {"GPU": 1} if _torch_sees_cuda() else None
        make = lambda: LocalCluster(  # noqa: E731
            n_workers=n, threads_per_worker=1, processes=True, resources=resources, **common
        )
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **WORKER_MALLOC}
    try:
        with (
            dask.config.set(
                {"distributed.nanny.pre-spawn-environ": spawn_env, "distributed.scheduler.worker-ttl": WORKER_TTL}
            ),
            _children_ignore_ctrl_c(),
        ):
            cluster = make()
    except Exception as exc:  # noqa: BLE001  (any start-up failure becomes one clear error)
        raise ClusterError(f"could not start a {kind} Dask cluster ({exc})") from None
    try:
        yield cluster
    finally:
        _close(cluster)


def _close(cluster) -> None:
    """Close a local cluster that :func:`_start` started.

    distributed's close can fail on a worker that its nanny is restarting (one a task has just killed, on a
    loaded machine): ``AssertionError: can only join a started process``, which would reach the user as a
    traceback and hide the run's own error. That nanny object is closed by then (its worker process, if it
    started, is a daemon: it ends with this process or when it finds no scheduler), but the cluster is left
    "closing" with its scheduler open, and a close of a "closing" cluster waits for ever: marked failed, a
    second close finishes the rest. Should that one fail too, a warning says so and the run's own outcome
    stands.
    """
    from distributed.core import Status

    try:
        cluster.close()
    except AssertionError:
        cluster.status = Status.failed
        try:
            cluster.close(timeout=CLOSE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001  (a cleanup: the run's own error or result comes first)
            message = f"the local Dask cluster did not close cleanly ({type(exc).__name__}: {exc})"
            warnings.warn(message, RuntimeWarning, stacklevel=4)


CLOSE_TIMEOUT = 30
"""Seconds a local cluster's second close may take (:func:`_close`)."""


@contextlib.contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """While the cluster's processes start, this process ignores Ctrl-C (SIGINT), so that they ignore it from
    their first instruction (an ignored signal stays ignored across exec; the preload comes later): a Ctrl-C
    in those seconds prints no traceback of a half-started worker. It is not taken; the next one stops the
    run (the client answers Ctrl-C, :mod:`.worker_signals`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def cluster_errors(client) -> Iterator[None]:
    """Turn the failures of the cluster behind ``client`` met in the block into :class:`ClusterError`, one line
    that says what happened and how to go on: the scheduler lost (a run continues with ``--resume`` and the
    same ``--work-dir`` on a new cluster, keeping the blocks finished so far), or a task that killed every
    worker it was given. Nothing to do without a client."""
    if client is None:
        yield
        return
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    address = client.scheduler.address if client.scheduler is not None else "the scheduler"
    try:
        yield
    except KilledWorker as exc:
        raise ClusterError(
            f"a task killed each worker that ran it on the cluster at {address} ({exc}); it likely runs out of "
            "memory: lower `task_megapixels`, or give the workers more memory"
        ) from None
    except (FutureCancelledError, CommClosedError) as exc:
        raise ClusterError(
            f"lost the connection to the Dask scheduler at {address} ({type(exc).__name__}); start the cluster "
            "again and rerun with `resume=True` and the same `work_dir`: the blocks finished so far are kept"
        ) from None


def _torch_sees_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _security(tls_config: str | Path | None):
    """Dask ``Security`` for a ``tls://`` scheduler, from ``tls_config`` or Dask's configuration."""
    from distributed import Security

    if tls_config is not None:
        path = Path(tls_config)
        try:
            config = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ClusterError(f"cannot read the TLS config {path} ({exc}); give a Dask YAML config file") from None
        if not isinstance(config, dict):
            raise ClusterError(f"the TLS config {path} is not a Dask YAML config (a mapping of settings)")
        with dask.config.set(_dotted(config)):  # dotted keys merge into Dask's config instead of replacing it
            security = Security(require_encryption=True)
    else:
        security = Security(require_encryption=True)
    # Security sets the attributes of its __slots__ with setattr, which mypy does not follow
    if not (security.tls_ca_file and security.tls_client_cert):  # type: ignore[attr-defined]
        raise ClusterError(
            "a tls:// scheduler needs certificates: give `tls_config`, a Dask config file with "
            "distributed.comm.tls.ca-file, client.cert and client.key (see deploy/README.md)"
        )
    return security


def _dotted(config: dict, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
