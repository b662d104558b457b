"""Zarr stores: the ingested tile store and the output store.

Tile store (Zarr v3, sharded), one group::

    pan[y, x]               native dtype, chunks tile x tile, shards block x block
    ms[band, ms_y, ms_x]    native dtype, chunks (B, tile/r, tile/r), shards (B, block/r, block/r)
    mask[y, x]              uint8, 1 where PAN and every MS band are valid
    x, y, ms_x, ms_y, band  pixel-centre coordinates; spatial_ref (CRS, GeoTransform)
    attrs["pansharp_dist"]  ratio, sensor, nodata, tile, block, per-scene statistics

One PAN chunk covers exactly ``ratio`` x one MS chunk along each axis, and every
write covers whole shards (the sharding trap: unaligned region writes can lose
data). ``xr.open_zarr(store).rio.crs`` / ``.rio.transform()`` give the PAN grid.

Every chunk of both stores carries a checksum (CRC32C after Blosc here, Zstd's
own in the output store), so that a damaged chunk fails its read, with a
:class:`StoreError` naming the store and the window, rather than giving other
pixels: without one, a single flipped bit decoded silently. Both stores are
written with empty chunks kept (zarr's ``write_empty_chunks``: an all-fill
chunk is stored too), so a chunk file that is missing or empty is damage as
well, not nodata, and fails its read the same way.

Output store (Zarr v2 so that GDAL can read it too; GDAL 3.10 does not read
zarr-python's v3 codecs): ``hrms[band, y, x]`` in chunks of ``(1, 512, 512)``
(one band per chunk: GDAL's Zarr reader decodes a multi-band chunk once per
band), written block by block by the workers. A run writes one only where its
blocks do not line up with the COG's tiles; elsewhere each fused block's COG
tiles are encoded in the task that fused it (:mod:`pansharp_dist.pyramid`). Its
ledger (``ledger/`` inside the store) gets one empty file per finished block,
created by the worker after the block's pixels are written; a resumed run
computes only the blocks the ledger does not list. The store's
``fingerprint`` attribute (the fuser, tile grid and scene) refuses a resume
with different settings.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import dask
import dask.array as da
import numcodecs
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from .errors import EmptySceneError, InvalidParameterError, StoreError
from .outputs import TILE_STORE_ATTR, remove_owned
from .scene import Scene
from .stats import BlockStats, SceneStats, block_stats, valid_mask
from .tasks import TaskInput, run_tasks

LAYOUT_VERSION = 3  # 2: statistics record the MS dtype (network radiometry); 3: all-fill shards are stored
ATTR = TILE_STORE_ATTR
OUTPUT_CHUNK = 512
TASK_MEGAPIXELS = 4.0  # PAN megapixels per task by default: 2048 x 2048 blocks of 512 tiles
LEDGER = "ledger"
_CODECS = (BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), Crc32cCodec())
_OUTPUT_CODEC = numcodecs.Zstd(level=1, checksum=True)


def block_size(tile: int, task_megapixels: float = TASK_MEGAPIXELS, ratio: int = 1) -> int:
    """PAN pixels along each side of a block (one task, one shard) of about ``task_megapixels``.

    A whole number of tiles and, when larger than 512, of 512-pixel output chunks (the COG's blocks).
    A 4-gigapixel scene at the default 4 MP is about 1,000 tasks.

    Raises:
        InvalidParameterError: ``tile`` is not a positive multiple of ``ratio``, or no block near the size
            asked for holds whole tiles and whole output chunks (the message suggests tile sizes that do);
            ``task_megapixels`` is not a positive finite number.
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile <= 0:
        raise InvalidParameterError(f"the tile size must be a positive number of PAN pixels, got {tile}", "tile")
    if not (isinstance(task_megapixels, (int, float)) and math.isfinite(task_megapixels) and task_megapixels > 0):
        raise InvalidParameterError(
            f"the PAN megapixels per task must be a positive finite number, got {task_megapixels}", "task_megapixels"
        )
    if tile % ratio:
        raise InvalidParameterError(
            f"the tile size {tile} is not a multiple of the resolution ratio {ratio}; use {_tile_sizes(ratio)}", "tile"
        )
    size = tile * max(1, round(math.sqrt(task_megapixels * 1e6) / tile))
    if size > OUTPUT_CHUNK and size % OUTPUT_CHUNK:
        step = math.lcm(tile, OUTPUT_CHUNK)
        if step > 4 * size:
            raise InvalidParameterError(
                f"tiles of {tile} pixels do not line up with the {OUTPUT_CHUNK}-pixel output chunks in a block "
                f"of about {task_megapixels:g} megapixels (whole tiles and whole chunks first meet at {step} "
                f"pixels); use {_tile_sizes(ratio)}",
                "tile",
            )
        size = -(-size // step) * step
    return size


def _tile_sizes(ratio: int) -> str:
    """Tile sizes that are multiples of ``ratio`` and line up with the output chunks, as a phrase."""
    sizes = [ratio * 2**k for k in range(12) if 128 <= ratio * 2**k <= 1024]
    return f"a tile size of {', '.join(map(str, sizes[:-1]))} or {sizes[-1]}"


def ingest(
    scene: Scene,
    path: str | Path,
    *,
    tile: int = 512,
    block: int | None = None,
    client=None,
    progress=None,
) -> Scene:
    """Write ``scene`` to a Zarr v3 tile store at ``path`` and return it opened from there.

    Workers read their input blocks and write their shards themselves; only
    per-block statistics (kilobytes) come back to the caller.

    Args:
        scene: the scene to store.
        path: store location (a folder that must not exist yet).
        tile: chunk size in PAN pixels (a multiple of the ratio).
        block: shard size in PAN pixels (a multiple of ``tile``); one task per shard.
        client: a ``distributed.Client``; ``None`` uses dask's current scheduler.
        progress: ``callback(done, total)`` called as blocks finish.

    Raises:
        EmptySceneError: every pixel is nodata (the store is removed).
    """
    path = Path(path)
    r = scene.ratio
    block = block or block_size(tile, ratio=scene.ratio)
    if tile % r or block % tile:
        raise InvalidParameterError(
            f"tile {tile} must be a multiple of the ratio {r} and block {block} a multiple of tile"
        )
    scene = scene.rechunk(block)
    _skeleton(scene, path, tile, block)
    try:
        stats = _scene_pass(scene, _ingest_block, (str(path), r, scene.pan_nodata, scene.ms_nodata), client, progress)
        group = zarr.open_group(str(path), mode="r+")
        meta = dict(cast("Mapping[str, Any]", group.attrs[ATTR]))  # the mapping _skeleton wrote
        meta["stats"] = stats.to_dict()
        group.attrs[ATTR] = meta
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return open_store(path)


def block_windows(rows: tuple[int, ...], cols: tuple[int, ...]):
    """``(i, j, y0, h, x0, w)`` of every block of a chunk grid with row sizes ``rows`` and column sizes ``cols``."""
    for i, (y0, h) in enumerate(zip(_starts(rows), rows)):
        for j, (x0, w) in enumerate(zip(_starts(cols), cols)):
            yield i, j, y0, h, x0, w


def _starts(chunks: tuple[int, ...]) -> list[int]:
    return [int(v) for v in np.cumsum((0,) + tuple(chunks[:-1]))]


def _skeleton(scene: Scene, path: Path, tile: int, block: int) -> None:
    """Create the store's arrays, coordinates and attributes (no pixel data)."""
    r, b = scene.ratio, scene.bands
    ms = scene.ms.rename({"y": "ms_y", "x": "ms_x"})
    mask = xr.DataArray(da.zeros(scene.shape, np.uint8, chunks=block), dims=("y", "x"), coords=scene.pan.coords)
    ds = xr.Dataset({"pan": scene.pan, "ms": ms, "mask": mask})
    if scene.crs is not None:
        ds = ds.rio.write_crs(scene.crs)
    ds = ds.rio.write_transform(scene.transform)
    for name in ("pan", "ms", "mask"):
        ds[name].attrs = {"grid_mapping": "spatial_ref"}
        ds[name].encoding = {}
    ds["ms"].attrs["transform"] = list(scene.ms.rio.transform())[:6]
    ds.attrs = {
        ATTR: {
            "layout": LAYOUT_VERSION,
            "ratio": r,
            "sensor": scene.sensor,
            "pan_nodata": scene.pan_nodata,
            "ms_nodata": scene.ms_nodata,
            "name": scene.name,
            "tile": tile,
            "block": block,
            "ms_scales": scene.ms_scales,
            "ms_offsets": scene.ms_offsets,
        }
    }
    mt = tile // r
    encoding = {
        "pan": {"chunks": (tile, tile), "shards": (block, block), "compressors": _CODECS, "_FillValue": None},
        "ms": {
            "chunks": (b, mt, mt),
            "shards": (b, block // r, block // r),
            "compressors": _CODECS,
            "_FillValue": None,
        },
        "mask": {"chunks": (tile, tile), "shards": (block, block), "compressors": _CODECS, "_FillValue": None},
    }
    if path.exists():
        raise StoreError(f"tile store {path} already exists; remove it or choose another `work_dir`")
    ds.to_zarr(str(path), mode="w-", zarr_format=3, encoding=encoding, compute=False, consolidated=False)


def _scene_pass(scene: Scene, fn, args: tuple, client, progress) -> SceneStats:
    """Run ``fn(pan_block, ms_block, y0, x0, *args) -> BlockStats`` on every block and merge the results.

    Raises:
        EmptySceneError: no pixel of the scene is valid.
    """
    pan, ms = scene.pan.data, scene.ms.data
    tasks, labels = [], []
    chunks = scene.pan.chunks
    assert chunks is not None  # a Scene's arrays are dask arrays
    for k, (i, j, y0, h, x0, w) in enumerate(block_windows(*chunks)):
        block = TaskInput(pan.blocks[i, j], ms.blocks[0, i, j])
        tasks.append(dask.delayed(_on_block, pure=True)(k, fn, block, y0, x0, *args))
        labels.append(f"block at PAN rows {y0}:{y0 + h}, columns {x0}:{x0 + w} of {scene.name}")
    # merged in block order, not in the order the tasks finish: float sums and the thinned sample pool then
    # come out the same on any cluster, so the statistics (and every pixel fitted from them) do too
    parts = dict(cast("list[tuple[int, BlockStats]]", list(run_tasks(client, tasks, progress, labels))))
    total = BlockStats(scene.bands)
    for k in sorted(parts):
        total = total.merge(parts[k])
    stats = SceneStats.from_blocks(total, scene.ms.dtype)
    if stats.empty:
        raise EmptySceneError(
            f"every pixel of {scene.name} is nodata (PAN nodata {scene.pan_nodata}, MS nodata "
            f"{scene.ms_nodata}); check the inputs cover each other and the nodata values"
        )
    return stats


def _on_block(k: int, fn, block: TaskInput, y0: int, x0: int, *args) -> tuple[int, BlockStats]:
    """Block ``k``'s ``fn(pan, ms, y0, x0, *args)`` on its pixels, read in this task."""
    return k, fn(*block.compute(), y0, x0, *args)


def _ingest_block(
    pan: np.ndarray,
    ms: np.ndarray,
    y0: int,
    x0: int,
    path: str,
    ratio: int,
    pan_nodata: float | None,
    ms_nodata: float | None,
) -> BlockStats:
    """Write one shard of pan, ms and mask; return the block's statistics (runs on a worker)."""
    group = zarr.open_group(path, mode="r+")
    pan_out, ms_out, mask_out = (
        cast(zarr.Array, group[name]).with_config({"write_empty_chunks": True}) for name in ("pan", "ms", "mask")
    )
    h, w = pan.shape
    hr, _ = valid_mask(pan, ms, ratio, pan_nodata, ms_nodata)
    pan_out[y0 : y0 + h, x0 : x0 + w] = pan
    mask_out[y0 : y0 + h, x0 : x0 + w] = hr.astype(np.uint8)
    m0, n0 = y0 // ratio, x0 // ratio
    ms_out[:, m0 : m0 + h // ratio, n0 : n0 + w // ratio] = ms
    return block_stats(pan, ms, ratio, pan_nodata, ms_nodata)


def store_meta(path: str | Path) -> dict:
    """The store's ``pansharp_dist`` attributes, checked for layout and completeness."""
    try:
        group = zarr.open_group(str(path), mode="r")
        meta = dict(cast("Mapping[str, Any]", group.attrs[ATTR]))  # not a mapping: dict() fails, caught below
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreError(
            f"{path} is not a pansharp-dist tile store ({exc}); create one with 'pansharp-dist ingest'"
        ) from None
    except (ValueError, TypeError, OSError) as exc:  # a zarr.json that is not JSON, or not zarr's
        raise StoreError(
            f"{path}: its metadata (zarr.json) is damaged ({type(exc).__name__}: {exc}); ingest the "
            "scene again (a run: rerun without `resume`)"
        ) from None
    if meta.get("layout") != LAYOUT_VERSION:
        raise StoreError(
            f"{path} has store layout {meta.get('layout')}; this version reads layout {LAYOUT_VERSION}: ingest the "
            "scene again (a run: rerun without `resume`)"
        )
    if "stats" not in meta:
        raise StoreError(f"{path} is incomplete (its ingest did not finish); ingest the scene again")
    return meta


def open_store(path: str | Path) -> Scene:
    """Open a tile store as a lazy :class:`Scene` (dask chunks = store shards).

    Reading a damaged chunk of it raises :class:`StoreError` (see :class:`_TileArray`).
    """
    meta = store_meta(path)
    r, block = meta["ratio"], meta["block"]
    ds = xr.open_zarr(str(path), consolidated=False, zarr_format=3, chunks=None)  # coordinates; pixels below
    crs = ds.rio.crs
    token = dask.base.tokenize(str(path), meta)
    pan = ds["pan"].copy(data=_checked_array(path, "pan", (block, block), token))
    ms = ds["ms"].copy(data=_checked_array(path, "ms", (-1, block // r, block // r), token))
    ms = ms.rename({"ms_y": "y", "ms_x": "x"})
    for arr in (pan, ms):
        arr.attrs = {}
        arr.encoding = {}
    pan = pan.drop_vars("spatial_ref", errors="ignore")
    ms = ms.drop_vars("spatial_ref", errors="ignore")
    if crs is not None:
        pan, ms = pan.rio.write_crs(crs), ms.rio.write_crs(crs)
    return Scene(
        pan=pan,
        ms=ms,
        ratio=r,
        sensor=meta["sensor"],
        pan_nodata=meta["pan_nodata"],
        ms_nodata=meta["ms_nodata"],
        name=meta["name"],
        stats=SceneStats.from_dict(meta["stats"]),
        ms_scales=_floats(meta.get("ms_scales")),
        ms_offsets=_floats(meta.get("ms_offsets")),
    )


class _TileArray:
    """One array of a tile store, read by dask chunk by chunk.

    A chunk that fails its checksum, or whose file is missing or empty, raises
    :class:`StoreError` naming the store and the window, rather than zarr's
    bare ``ValueError`` or the fill value.
    """

    def __init__(self, path: str, name: str):
        self.path, self.name = path, name
        self.array = zarr.open_array(f"{path}/{name}", mode="r")
        self.shape, self.dtype, self.ndim = self.array.shape, self.array.dtype, self.array.ndim

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        what = f"{self.name} data at {'PAN' if self.name == 'pan' else 'MS'}"
        remedy = "delete the store and ingest the scene again (a run: rerun without `resume`)"
        return read_intact(self.array, Path(self.path) / self.name, key, self.path, what, remedy)


def read_intact(
    array: zarr.Array, folder: Path, key: tuple[slice, ...], store: str | Path, what: str, remedy: str
) -> np.ndarray:
    """``array[key]``, whose last two axes are rows and columns; ``folder`` is the array's folder on disk.

    Raises:
        StoreError: ``"<store>: the <what> rows a:b, columns c:d is damaged (<problem>); <remedy>"`` when a
            chunk under ``key`` has a missing or empty file, fails its checksum or cannot be decompressed.
    """
    problem = _missing_chunk(array, folder, key)
    if problem is None:
        try:
            return cast(np.ndarray, array[key])  # slices give an array
        except ValueError as exc:  # zarr's Crc32cCodec: "Stored and computed checksum do not match"
            if "checksum" not in str(exc):
                raise
            problem = str(exc)
        except RuntimeError as exc:  # numcodecs' Zstd: "Restored data doesn't match checksum", "Corrupted block"
            problem = str(exc)
    (y0, y1, _), (x0, x1, _) = (k.indices(n) for k, n in zip(key[-2:], array.shape[-2:]))
    raise StoreError(f"{store}: the {what} rows {y0}:{y1}, columns {x0}:{x1} is damaged ({problem}); {remedy}")


def _missing_chunk(array: zarr.Array, folder: Path, key: tuple[slice, ...]) -> str | None:
    """``"its chunk file K is missing or empty"`` for the first stored chunk (a shard, where ``array`` is
    sharded) under ``key`` whose file in ``folder`` is missing or has no bytes; ``None`` when all are there.
    Our stores keep their all-fill chunks, so an absent file is damage."""
    grid = array.shards or array.chunks
    spans = []
    for k, n, edge in zip(key, array.shape, grid):
        start, stop, _ = k.indices(n)
        if stop <= start:
            return None
        spans.append(range(start // edge, (stop - 1) // edge + 1))
    for coords in itertools.product(*spans):
        name = array.metadata.encode_chunk_key(coords)
        file = folder / name
        if not file.is_file() or file.stat().st_size == 0:
            return f"its chunk file {name} is missing or empty"
    return None


def _checked_array(path: str | Path, name: str, chunks: tuple[int, ...], token: str) -> da.Array:
    """The tile store's array ``name`` as a dask array of ``chunks`` (-1: whole axis) read through
    :class:`_TileArray`."""
    source = _TileArray(str(path), name)
    return da.from_array(
        source, chunks=chunks, name=f"tiles-{name}-{token}", meta=np.empty((0,) * source.ndim, source.dtype)
    )


def scene_stats(scene: Scene, client=None, progress=None) -> SceneStats:
    """Statistics of a scene that has none stored (one pass over its blocks)."""
    if scene.stats is not None:
        return scene.stats
    return _scene_pass(scene, _block_stats_at, (scene.ratio, scene.pan_nodata, scene.ms_nodata), client, progress)


def _block_stats_at(pan: np.ndarray, ms: np.ndarray, y0: int, x0: int, ratio: int, *nodata) -> BlockStats:
    """:func:`block_stats` with the block position that :func:`_scene_pass` passes (unused here)."""
    return block_stats(pan, ms, ratio, *nodata)


def with_stats(scene: Scene, client=None, progress=None) -> Scene:
    """``scene`` with its statistics computed if it has none."""
    return scene if scene.stats is not None else replace(scene, stats=scene_stats(scene, client, progress))


# --------------------------------------------------------------------------- output store


def output_chunk(chunks: tuple[tuple[int, ...], ...]) -> int:
    """Output chunk edge: 512 (a COG block), or the block size for smaller blocks."""
    return min(OUTPUT_CHUNK, max(chunks[-2][0], chunks[-1][0]))


def create_output(hrms: xr.DataArray, path: str | Path) -> None:
    """Create the Zarr v2 output store for ``hrms`` (metadata, coordinates and an empty ledger)."""
    path = Path(path)
    remove_owned(path)
    ds = hrms.to_dataset(name="hrms")
    for var in ds.variables.values():
        var.encoding = {}
    crs = hrms.rio.crs
    attrs = {"_CRS": {"wkt": crs.to_wkt()}} if crs is not None else {}
    ds["hrms"].attrs = {**attrs, "_FillValue": output_nodata(hrms)}
    ds.attrs = output_attrs(hrms)
    ds = ds.drop_vars(["spatial_ref", "band_name"], errors="ignore")
    chunk = output_chunk(hrms.data.chunks)
    encoding = {"hrms": {"chunks": (1, chunk, chunk), "compressors": [_OUTPUT_CODEC]}}
    ds.to_zarr(str(path), mode="w-", zarr_format=2, encoding=encoding, compute=False, consolidated=False)
    (path / LEDGER).mkdir()


def output_attrs(hrms: xr.DataArray) -> dict:
    """The output store's attributes for ``hrms``: its fingerprint, the processing record (``pansharp_*``),
    the band names, the MS's radiometry (scales and offsets, or ``None``) and the affine transform's six
    coefficients (``a, b, c, d, e, f``: exact, where a reader of the stored coordinates gets them rounded)."""
    return {
        "fingerprint": hrms.attrs.get("fingerprint"),
        "transform": list(hrms.rio.transform())[:6],
        "processing": {k: v for k, v in hrms.attrs.items() if k.startswith("pansharp_")},
        "band_names": [str(n) for n in hrms.coords["band_name"].values] if "band_name" in hrms.coords else [],
        "scales": _floats(hrms.attrs.get("scales")),
        "offsets": _floats(hrms.attrs.get("offsets")),
    }


def output_nodata(hrms: xr.DataArray) -> float:
    """The output's nodata value: its ``_FillValue`` (:func:`~.fusion.pansharpen` sets it), else 0."""
    return hrms.attrs.get("_FillValue", 0)


def write_output_block(block: np.ndarray, path: str, y0: int, x0: int) -> int:
    """Write one ``(B, h, w)`` block of the output store at ``(y0, x0)`` and enter it in the ledger.

    Returns the bytes written. The ledger entry is made only after the pixels are written.

    Chunks are written one call at a time: a write that fails (a full disk) then leaves no other write of
    the block in flight on the storage library's own thread, to land after the caller has cleaned up.
    """
    arr = zarr.open_array(str(Path(path) / "hrms"), mode="r+", zarr_format=2).with_config({"write_empty_chunks": True})
    bands, h, w = block.shape
    _, ch, cw = arr.chunks
    for b in range(bands):
        for r in range(0, h, ch):
            for c in range(0, w, cw):
                arr[b, y0 + r : y0 + min(r + ch, h), x0 + c : x0 + min(c + cw, w)] = block[b, r : r + ch, c : c + cw]
    (Path(path) / LEDGER / f"{y0}_{x0}").touch()
    return int(block.nbytes)


def _compute_output_block(block: TaskInput, path: str, y0: int, x0: int) -> int:
    """Compute one block of the output and write it (:func:`write_output_block`) in the same task."""
    (pixels,) = block.compute()
    return write_output_block(pixels, path, y0, x0)


def finished_blocks(path: str | Path) -> set[tuple[int, int]]:
    """``(y0, x0)`` of the blocks the output store's ledger lists as written."""
    folder = Path(path) / LEDGER
    if not folder.is_dir():
        return set()
    # ledger entries are named y0_x0; a name with a leading dot is one being written
    return cast(
        "set[tuple[int, int]]",
        {tuple(int(v) for v in entry.name.split("_")) for entry in folder.iterdir() if not entry.name.startswith(".")},
    )


@dataclass(frozen=True)
class WriteReport:
    """What :func:`write_output` (or :func:`~.pyramid.encode_output`) did: blocks in the output, and blocks
    computed now (the others a resume skipped)."""

    blocks: int
    computed: int


def write_output(
    hrms: xr.DataArray, path: str | Path, client=None, progress=None, *, resume: bool = False
) -> WriteReport:
    """Compute ``hrms`` block by block into a Zarr v2 store; each worker writes its own blocks.

    The tasks request the worker resources in ``hrms.attrs["resources"]`` (a GPU for a network on CUDA).

    Args:
        hrms: the lazy output (:func:`~pansharp_dist.fusion.pansharpen`).
        path: the output store.
        client: a ``distributed.Client``, or ``None`` for dask's current scheduler.
        progress: ``callback(done, total)`` over the blocks computed now.
        resume: keep an existing store of the same fingerprint and compute only
            the blocks its ledger does not list.

    Raises:
        StoreError: ``resume`` and the store holds the output of different settings.
    """
    path = Path(path)
    finished: set[tuple[int, int]] = set()
    if resume and path.exists():
        stored = zarr.open_group(str(path), mode="r", zarr_format=2).attrs.get("fingerprint")
        if stored != hrms.attrs.get("fingerprint"):
            raise StoreError(
                f"{path} holds the output of a run with other settings (method, adaptation, tile size or "
                "scene); rerun without `resume` to start again"
            )
        finished = finished_blocks(path)
    else:
        create_output(hrms, path)
    data = hrms.data
    chunk = output_chunk(data.chunks)
    for size in data.chunks[1][:-1] + data.chunks[2][:-1]:
        if size % chunk:
            raise InvalidParameterError(f"output blocks must be multiples of {chunk} pixels, got {size}")
    tasks, labels = [], []
    for i, j, y0, h, x0, w in block_windows(*data.chunks[1:]):
        if (y0, x0) in finished:
            continue
        tasks.append(
            dask.delayed(_compute_output_block, pure=False)(TaskInput(data.blocks[0, i, j]), str(path), y0, x0)
        )
        labels.append(f"output block at PAN rows {y0}:{y0 + h}, columns {x0}:{x0 + w}")
    resources = json.loads(hrms.attrs.get("resources") or "{}")
    for _ in run_tasks(client, tasks, progress, labels, resources=resources):
        pass
    total = len(data.chunks[1]) * len(data.chunks[2])
    return WriteReport(blocks=total, computed=len(tasks))


def _floats(values) -> tuple[float, ...] | None:
    """A stored list of numbers as a tuple of floats (``None`` stays ``None``)."""
    return None if values is None else tuple(float(v) for v in np.ravel(values))
