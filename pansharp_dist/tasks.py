"""Running block tasks: on a distributed client when there is one, else on dask's threads.

Nothing here imports ``distributed`` unless a client is in use, so that a run
in one process (threads) does not pay for it: schedulers are passed to dask as
functions, since a scheduler named by a string makes dask import ``distributed``
to look for a client.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.local
import dask.threaded

from .errors import InvalidParameterError

Progress = Callable[[int, int], None]


def task_spec_bytes(collection) -> int:
    """The largest pickled task of a dask ``collection``'s graph, in bytes (what one task ships to a worker)."""
    graph = dict(collection.__dask_graph__())
    return max(len(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)) for task in graph.values())


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
        return dask.compute(*self.arrays, scheduler=dask.local.get_sync)


def current_client():
    """The current distributed client of this process, or ``None``."""
    if "distributed" not in sys.modules:  # no client can exist before distributed is imported
        return None
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
        # a pool of our own, left only once its threads are idle: when a task fails, the tasks running beside
        # it finish before the error reaches the caller, so that its clean-up (a work folder removed) is final
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            results = dask.compute(*tasks, scheduler=dask.threaded.get, pool=pool)
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
