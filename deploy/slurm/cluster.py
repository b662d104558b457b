"""Pansharpen one scene on GPU workers started as Slurm jobs (dask-jobqueue).

Each job is one worker with one GPU, advertising the ``GPU`` resource that
network tasks request. Adjust the partition, account and memory to your site.
"""

import argparse

import dask
from dask_jobqueue import SLURMCluster
from distributed import Client

from pansharp_dist.cluster import WORKER_MALLOC, WORKER_TTL
from pansharp_dist.pipeline import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pan", required=True)
    parser.add_argument("--ms", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--method", default="fusionnet-wv3")
    parser.add_argument("--jobs", type=int, default=4, help="GPU workers (one Slurm job each)")
    parser.add_argument("--partition", default="gpu")
    parser.add_argument("--work-dir", default=None, help="shared folder kept for --resume")
    args = parser.parse_args()

    # the scheduler runs here: a hung worker (a stuck driver) gives its blocks away after WORKER_TTL, not 5 minutes
    dask.config.set({"distributed.scheduler.worker-ttl": WORKER_TTL})
    cluster = SLURMCluster(
        queue=args.partition,
        cores=4,
        processes=1,
        memory="32GB",
        walltime="02:00:00",
        job_extra_directives=["--gres=gpu:1"],
        worker_extra_args=["--resources", "GPU=1", "--nthreads", "1"],
        job_script_prologue=[f"export {name}={value}" for name, value in WORKER_MALLOC.items()],
    )
    cluster.scale(jobs=args.jobs)
    with cluster, Client(cluster) as client:
        client.wait_for_workers(1)
        report = run(args.pan, args.ms, args.out, method=args.method, client=client, work_dir=args.work_dir)
        print(report.to_dict())


if __name__ == "__main__":
    main()
