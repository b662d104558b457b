"""Worker start-up for the clusters this project starts itself: Ctrl-C belongs to the client.

A local cluster's worker processes share the terminal's process group, so Ctrl-C reaches them too, and
each printed a traceback of its own before the client had said anything. Loaded into every worker as a
Dask preload (:func:`dask_setup`), this makes workers ignore SIGINT: the client stops the run with one
line, and closing the cluster stops the workers.
"""

from __future__ import annotations

import signal
import threading


def dask_setup(worker) -> None:  # noqa: ARG001  (Dask's preload hook signature)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
