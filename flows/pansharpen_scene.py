"""Prefect flow: one scene from PAN + MS hrefs (or a STAC item) to a COG, a STAC item, a quicklook and metrics.

The run is planned once (:func:`pansharp_dist.plan.plan_run`) and each task is
one step of :mod:`pansharp_dist.pipeline` on that plan, the steps the command
line's ``run`` takes: the same work files, the same output bytes. Pixel work
runs on the Dask cluster named by ``scheduler``; tasks retry only on transient
I/O errors, bad input fails at once with the library's message, and no task
result is cached. Hrefs that reach the STAC item, the artifacts or the logs are
stripped of credentials first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from pansharp_dist.catalog import scene_request
from pansharp_dist.cluster import connect
from pansharp_dist.errors import is_transient
from pansharp_dist.export import write_quicklook
from pansharp_dist.methods import Fuser
from pansharp_dist.pipeline import assemble_cog, fuse_blocks, ingest_tiles, prepare_fuser, run_folder
from pansharp_dist.plan import RunPlan, WorkFiles, plan_run
from pansharp_dist.quality.evaluate import evaluate
from pansharp_dist.redact import redact_logs, redacted
from pansharp_dist.scene import Scene
from pansharp_dist.stac import output_item, write_item


def _retry_transient(task, task_run, state) -> bool:  # noqa: ARG001  (Prefect's retry_condition_fn signature)
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001
        return is_transient(exc)
    return False


STEP = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": _retry_transient, "cache_policy": NO_CACHE}
redact_logs()  # no log record of a flow run shows a credential or a signed-URL token


@task(**STEP)
@redacted
def ingest(plan: RunPlan, files: WorkFiles, scheduler: str) -> Scene:
    """The Zarr tile store of the scene."""
    with connect(scheduler) as client:
        return ingest_tiles(plan, files, client)


@task(**STEP)
@redacted
def adapt(plan: RunPlan, files: WorkFiles, stored: Scene, scheduler: str) -> Fuser:
    """The fuser from the scene's statistics, adapted (tailor or full) on sampled tiles when the plan says so."""
    with connect(scheduler) as client:
        fuser, summary = prepare_fuser(plan, files, stored, client)
    if summary is not None:
        get_run_logger().info("adaptation %s: %s", plan.adapt, summary)
    return fuser


@task(**STEP)
@redacted
def fuse(plan: RunPlan, files: WorkFiles, stored: Scene, fuser: Fuser, scheduler: str) -> int:
    """Every block fused and its COG tiles encoded, a progress artifact following the blocks; returns their count."""
    artifact = create_progress_artifact(
        progress=0.0, key="pansharpen-blocks", description="output blocks fused and encoded"
    )
    last = [0.0]

    def progress(phase: str, done: int, total: int, note: str | None = None) -> None:  # noqa: ARG001
        now = time.monotonic()
        if done == total or now - last[0] > 1.0:  # at most one API call a second
            update_progress_artifact(artifact_id=artifact, progress=100.0 * done / total)
            last[0] = now

    with connect(scheduler) as client:
        return fuse_blocks(plan, files, stored, fuser, client, progress).blocks


@task(**STEP)
@redacted
def export(
    plan: RunPlan, files: WorkFiles, name: str, sources: list[str], acquired: dt.datetime | None, scheduler: str
) -> dict[str, str]:
    """The COG (its overviews below the fused blocks' and the assembly, on the cluster), its quicklook and its
    STAC item; returns their paths."""
    with connect(scheduler) as client:
        cog = assemble_cog(plan, files, client)
    png = write_quicklook(cog, cog.with_suffix(".png"))
    item = output_item(
        cog,
        item_id=name,
        sources=sources,
        method=plan.method,
        adaptation=None if plan.adapt == "none" else plan.adapt,
        quicklook=png,
        datetime=acquired,  # when the scene was taken (its item's, or its PAN's DateTime tag), else now
    )
    stac = write_item(item, cog.with_suffix(".json"))
    return {"cog": str(cog), "quicklook": str(png), "stac": str(stac)}


@task(**STEP)
@redacted
def score(plan: RunPlan, cog: str, scheduler: str) -> dict[str, float]:
    """Full-resolution quality of the COG against its PAN and MS (QNR, HQNR and their parts)."""
    with connect(scheduler) as client:
        return evaluate(plan.pan, plan.ms, cog, sensor=plan.sensor, client=client)


@flow(name="pansharpen-scene", log_prints=True)
@redacted
def pansharpen_scene(
    out_dir: str,
    pan: str | None = None,
    ms: str | None = None,
    item_href: str | None = None,
    method: str = "mtf-glp-hpm",
    adapt_mode: str | None = None,
    scheduler: str = "local",
    sensor: str | None = None,
    tile: int = 512,
    allowed_roots: list[str] | None = None,
    name: str | None = None,
    work_dir: str | None = None,
    tailor: str | None = None,
    extent: str = "pan",
    dtype: str | None = None,
    compress: str | None = None,
) -> dict[str, object]:
    """Pansharpen one scene: PAN and MS hrefs, or a STAC item whose assets name them.

    Args:
        out_dir: folder for the COG, quicklook and STAC item.
        pan, ms: input hrefs (when no ``item_href``).
        item_href: a STAC item with PAN and MS assets.
        method: fusion method or model id.
        adapt_mode: ``tailor`` (default for networks), ``full`` or ``none``.
        scheduler: ``local`` (one LocalCluster for the whole flow run), ``threads`` or a scheduler address.
        allowed_roots: local folders / URL prefixes that hrefs must lie under (default: no restriction
            for direct ``pan``/``ms``; required for ``item_href``, whose assets must moreover be GeoTIFFs
            that read no file outside them).
        name: output base name (default: the item id, else the PAN file's stem), made a safe file name.
        work_dir: a folder that keeps the work files (as ``run --work-dir``); default: a temporary one.
        tailor: a saved tailor (``pansharp-dist adapt``) to apply instead of adapting (``run --tailor``).
        extent: the output's grid: ``pan`` (the PAN raster's), ``overlap`` or ``union`` (``run --extent``).
        dtype: the output's data type (``run --dtype``); default the MS's, float32 for float MS.
        compress: the COG's codec and level (``run --compress``); default ZSTD:9 on CPU, ZSTD:1 where a GPU fuses.
    """
    started = time.perf_counter()
    request = scene_request(pan, ms, item_href, allowed_roots, sensor, name)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    plan = plan_run(
        request.pan,
        request.ms,
        Path(out_dir) / f"{request.name}.tif",
        method=method,
        sensor=request.sensor,
        tile=tile,
        adapt=adapt_mode,
        work_dir=work_dir,
        overwrite=True,
        tailor=tailor,
        extent=extent,
        dtype=dtype,
        compress=compress,
    )
    timings: dict[str, float] = {}

    def timed(step: str, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        timings[step] = round(time.perf_counter() - t0, 2)
        return result

    with run_folder(plan) as files, contextlib.ExitStack() as stack:
        if scheduler == "local":  # one cluster for every task of this run, joined by address
            scheduler = stack.enter_context(connect("local")).scheduler.address
        stored = timed("ingest", ingest, plan, files, scheduler)
        fuser = timed("adapt", adapt, plan, files, stored, scheduler)
        timed("infer", fuse, plan, files, stored, fuser, scheduler)
        outputs = timed("export", export, plan, files, request.name, request.sources, request.acquired, scheduler)
        metrics = timed("evaluate", score, plan, outputs["cog"], scheduler)
    rows = [{"measure": k, "value": round(float(v), 4)} for k, v in metrics.items()]
    rows += [{"measure": f"seconds {k}", "value": v} for k, v in timings.items()]
    rows.append({"measure": "seconds total", "value": round(time.perf_counter() - started, 2)})
    create_table_artifact(
        table=rows, key="pansharpen-quality", description=f"{request.name}: {method}, adaptation {plan.adapt}"
    )
    for kind, suffix in (("cog", "tif"), ("stac", "json")):
        create_link_artifact(
            link=Path(outputs[kind]).resolve().as_uri(), link_text=f"{request.name}.{suffix}", key=f"pansharpen-{kind}"
        )
    return {"name": request.name, **outputs, "metrics": metrics, "seconds": timings}


if __name__ == "__main__":
    pansharpen_scene.serve(name="pansharpen-scene")
