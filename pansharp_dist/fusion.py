"""Tiled fusion of a whole scene as one lazy dask array.

The scene is cut into blocks (one task each, a batch of tiles). Each task reads
its block's PAN and MS windows with a halo (clipped at the scene border) itself,
cuts them into the tiles of a :class:`~pansharp_dist.tiling.TileGrid`, and fuses
every tile with its own halo and crops it back. No task depends on another, so
a worker holds only the blocks it is fusing, however large the scene. Because
the fuser's global parameters are fitted once per scene and its per-pixel work
is local within its halo, the result equals a single pass over the whole scene.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import partial

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .errors import InvalidParameterError
from .methods import Fuser, build_fuser, task_resources
from .scene import Scene
from .sensors import get_sensor
from .stats import valid_mask
from .store import block_size, block_windows, with_stats
from .tasks import TaskInput, current_client, digest
from .tiling import Tile, TileGrid, axis_chunks

OUTPUT_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
"""The output data types one may ask for; integers are rounded and clipped to ``[1, max]`` (0 is nodata)."""


@dataclass(frozen=True)
class OutputSpec:
    """How fused float32 values become output pixels.

    Integer scenes keep the MS dtype: values are rounded and clipped to
    ``[1, dtype max]`` so that 0 stays free to mean nodata. Float scenes give
    float32, whose nodata is NaN (0 is a value reflectance can take). Pixels where
    the PAN or any MS band is nodata, or not finite, become :attr:`nodata`.
    Another dtype may be asked for (:meth:`for_scene`); values stay in the MS's units.
    """

    dtype: str
    ratio: int
    pan_nodata: float | None
    ms_nodata: float | None

    @classmethod
    def for_scene(cls, scene: Scene, dtype: str | None = None) -> OutputSpec:
        """The output of ``scene``: in ``dtype`` (one of :data:`OUTPUT_DTYPES`), by default the MS dtype for
        integer scenes and float32 for float ones.

        Raises:
            InvalidParameterError: an unknown dtype, or an integer one for a float scene (its values,
                reflectance say, are not counts).
        """
        kind = np.dtype(scene.ms.dtype).kind
        if dtype is None:
            dtype = str(scene.ms.dtype) if kind in "ui" else "float32"
        elif dtype not in OUTPUT_DTYPES:
            raise InvalidParameterError(f"`dtype` must be one of {', '.join(OUTPUT_DTYPES)}, got {dtype!r}", "dtype")
        elif kind == "f" and np.dtype(dtype).kind in "ui":
            raise InvalidParameterError(
                f"the MS of {scene.name} is {scene.ms.dtype}: its values are not counts and would be rounded away "
                f"in {dtype}; keep a float `dtype` (float32, float64)",
                "dtype",
            )
        return cls(dtype, scene.ratio, scene.pan_nodata, scene.ms_nodata)

    @property
    def nodata(self) -> float:
        """The output's nodata value: 0 for integer outputs, NaN for float ones."""
        return 0 if np.dtype(self.dtype).kind in "ui" else float("nan")

    def finish(self, fused: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``(B, H, W)`` float32 to output dtype, nodata where ``valid`` is False."""
        dtype = np.dtype(self.dtype)
        if dtype.kind in "ui":
            info = np.iinfo(dtype)
            out = np.clip(np.rint(fused), 1, info.max).astype(dtype)
        else:
            out = fused.astype(dtype)
        out[:, ~valid] = self.nodata
        return out


def render(fuser: Fuser, pan: np.ndarray, ms: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """Fuse one window: ``pan (H, W)`` and ``ms (B, H/r, W/r)`` in native dtypes to output pixels.

    This is the whole single-pass computation; tiles call :func:`render_batch` on their windows.
    """
    return render_batch(fuser, pan[None], ms[None], spec)[0]


def render_batch(fuser: Fuser, pan: np.ndarray, ms: np.ndarray, spec: OutputSpec) -> list[np.ndarray]:
    """:func:`render` for a batch of same-sized windows ``pan (N, H, W)``, ``ms (N, B, H/r, W/r)``."""
    fused = fuser.fuse(_finite(pan), _finite(ms))
    return [
        spec.finish(f, valid_mask(p, m, spec.ratio, spec.pan_nodata, spec.ms_nodata)[0])
        for f, p, m in zip(fused, pan, ms)
    ]


def _finite(a: np.ndarray) -> np.ndarray:
    """``a`` with NaN and infinities set to 0: they are nodata (:func:`~pansharp_dist.stats.valid_mask`), and
    left in they would turn every output pixel within the method's reach into NaN."""
    if a.dtype.kind != "f" or np.isfinite(a).all():
        return a
    return np.where(np.isfinite(a), a, 0).astype(a.dtype)


def tile_batches(grid: TileGrid, y0: int, y1: int, x0: int, x1: int, most: int) -> list[list[Tile]]:
    """The tiles whose cores lie in PAN rows ``y0:y1``, columns ``x0:x1`` (tile-aligned), grouped into
    batches of at most ``most`` tiles of equal read-window size (one fuser call each)."""
    t = grid.tile
    groups: dict[tuple[int, int], list[Tile]] = {}
    for ti in range(y0 // t, math.ceil(y1 / t)):
        for tj in range(x0 // t, math.ceil(x1 / t)):
            tile = grid[ti, tj]
            r0, r1, c0, c1 = tile.read
            groups.setdefault((r1 - r0, c1 - c0), []).append(tile)
    return [group[i : i + most] for group in groups.values() for i in range(0, len(group), most)]


def _fuse_block(
    window: TaskInput,
    oy: int,
    ox: int,
    y0: int,
    y1: int,
    x0: int,
    x1: int,
    *,
    fuser: Fuser,
    spec: OutputSpec,
    grid: TileGrid,
) -> np.ndarray:
    """Output rows ``y0:y1``, columns ``x0:x1`` (PAN pixels) as ``(B, y1 - y0, x1 - x0)`` in the output dtype.

    ``window`` holds the PAN and MS of the block with its halo, from PAN pixel ``(oy, ox)``.
    Tiles whose read windows have the same size are fused in batches of ``fuser.batch``.
    """
    pan, ms = window.compute()
    r = grid.ratio
    out = np.empty((ms.shape[0], y1 - y0, x1 - x0), np.dtype(spec.dtype))
    for tiles in tile_batches(grid, y0, y1, x0, x1, fuser.batch):
        reads = [tile.read for tile in tiles]
        results = render_batch(
            fuser,
            np.stack([pan[r0 - oy : r1 - oy, c0 - ox : c1 - ox] for r0, r1, c0, c1 in reads]),
            np.stack(
                [ms[:, (r0 - oy) // r : (r1 - oy) // r, (c0 - ox) // r : (c1 - ox) // r] for r0, r1, c0, c1 in reads]
            ),
            spec,
        )
        for tile, result in zip(tiles, results):
            k0, k1, l0, l1 = tile.core
            rows, cols = tile.crop
            out[:, k0 - y0 : k1 - y0, l0 - x0 : l1 - x0] = result[:, rows, cols]
    return out


def processing_record(fuser: Fuser) -> dict[str, str]:
    """What made an output, as flat string attributes (``pansharp_*``): the method, its adaptation and the
    SHA-256 of the adaptation's tensors (the tailor's), and the software version. They travel to the COG's
    metadata, and are the same for the same pixels (no training time in them)."""
    from . import __version__
    from .models.cards import tensors_sha256

    weights = getattr(fuser, "weights", None)
    if not isinstance(weights, bytes):  # a network's adaptation is safetensors bytes; Brovey's band weights are not
        weights = None
    return {
        "pansharp_method": fuser.name,
        "pansharp_adaptation": getattr(fuser, "adaptation", None) or "none",
        "pansharp_adaptation_sha256": tensors_sha256(weights) if weights else "",
        "pansharp_software": f"pansharp-dist {__version__}",
    }


def tile_grid(scene: Scene, fuser: Fuser, tile: int) -> TileGrid:
    """The scene's TileGrid for ``fuser``'s halo."""
    return TileGrid(scene.shape[0], scene.shape[1], tile, fuser.halo, scene.ratio)


def make_fuser(scene: Scene, method: str, client=None, **options: object) -> Fuser:
    """Fit ``method`` to ``scene`` (computing its statistics first if it has none)."""
    scene = with_stats(scene, client)
    assert scene.stats is not None  # with_stats computed them
    return build_fuser(method, scene.stats, scene.ratio, get_sensor(scene.sensor), **options)


def pansharpen(
    scene: Scene,
    method: str | Fuser = "brovey",
    client=None,
    *,
    tile: int = 512,
    block: int | None = None,
    dtype: str | None = None,
    **options: object,
) -> xr.DataArray:
    """Pansharpen ``scene`` lazily.

    Each task is one block of tiles.

    Args:
        scene: the PAN + MS pair.
        method: a method name (fitted here, on the scene's statistics) or a fitted :class:`Fuser`.
        client: Dask client used to fit the method when statistics are needed, and on whose
            workers a network fuser is made resident (default: the current client, if any).
        tile: tile size in PAN pixels.
        block: PAN pixels per task (a multiple of ``tile``; default 4 tiles).
        dtype: the output's data type (:data:`OUTPUT_DTYPES`); default the MS dtype, float32 for float scenes.
        options: method options (``weights`` for Brovey).

    Returns:
        A lazy ``(band, y, x)`` DataArray on the PAN grid with the scene's CRS,
        in ``dtype``, nodata (0, or NaN for floats) where input is nodata. Its
        ``fingerprint`` attribute identifies the settings (fuser, grid, scene);
        ``resources`` are the worker resources its tasks need (``{"GPU": 1}``
        for a network on CUDA), which :func:`~pansharp_dist.pyramid.encode_output` requests.
    """
    fuser = method if isinstance(method, Fuser) else make_fuser(scene, method, client, **options)
    if fuser.ratio != scene.ratio:
        raise InvalidParameterError(f"method fitted for ratio {fuser.ratio}, scene has ratio {scene.ratio}")
    block = block or block_size(tile, ratio=scene.ratio)
    grid = tile_grid(scene, fuser, tile)
    if block % grid.tile:
        raise InvalidParameterError(f"block {block} must be a multiple of the tile size {grid.tile}")
    if block < grid.halo:
        raise InvalidParameterError(f"block {block} is smaller than the method's halo {grid.halo}")
    spec = OutputSpec.for_scene(scene, dtype)
    r, h = scene.ratio, grid.halo
    height, width = scene.shape
    ys, xs = (axis_chunks(n, block, h) for n in scene.shape)
    client = client or current_client()
    if client is not None:
        from .resident import install_fuser  # distributed is imported where a cluster is in use, not before

        install_fuser(client, fuser)
    fingerprint = digest(fuser, grid, spec, block, scene.name, scene.shape, tuple(scene.transform))
    fuse = partial(_fuse_block, fuser=fuser, spec=spec, grid=grid)
    name = f"fuse-{dask.base.tokenize(fingerprint, scene.pan.data.name, scene.ms.data.name)}"
    graph = {}
    for i, j, y0, rows, x0, cols in block_windows(ys, xs):
        y1, x1 = y0 + rows, x0 + cols
        (oy, wy), (ox, wx) = (max(0, y0 - h), min(height, y1 + h)), (max(0, x0 - h), min(width, x1 + h))
        window = TaskInput(scene.pan.data[oy:wy, ox:wx], scene.ms.data[:, oy // r : wy // r, ox // r : wx // r])
        graph[(name, 0, i, j)] = (fuse, window, oy, ox, y0, y1, x0, x1)
    data = da.Array(graph, name, chunks=((scene.bands,), ys, xs), meta=np.empty((0, 0, 0), np.dtype(spec.dtype)))
    names = get_sensor(scene.sensor).band_names(scene.bands)
    out = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={
            "band": np.arange(1, scene.bands + 1),
            "band_name": ("band", list(names)),
            "y": scene.pan.y,
            "x": scene.pan.x,
        },
        name="hrms",
        attrs={
            **processing_record(fuser),
            "_FillValue": spec.nodata,
            "fingerprint": fingerprint,
            "resources": json.dumps(task_resources(fuser)),  # a string: the attributes serialise (netCDF, Zarr)
            # the MS's radiometry, which the fused values keep (rioxarray's names: to_raster writes them)
            **({"scales": list(scene.ms_scales)} if scene.ms_scales is not None else {}),
            **({"offsets": list(scene.ms_offsets)} if scene.ms_offsets is not None else {}),
        },
    )
    if scene.crs is not None:
        out = out.rio.write_crs(scene.crs)
    return out.rio.write_transform(scene.transform)
