"""The network a worker keeps resident: installed once per worker by a scheduler plugin.

Fusion tasks of a GPU fuser request the ``GPU`` resource, so they run only on
workers that advertise it. A fuser with resident state (a network) is installed
on every worker once by a :class:`ResidentFuser` plugin, which the scheduler also
gives to workers that join later (a replacement for a lost worker included).
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from .errors import ClusterError
from .methods import Fuser, ResidentState


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
    """Make ``fuser`` ready on every worker of ``client`` (nothing to do for classical fusers), tolerating
    workers lost during the install (:data:`INSTALL_TRIES`).

    Raises:
        ClusterError: the fuser needs worker resources (a GPU) that no worker advertises, or every try lost
            a worker.
    """
    if client is None or not isinstance(fuser, ResidentState):
        return
    needed = fuser.resources
    if needed:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        if not any(_satisfies(w.get("resources", {}), needed) for w in workers):
            raise ClusterError(
                f"{fuser.name} on {fuser.device} needs workers with resources {needed}, and none of the "
                f"cluster's {len(workers)} workers has them: use `scheduler='cuda'`, start workers with "
                "'dask worker --resources GPU=1', or run on `device='cpu'`"
            )
    plugin = ResidentFuser(fuser)
    for attempt in range(INSTALL_TRIES):
        try:
            client.register_plugin(plugin)
            return
        except OSError as exc:  # distributed's CommClosedError: a worker lost while the plugin reached it
            if attempt + 1 == INSTALL_TRIES:
                raise ClusterError(
                    f"could not install {fuser.name} on the workers: {INSTALL_TRIES} tries each lost a worker "
                    f"({exc}); check the cluster's workers and rerun (with `resume=True` and the same `work_dir`)"
                ) from None


INSTALL_TRIES = 4
"""Installs of the resident network tried before giving up. The scheduler keeps the plugin from the first
try on, for every worker that joins later; a worker lost while the plugin reached it fails that try, and the
next reaches the workers still there (a worker that has it already keeps it: its state is keyed)."""
