"""Local ``dask scheduler`` and ``dask worker`` processes that a test or a benchmark can kill, stop or lose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from distributed import Client


def _scheduler_address(file: Path, scheduler: subprocess.Popen, deadline: float) -> str:
    """The address in a scheduler file, once the scheduler has written it whole (it may exist, still empty).

    Raises:
        RuntimeError: the scheduler ended first.
        FileNotFoundError, json.JSONDecodeError: no whole file by ``deadline``.
    """
    while True:
        try:
            return json.loads(file.read_text())["address"]
        except (FileNotFoundError, json.JSONDecodeError):
            if scheduler.poll() is not None:
                raise RuntimeError(f"the dask scheduler ended (exit {scheduler.returncode}) before it was up") from None
            if time.time() > deadline:
                raise
            time.sleep(0.1)


class DaskProcesses:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (single-threaded, no nanny, so that a
    killed worker stays dead); scratch space under ``folder``; ``scheduler_env``: settings of the scheduler
    (``DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL``, say)."""

    def __init__(self, folder: Path, workers: int = 2, scheduler_env: dict[str, str] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        file = folder / "scheduler.json"
        file.unlink(missing_ok=True)
        self.scheduler = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(file),
            ],
            env={**self.env, **(scheduler_env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.workers: list[subprocess.Popen] = []
        try:
            self.address = _scheduler_address(file, self.scheduler, time.time() + 60)
            self.add_workers(workers)
        except BaseException:  # nothing left running when the start fails
            self.close()
            raise

    def add_workers(self, n: int) -> None:
        """Start ``n`` more workers and wait until the scheduler has them all."""
        self.workers += [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    self.address,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--local-directory",
                    str(self.folder),
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(n)
        ]
        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(sum(w.poll() is None for w in self.workers), timeout=60)

    def alive_workers(self) -> int:
        with Client(self.address, timeout="30s") as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])

    def idle(self) -> bool:
        """No task is held by the scheduler or by a worker: a dead client's work has drained, the tasks that
        were running when it died included (the scheduler forgets them at once; their workers finish them,
        and a task that computes an output block also writes it)."""
        with Client(self.address, timeout="30s") as client:
            if client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)):
                return False
            return not any(client.run(lambda dask_worker: len(dask_worker.state.tasks)).values())

    def close(self) -> None:
        """Kill every process at once: a test's teardown, not a graceful shutdown (asked to terminate, one of
        them outlasted a 20 s wait in a loaded CI run)."""
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.kill()
        for proc in [*self.workers, self.scheduler]:
            proc.wait()
