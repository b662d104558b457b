"""Getting a Dask client from a cluster spec, preparing its workers, and running block tasks on it.

Cluster specs (``--scheduler``):

- ``local``: a :class:`distributed.LocalCluster` sized to the machine, one
  single-threaded worker process per core. When torch sees a CUDA device, each
  worker advertises one ``GPU`` resource (they share the device).
- ``cuda``: dask-cuda's ``LocalCUDACluster``, one worker per GPU, each
  advertising one ``GPU`` resource; needs dask-cuda and a GPU.
- ``tcp://HOST:PORT`` or ``tls://HOST:PORT``: join a running scheduler, whose
  workers must see the same paths as the client. For ``tls://`` the
  certificates come from a Dask config file (``--tls-config``, the
  ``distributed.comm.tls`` section) or from Dask's own configuration.

Fusion tasks of a GPU fuser request the ``GPU`` resource, so they run only on
workers that advertise it. A fuser with resident state (a network) is installed
on every worker once by a :class:`ResidentFuser` plugin, which the scheduler also
gives to workers that join later (a replacement for a lost worker included).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dask
import yaml
from distributed.diagnostics.plugin import WorkerPlugin

from .errors import ClusterError, InvalidParameterError
from .methods import Fuser, ResidentState

Progress = Callable[[int, int], None]
CONNECT_TIMEOUT = "10s"
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
    scheduler: str = "local", workers: int | None = None, tls_config: str | Path | None = None
) -> Iterator["distributed.Client"]:  # noqa: F821
    """A client for the cluster spec ``scheduler``, closed (with any cluster it started) on exit.

    Args:
        scheduler: ``"local"``, ``"cuda"``, ``tcp://HOST:PORT`` or ``tls://HOST:PORT``.
        workers: worker processes of a ``local`` cluster (default: one per core).
        tls_config: a Dask YAML config file with the ``distributed.comm.tls`` certificates (``tls://`` only).

    Raises:
        ClusterError: the cluster cannot be started or reached; the message says what to do.
    """
    from distributed import Client

    if workers is not None and scheduler != "local":
        raise ClusterError("--workers applies to --scheduler local only; size other clusters where they run")
    if tls_config is not None and not scheduler.startswith("tls://"):
        raise ClusterError("--tls-config applies to a tls:// scheduler address only")
    if scheduler in ("local", "cuda"):
        with _start(scheduler, workers) as cluster, Client(cluster) as client:
            yield client
        return
    if not scheduler.startswith(("tcp://", "tls://")):
        raise ClusterError(f"unknown cluster {scheduler!r}: use local, cuda, tcp://HOST:PORT or tls://HOST:PORT")
    security = _security(tls_config) if scheduler.startswith("tls://") else None
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT, security=security)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"could not reach the Dask scheduler at {scheduler} ({exc}); start one with "
            "'dask scheduler' or use --scheduler local"
        ) from None
    with client:
        yield client


@contextlib.contextmanager
def _start(kind: str, workers: int | None) -> Iterator[object]:
    """Start a LocalCluster or a LocalCUDACluster, turning any start-up failure into one clear error."""
    from distributed import LocalCluster

    # Any free dashboard port: no clash warnings. A failed task's error reaches the caller (the CLI's one
    # line; the API's exception, with the worker's traceback), so the workers' own log of it is silenced.
    common = {"dashboard_address": ":0", "silence_logs": logging.CRITICAL}
    if kind == "cuda":
        try:
            from dask_cuda import LocalCUDACluster
            from dask_cuda.utils import get_n_gpus
        except ImportError:
            raise ClusterError("--scheduler cuda needs dask-cuda: pip install dask-cuda (on a machine with GPUs)") from None
        try:
            gpus = get_n_gpus()
        except Exception:  # noqa: BLE001  (NVML missing or failing both mean: no usable GPU)
            gpus = 0
        if gpus == 0:
            raise ClusterError("--scheduler cuda found no GPU (NVML sees none); use --scheduler local")
        make = lambda: LocalCUDACluster(threads_per_worker=1, resources={"GPU": 1}, **common)  # noqa: E731
    else:
        n = workers or os.cpu_count() or 1
        resources = {"GPU": 1} if _torch_sees_cuda() else None
        make = lambda: LocalCluster(  # noqa: E731
            n_workers=n, threads_per_worker=1, processes=True, resources=resources, **common
        )
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **WORKER_MALLOC}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):
            cluster = make()
    except Exception as exc:  # noqa: BLE001  (any start-up failure becomes one clear error)
        raise ClusterError(f"could not start a {kind} Dask cluster ({exc})") from None
    with cluster:
        yield cluster


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
    if not (security.tls_ca_file and security.tls_client_cert):
        raise ClusterError(
            "a tls:// scheduler needs certificates: give --tls-config FILE with distributed.comm.tls.ca-file, "
            "client.cert and client.key (see deploy/README.md)"
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


# --------------------------------------------------------------------------- resident fusers


class ResidentFuser(WorkerPlugin):
    """Installs a fuser's resident state (a network and its adaptation) on each worker, once.

    Registered with the scheduler, so that workers joining later get it too.
    Its name is keyed by the fuser's :attr:`~ResidentState.resident_key`
    (checkpoint hash, adaptation hash, device): registering the same fuser twice
    loads nothing again. Workers without the resources the fuser's tasks need
    (a CPU worker beside GPU workers) never run them and skip the load.
    """

    def __init__(self, fuser: ResidentState) -> None:
        self.fuser = fuser
        self.payload = fuser.resident_payload()
        self.name = f"pansharp-resident-{fuser.resident_key}"

    def setup(self, worker) -> None:
        if _satisfies(worker.state.total_resources, self.fuser.resources):
            self.fuser.make_resident(self.payload)


def _satisfies(have: dict[str, float], needed: dict[str, float]) -> bool:
    """Whether a worker advertising resources ``have`` can run tasks that need ``needed``."""
    return all(have.get(name, 0) >= amount for name, amount in needed.items())


def install_fuser(client, fuser: Fuser) -> None:
    """Make ``fuser`` ready on every worker of ``client`` (nothing to do for classical fusers).

    Raises:
        ClusterError: the fuser needs worker resources (a GPU) that no worker advertises.
    """
    if client is None or not isinstance(fuser, ResidentState):
        return
    needed = fuser.resources
    if needed:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        if not any(_satisfies(w.get("resources", {}), needed) for w in workers):
            raise ClusterError(
                f"{fuser.name} on {fuser.device} needs workers with resources {needed}, and none of the "
                f"cluster's {len(workers)} workers has them: use --scheduler cuda, start workers with "
                "'dask worker --resources GPU=1', or run on --device cpu"
            )
    client.register_plugin(ResidentFuser(fuser))


def task_spec_bytes(collection) -> int:
    """The largest pickled task of a dask ``collection``'s graph, in bytes (what one task ships to a worker)."""
    graph = dict(collection.__dask_graph__())
    return max(len(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)) for task in graph.values())


# --------------------------------------------------------------------------- running tasks


class TaskInput:
    """Lazy arrays that the task receiving them computes itself, with dask's synchronous scheduler.

    They are culled to the chunks they touch when made, so a task carries kilobytes. Reading inside
    the task keeps a worker's memory to the blocks it is working on: had the reads been tasks of
    their own, a read shared by the blocks of two rows (a halo, a coarse MS read) would be held
    until the second row ran, and a block computed for a write would wait in memory for that write.
    Not a dataclass, as dask would look inside one and turn the arrays into dependencies.
    """

    def __init__(self, *arrays) -> None:
        self.arrays = dask.optimize(*arrays)

    def __dask_tokenize__(self) -> tuple:
        return tuple(a.name for a in self.arrays)

    def compute(self) -> tuple:
        """The arrays as numpy arrays."""
        return dask.compute(*self.arrays, scheduler="sync")


def current_client():
    """The current distributed client of this process, or ``None``."""
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        return None


def run_tasks(
    client,
    tasks: Sequence[object],
    progress: Progress | None = None,
    labels: Sequence[str] | None = None,
    resources: dict[str, float] | None = None,
) -> Iterator[object]:
    """Run delayed ``tasks`` and yield their (small) results as they finish.

    ``resources`` restrict every task of the graph (reads and writes included)
    to workers that advertise them; a graph annotation would not survive dask's
    graph optimisation, which renames the fused tasks.

    With ``client=None``, the current default distributed client is used if
    there is one, else dask's threaded scheduler. The first task that fails
    cancels the others and re-raises its error; on a distributed client, with
    a note naming the task (``labels[i]``, e.g. its PAN window) when labels are given.
    """
    total = len(tasks)
    if labels is not None and len(labels) != total:
        raise InvalidParameterError(f"{len(labels)} labels for {total} tasks")
    client = client or current_client()
    if client is None:
        results = dask.compute(*tasks, scheduler="threads")
        for n, result in enumerate(results, 1):
            if progress:
                progress(n, total)
            yield result
        return
    from distributed import as_completed

    futures = client.compute(list(tasks), resources=resources or None)
    index = {f.key: n for n, f in enumerate(futures)}
    try:
        for n, future in enumerate(as_completed(futures), 1):
            with _labelled(labels, index[future.key]):
                result = future.result()
            future.release()
            if progress:
                progress(n, total)
            yield result
    finally:
        client.cancel([f for f in futures if not f.done()])


@contextlib.contextmanager
def _labelled(labels: Sequence[str] | None, n: int) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if labels is not None:
            exc.add_note(labels[n])
        raise


def digest(*parts: object) -> str:
    """A short stable hex digest of ``parts`` (their ``repr``), for names and fingerprints."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
