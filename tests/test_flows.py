"""The Prefect flows against a real temporary Prefect server (``prefect_test_harness``) and a real LocalCluster."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pystac
import pytest
import rasterio
from conftest import GDAL_HPF, REPO, VHR
from test_pipeline import _free_port, cog_valid

prefect = pytest.importorskip("prefect")
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from flows.pansharpen_scene import pansharpen_scene  # noqa: E402
from flows.reprocess_catalog import reprocess_catalog  # noqa: E402
from pansharp_dist.catalog import HrefPolicy, ItemLedger  # noqa: E402
from pansharp_dist.errors import HrefRefusedError  # noqa: E402

SAMPLE = REPO / "pansharp_dist" / "sample"


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def scheduler(client) -> str:
    return client.scheduler.address


async def _artifacts() -> dict[str, object]:
    async with get_client() as api:
        return {a.key: a for a in await api.read_artifacts() if a.key}


@pytest.mark.slow
def test_scene_flow_writes_cog_stac_item_quicklook_and_artifacts(tmp_path, scheduler):
    import asyncio

    result = pansharpen_scene(
        out_dir=str(tmp_path),
        pan=str(SAMPLE / "pan.tif"),
        ms=str(SAMPLE / "ms.tif"),
        method="mtf-glp-hpm",
        scheduler=scheduler,
        tile=256,
        name="sample",
    )
    cog = Path(result["cog"])
    assert cog_valid(cog) and Path(result["quicklook"]).exists()
    item = pystac.Item.from_file(result["stac"])
    with rasterio.open(cog) as src:
        assert item.properties["proj:shape"] == [src.height, src.width]
        assert item.properties["proj:code"] == src.crs.to_string()
        assert item.assets["hrms"].extra_fields["raster:bands"][0]["data_type"] == src.dtypes[0]
    assert "pansharp-dist" in item.properties["processing:software"]
    assert [link.href for link in item.links if link.rel == "derived_from"] == [
        str(SAMPLE / "pan.tif"),
        str(SAMPLE / "ms.tif"),
    ]
    assert 0 < result["metrics"]["HQNR"] <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.json", "sample.png", "sample.tif"]
    artifacts = asyncio.run(_artifacts())
    assert {"pansharpen-quality", "pansharpen-cog", "pansharpen-stac", "pansharpen-blocks"} <= set(artifacts)
    table = json.loads(artifacts["pansharpen-quality"].data)
    assert {row["measure"] for row in table} >= {"HQNR", "seconds infer", "seconds total"}
    assert artifacts["pansharpen-blocks"].data == 100.0


@pytest.mark.slow
def test_the_flow_and_the_cli_take_the_same_steps_to_the_same_bytes_and_work_files(tmp_path, scheduler):
    pan, ms = (str(SAMPLE / name) for name in ("pan.tif", "ms.tif"))
    flow_work, cli_work = tmp_path / "flow-work", tmp_path / "cli-work"
    (tmp_path / "cli").mkdir()
    result = pansharpen_scene(
        out_dir=str(tmp_path / "flow"),
        pan=pan,
        ms=ms,
        method="gsa",
        scheduler=scheduler,
        tile=256,
        name="sample",
        work_dir=str(flow_work),
    )
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "pansharp_dist.cli",
            "run",
            "--pan",
            pan,
            "--ms",
            ms,
            "--out",
            str(tmp_path / "cli" / "sample.tif"),
            "--method",
            "gsa",
            "--tile",
            "256",
            "--work-dir",
            str(cli_work),
            "--scheduler",
            scheduler,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    # the same work files; a COG part's name ends with the id of the task run that wrote it
    listing = [
        sorted(re.sub(r"(/parts/[^/]+)\.[0-9a-f]{8}$", r"\1", str(p.relative_to(work))) for p in work.rglob("*"))
        for work in (flow_work, cli_work)
    ]
    assert listing[0] == listing[1] and "sample.tiles.zarr" in listing[0] and "sample.hrms.zarr" in listing[0]
    assert Path(result["cog"]).read_bytes() == (tmp_path / "cli" / "sample.tif").read_bytes()


def _item(root: Path, item_id: str, pan: Path, ms: Path, updated: str) -> pystac.Item:
    item = pystac.Item(
        item_id,
        geometry=None,
        bbox=None,
        datetime=None,
        properties={
            "start_datetime": "2020-01-01T00:00:00Z",
            "end_datetime": "2020-01-01T00:00:00Z",
            "updated": updated,
        },
    )
    item.add_asset("pan", pystac.Asset(str(pan), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
    item.add_asset("ms", pystac.Asset(str(ms), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
    return item


def _catalog(root: Path, items: list[pystac.Item]) -> str:
    catalog = pystac.Catalog("scenes", "test scenes from real pairs")
    for item in items:
        catalog.add_item(item)
    catalog.normalize_and_save(str(root / "catalog"), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return str(root / "catalog" / "catalog.json")


def _copy_pair(pair: tuple[Path, Path], folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return tuple(Path(shutil.copy(p, folder / p.name)) for p in pair)


@pytest.mark.slow
def test_catalog_flow_processes_each_item_once_then_only_the_changed_one(tmp_path, scheduler):
    data = tmp_path / "data"
    items = [
        _item(data, "sample", *_copy_pair((SAMPLE / "pan.tif", SAMPLE / "ms.tif"), data / "sample"), "2024-01-01"),
        _item(data, "hpf", *_copy_pair(GDAL_HPF, data / "hpf"), "2024-01-01"),
    ]
    href = _catalog(tmp_path, items)
    args = {
        "catalog_href": href,
        "out_dir": str(tmp_path / "out"),
        "ledger_dir": str(tmp_path / "ledger"),
        "allowed_roots": [str(tmp_path)],
        "scheduler": scheduler,
        "concurrency": 2,
    }
    assert reprocess_catalog(**args) == {"done": ["sample", "hpf"], "failed": []}
    for item_id in ("sample", "hpf"):
        assert cog_valid(tmp_path / "out" / item_id / f"{item_id}.tif")
        out_item = pystac.Item.from_file(str(tmp_path / "out" / item_id / f"{item_id}.json"))
        assert [link.rel for link in out_item.links].count("derived_from") == 1
    assert reprocess_catalog(**args) == {"done": [], "failed": []}

    catalog = pystac.Catalog.from_file(href)
    changed = next(i for i in catalog.get_items(recursive=True) if i.id == "hpf")
    changed.properties["updated"] = "2024-06-01"
    changed.save_object()
    assert reprocess_catalog(**args) == {"done": ["hpf"], "failed": []}
    assert ItemLedger(tmp_path / "ledger").get("hpf").updated == "2024-06-01"

    uncompressed = {**args, "compress": "NONE"}  # another codec: every item again, then none
    assert reprocess_catalog(**uncompressed) == {"done": ["sample", "hpf"], "failed": []}
    with rasterio.open(tmp_path / "out" / "hpf" / "hpf.tif") as src:
        assert src.compression is None
    assert ItemLedger(tmp_path / "ledger").get("sample").options == {"compress": "NONE"}
    assert reprocess_catalog(**uncompressed) == {"done": [], "failed": []}


@pytest.mark.slow
def test_a_corrupt_item_fails_alone_and_outside_hrefs_are_refused(tmp_path, scheduler):
    data = tmp_path / "data"
    good = _copy_pair(VHR, data / "good")
    bad_pan, bad_ms = _copy_pair(VHR, data / "bad")
    bad_pan.write_bytes(bad_pan.read_bytes()[: bad_pan.stat().st_size // 3])  # truncated
    outside = _item(data, "outside", SAMPLE / "pan.tif", SAMPLE / "ms.tif", "2024-01-01")  # not under the root
    href = _catalog(
        tmp_path, [_item(data, "good", *good, "2024-01-01"), _item(data, "bad", bad_pan, bad_ms, "2024-01-01"), outside]
    )
    result = reprocess_catalog(
        catalog_href=href,
        out_dir=str(tmp_path / "out"),
        ledger_dir=str(tmp_path / "ledger"),
        allowed_roots=[str(data), str(tmp_path / "catalog")],
        scheduler=scheduler,
        concurrency=1,
    )
    assert result == {"done": ["good"], "failed": ["bad"]}
    ledger = ItemLedger(tmp_path / "ledger")
    assert "CorruptInputError" in ledger.get("bad").error
    assert ledger.get("outside").status == "failed" and "outside the allowed roots" in ledger.get("outside").error
    assert not (tmp_path / "out" / "outside").exists()


@pytest.mark.slow
def test_deployments_from_prefect_yaml_run_the_scene_flow_on_an_event(tmp_path, scheduler):
    import os
    import subprocess
    import sys
    import time

    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL

    data = tmp_path / "data"
    pan, ms = _copy_pair((SAMPLE / "pan.tif", SAMPLE / "ms.tif"), data / "sample")
    item = _item(data, "sample", pan, ms, "2024-01-01")
    item.save_object(dest_href=str(data / "sample.json"), include_self_link=False)
    exe = Path(sys.executable).parent / "prefect"
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PANSHARP_HOME": str(REPO),
        "PANSHARP_CATALOG": str(data / "catalog.json"),
        "PANSHARP_OUT": str(tmp_path / "out"),
        "PANSHARP_LEDGER": str(tmp_path / "ledger"),
        "PANSHARP_ROOTS": str(data),
        "PANSHARP_DASK": scheduler,
    }
    for args in (
        ["work-pool", "create", "pansharp", "--type", "process"],
        ["--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml"],
    ):
        done = subprocess.run([str(exe), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    worker = subprocess.Popen(
        [str(exe), "worker", "start", "--pool", "pansharp", "--type", "process"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def scene_runs():
        async with get_client() as api:
            names = {
                d.name: d.id
                for d in await api.read_deployments(
                    deployment_filter=DeploymentFilter(
                        name=DeploymentFilterName(any_=["pansharpen-scene", "reprocess-catalog"])
                    )
                )
            }
            runs = await api.read_flow_runs()
            return names, [r for r in runs if r.deployment_id == names.get("pansharpen-scene")]

    import asyncio

    try:
        names, _ = asyncio.run(scene_runs())
        assert set(names) == {"pansharpen-scene", "reprocess-catalog"}
        time.sleep(5)  # the trigger is registered with the deployment; give the server's automations a moment
        emit_event(
            event="pansharp.scene.ready",
            resource={"prefect.resource.id": "pansharp.scene.sample"},
            payload={"item_href": str(data / "sample.json")},
        )
        deadline, state = time.time() + 400, None
        while time.time() < deadline:
            _, runs = asyncio.run(scene_runs())
            state = runs[0].state if runs else None
            if state is not None and state.is_final():
                break
            time.sleep(2)
        assert state is not None and state.is_completed(), state
        assert cog_valid(tmp_path / "out" / "sample.tif")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a loaded machine can outlast the worker's graceful shutdown
            worker.kill()
            worker.wait()


def test_a_catalogue_served_over_http_is_scanned_through_pystac_client(tmp_path):
    import subprocess
    import sys
    import time

    from pansharp_dist.catalog import scan_catalog

    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    items = [_item(tmp_path, "remote", Path("/ignored/pan.tif"), Path("/ignored/ms.tif"), "2024-01-01")]
    for item in items:
        item.assets["pan"].href, item.assets["ms"].href = f"{base}data/pan.tif", f"{base}data/ms.tif"
    _catalog(tmp_path, items)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "-d", str(tmp_path), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        scenes, skipped = scan_catalog(f"{base}catalog/catalog.json", HrefPolicy((base,)))
        assert [(s.item_id, s.pan, s.ms) for s in scenes] == [("remote", f"{base}data/pan.tif", f"{base}data/ms.tif")]
        assert skipped == []
        with pytest.raises(HrefRefusedError):
            scan_catalog(f"{base}catalog/catalog.json", HrefPolicy(("http://elsewhere.example/",)))
    finally:
        server.terminate()


@pytest.mark.slow
def test_a_failed_scene_flow_shows_no_credential_in_its_states_or_logs(tmp_path, scheduler):
    import asyncio

    secret = f"https://ana:pa;ss,wd@127.0.0.1:{_free_port()}/scenes/pan.tif?X-Amz-Signature=s3cr3t"
    state = pansharpen_scene(
        out_dir=str(tmp_path),
        pan=secret,
        ms=str(GDAL_HPF[1]),
        method="brovey",
        scheduler=scheduler,
        name="secret",
        return_state=True,
    )
    assert state.is_failed()

    async def shown() -> str:
        async with get_client() as api:
            flow_run = await api.read_flow_run(state.state_details.flow_run_id)
            tasks = await api.read_task_runs()
            logs = await api.read_logs()
        states = [flow_run.state.message or ""] + [t.state.message or "" for t in tasks if t.state]
        return "\n".join(states + [log.message for log in logs])

    text = asyncio.run(shown())
    assert "127.0.0.1" in text  # the failure is there to read, with where it happened...
    assert "pa;ss" not in text and "ana:" not in text and "s3cr3t" not in text  # ...and without the secrets
