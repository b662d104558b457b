"""Prefect flow: reprocess a STAC catalogue, running the scene flow for new or changed items only.

Each item with PAN and MS assets is compared with the ledger (item id,
``updated``, input checksums, pipeline and model versions, and the run options
that change the outputs: adaptation, extent, data type, codec): items never
processed, or changed since, run through :func:`pansharpen_scene`, at most
``concurrency`` at a time; the others are left alone, so a second run on an
unchanged catalogue processes nothing. An item whose hrefs point outside the
allowed roots is refused, and an item that fails is recorded as failed; neither
stops the others.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from pansharp_dist.catalog import (
    HrefPolicy,
    ItemLedger,
    ItemRecord,
    redact_text,
    run_options,
    safe_name,
    scan_catalog,
)
from pansharp_dist.errors import HrefRefusedError

try:
    from .pansharpen_scene import pansharpen_scene
except ImportError:  # run as a script or loaded by path (prefect deploy)
    from pansharpen_scene import pansharpen_scene


@task(cache_policy=NO_CACHE)
def plan(
    catalog_href: str, allowed_roots: list[str], ledger_dir: str, method: str, options: dict[str, str]
) -> list[dict]:
    """The items that need a run, as ``{"href", "record"}``; refused items are recorded as failed here."""
    logger = get_run_logger()
    policy = HrefPolicy(tuple(allowed_roots))
    scenes, skipped = scan_catalog(catalog_href, policy)
    for line in skipped:
        logger.warning("skipped: %s", redact_text(line))
    ledger = ItemLedger(ledger_dir)
    todo = []
    for scene in scenes:
        try:
            policy.check(scene.pan)
            policy.check(scene.ms)
        except HrefRefusedError as exc:
            refused = ItemRecord(scene.item_id, scene.updated, {}, "", "", status="failed", error=str(exc))
            ledger.put(refused)
            logger.error("refused %s: %s", scene.item_id, exc)
            continue
        expected = ledger.expected(scene, method, options)
        if ledger.needs_run(expected):
            todo.append({"href": scene.self_href, "record": asdict(expected)})
    logger.info("%d of %d items need a run", len(todo), len(scenes))
    return todo


@task(cache_policy=NO_CACHE)
def process(
    item: dict,
    out_dir: str,
    ledger_dir: str,
    method: str,
    scheduler: str,
    allowed_roots: list[str],
) -> dict:
    """Run the scene flow for one item, with the options its record names, and record the outcome in the
    ledger (failures included)."""
    record = ItemRecord(**item["record"])
    options = record.options
    try:
        result = pansharpen_scene(
            out_dir=str(Path(out_dir) / safe_name(record.item_id)),
            item_href=item["href"],
            method=method,
            adapt_mode=options.get("adapt"),
            scheduler=scheduler,
            allowed_roots=allowed_roots,
            extent=options.get("extent", "pan"),
            dtype=options.get("dtype"),
            compress=options.get("compress"),
        )
        record.status, record.outputs, record.error = "done", {k: result[k] for k in ("cog", "stac", "quicklook")}, None
    except Exception as exc:  # noqa: BLE001  (one bad item must not stop the catalogue)
        record.status, record.error = "failed", redact_text(f"{type(exc).__name__}: {exc}")
        get_run_logger().error("%s failed: %s", record.item_id, record.error)
    ItemLedger(ledger_dir).put(record)
    return asdict(record)


@flow(name="reprocess-catalog")
def reprocess_catalog(
    catalog_href: str,
    out_dir: str,
    ledger_dir: str,
    allowed_roots: list[str],
    method: str = "mtf-glp-hpm",
    adapt_mode: str | None = None,
    scheduler: str = "local",
    concurrency: int = 2,
    extent: str = "pan",
    dtype: str | None = None,
    compress: str | None = None,
) -> dict[str, list[str]]:
    """Process the new and changed items of the static catalogue at ``catalog_href``.

    ``adapt_mode``, ``extent``, ``dtype`` and ``compress`` are the scene flow's (``run``'s options); an item
    processed before with other values of them runs again.

    Returns the ids processed now, split into ``done`` and ``failed``.
    """
    options = run_options(adapt_mode, extent, dtype, compress)
    todo = plan(catalog_href, allowed_roots, ledger_dir, method, options)
    results = []
    for start in range(0, len(todo), max(1, concurrency)):
        batch = todo[start : start + max(1, concurrency)]
        futures = [process.submit(item, out_dir, ledger_dir, method, scheduler, allowed_roots) for item in batch]
        results += [f.result() for f in futures]
    if results:
        create_table_artifact(
            table=[{"item": r["item_id"], "status": r["status"], "error": r["error"] or ""} for r in results],
            key="reprocess-catalog",
            description=f"{catalog_href}: {len(results)} items processed",
        )
    return {
        "done": [r["item_id"] for r in results if r["status"] == "done"],
        "failed": [r["item_id"] for r in results if r["status"] == "failed"],
    }


if __name__ == "__main__":
    reprocess_catalog.serve(name="reprocess-catalog")
