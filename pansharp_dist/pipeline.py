"""The steps of a run, and the run itself: ingest, statistics, adapt, fuse and encode block by block, the COG.

A :class:`~pansharp_dist.plan.RunPlan` says what to do; the steps below do it,
one phase each, on whatever client they are given (``None``: this process's
threads). :func:`run` (the command line's ``run``) and the Prefect flow
``flows/pansharpen_scene.py`` call the same steps on the same plan, so they
write the same work files and the same output bytes.

Nothing is left behind on failure: the output appears only when complete.
Without a named work folder, the tile store and the fused output (the parts
store of its encoded COG tiles, :mod:`~pansharp_dist.pyramid`) live in a
temporary folder beside the output, removed at the end. In a named work
folder they are kept, with the adaptation weights, so that a run that was
interrupted (a killed client, a lost cluster) continues with ``resume=True``:
the tile store and the adaptation are reused, and only the blocks the
ledger does not list are computed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .adapt.options import AdaptOptions, AdaptReport
from .cluster import cluster_errors, connect
from .errors import InvalidParameterError, OutputNotWritableError, StoreError
from .export import write_cog
from .fusion import make_fuser, pansharpen, tile_grid
from .methods import Fuser
from .outputs import check_output, disk_errors, output_lock, remove_leftovers, remove_owned
from .plan import RunPlan, WorkFiles, plan_run
from .pyramid import encode_output
from .resume import check_record, remove_weights, save_weights, saved_weights, write_record
from .scene import Scene, open_scene
from .store import TASK_MEGAPIXELS, WriteReport, block_size, ingest, open_store, store_meta

if TYPE_CHECKING:
    from .models.network import NetworkFuser


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
def run_folder(plan: RunPlan) -> Iterator[WorkFiles]:
    """Hold the output's lock and the run's work folder (the plan's ``work_dir``, or a temporary folder beside
    the output removed on exit) for as long as the run lasts; yields the names of its work files, the folder
    prepared: checked against the interrupted run's record on ``resume``, cleared of a former run's files
    otherwise.

    Raises:
        OutputLockedError: another run writes the same output.
        OutputNotWritableError: the work folder cannot be made or written.
        StoreError: ``resume`` finds the work of another request (see :func:`~.resume.check_record`).
    """
    where = f"{plan.out} or its work files" if plan.work_dir is None else f"{plan.out} or {plan.work_dir}"
    with disk_errors(where), output_lock(plan.out), _work_folder(plan.out, plan.work_dir) as folder:
        files = plan.work_files(folder)
        record = plan.record()
        if plan.resume:
            if record is None:  # plan_run refuses this; a RunPlan made by hand may not
                raise InvalidParameterError("`resume` needs the `work_dir` of the interrupted run", "resume")
            check_record(files.record, record)
        else:
            for stale in (files.tiles, files.fused):
                remove_owned(stale)
            remove_weights(files.weights)
            if record is not None:
                write_record(files.record, record)
        yield files


def ingest_tiles(plan: RunPlan, files: WorkFiles, client=None, progress: PhaseProgress | None = None) -> Scene:
    """Step 1: the scene's Zarr tile store (the one an interrupted run left, on ``resume``)."""
    stored = _reuse_store(files.tiles, plan) if plan.resume else None
    if stored is None:
        stored = ingest(
            plan.scene,
            files.tiles,
            tile=plan.tile,
            block=plan.block,
            client=client,
            progress=_phase(progress, "ingest"),
        )
    return stored


def prepare_fuser(
    plan: RunPlan,
    files: WorkFiles,
    stored: Scene,
    client=None,
    progress: PhaseProgress | None = None,
) -> tuple[Fuser, dict | None]:
    """Step 2: the method's fuser, from the scene's statistics, adapted to the scene when the plan says so.

    Returns the fuser and the adaptation's summary (``None`` without one).
    """
    fuser = make_fuser(stored, plan.method, client, **plan.fuser_options)
    if plan.adapt == "none":
        return fuser, None
    from .models.network import NetworkFuser  # torch: imported where a network is adapted

    if not isinstance(fuser, NetworkFuser):  # plan_run refuses this; a RunPlan made by hand may not
        raise InvalidParameterError(
            f"`adapt={plan.adapt}` applies to network methods only, not to {plan.method}", "adapt"
        )
    if plan.tailor_weights is not None:  # a saved tailor, checked by plan_run: applied, not trained
        return fuser.adapted("tailor", plan.tailor_weights), {"mode": "tailor", "reused": str(plan.tailor)}
    return adapt_or_reuse(stored, fuser, plan.adapt, files.weights, plan.adapt_options, progress)


def fuse_blocks(
    plan: RunPlan,
    files: WorkFiles,
    stored: Scene,
    fuser: Fuser,
    client=None,
    progress: PhaseProgress | None = None,
) -> WriteReport:
    """Step 3: every output block fused, and its COG tiles encoded in the same task, into the parts store
    (:func:`~.pyramid.encode_output`; those it lacks only, on ``resume``)."""
    hrms = pansharpen(stored, fuser, client, tile=plan.tile, block=plan.block, dtype=plan.dtype)
    return encode_output(
        hrms,
        files.fused,
        compress=plan.compress,
        window=plan.output_window,
        client=client,
        progress=_phase(progress, "fuse"),
        resume=plan.resume,
    )


def assemble_cog(plan: RunPlan, files: WorkFiles, client=None, progress: PhaseProgress | None = None) -> Path:
    """Step 4: the COG at the plan's output, from the parts store (its overviews, then the file)."""
    written = write_cog(
        files.fused,
        plan.out,
        client=client,
        overwrite=plan.overwrite,
        compress=plan.compress,
        progress=_phase(progress, "cog"),
        window=plan.output_window,
    )
    assert isinstance(written, Path)  # a plan's output is a local path (check_output)
    return written


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
    compress: str | None = None,
    overwrite: bool = False,
    tailor: str | Path | None = None,
    extent: str = "pan",
    dtype: str | None = None,
    progress: PhaseProgress | None = None,
) -> RunReport:
    """Pansharpen a PAN + MS pair into a COG at ``out``: :func:`~.plan.plan_run`, then the steps.

    Args mirror the CLI's ``run`` options; ``client`` reuses an existing Dask
    client instead of connecting to ``scheduler``. ``resume`` continues an
    interrupted run whose stores are in ``work_dir``.

    Raises:
        PansharpError: bad input or output (nothing is written).
    """
    start = time.perf_counter()
    plan = plan_run(
        pan,
        ms,
        out,
        method=method,
        sensor=sensor,
        tile=tile,
        task_megapixels=task_megapixels,
        patch=patch,
        weights=weights,
        device=device,
        adapt=adapt,
        adapt_options=adapt_options,
        work_dir=work_dir,
        resume=resume,
        compress=compress,
        overwrite=overwrite,
        tailor=tailor,
        extent=extent,
        dtype=dtype,
    )
    with (
        run_folder(plan) as files,
        _client(client, scheduler, workers, tls_config, plan.scene) as cl,
        cluster_errors(cl),
    ):
        stored = ingest_tiles(plan, files, cl, progress)
        fuser, adaptation = prepare_fuser(plan, files, stored, cl, progress)
        written = fuse_blocks(plan, files, stored, fuser, cl, progress)
        assemble_cog(plan, files, cl, progress)
    return RunReport(
        output=str(plan.out),
        bytes=plan.out.stat().st_size,
        method=fuser.name,
        seconds=round(time.perf_counter() - start, 3),
        tiles=len(tile_grid(stored, fuser, plan.tile)),
        width=plan.output_window[3] - plan.output_window[2],
        height=plan.output_window[1] - plan.output_window[0],
        bands=stored.bands,
        ratio=stored.ratio,
        sensor=stored.sensor,
        crs=stored.crs.to_string() if stored.crs is not None else None,
        blocks=written.blocks,
        computed_blocks=written.computed,
        adaptation=adaptation,
    )


@contextlib.contextmanager
def _work_folder(out: Path, work_dir: Path | None) -> Iterator[Path]:
    """The caller's work folder, or a temporary one beside ``out`` removed on exit."""
    if work_dir is not None:
        if work_dir.exists() and not work_dir.is_dir():
            raise InvalidParameterError(f"{work_dir} is a file; give a folder (it is created if missing)", "work_dir")
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritableError(f"cannot create the work folder {work_dir} ({exc.strerror or exc})") from None
        if not os.access(work_dir, os.W_OK | os.X_OK):
            raise OutputNotWritableError(f"the work folder {work_dir} is not writable; choose another one")
        yield work_dir
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


def _reuse_store(path: Path, plan: RunPlan) -> Scene | None:
    """The tile store an interrupted run left at ``path``, or ``None`` when it must be ingested again.

    Raises:
        StoreError: the store holds another scene or another tiling.
    """
    try:
        meta = store_meta(path)
    except StoreError:  # missing, or its ingest did not finish
        remove_owned(path)
        return None
    if (meta["name"], meta["tile"], meta["block"]) != (plan.scene.name, plan.tile, plan.block):
        raise StoreError(
            f"{path} holds {meta['name']} tiled {meta['tile']}/{meta['block']}, not {plan.scene.name} tiled "
            f"{plan.tile}/{plan.block}; rerun without `resume`, or with the interrupted run's `tile` and "
            "`task_megapixels`"
        )
    return open_store(path)


def adapt_or_reuse(
    stored: Scene,
    fuser: NetworkFuser,
    mode: str,
    path: str | Path,
    options: AdaptOptions | None = None,
    progress: PhaseProgress | None = None,
) -> tuple[Fuser, dict]:
    """Adapt ``fuser`` to the scene and save the weights at ``path``, or reuse those a previous attempt saved there.

    Returns the adapted fuser and a summary (the :class:`AdaptReport` in short, or ``{"reused": path}``).

    Raises:
        StoreError: the saved weights do not match the hash saved with them (:func:`~.resume.saved_weights`).
    """
    from .adapt.training import adapt_fuser  # torch: imported where a network is adapted

    saved = saved_weights(path)
    if saved is not None:
        return fuser.adapted(mode, saved), {"mode": mode, "reused": str(path)}
    options = options or AdaptOptions()
    steps = None
    if progress:
        progress("adapt", 0, options.steps)
        steps = lambda done, total, loss: progress("adapt", done, total, f"loss {loss:.4g}")  # noqa: E731
    fuser, report = adapt_fuser(stored, fuser, mode, options, progress=steps)
    weights = fuser.weights
    if weights is None:  # adapt_fuser trained nothing
        raise InvalidParameterError(
            f"`adapt={mode}` trains nothing, so there are no weights to save at {path}; adapt with 'tailor' or 'full'",
            "adapt",
        )
    save_weights(path, weights)
    if progress:
        progress("adapt", report.steps, report.steps, f"{report.stopped}, kept loss {report.kept_loss:.4g}")
    return fuser, _adaptation_summary(report)


def _adaptation_summary(report: AdaptReport) -> dict:
    return {
        "mode": report.mode,
        "steps": report.steps,
        "seconds": round(report.seconds, 3),
        "tiles": len(report.tiles),
        "stopped": report.stopped,
        "kept_step": report.kept_step,
        "kept_loss": round(report.kept_loss, 6) if report.kept_loss is not None else None,
        "terms": {k: round(v, 6) for k, v in report.terms.items()},
        "losses": [round(v, 6) for v in report.losses],
    }


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
    """Open a PAN + MS pair and write its Zarr tile store at ``out`` (the command line's ``ingest``)."""
    out = check_output(out, overwrite, inputs=(pan, ms), store=True)
    scene = open_scene(pan, ms, sensor, patch=patch)
    block = block_size(tile, task_megapixels, scene.ratio)
    with (
        disk_errors(str(out)),
        output_lock(out),
        _client(client, scheduler, workers, tls_config, scene) as cl,
        cluster_errors(cl),
    ):
        remove_owned(out)
        return ingest(scene, out, tile=tile, block=block, client=cl, progress=_phase(progress, "ingest"))
