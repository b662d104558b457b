"""Clusters, resident networks, coarse tasks and fault tolerance, on real Dask processes.

The fault-tolerance tests start a ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1, run a network (FusionNet QuickBird with a tailor) on a
2048 x 2048 scene mosaicked from the embedded sample, and disturb the run: a
worker SIGKILLed, the client SIGKILLed then resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
import zarr
from distributed import Client, LocalCluster, Scheduler, Security, SpecCluster, Worker, get_task_stream

import pansharp_dist
from benchmarks.dask_processes import DaskProcesses
from benchmarks.mosaic import mosaic_pair
from pansharp_dist.adapt.options import AdaptOptions
from pansharp_dist.adapt.training import adapt_fuser
from pansharp_dist.cluster import WORKER_MALLOC, connect
from pansharp_dist.errors import ClusterError, CorruptInputError
from pansharp_dist.fusion import make_fuser, pansharpen
from pansharp_dist.pipeline import assemble_cog, fuse_blocks, ingest_scene, ingest_tiles, prepare_fuser, run, run_folder
from pansharp_dist.plan import plan_run
from pansharp_dist.resident import install_fuser
from pansharp_dist.store import block_size, finished_blocks, write_output
from pansharp_dist.tasks import task_spec_bytes

SAMPLE = Path(pansharp_dist.__file__).parent / "sample"
NETWORK = {"method": "fusionnet-qb", "device": "cpu", "adapt": "tailor", "tile": 128, "task_megapixels": 0.07}
ADAPT_STEPS = 20


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory) -> tuple[Path, Path]:
    """A 2048 x 2048 PAN scene mosaicked from the embedded sample (64 blocks of 256 x 256)."""
    return mosaic_pair(SAMPLE / "pan.tif", SAMPLE / "ms.tif", 2048, tmp_path_factory.mktemp("mosaic"))


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("cluster") / "sample.zarr"
    return ingest_scene(SAMPLE / "pan.tif", SAMPLE / "ms.tif", path, tile=128, task_megapixels=0.07, client=client)


def pixels_sha(cog: Path) -> str:
    with rasterio.open(cog) as src:
        return hashlib.sha256(src.read().tobytes()).hexdigest()


# --------------------------------------------------------------------------- cluster specs


def test_cluster_specs_that_cannot_work_say_what_to_do(tmp_path):
    with pytest.raises(ClusterError, match="dask-cuda"):
        with connect("cuda"):
            pass
    with pytest.raises(ClusterError, match="unknown cluster"):
        with connect("udp://127.0.0.1:1"):
            pass
    with pytest.raises(ClusterError, match="needs certificates"):
        with connect("tls://127.0.0.1:1"):
            pass
    with pytest.raises(ClusterError, match="`workers` applies"):
        with connect("tcp://127.0.0.1:1", workers=2):
            pass
    bad = tmp_path / "tls.yaml"
    bad.write_text("distributed: [unclosed")
    with pytest.raises(ClusterError, match="cannot read the TLS config"):
        with connect("tls://127.0.0.1:1", tls_config=bad):
            pass


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1 (it is its own CA)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pansharp-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_a_tls_scheduler_is_joined_with_a_dask_config_file(tmp_path):
    key, cert = _self_signed(tmp_path)
    files = {"tls_ca_file": str(cert), "tls_key": str(key), "tls_cert": str(cert)}
    server = Security(
        require_encryption=True,
        tls_ca_file=str(cert),
        tls_scheduler_key=str(key),
        tls_scheduler_cert=str(cert),
        tls_worker_key=str(key),
        tls_worker_cert=str(cert),
        tls_client_key=str(key),
        tls_client_cert=str(cert),
    )
    config = tmp_path / "tls.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "distributed": {
                    "comm": {
                        "tls": {
                            "ca-file": files["tls_ca_file"],
                            "client": {"key": files["tls_key"], "cert": files["tls_cert"]},
                        }
                    }
                }
            }
        )
    )
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tls://",
        security=server,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        with connect(cluster.scheduler_address, tls_config=config) as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
        with pytest.raises(ClusterError, match="needs certificates"):
            with connect(cluster.scheduler_address):
                pass


# --------------------------------------------------------------------------- resident networks, GPU resource


@pytest.mark.parametrize("model", ["fusionnet-qb", "pannet-qb", "pnn-ge1"])
def test_tasks_carry_under_100_kb_whatever_the_model_and_adaptation(sample_store, model):
    options = AdaptOptions(steps=2, k=2, patch=32)
    base = make_fuser(sample_store, model, device="cpu")
    for mode in ("none", "tailor", "full"):
        fuser = base if mode == "none" else adapt_fuser(sample_store, base, mode, options)[0]
        hrms = pansharpen(sample_store, fuser, None, tile=128, block=256)
        size = task_spec_bytes(hrms.data)
        assert size < 100_000, (model, mode, size)
        if mode == "full":  # the fine-tuned network (hundreds of KB) stays out of the tasks
            assert len(fuser.weights) > 100_000


@pytest.mark.slow
def test_an_adapted_network_runs_on_workers_that_got_it_by_plugin(sample_store, client):
    base = make_fuser(sample_store, "pnn-ge1", device="cpu")
    fuser, _ = adapt_fuser(sample_store, base, "tailor", AdaptOptions(steps=3, k=2, patch=32))
    local = pansharpen(sample_store, fuser, None, tile=128, block=256).data.compute(scheduler="threads")
    distributed = pansharpen(sample_store, fuser, client, tile=128, block=256).data.compute()
    np.testing.assert_array_equal(distributed, local)
    loaded = client.run(lambda: sorted(__import__("pansharp_dist.models.network", fromlist=["x"])._WEIGHTS))
    assert all(fuser.weights_sha in shas for shas in loaded.values())


@pytest.mark.slow
def test_gpu_tasks_run_only_on_workers_that_advertise_a_gpu(sample_store, tmp_path):
    workers = {
        "gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
        "cpu": {"cls": Worker, "options": {"nthreads": 1}},
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        gpu_worker = cluster.workers["gpu"].address
        fuser = make_fuser(sample_store, "pnn-ge1", device="cpu", resources={"GPU": 1})
        with get_task_stream(client) as stream:
            write_output(pansharpen(sample_store, fuser, client, tile=128, block=256), tmp_path / "o.zarr", client)
        fused = [t for t in stream.data if "compute_output_block" in str(t["key"])]  # fuse and write, one task
        assert fused and {t["worker"] for t in stream.data} == {gpu_worker}
        out = zarr.open_array(str(tmp_path / "o.zarr" / "hrms"), mode="r")[:]
        expected = pansharpen(sample_store, replace(fuser, worker_resources=()), None, tile=128, block=256)
        np.testing.assert_array_equal(out, expected.data.compute(scheduler="threads"))


def test_a_gpu_fuser_on_a_cluster_without_gpu_workers_is_refused(sample_store, client):
    fuser = replace(make_fuser(sample_store, "pnn-ge1", device="cpu"), device="cuda", worker_resources=(("GPU", 1),))
    with pytest.raises(ClusterError, match="needs workers with resources"):
        install_fuser(client, fuser)


def _malloc_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in WORKER_MALLOC}


def test_local_workers_keep_freed_heap_instead_of_trimming_it_at_once(client):
    assert list(client.run(_malloc_env).values()) == [WORKER_MALLOC] * 2


@pytest.mark.slow
def test_a_malloc_setting_already_in_the_environment_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    with connect("local", workers=1) as one:
        [env] = one.run(_malloc_env).values()
    assert env == {**WORKER_MALLOC, "MALLOC_TRIM_THRESHOLD_": "1048576"}


# --------------------------------------------------------------------------- coarse tasks


def test_tasks_are_coarse_blocks_of_tiles_sized_by_megapixels():
    assert block_size(512) == 2048  # the default 4 MP: 16 tiles per task
    assert block_size(512, 16) == 4096
    assert block_size(128, 0.07) == 256
    side = 65536  # a 4.3-gigapixel scene
    assert (side // block_size(512)) ** 2 == 1024  # about a thousand tasks, not millions of tiles


def test_task_graph_of_a_gigapixel_scene_has_thousands_of_tasks(sample_store):
    import dask.array as da
    import xarray as xr

    from pansharp_dist.scene import Scene

    fuser = make_fuser(sample_store, "brovey")
    side, r = 32768, sample_store.ratio
    pan = xr.DataArray(
        da.ones((side, side), "uint16", chunks=4096),
        dims=("y", "x"),
        coords={"y": np.arange(side) + 0.5, "x": np.arange(side) + 0.5},
    )
    ms = xr.DataArray(
        da.ones((sample_store.bands, side // r, side // r), "uint16", chunks=(-1, 1024, 1024)),
        dims=("band", "y", "x"),
        coords={"y": (np.arange(side // r) + 0.5) * r, "x": (np.arange(side // r) + 0.5) * r},
    )
    scene = Scene(
        pan=pan, ms=ms, ratio=r, sensor=None, pan_nodata=None, ms_nodata=None, name="big", stats=sample_store.stats
    )
    hrms = pansharpen(scene, fuser, None, block=block_size(512))
    blocks = (side // block_size(512)) ** 2
    assert hrms.data.npartitions == blocks == 256
    assert len(hrms.data.__dask_graph__()) < 40 * blocks  # reads, halos and fusion: tens of tasks per block


# --------------------------------------------------------------------------- fault tolerance


def test_a_corrupt_input_tile_names_the_block_and_file_and_writes_no_cog(mosaic, tmp_path, client):
    pan = tmp_path / "pan_corrupt.tif"
    with rasterio.open(mosaic[0]) as src:
        profile = src.profile | {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
        with rasterio.open(pan, "w", **profile) as dst:
            dst.write(src.read())
    with rasterio.open(pan) as src:  # garble the middle of one compressed tile, headers intact
        offset = int(src.get_tag_item("BLOCK_OFFSET_5_3", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_5_3", "TIFF", bidx=1))
    with open(pan, "r+b") as f:
        f.seek(offset + size // 4)
        f.write(bytes(range(256)) * (size // 512))
    out = tmp_path / "out.tif"
    with pytest.raises(CorruptInputError) as caught:
        run(pan, mosaic[1], out, method="brovey", tile=128, task_megapixels=0.07, client=client)
    message = str(caught.value)
    assert f"PAN {pan}: the block at rows 768:1024, columns 1280:1536 cannot be read" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pan_corrupt.tif"]


# --------------------------------------------------------------------------- faults of the cluster itself


@pytest.fixture(scope="module")
def small_mosaic(tmp_path_factory, client) -> tuple[tuple[Path, Path], str]:
    """A 1024 x 1024 mosaic of the sample (16 blocks) and the pixels of an undisturbed network run on it."""
    pair = mosaic_pair(SAMPLE / "pan.tif", SAMPLE / "ms.tif", 1024, tmp_path_factory.mktemp("small"))
    return pair, _reference(pair, tmp_path_factory, client, "tailor")


def _reference(pair, tmp_path_factory, client, adapt: str) -> str:
    out = tmp_path_factory.mktemp(f"small-reference-{adapt}") / "ref.tif"
    run(*pair, out, client=client, adapt_options=AdaptOptions(steps=ADAPT_STEPS), **{**NETWORK, "adapt": adapt})
    return pixels_sha(out)


@pytest.fixture(scope="module")
def small_unadapted_reference(small_mosaic, tmp_path_factory, client) -> str:
    """The pixels of an undisturbed run of the network as trained (no adaptation) on the small mosaic."""
    return _reference(small_mosaic[0], tmp_path_factory, client, "none")


def _cli_args(mosaic, out: Path, work: Path, address: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pansharp_dist.cli",
        "run",
        "--pan",
        str(mosaic[0]),
        "--ms",
        str(mosaic[1]),
        "--out",
        str(out),
        "--method",
        NETWORK["method"],
        "--device",
        "cpu",
        "--tile",
        "128",
        "--task-mp",
        str(NETWORK["task_megapixels"]),
        "--adapt-steps",
        str(ADAPT_STEPS),
        "--scheduler",
        address,
        "--work-dir",
        str(work),
        "--json",
    ]


def _same_threads() -> dict[str, str]:
    """The environment of a CLI process that fits the tailor with as many torch threads as this one (BLAS
    libraries split their sums by thread: another count differs in the last bits)."""
    threads = str(torch.get_num_threads())
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


@pytest.mark.slow
def test_a_killed_client_resumes_with_only_the_unfinished_blocks(small_mosaic, tmp_path, dask_processes):
    mosaic, reference_sha = small_mosaic
    work, out = tmp_path / "work", tmp_path / "out.tif"
    ledger = work / "out.hrms.zarr"
    args = _cli_args(mosaic, out, work, dask_processes.address)
    client = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_same_threads())
    deadline = time.time() + 300
    while len(finished_blocks(ledger)) < 2 and time.time() < deadline and client.poll() is None:
        time.sleep(0.02)
    client.send_signal(signal.SIGKILL)
    assert client.wait(timeout=10) == -signal.SIGKILL
    while not dask_processes.idle() and time.time() < deadline:  # tasks running when the client died finish
        time.sleep(0.2)
    before = len(finished_blocks(ledger))
    assert 0 < before < 16 and not out.exists()

    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300, env=_same_threads())
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["blocks"] == 16 and report["computed_blocks"] == 16 - before
    assert report["adaptation"]["reused"].endswith(".safetensors")
    assert len(finished_blocks(ledger)) == 16
    assert pixels_sha(out) == reference_sha


@pytest.mark.slow
def test_a_lost_scheduler_is_one_line_and_resume_on_a_new_cluster_keeps_the_finished_blocks(small_mosaic, tmp_path):
    mosaic, reference_sha = small_mosaic
    work, out = tmp_path / "work", tmp_path / "out.tif"
    (tmp_path / "first").mkdir()
    first = DaskProcesses(tmp_path / "first")
    try:
        cli_run = subprocess.Popen(
            _cli_args(mosaic, out, work, first.address),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_same_threads(),
        )
        deadline = time.time() + 300
        while len(finished_blocks(work / "out.hrms.zarr")) < 2 and time.time() < deadline and cli_run.poll() is None:
            time.sleep(0.02)
        first.scheduler.send_signal(signal.SIGKILL)  # the scheduler lost mid-run, on the second block's event
        _, stderr = cli_run.communicate(timeout=120)
    finally:
        first.close()
    lines = [line for line in stderr.splitlines() if line.strip() and "━" not in line and "warning:" not in line]
    assert cli_run.returncode == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "lost the connection to the Dask scheduler" in lines[0] and "--resume" in lines[0]
    assert not out.exists()
    before = len(finished_blocks(work / "out.hrms.zarr"))
    (tmp_path / "second").mkdir()
    second = DaskProcesses(tmp_path / "second")
    try:
        resumed = subprocess.run(
            [*_cli_args(mosaic, out, work, second.address), "--resume"],
            capture_output=True,
            text=True,
            timeout=300,
            env=_same_threads(),
        )
    finally:
        second.close()
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert before >= 2 and report["computed_blocks"] == 16 - before
    assert pixels_sha(out) == reference_sha


def _once_in(phase: str, done: int, action) -> tuple:
    """A progress callback that calls action() once, the first time `phase` has reported `done` or more units,
    and the list that records it (the event the fault tests aim at, instead of a sleep that may miss it)."""
    fired: list[str] = []

    def progress(current: str, count: int, total: int, note: str | None = None) -> None:
        if current == phase and count >= done and not fired:
            action()
            fired.append(current)

    return progress, fired


@pytest.mark.slow
def test_a_worker_lost_while_the_network_is_installed_costs_only_that_worker(small_mosaic, tmp_path):
    mosaic, reference_sha = small_mosaic

    def die_when_a_plugin_arrives(dask_worker) -> None:
        """Make this worker's process die the moment the next worker plugin reaches it: a worker lost in the
        middle of the install, every time, not by a timing that may miss it. (Nested, so that it travels by
        value: the workers cannot import this test module.)"""
        import os as _os
        import signal as _signal

        def die(*args, **kwargs):
            _os.kill(_os.getpid(), _signal.SIGKILL)

        dask_worker.handlers["plugin-add"] = die

    procs = DaskProcesses(tmp_path, workers=3)
    try:
        with Client(procs.address) as client:
            doomed = [address for address, pid in client.run(os.getpid).items() if pid == procs.workers[2].pid]
            client.run(die_when_a_plugin_arrives, workers=doomed)
        report = run(
            *mosaic,
            tmp_path / "out.tif",
            scheduler=procs.address,
            work_dir=tmp_path / "work",
            adapt_options=AdaptOptions(steps=ADAPT_STEPS),
            **NETWORK,
        )
        assert procs.workers[2].wait(timeout=30) == -signal.SIGKILL  # it died as the install reached it
        assert procs.alive_workers() == 2 and report.computed_blocks == 16
        assert pixels_sha(tmp_path / "out.tif") == reference_sha
    finally:
        procs.close()


@pytest.mark.slow
def test_a_hung_worker_is_noticed_and_its_tasks_move_to_the_others(small_mosaic, tmp_path):
    mosaic, reference_sha = small_mosaic
    ttl = 8  # seconds of silence before the scheduler gives a worker's tasks away (the clusters we start: 60)
    procs = DaskProcesses(tmp_path, scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": f"{ttl}s"})
    stopped: dict[str, float] = {}

    def stop_second_worker() -> None:
        procs.workers[1].send_signal(signal.SIGSTOP)  # hung: alive, holding its tasks, answering nothing
        stopped["at"] = time.monotonic()

    progress, _ = _once_in("fuse", 2, stop_second_worker)

    try:
        report = run(
            *mosaic,
            tmp_path / "out.tif",
            scheduler=procs.address,
            work_dir=tmp_path / "work",
            adapt_options=AdaptOptions(steps=ADAPT_STEPS),
            progress=progress,
            **NETWORK,
        )
        took = time.monotonic() - stopped["at"]
        assert stopped and report.computed_blocks == 16
        assert pixels_sha(tmp_path / "out.tif") == reference_sha
        assert took < ttl + 30  # noticed in about the TTL, not Dask's 5 minutes
    finally:
        procs.workers[1].kill()  # dropped by the scheduler while stopped: it need not be asked twice
        procs.close()


@pytest.mark.slow
def test_a_worker_added_mid_run_gets_the_network_and_takes_blocks(small_mosaic, tmp_path):
    mosaic, reference_sha = small_mosaic
    procs = DaskProcesses(tmp_path, workers=1)
    add_a_worker, added = _once_in("fuse", 2, lambda: procs.add_workers(1))

    try:
        run(
            *mosaic,
            tmp_path / "out.tif",
            scheduler=procs.address,
            work_dir=tmp_path / "work",
            adapt_options=AdaptOptions(steps=ADAPT_STEPS),
            progress=add_a_worker,
            **NETWORK,
        )
        with Client(procs.address) as client:
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
            plugins = client.run(lambda dask_worker: [n for n in dask_worker.plugins if n.startswith("pansharp-")])
        assert added and len(executed) == 2 and all(count > 0 for count in executed.values())
        assert all(names for names in plugins.values())  # the late worker got the resident network too
        assert pixels_sha(tmp_path / "out.tif") == reference_sha
    finally:
        procs.close()


@pytest.mark.slow
def test_a_worker_retired_mid_run_loses_no_work(small_mosaic, tmp_path):
    mosaic, reference_sha = small_mosaic
    procs = DaskProcesses(tmp_path, workers=2)
    retired: list[str] = []

    def retire_first() -> None:
        with Client(procs.address) as client:
            address = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
            client.retire_workers([address], close_workers=True)
        retired.append(address)

    retire_one, _ = _once_in("fuse", 2, retire_first)

    try:
        report = run(
            *mosaic,
            tmp_path / "out.tif",
            scheduler=procs.address,
            work_dir=tmp_path / "work",
            adapt_options=AdaptOptions(steps=ADAPT_STEPS),
            progress=retire_one,
            **NETWORK,
        )
        assert retired and procs.alive_workers() == 1 and report.computed_blocks == 16
        assert pixels_sha(tmp_path / "out.tif") == reference_sha
    finally:
        procs.close()


@pytest.mark.slow
def test_a_run_on_an_adaptive_cluster_writes_the_same_bytes(small_mosaic, tmp_path):
    mosaic, reference_sha = small_mosaic
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        cluster.adapt(minimum=1, maximum=2, interval="200ms", wait_count=2)
        with Client(cluster) as client:
            report = run(
                *mosaic, tmp_path / "out.tif", client=client, adapt_options=AdaptOptions(steps=ADAPT_STEPS), **NETWORK
            )
    assert report.computed_blocks == 16
    assert pixels_sha(tmp_path / "out.tif") == reference_sha


@pytest.mark.slow
@pytest.mark.parametrize(
    "adapt, phase",
    # A tailor where the phase involves it (adapt, fuse with the adaptation resident), none where it does not
    # (ingest, COG: the same code either way, and a shorter run). none-fuse: a LocalCluster's worker, below
    # (test_one_plan_on_a_local_cluster_with_a_worker_killed_midway...).
    [("none", "ingest"), ("tailor", "adapt"), ("tailor", "fuse"), ("none", "cog")],
)
def test_a_worker_killed_in_any_phase_changes_no_pixel(small_mosaic, small_unadapted_reference, tmp_path, adapt, phase):
    pair, reference = small_mosaic
    reference = reference if adapt == "tailor" else small_unadapted_reference
    procs = DaskProcesses(tmp_path, workers=2)
    kill_in_phase, killed = _once_in(phase, 1, lambda: procs.workers[1].send_signal(signal.SIGKILL))

    try:
        report = run(
            *pair,
            tmp_path / "out.tif",
            scheduler=procs.address,
            work_dir=tmp_path / "work",
            adapt_options=AdaptOptions(steps=ADAPT_STEPS),
            progress=kill_in_phase,
            **{**NETWORK, "adapt": adapt},
        )
        assert killed == [phase] and procs.workers[1].wait(timeout=30) == -signal.SIGKILL
        assert report.computed_blocks == report.blocks == 16
        assert pixels_sha(tmp_path / "out.tif") == reference
    finally:
        procs.close()


@pytest.mark.slow
def test_one_plan_on_a_local_cluster_with_a_worker_killed_midway_writes_the_same_bytes(
    small_mosaic, small_unadapted_reference, tmp_path
):
    """The plan run step by step (as the CLI and the flow run it) on a LocalCluster of 3 workers with nannies;
    one worker's process SIGKILLed when half the blocks are fused: its nanny starts another, the scheduler
    gives its blocks to the others, and the COG is the undisturbed one."""
    plan = plan_run(*small_mosaic[0], tmp_path / "out.tif", work_dir=tmp_path / "work", **{**NETWORK, "adapt": "none"})
    with (
        LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        victim = next(iter(client.run(os.getpid).values()))
        kill_midway, killed = _once_in("fuse", 8, lambda: os.kill(victim, signal.SIGKILL))
        with run_folder(plan) as files:
            stored = ingest_tiles(plan, files, client)
            fuser, _ = prepare_fuser(plan, files, stored, client)
            written = fuse_blocks(plan, files, stored, fuser, client, kill_midway)
            assemble_cog(plan, files, client)
        assert killed == ["fuse"] and victim not in client.run(os.getpid).values()
    assert written.blocks == 16 and pixels_sha(tmp_path / "out.tif") == small_unadapted_reference


@pytest.mark.slow
def test_a_task_that_kills_every_worker_it_meets_is_one_clear_error():
    from pansharp_dist.cluster import cluster_errors

    with connect("local", workers=1) as client, pytest.raises(ClusterError, match="killed each worker that ran it"):
        with cluster_errors(client):
            client.submit(os._exit, 1, pure=False).result()  # the worker's process ends; its nanny starts another
