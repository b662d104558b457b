"""The end-to-end run: validate, ingest, fit, adapt, fuse tile by tile, write the COG.

Nothing is left behind on failure: the output appears only when complete.
Without a named work folder, the tile store and output store live in a
temporary folder beside the output, removed at the end. In a named work
folder they are kept, with the adaptation weights, so that a run that was
interrupted (a killed client, a lost cluster) continues with ``resume=True``:
the tile store and the adaptation are reused, and only the blocks the output
ledger does not list are computed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from .adapt import MODES
from .adapt.options import AdaptOptions, AdaptReport
from .cluster import cluster_errors, connect
from .errors import InvalidParameterError, OutputNotWritableError, StoreError
from .export import check_compress, write_cog
from .infer import fit, pansharpen, tile_grid
from .methods import check_method, is_network
from .models.cards import card
from .outputs import check_output, disk_errors, output_lock, remove_leftovers, remove_owned
from .resume import check_record, remove_weights, run_record, save_weights, saved_weights, write_record
from .scene import Scene, open_scene
from .store import TASK_MEGAPIXELS, block_size, ingest, open_store, store_meta, write_output


class PhaseProgress(Protocol):
    """``callback(phase, done, total, note=None)``; phases are ``ingest``, ``adapt``, ``fuse`` and ``cog``;
    ``note`` says more where a phase has more to say (the adaptation's current loss)."""

    def __call__(self, phase: str, done: int, total: int, note: str | None = None) -> None: ...


@dataclass(frozen=True)
class RunReport:
    """What a run produced (the CLI's ``--json`` object)."""

    output: str
    bytes: int
    method: str
    seconds: float
    tiles: int
    width: int
    height: int
    bands: int
    ratio: int
    sensor: str | None
    crs: str | None
    blocks: int
    computed_blocks: int
    adaptation: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _work_folder(out: Path, work_dir: str | Path | None) -> Iterator[Path]:
    """The caller's work folder, or a temporary one beside ``out`` removed on exit."""
    if work_dir is not None:
        folder = Path(work_dir)
        if folder.exists() and not folder.is_dir():
            raise InvalidParameterError(f"--work-dir {folder} is a file; give a folder (it is created if missing)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritableError(f"cannot create the work folder {folder} ({exc.strerror or exc})") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputNotWritableError(f"the work folder {folder} is not writable; choose another --work-dir")
        yield folder
        return
    remove_leftovers(out, ("work",))  # of runs killed before they could remove theirs (we hold the output's lock)
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.work-", dir=out.parent))
    try:
        yield folder
    finally:
        _remove_settled(folder)


def _remove_settled(folder: Path, tries: int = 40) -> None:
    """Remove ``folder``, again while something still writes into it: after a failed write (a full disk) the
    storage library's other chunk writes of that task are still in flight on its own thread for a moment."""
    for _ in range(tries):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.05)


@contextlib.contextmanager
def _client(client, scheduler: str, workers: int | None, tls_config: str | Path | None, scene: Scene):
    """``client`` itself, or what ``scheduler`` gives for ``scene`` (``None``: this process's threads)."""
    if client is not None:
        yield client
    else:
        with connect(scheduler, workers, tls_config, megapixels=scene.shape[0] * scene.shape[1] / 1e6) as made:
            yield made


def run(
    pan: str | Path,
    ms: str | Path,
    out: str | Path,
    *,
    method: str = "brovey",
    sensor: str | None = None,
    tile: int = 512,
    task_megapixels: float = TASK_MEGAPIXELS,
    patch: int | None = None,
    weights: tuple[float, ...] | None = None,
    device: str | None = None,
    adapt: str | None = None,
    adapt_options: AdaptOptions | None = None,
    client=None,
    scheduler: str = "auto",
    workers: int | None = None,
    tls_config: str | Path | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    compress: str = "ZSTD",
    overwrite: bool = False,
    progress: PhaseProgress | None = None,
) -> RunReport:
    """Pansharpen a PAN + MS pair into a COG at ``out``.

    Args mirror the CLI's ``run`` options; ``client`` reuses an existing Dask
    client instead of connecting to ``scheduler``. ``resume`` continues an
    interrupted run whose stores are in ``work_dir``.

    Raises:
        PansharpError: bad input or output (nothing is written).
    """
    start = time.perf_counter()
    if resume and work_dir is None:
        raise InvalidParameterError("--resume needs the --work-dir of the interrupted run")
    out = check_output(out, overwrite, inputs=(pan, ms))
    check_compress(compress)
    scene = open_scene(pan, ms, sensor, patch=patch)
    adapt = adapt_mode_for(method, adapt)
    options = _options(method, weights, device, scene)
    block = block_size(tile, task_megapixels, scene.ratio)
    settings = {
        "method": method.lower(), "sensor": sensor, "tile": tile, "block": block, "patch": patch, "weights": weights,
        "device": device, "adapt": adapt, "adapt_options": asdict(adapt_options or AdaptOptions()),
    }
    with (
        disk_errors(f"{out} or its work files" if work_dir is None else f"{out} or {work_dir}"),
        output_lock(out),
        _work_folder(out, work_dir) as folder,
        _client(client, scheduler, workers, tls_config, scene) as cl,
        cluster_errors(cl),
    ):
        tiles_path = folder / f"{out.stem}.tiles.zarr"
        hrms_path = folder / f"{out.stem}.hrms.zarr"
        adapt_path = folder / f"{out.stem}.{method.lower()}.{adapt}.safetensors"
        record_path = folder / f"{out.stem}.run.json"
        record = run_record({"pan": pan, "ms": ms}, settings) if work_dir is not None else None
        if resume:
            check_record(record_path, record)
        else:
            for stale in (tiles_path, hrms_path):
                remove_owned(stale)
            remove_weights(adapt_path)
            if record is not None:
                write_record(record_path, record)
        stored = _reuse_store(tiles_path, scene, tile, block) if resume else None
        if stored is None:
            stored = ingest(scene, tiles_path, tile=tile, block=block, client=cl, progress=_phase(progress, "ingest"))
        fuser = fit(stored, method, cl, **options)
        adaptation = None
        if adapt != "none":
            fuser, adaptation = adapt_or_reuse(stored, fuser, adapt, adapt_path, adapt_options, progress)
        hrms = pansharpen(stored, fuser, cl, tile=tile, block=block)
        written = write_output(hrms, hrms_path, cl, _phase(progress, "fuse"), resume=resume)
        write_cog(hrms_path, out, client=cl, overwrite=overwrite, compress=compress, progress=_phase(progress, "cog"))
    return RunReport(
        output=str(out),
        bytes=out.stat().st_size,
        method=fuser.name,
        seconds=round(time.perf_counter() - start, 3),
        tiles=len(tile_grid(stored, fuser, tile)),
        width=stored.shape[1],
        height=stored.shape[0],
        bands=stored.bands,
        ratio=stored.ratio,
        sensor=stored.sensor,
        crs=stored.crs.to_string() if stored.crs is not None else None,
        blocks=written.blocks,
        computed_blocks=written.computed,
        adaptation=adaptation,
    )


def _reuse_store(path: Path, scene: Scene, tile: int, block: int) -> Scene | None:
    """The tile store an interrupted run left at ``path``, or ``None`` when it must be ingested again.

    Raises:
        StoreError: the store holds another scene or another tiling.
    """
    try:
        meta = store_meta(path)
    except StoreError:  # missing, or its ingest did not finish
        remove_owned(path)
        return None
    if (meta["name"], meta["tile"], meta["block"]) != (scene.name, tile, block):
        raise StoreError(
            f"{path} holds {meta['name']} tiled {meta['tile']}/{meta['block']}, not {scene.name} tiled "
            f"{tile}/{block}; rerun without --resume or with the interrupted run's --tile and --task-mp"
        )
    return open_store(path)


def adapt_or_reuse(
    stored: Scene, fuser, mode: str, path: str | Path, options: AdaptOptions | None = None,
    progress: PhaseProgress | None = None,
):
    """Adapt ``fuser`` to the scene and save the weights at ``path``, or reuse those a previous attempt saved there.

    Returns the adapted fuser and a summary (the :class:`AdaptReport` in short, or ``{"reused": path}``).

    Raises:
        StoreError: the saved weights do not match the hash saved with them (:func:`~.resume.saved_weights`).
    """
    from .adapt.fit import fit_adaptation  # torch: imported where a network is adapted

    saved = saved_weights(path)
    if saved is not None:
        return fuser.adapted(mode, saved), {"mode": mode, "reused": str(path)}
    options = options or AdaptOptions()
    steps = None
    if progress:
        progress("adapt", 0, options.steps)
        steps = lambda done, total, loss: progress("adapt", done, total, f"loss {loss:.4g}")  # noqa: E731
    fuser, report = fit_adaptation(stored, fuser, mode, options, progress=steps)
    save_weights(path, fuser.weights)
    if progress:
        progress("adapt", report.steps, report.steps, f"{report.stopped}, kept loss {report.kept_loss:.4g}")
    return fuser, _adaptation_summary(report)


def adapt_mode_for(method: str, adapt: str | None) -> str:
    """The adaptation of a run: ``tailor`` by default for networks; classical methods take none.

    Refuses an unknown method (:class:`~pansharp_dist.errors.UnknownMethodError`) and an unknown or
    inapplicable adaptation (:class:`~pansharp_dist.errors.InvalidParameterError`), before any work.

    Warns when the network's card records that, run this way, it lost to plain
    upsampling or a classical method on data of its own sensor.
    """
    network = is_network(check_method(method))
    if adapt is None:
        adapt = "tailor" if network else "none"
    if adapt not in MODES:
        raise InvalidParameterError(f"--adapt must be one of {', '.join(MODES)}, got {adapt!r}")
    if adapt != "none" and not network:
        raise InvalidParameterError(f"--adapt {adapt} applies to network methods only, not to {method}")
    failed = card(method).native_failures(adapt) if network else []
    if failed:
        c = failed[0]
        how = "unadapted" if adapt == "none" else f"with --adapt {adapt}"
        warnings.warn(
            f"{method} failed its own-sensor check {how} on {c.data} (ERGAS {c.ergas:.2f}, {c.best_ergas[0]} "
            f"{c.best_ergas[1]:.2f}; SAM {c.sam:.2f}, {c.best_sam[0]} {c.best_sam[1]:.2f}): it may do worse than "
            "plain upsampling or a classical method; see pansharp-dist models list and docs/quality.md",
            stacklevel=2,
        )
    return adapt


def _adaptation_summary(report: AdaptReport) -> dict:
    return {
        "mode": report.mode, "steps": report.steps, "seconds": round(report.seconds, 3), "tiles": len(report.tiles),
        "stopped": report.stopped, "kept_step": report.kept_step,
        "kept_loss": round(report.kept_loss, 6) if report.kept_loss is not None else None,
        "terms": {k: round(v, 6) for k, v in report.terms.items()},
        "losses": [round(v, 6) for v in report.losses],
    }


def _options(method: str, weights: tuple[float, ...] | None, device: str | None, scene: Scene) -> dict[str, object]:
    """Method options from the run's arguments, refusing those the method does not take or that do not fit
    ``scene`` (weights per band, a network's bands and ratio), before any work."""
    options: dict[str, object] = {}
    if is_network(method):
        card(method).check_fits(scene.bands, scene.ratio)
    if method.lower() == "brovey":
        from .classical import check_brovey_dtypes

        check_brovey_dtypes(scene.pan.dtype, scene.ms.dtype)
    if weights is not None:
        if method.lower() != "brovey":
            raise InvalidParameterError(f"weights apply to brovey only, not to {method}", "weights")
        from .classical import check_weights

        options["weights"] = check_weights(weights, scene.bands)
    if device is not None:
        if not is_network(method):
            raise InvalidParameterError(f"--device applies to network methods only, not to {method}")
        from .models.network import check_device

        options["device"] = check_device(device)  # before the ingest, not after it
    return options


def _phase(progress: PhaseProgress | None, name: str):
    return (lambda done, total: progress(name, done, total)) if progress else None


def ingest_scene(
    pan: str | Path,
    ms: str | Path,
    out: str | Path,
    *,
    sensor: str | None = None,
    tile: int = 512,
    task_megapixels: float = TASK_MEGAPIXELS,
    patch: int | None = None,
    client=None,
    scheduler: str = "auto",
    workers: int | None = None,
    tls_config: str | Path | None = None,
    overwrite: bool = False,
    progress: PhaseProgress | None = None,
) -> Scene:
    """Open a PAN + MS pair and write its Zarr tile store at ``out``."""
    out = check_output(out, overwrite, inputs=(pan, ms), store=True)
    scene = open_scene(pan, ms, sensor, patch=patch)
    block = block_size(tile, task_megapixels, scene.ratio)
    with (
        disk_errors(str(out)), output_lock(out), _client(client, scheduler, workers, tls_config, scene) as cl,
        cluster_errors(cl),
    ):
        remove_owned(out)
        return ingest(scene, out, tile=tile, block=block, client=cl, progress=_phase(progress, "ingest"))
