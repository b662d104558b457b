"""Prefect flow: one scene from PAN + MS hrefs (or a STAC item) to a COG, a STAC item, a quicklook and metrics.

Hrefs that reach the STAC item, the artifacts or the logs are stripped of
credentials (user, password, signed-URL query strings) first.

Thin by design: each task is one coarse step calling :mod:`pansharp_dist`
(ingest, adapt, infer, export, evaluate), passes paths and ids, never arrays,
and the pixel work runs on the Dask cluster named by ``scheduler``. Tasks retry
only on transient I/O errors (connection resets, timeouts); bad input fails at
once with the library's message. No task result is cached: every write is
idempotent (temporary name, then rename) and a rerun redoes the work.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import shutil
import time
from pathlib import Path

import pystac
import rasterio
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

import pansharp_dist
from pansharp_dist.catalog import HrefPolicy, safe_name
from pansharp_dist.cluster import connect
from pansharp_dist.errors import InvalidParameterError, PansharpError
from pansharp_dist.export import write_cog, write_quicklook
from pansharp_dist.infer import fit, pansharpen
from pansharp_dist.pipeline import adapt_mode_for, adapt_or_reuse, ingest_scene
from pansharp_dist.quality.evaluate import evaluate
from pansharp_dist.redact import redact_exception, redact_href, redact_logs
from pansharp_dist.resume import saved_weights
from pansharp_dist.sensors import default_rgb
from pansharp_dist.stac import output_item, scene_assets, write_item
from pansharp_dist.store import open_store, write_output

_TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE}


def is_transient(exc: BaseException) -> bool:
    """Connection and timeout errors, and OS errors of a transient kind; never the library's own errors."""
    if isinstance(exc, PansharpError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def _retry_transient(task, task_run, state) -> bool:  # noqa: ARG001  (Prefect's retry_condition_fn signature)
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001
        return is_transient(exc)
    return False


STEP = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": _retry_transient, "cache_policy": NO_CACHE}
redact_logs()  # no log record of a flow run shows a credential or a signed-URL token


def redacted(fn):
    """``fn``, whose exceptions leave it without credentials in their messages (what a task's state shows)."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise redact_exception(exc)

    return call


@task(**STEP)
@redacted
def ingest(pan: str, ms: str, store: str, sensor: str | None, tile: int, scheduler: str) -> str:
    """Write the Zarr tile store; returns its path."""
    with connect(scheduler) as client:
        ingest_scene(pan, ms, store, sensor=sensor, tile=tile, client=client, overwrite=True)
    return store


@task(**STEP)
@redacted
def adapt(store: str, method: str, mode: str, weights: str) -> str | None:
    """Fit the tailor (or the full network) on sampled tiles and save it; ``None`` for no adaptation."""
    if mode == "none":
        return None
    stored = open_store(store)
    _, summary = adapt_or_reuse(stored, fit(stored, method), mode, weights)
    get_run_logger().info("adaptation %s: %s", mode, summary)
    return weights


@task(**STEP)
@redacted
def infer(store: str, method: str, mode: str, weights: str | None, hrms: str, tile: int, scheduler: str) -> str:
    """Fuse every block into the output Zarr store, updating a progress artifact as blocks finish."""
    stored = open_store(store)
    fuser = fit(stored, method)
    if weights is not None:
        fuser = fuser.adapted(mode, saved_weights(weights))
    artifact = create_progress_artifact(progress=0.0, key="pansharpen-blocks", description="output blocks written")
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > 1.0:  # at most one API call a second
            update_progress_artifact(artifact_id=artifact, progress=100.0 * done / total)
            last[0] = now

    with connect(scheduler) as client:
        write_output(pansharpen(stored, fuser, client, tile=tile), hrms, client, progress)
    return hrms


@task(**STEP)
@redacted
def export(
    hrms: str, out_dir: str, name: str, sources: list[str], method: str, mode: str, scheduler: str
) -> dict[str, str]:
    """The COG (encoded on the cluster), its quicklook and its STAC item; returns their paths."""
    folder = Path(out_dir)
    with connect(scheduler) as client:
        cog = write_cog(hrms, folder / f"{name}.tif", overwrite=True, client=client)
    with rasterio.open(cog) as src:
        bands = src.count
    png = write_quicklook(cog, folder / f"{name}.png", default_rgb(bands))
    item = output_item(cog, item_id=name, sources=sources, method=method,
                       adaptation=None if mode == "none" else mode, software_version=pansharp_dist.__version__,
                       quicklook=png)
    stac = write_item(item, folder / f"{name}.json")
    return {"cog": str(cog), "quicklook": str(png), "stac": str(stac)}


@task(**STEP)
@redacted
def score(pan: str, ms: str, cog: str, sensor: str | None, scheduler: str) -> dict[str, float]:
    """Full-resolution quality of the COG against its PAN and MS (QNR, HQNR and their parts)."""
    with connect(scheduler) as client:
        return evaluate(pan, ms, cog, sensor=sensor, client=client)


@flow(name="pansharpen-scene", log_prints=True)
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
) -> dict[str, object]:
    """Pansharpen one scene: PAN and MS hrefs, or a STAC item whose assets name them.

    Args:
        out_dir: folder for the COG, quicklook, STAC item and the work stores.
        pan, ms: input hrefs (when no ``item_href``).
        item_href: a STAC item with PAN and MS assets.
        method: fusion method or model id.
        adapt_mode: ``tailor`` (default for networks), ``full`` or ``none``.
        scheduler: ``local`` (one LocalCluster for the whole flow run) or a scheduler address.
        allowed_roots: local folders / URL prefixes that hrefs must lie under (default: no restriction
            for direct ``pan``/``ms``; required for ``item_href``, whose assets must moreover be GeoTIFFs
            that read no file outside them).
        name: output base name (default: the item id, else the PAN file's stem), made a safe file name.
    """
    started = time.perf_counter()
    sources: list[str]
    if item_href is not None:
        if not allowed_roots:
            raise InvalidParameterError("a STAC item needs allowed_roots: the folders or URL prefixes its assets may use")
        policy = HrefPolicy(tuple(allowed_roots))
        policy.check(item_href)
        assets = scene_assets(pystac.Item.from_file(item_href))
        pan, ms = policy.check_raster(assets.pan), policy.check_raster(assets.ms)
        sensor = sensor or assets.sensor
        name = name or assets.item_id
        sources = [redact_href(item_href)]
    else:
        if pan is None or ms is None:
            raise InvalidParameterError("give pan and ms hrefs, or item_href")
        if allowed_roots:
            policy = HrefPolicy(tuple(allowed_roots))
            pan, ms = policy.check(pan), policy.check(ms)
        name = name or Path(pan).stem
        sources = [redact_href(pan), redact_href(ms)]
    name = safe_name(name)
    mode = adapt_mode_for(method, adapt_mode)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / f".{name}.work"
    work.mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        if scheduler == "local":  # one cluster for every task of this run, joined by address
            scheduler = stack.enter_context(connect("local")).scheduler.address
        timings: dict[str, float] = {}

        def timed(step: str, fn, *args):
            t0 = time.perf_counter()
            result = fn(*args)
            timings[step] = round(time.perf_counter() - t0, 2)
            return result

        store = timed("ingest", ingest, pan, ms, str(work / "tiles.zarr"), sensor, tile, scheduler)
        weights = timed("adapt", adapt, store, method, mode, str(work / f"{method.lower()}.{mode}.safetensors"))
        hrms = timed("infer", infer, store, method, mode, weights, str(work / "hrms.zarr"), tile, scheduler)
        outputs = timed("export", export, hrms, str(folder), name, sources, method, mode, scheduler)
        metrics = timed("evaluate", score, pan, ms, outputs["cog"], sensor, scheduler)
    shutil.rmtree(work, ignore_errors=True)
    rows = [{"measure": k, "value": round(float(v), 4)} for k, v in metrics.items()]
    rows += [{"measure": f"seconds {k}", "value": v} for k, v in timings.items()]
    rows.append({"measure": "seconds total", "value": round(time.perf_counter() - started, 2)})
    create_table_artifact(table=rows, key="pansharpen-quality", description=f"{name}: {method}, adaptation {mode}")
    create_link_artifact(link=Path(outputs["cog"]).resolve().as_uri(), link_text=f"{name}.tif", key="pansharpen-cog")
    create_link_artifact(link=Path(outputs["stac"]).resolve().as_uri(), link_text=f"{name}.json", key="pansharpen-stac")
    return {"name": name, **outputs, "metrics": metrics, "seconds": timings}


if __name__ == "__main__":
    pansharpen_scene.serve(name="pansharpen-scene")
