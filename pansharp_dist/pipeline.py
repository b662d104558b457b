"""The end-to-end run: validate, ingest, fit, fuse tile by tile, write the COG.

Nothing is left behind on failure: the output appears only when complete, and
the tile store and output store are removed unless the caller named a work
folder to keep them in (they are still removed when the run fails).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from rasterio.errors import RasterioIOError

from .adapt.fit import MODES, AdaptReport, fit_adaptation
from .cluster import connect
from .errors import CorruptInputError, InvalidParameterError
from .export import check_output, write_cog
from .infer import fit, pansharpen, tile_grid
from .methods import is_network
from .scene import Scene, open_scene
from .store import block_size, ingest, write_output

PhaseProgress = Callable[[str, int, int], None]
"""``callback(phase, done, total)``; phases are ``ingest``, ``adapt``, ``fuse`` and ``cog``."""


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
    adaptation: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _work_folder(out: Path, work_dir: str | Path | None) -> Iterator[Path]:
    """The caller's work folder, or a temporary one beside ``out`` removed on exit."""
    if work_dir is not None:
        folder = Path(work_dir)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix=f".{out.stem}.work-", dir=out.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _client(client, scheduler: str, workers: int | None):
    if client is not None:
        yield client
    else:
        with connect(scheduler, workers) as made:
            yield made


def run(
    pan: str | Path,
    ms: str | Path,
    out: str | Path,
    *,
    method: str = "brovey",
    sensor: str | None = None,
    tile: int = 512,
    patch: int | None = None,
    weights: tuple[float, ...] | None = None,
    device: str | None = None,
    adapt: str | None = None,
    client=None,
    scheduler: str = "local",
    workers: int | None = None,
    work_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: PhaseProgress | None = None,
) -> RunReport:
    """Pansharpen a PAN + MS pair into a COG at ``out``.

    Args mirror the CLI's ``run`` options; ``client`` reuses an existing Dask
    client instead of connecting to ``scheduler``.

    Raises:
        PansharpError: bad input or output (nothing is written).
    """
    start = time.perf_counter()
    out = check_output(out, overwrite)
    scene = open_scene(pan, ms, sensor, patch=patch)
    options = _options(method, weights, device)
    adapt = _adapt_mode(method, adapt)
    with _work_folder(out, work_dir) as folder, _client(client, scheduler, workers) as cl:
        tiles_path = folder / f"{out.stem}.tiles.zarr"
        hrms_path = folder / f"{out.stem}.hrms.zarr"
        for stale in (tiles_path, hrms_path):
            shutil.rmtree(stale, ignore_errors=True)
        succeeded = False
        try:
            stored = _ingest(scene, tiles_path, tile, cl, progress)
            fuser = fit(stored, method, cl, **options)
            adaptation = None
            if adapt != "none":
                if progress:
                    progress("adapt", 0, 1)
                fuser, adapt_report = fit_adaptation(stored, fuser, adapt)
                adaptation = _adaptation_summary(adapt_report)
                if progress:
                    progress("adapt", 1, 1)
            hrms = pansharpen(stored, fuser, tile=tile)
            write_output(hrms, hrms_path, cl, _phase(progress, "fuse"))
            if progress:
                progress("cog", 0, 1)
            cl.submit(write_cog, str(hrms_path), str(out), overwrite=overwrite, pure=False).result()
            if progress:
                progress("cog", 1, 1)
            succeeded = True
        finally:
            if not (succeeded and work_dir is not None):
                for path in (tiles_path, hrms_path):
                    shutil.rmtree(path, ignore_errors=True)
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
        adaptation=adaptation,
    )


def _adapt_mode(method: str, adapt: str | None) -> str:
    """The adaptation of a run: ``tailor`` by default for networks; classical methods take none."""
    network = is_network(method)
    if adapt is None:
        return "tailor" if network else "none"
    if adapt not in MODES:
        raise InvalidParameterError(f"--adapt must be one of {', '.join(MODES)}, got {adapt!r}")
    if adapt != "none" and not network:
        raise InvalidParameterError(f"--adapt {adapt} applies to network methods only, not to {method}")
    return adapt


def _adaptation_summary(report: AdaptReport) -> dict:
    return {
        "mode": report.mode, "steps": report.steps, "seconds": round(report.seconds, 3), "tiles": len(report.tiles),
        "stopped": report.stopped, "final_loss": round(report.losses[-1], 6) if report.losses else None,
        "terms": {k: round(v, 6) for k, v in report.terms.items()},
    }


def _options(method: str, weights: tuple[float, ...] | None, device: str | None) -> dict[str, object]:
    """Method options from the run's arguments, refusing those the method does not take."""
    options: dict[str, object] = {}
    if weights is not None:
        if method.lower() != "brovey":
            raise InvalidParameterError(f"weights apply to brovey only, not to {method}")
        options["weights"] = weights
    if device is not None:
        if not is_network(method):
            raise InvalidParameterError(f"--device applies to network methods only, not to {method}")
        options["device"] = device
    return options


def _phase(progress: PhaseProgress | None, name: str):
    return (lambda done, total: progress(name, done, total)) if progress else None


def _ingest(scene: Scene, path: Path, tile: int, client, progress: PhaseProgress | None) -> Scene:
    """Ingest, turning read failures on the workers into a clear input error."""
    try:
        return ingest(scene, path, tile=tile, block=block_size(tile), client=client, progress=_phase(progress, "ingest"))
    except RasterioIOError as exc:
        raise CorruptInputError(
            f"reading the input of {scene.name} failed ({str(exc).splitlines()[0]}); "
            "the file is damaged or truncated: re-download or re-export it"
        ) from None


def ingest_scene(
    pan: str | Path,
    ms: str | Path,
    out: str | Path,
    *,
    sensor: str | None = None,
    tile: int = 512,
    patch: int | None = None,
    client=None,
    scheduler: str = "local",
    workers: int | None = None,
    overwrite: bool = False,
    progress: PhaseProgress | None = None,
) -> Scene:
    """Open a PAN + MS pair and write its Zarr tile store at ``out``."""
    out = check_output(out, overwrite)
    scene = open_scene(pan, ms, sensor, patch=patch)
    with _client(client, scheduler, workers) as cl:
        if out.exists():
            shutil.rmtree(out)
        return _ingest(scene, out, tile, cl, progress)
