"""Getting a Dask client, and running a list of block tasks on it with progress.

``local`` starts a :class:`distributed.LocalCluster` sized to the machine (one
single-threaded worker process per core); an address (``tcp://host:port``)
joins a running scheduler, whose workers must see the same paths as the client.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence

import dask

from .errors import ClusterError

Progress = Callable[[int, int], None]


@contextlib.contextmanager
def connect(scheduler: str = "local", workers: int | None = None) -> Iterator["distributed.Client"]:  # noqa: F821
    """A client for ``scheduler`` (``"local"`` or an address), closed on exit.

    Args:
        scheduler: ``"local"`` for a new LocalCluster, or ``tcp://HOST:PORT``.
        workers: worker processes of a local cluster (default: one per core).
    """
    from distributed import Client, LocalCluster

    if scheduler == "local":
        n = workers or os.cpu_count() or 1
        try:
            cluster = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.ERROR,
            )
        except Exception as exc:  # noqa: BLE001  (any start-up failure becomes one clear error)
            raise ClusterError(f"could not start a local Dask cluster ({exc})") from None
        with cluster, Client(cluster) as client:
            yield client
        return
    if workers is not None:
        raise ClusterError("--workers applies to --scheduler local only; size a remote cluster where it runs")
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"could not reach the Dask scheduler at {scheduler} ({exc}); start one with "
            "'dask scheduler' or use --scheduler local"
        ) from None
    with client:
        yield client


def run_tasks(client, tasks: Sequence[object], progress: Progress | None = None) -> Iterator[object]:
    """Run delayed ``tasks`` and yield their (small) results as they finish.

    With ``client=None``, the current default distributed client is used if
    there is one, else dask's threaded scheduler. The first task that fails
    cancels the others and re-raises its error.
    """
    total = len(tasks)
    if client is None:
        with contextlib.suppress(ImportError, ValueError):
            from distributed import get_client

            client = get_client()
    if client is None:
        results = dask.compute(*tasks, scheduler="threads")
        for n, result in enumerate(results, 1):
            if progress:
                progress(n, total)
            yield result
        return
    from distributed import as_completed

    futures = client.compute(list(tasks))
    try:
        for n, future in enumerate(as_completed(futures), 1):
            result = future.result()
            future.release()
            if progress:
                progress(n, total)
            yield result
    finally:
        client.cancel([f for f in futures if not f.done()])
