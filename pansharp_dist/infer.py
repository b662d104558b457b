"""Tiled fusion of a whole scene as one lazy dask array.

The scene is cut into blocks (one task each, a batch of tiles). Each block is
read with a halo from its neighbours (``map_overlap``, clipped at the scene
border), cut into the tiles of a :class:`~pansharp_dist.tiling.TileGrid`, and
every tile is fused with its own halo and cropped back. Because the fuser's
global parameters are fitted once per scene and its per-pixel work is local
within its halo, the result equals a single pass over the whole scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr

from .errors import InvalidParameterError
from .cluster import current_client, digest, install_fuser
from .methods import Fuser, fit_method, task_resources
from .scene import Scene
from .sensors import get_sensor
from .stats import valid_mask
from .store import with_stats
from .tiling import Tile, TileGrid, axis_chunks

OUTPUT_NODATA = 0


@dataclass(frozen=True)
class OutputSpec:
    """How fused float32 values become output pixels.

    Integer scenes keep the MS dtype: values are rounded and clipped to
    ``[1, dtype max]`` so that 0 stays free to mean nodata. Float scenes give
    float32. Pixels where the PAN or any MS band is nodata become 0.
    """

    dtype: str
    ratio: int
    pan_nodata: float | None
    ms_nodata: float | None

    @classmethod
    def for_scene(cls, scene: Scene) -> "OutputSpec":
        kind = np.dtype(scene.ms.dtype).kind
        dtype = str(scene.ms.dtype) if kind in "ui" else "float32"
        return cls(dtype, scene.ratio, scene.pan_nodata, scene.ms_nodata)

    def finish(self, fused: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``(B, H, W)`` float32 to output dtype, nodata where ``valid`` is False."""
        dtype = np.dtype(self.dtype)
        if dtype.kind in "ui":
            info = np.iinfo(dtype)
            out = np.clip(np.rint(fused), 1, info.max).astype(dtype)
        else:
            out = fused.astype(dtype)
        out[:, ~valid] = OUTPUT_NODATA
        return out


def render(fuser: Fuser, pan: np.ndarray, ms: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """Fuse one window: ``pan (H, W)`` and ``ms (B, H/r, W/r)`` in native dtypes to output pixels.

    This is the whole single-pass computation; tiles call :func:`render_batch` on their windows.
    """
    return render_batch(fuser, pan[None], ms[None], spec)[0]


def render_batch(fuser: Fuser, pan: np.ndarray, ms: np.ndarray, spec: OutputSpec) -> list[np.ndarray]:
    """:func:`render` for a batch of same-sized windows ``pan (N, H, W)``, ``ms (N, B, H/r, W/r)``."""
    fused = fuser.fuse(pan, ms)
    return [
        spec.finish(f, valid_mask(p, m, spec.ratio, spec.pan_nodata, spec.ms_nodata)[0])
        for f, p, m in zip(fused, pan, ms)
    ]


def tile_batches(grid: TileGrid, y0: int, y1: int, x0: int, x1: int) -> list[list[Tile]]:
    """The tiles whose cores lie in PAN rows ``y0:y1``, columns ``x0:x1`` (tile-aligned), grouped into
    batches of equal read-window size (one forward pass each)."""
    t = grid.tile
    batches: dict[tuple[int, int], list[Tile]] = {}
    for ti in range(y0 // t, math.ceil(y1 / t)):
        for tj in range(x0 // t, math.ceil(x1 / t)):
            tile = grid[ti, tj]
            r0, r1, c0, c1 = tile.read
            batches.setdefault((r1 - r0, c1 - c0), []).append(tile)
    return list(batches.values())


def _fuse_block(
    pan: np.ndarray, ms: np.ndarray, *, fuser: Fuser, spec: OutputSpec, grid: TileGrid,
    block_info: dict | None = None,
) -> np.ndarray:
    """One block: ``pan``/``ms`` include the halo the neighbours gave (none at scene borders).

    Tiles whose read windows have the same size are fused as one batch.
    """
    (_, _), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    r = grid.ratio
    oy, ox = y0 - min(grid.halo, y0), x0 - min(grid.halo, x0)
    out = np.empty((ms.shape[0], y1 - y0, x1 - x0), np.dtype(spec.dtype))
    for tiles in tile_batches(grid, y0, y1, x0, x1):
        reads = [tile.read for tile in tiles]
        results = render_batch(
            fuser,
            np.stack([pan[r0 - oy : r1 - oy, c0 - ox : c1 - ox] for r0, r1, c0, c1 in reads]),
            np.stack([ms[:, (r0 - oy) // r : (r1 - oy) // r, (c0 - ox) // r : (c1 - ox) // r] for r0, r1, c0, c1 in reads]),
            spec,
        )
        for tile, result in zip(tiles, results):
            k0, k1, l0, l1 = tile.core
            rows, cols = tile.crop
            out[:, k0 - y0 : k1 - y0, l0 - x0 : l1 - x0] = result[:, rows, cols]
    return out


def tile_grid(scene: Scene, fuser: Fuser, tile: int) -> TileGrid:
    """The scene's TileGrid for ``fuser``'s halo."""
    return TileGrid(scene.shape[0], scene.shape[1], tile, fuser.halo, scene.ratio)


def fit(scene: Scene, method: str, client=None, **options: object) -> Fuser:
    """Fit ``method`` to ``scene`` (computing its statistics first if it has none)."""
    scene = with_stats(scene, client)
    return fit_method(method, scene.stats, scene.ratio, get_sensor(scene.sensor), **options)


def pansharpen(
    scene: Scene,
    method: str | Fuser = "brovey",
    client=None,
    *,
    tile: int = 512,
    block: int | None = None,
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
        options: method options (``weights`` for Brovey).

    Returns:
        A lazy ``(band, y, x)`` DataArray on the PAN grid with the scene's CRS,
        in the MS dtype (float32 for float scenes), 0 where input is nodata. Its
        ``fingerprint`` attribute identifies the settings (fuser, grid, scene);
        ``resources`` are the worker resources its tasks need (``{"GPU": 1}``
        for a network on CUDA), which :func:`~pansharp_dist.store.write_output` requests.
    """
    from .store import block_size

    fuser = method if isinstance(method, Fuser) else fit(scene, method, client, **options)
    if fuser.ratio != scene.ratio:
        raise InvalidParameterError(f"method fitted for ratio {fuser.ratio}, scene has ratio {scene.ratio}")
    block = block or block_size(tile)
    grid = tile_grid(scene, fuser, tile)
    if block % grid.tile:
        raise InvalidParameterError(f"block {block} must be a multiple of the tile size {grid.tile}")
    if block < grid.halo:
        raise InvalidParameterError(f"block {block} is smaller than the method's halo {grid.halo}")
    spec = OutputSpec.for_scene(scene)
    r, h = scene.ratio, grid.halo
    ys, xs = (axis_chunks(n, block, h) for n in scene.shape)
    pan = scene.pan.data.rechunk((ys, xs))
    ms = scene.ms.data.rechunk((-1, tuple(v // r for v in ys), tuple(v // r for v in xs)))
    dy, dx = (h if len(c) > 1 else 0 for c in (ys, xs))  # one block along an axis needs no neighbours
    install_fuser(client or current_client(), fuser)
    data = da.map_overlap(
        _fuse_block, pan, ms,
        depth=[{0: dy, 1: dx}, {0: 0, 1: dy // r, 2: dx // r}],
        boundary="none", trim=False, align_arrays=False, allow_rechunk=False,
        dtype=np.dtype(spec.dtype), chunks=((scene.bands,), ys, xs),
        meta=np.empty((0, 0, 0), np.dtype(spec.dtype)),
        fuser=fuser, spec=spec, grid=grid,
    )
    fingerprint = digest(fuser, grid, spec, block, scene.name, scene.shape, tuple(scene.transform))
    out = xr.DataArray(
        data, dims=("band", "y", "x"),
        coords={"band": np.arange(1, scene.bands + 1), "y": scene.pan.y, "x": scene.pan.x},
        name="hrms",
        attrs={
            "method": fuser.name, "_FillValue": OUTPUT_NODATA, "fingerprint": fingerprint,
            "resources": task_resources(fuser),
        },
    )
    if scene.crs is not None:
        out = out.rio.write_crs(scene.crs)
    return out.rio.write_transform(scene.transform)
