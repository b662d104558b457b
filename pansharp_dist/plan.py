"""A run planned once: what the request resolves to, checked before any pixel is read.

:func:`plan_run` turns a request (input hrefs, an output path, a method and
its options) into a :class:`RunPlan`: the opened (lazy) scene, the method and
its adaptation, the tiling, the fuser's options and the names of the work
files. Every check that can fail on the request fails here, before the ingest,
so that a bad option costs nothing. The plan is then executed by the steps of
:mod:`pansharp_dist.pipeline`, from the command line, :func:`~pansharp_dist.run`
or a Prefect flow alike: the same plan gives the same work files and the same
output bytes on any executor.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .adapt import MODES
from .adapt.options import AdaptOptions
from .errors import CorruptInputError, InputNotFoundError, InvalidParameterError
from .export import check_compress
from .fusion import OutputSpec
from .methods import check_method, is_network
from .models.cards import card
from .outputs import check_output
from .resume import RunRecord, run_record
from .scene import Scene, open_scene
from .sensors import warn_default_mtf
from .store import TASK_MEGAPIXELS, block_size


@dataclass(frozen=True)
class WorkFiles:
    """The files a run keeps in its work folder while it runs (and after it, in a named ``work_dir``)."""

    folder: Path
    stem: str
    method: str
    adapt: str

    @property
    def tiles(self) -> Path:
        """The Zarr tile store of the input scene."""
        return self.folder / f"{self.stem}.tiles.zarr"

    @property
    def fused(self) -> Path:
        """The fused output before the COG: its encoded COG tiles (a parts store, :mod:`~.pyramid`), or its
        pixels (an output Zarr store) where the COG's grid does not line up with the blocks."""
        return self.folder / f"{self.stem}.hrms.zarr"

    @property
    def weights(self) -> Path:
        """The adaptation's weights (safetensors, with a ``.sha256`` beside them)."""
        return self.folder / f"{self.stem}.{self.method}.{self.adapt}.safetensors"

    @property
    def record(self) -> Path:
        """What the run was asked to do, with fingerprints of its inputs (checked by ``resume``)."""
        return self.folder / f"{self.stem}.run.json"


@dataclass(frozen=True)
class RunPlan:
    """One run, resolved: inputs, grid, method, options and work-file names.

    ``scene`` is the lazy, aligned input; ``block`` the side (PAN pixels) of one
    task's block; ``fuser_options`` what the method takes besides the scene
    (Brovey's weights, a network's device); ``extent`` the output's grid (``pan``,
    ``overlap`` or ``union``) and ``output_window`` the COG's window of the fused
    grid for it ``(row0, row1, col0, col1)`` (:meth:`~pansharp_dist.scene.Scene.output_window`);
    ``dtype`` the data type asked for (``None``: the default) and ``output_dtype``
    the output's, resolved.
    """

    pan: str | Path
    ms: str | Path
    out: Path
    scene: Scene = field(repr=False)
    method: str
    adapt: str
    adapt_options: AdaptOptions
    fuser_options: dict[str, object]
    sensor: str | None
    tile: int
    block: int
    patch: int | None
    weights: tuple[float, ...] | None
    device: str | None
    compress: str
    overwrite: bool
    resume: bool
    work_dir: Path | None
    output_window: tuple[int, int, int, int]
    output_dtype: str
    tailor: Path | None = None
    tailor_weights: bytes | None = field(default=None, repr=False)
    extent: str = "pan"
    dtype: str | None = None

    def work_files(self, folder: Path) -> WorkFiles:
        """The names of this run's work files in ``folder``."""
        return WorkFiles(folder, self.out.stem, self.method, self.adapt)

    def record(self) -> RunRecord | None:
        """The run record kept in a named work folder (``None`` without one: nothing to resume)."""
        if self.work_dir is None:
            return None
        settings: dict[str, object] = {
            "method": self.method,
            "sensor": self.sensor,
            "tile": self.tile,
            "block": self.block,
            "patch": self.patch,
            "weights": self.weights,
            "device": self.device,
            "adapt": self.adapt,
            "adapt_options": asdict(self.adapt_options),
            "tailor": hashlib.sha256(self.tailor_weights).hexdigest() if self.tailor_weights is not None else None,
            "dtype": self.output_dtype,  # the output's, asked for or not
            "grid": self._grid(),
        }
        return run_record({"pan": self.pan, "ms": self.ms}, settings)

    def _grid(self) -> dict[str, object] | None:
        """How the MS lies on the PAN grid (a tile store made under another alignment is not resumed)."""
        a = self.scene.alignment
        return None if a is None else {"ratio": a.ratio, "pan": list(a.pan), "resampled": a.resampled}


def plan_run(
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
    work_dir: str | Path | None = None,
    resume: bool = False,
    compress: str | None = None,
    overwrite: bool = False,
    tailor: str | Path | None = None,
    extent: str = "pan",
    dtype: str | None = None,
) -> RunPlan:
    """Resolve and check a run request; reads the inputs' headers, no pixels.

    ``tailor``: a saved tailor (what ``pansharp-dist adapt`` writes) to apply instead of adapting; it must
    have been made for ``method``'s checkpoint (its card names the backbone and its SHA-256).
    ``extent``: the output's grid, as GDAL's ``-spat_adjust`` chooses it: ``pan`` (the PAN raster's grid),
    ``overlap`` (the pixels both inputs cover) or ``union`` (both footprints); nodata where the MS does not
    reach. ``dtype``: the output's data type (:data:`~pansharp_dist.fusion.OUTPUT_DTYPES`; default the MS
    dtype, float32 for float scenes).

    Raises:
        PansharpError: a bad input, output or option (nothing has been written).
    """
    if resume and work_dir is None:
        raise InvalidParameterError("`resume` needs the `work_dir` of the interrupted run", "resume")
    out = check_output(out, overwrite, inputs=(pan, ms))
    compress = check_compress(compress or default_compress(method, device))
    scene = open_scene(pan, ms, sensor, patch=patch)
    output_window = scene.output_window(extent)  # refuses an unknown extent
    output_dtype = OutputSpec.for_scene(scene, dtype).dtype  # refuses an unknown dtype, or integers for a float MS
    tailor_weights = None
    if tailor is not None:
        if adapt not in (None, "tailor"):
            raise InvalidParameterError(
                f"a saved `tailor` is applied as it is: `adapt={adapt}` cannot go with it", "adapt"
            )
        tailor_weights = _saved_tailor(Path(tailor), method)
    adapt = adapt_mode_for(method, adapt)
    degradation = (adapt_options or AdaptOptions()).degradation
    if scene.sensor is None and (method.lower() == "mtf-glp-hpm" or (adapt != "none" and degradation == "mtf")):
        warn_default_mtf(scene.name, scene.bands)
    return RunPlan(
        pan=pan,
        ms=ms,
        out=out,
        scene=scene,
        method=method.lower(),
        adapt=adapt,
        adapt_options=adapt_options or AdaptOptions(),
        fuser_options=_fuser_options(method, weights, device, scene),
        sensor=sensor,
        tile=tile,
        block=block_size(tile, task_megapixels, scene.ratio),
        patch=patch,
        weights=weights,
        device=device,
        compress=compress,
        overwrite=overwrite,
        resume=resume,
        work_dir=Path(work_dir) if work_dir is not None else None,
        output_window=output_window,
        output_dtype=output_dtype,
        tailor=Path(tailor) if tailor is not None else None,
        tailor_weights=tailor_weights,
        extent=extent,
        dtype=dtype,
    )


def _saved_tailor(path: Path, method: str) -> bytes:
    """The bytes of the tailor at ``path``, checked to adapt ``method``'s very checkpoint.

    Raises:
        InputNotFoundError: no file at ``path``.
        CorruptInputError: not a tailor.
        InvalidParameterError: a tailor of another network or of another checkpoint of it.
    """
    if not is_network(check_method(method)):
        raise InvalidParameterError(f"a `tailor` adapts a network; {method} is a classical method", "tailor")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputNotFoundError(f"no tailor at {path}; pansharp-dist adapt writes one") from None
    except OSError as exc:
        raise CorruptInputError(f"cannot read the tailor {path} ({exc.strerror or exc})") from None
    from .models.tailor import tailor_from_bytes  # torch: imported where a network runs

    made = tailor_from_bytes(data)[1]
    expected = card(method)
    if made.backbone != expected.id:
        raise InvalidParameterError(
            f"the tailor {path} adapts {made.backbone}, not {expected.id}: use `method={made.backbone}` or a tailor "
            f"made for {expected.id}",
            "tailor",
        )
    if made.backbone_sha256 != expected.sha256:
        raise InvalidParameterError(
            f"the tailor {path} was trained on another checkpoint of {made.backbone} (SHA-256 "
            f"{made.backbone_sha256[:12]}..., this one is {expected.sha256[:12]}...): adapt again",
            "tailor",
        )
    return data


def default_compress(method: str, device: str | None) -> str:
    """The COG codec when none is asked for: ZSTD level 9 (GDAL's) where the CPU fuses, level 1 where a GPU
    does, so that encoding keeps up with the network (docs/benchmarks.md, codecs)."""
    if is_network(method):
        from .models.network import default_device  # torch: a network runs anyway

        if (device or default_device()).startswith("cuda"):
            return "ZSTD:1"
    return "ZSTD:9"


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
        raise InvalidParameterError(f"`adapt` must be one of {', '.join(MODES)}, got {adapt!r}", "adapt")
    if adapt != "none" and not network:
        raise InvalidParameterError(f"`adapt={adapt}` applies to network methods only, not to {method}", "adapt")
    failed = card(method).native_failures(adapt) if network else []
    if failed:
        c = failed[0]
        how = "unadapted" if adapt == "none" else f"with `adapt={adapt}`"
        warnings.warn(
            f"{method} failed its own-sensor check {how} on {c.data} (ERGAS {c.ergas:.2f}, {c.best_ergas[0]} "
            f"{c.best_ergas[1]:.2f}; SAM {c.sam:.2f}, {c.best_sam[0]} {c.best_sam[1]:.2f}): it may do worse than "
            "plain upsampling or a classical method; see pansharp-dist models list and docs/quality.md",
            stacklevel=3,
        )
    return adapt


def _fuser_options(
    method: str, weights: tuple[float, ...] | None, device: str | None, scene: Scene
) -> dict[str, object]:
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
            raise InvalidParameterError(f"`weights` apply to brovey only, not to {method}", "weights")
        from .classical import check_weights

        options["weights"] = check_weights(weights, scene.bands)
    if device is not None:
        if not is_network(method):
            raise InvalidParameterError(f"`device` applies to network methods only, not to {method}", "device")
        from .models.network import check_device

        options["device"] = check_device(device)  # before the ingest, not after it
    return options
