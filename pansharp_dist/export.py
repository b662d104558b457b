"""Exports: the cloud-optimized GeoTIFF and the PNG quicklook.

The COG is encoded from the output Zarr store by the Dask workers, block by
block, and assembled into one file by a single task:

* each task reads a 2048 x 2048 block of one pyramid level, encodes its
  512 x 512 tiles (ZSTD or DEFLATE with a predictor, as GDAL's COG driver
  does) and those of the next two overview levels, which it computes by
  averaging, into part files; the block of the third level down goes to a
  small Zarr array that the next pass reads. Memory per task is bounded and
  the same whatever the scene's size; nothing passes through the client.
* the assembly writes the header (every IFD before the data: the COG layout,
  :mod:`pansharp_dist.tiff`) and copies the parts in COG order, smallest
  overview first. The file is written under a temporary name beside the
  target and renamed only when complete.

Overviews: levels halve (rounded down) until both sides are at most 512
pixels, as GDAL's COG driver sizes them. Each overview pixel is the mean of
the valid (non-nodata) full-resolution pixels of its 2^k x 2^k footprint
(integers rounded half up), or nodata where there are none; an odd last row
or column of a level has no pixel in the next. Georeferencing tags are the
ones GDAL writes for the store's CRS and transform.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from xml.sax.saxutils import escape

import dask
import numpy as np
import rasterio
import rasterio.errors
import xarray as xr
import zarr
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

from .errors import InvalidParameterError, OutputExistsError, OutputNotWritableError
from .outputs import check_output, output_lock, remove_leftovers
from .store import read_intact, write_output
from .tasks import run_tasks
from .tiff import (
    COMPRESSION_CODES,
    FRAME,
    GEO_TAGS,
    LEVELS,
    TILE,
    Level,
    Tag,
    ascii_tag,
    codec_and_level,
    cog_header,
    encode_tile,
    framed,
    predictor,
    read_tags,
)
from .tiling import Window

COMPRESSIONS = tuple(COMPRESSION_CODES)
BLOCK = 2048
"""Edge of the pyramid block a COG task encodes: 4 x 4 tiles, and 2 x 2 and 1 of the next two levels."""
_LEVELS_PER_PASS = 3


def check_compress(compress: str) -> str:
    """``compress`` as ``CODEC:LEVEL`` (``ZSTD:9``, ``DEFLATE:6``) or ``NONE``: a codec of
    :data:`COMPRESSIONS`, any case, with a level in its range (:data:`~.tiff.LEVELS`) or its default.

    Raises:
        InvalidParameterError: an unknown codec or a level out of range.
    """
    try:
        codec, level = codec_and_level(compress)
    except ValueError as exc:
        ranges = ", ".join(f"{codec}:{low}..{high}" for codec, (low, high, _) in LEVELS.items())
        raise InvalidParameterError(
            f"`compress` is CODEC or CODEC:LEVEL ({ranges}) or NONE, got {compress!r}: {exc}"
        ) from None
    return codec if level is None else f"{codec}:{level}"


def cog_options(dtype: str, size_bytes: int, compress: str = "ZSTD") -> dict[str, str]:
    """GDAL COG driver creation options equal to what :func:`write_cog` writes, for an output of ``dtype``
    and uncompressed size in bytes (the reference in benchmarks and tests)."""
    codec, level = codec_and_level(check_compress(compress))
    options = {
        "BLOCKSIZE": str(TILE),
        "COMPRESS": codec,
        "OVERVIEW_RESAMPLING": "AVERAGE",
        "BIGTIFF": "YES" if size_bytes > 3_500_000_000 else "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }
    if level is not None:
        options["PREDICTOR"] = str(predictor(np.dtype(dtype), codec))
        options["LEVEL"] = str(level)
    return options


def write_cog(
    source: xr.DataArray | str | Path,
    out: str | Path,
    *,
    client=None,
    overwrite: bool = False,
    progress=None,
    compress: str = "ZSTD",
    bigtiff: bool = False,
    window: Window | None = None,
) -> Path | str:
    """Write a COG at ``out`` from a lazy ``(band, y, x)`` DataArray or an output Zarr store.

    ``window`` is the COG's grid as a window ``(row0, row1, col0, col1)`` of the source's, in its pixels, as
    :meth:`Scene.output_window <pansharp_dist.scene.Scene.output_window>` gives it for an extent: it may reach
    beyond the source, whose nodata fills the COG there (default: the source's own grid).

    ``out`` is a local path, or an fsspec URL (``s3://``, ``gs://``, ``memory://``...): the COG is then
    written to a temporary local folder and uploaded whole, once complete (returned as the URL).

    A DataArray (from :func:`~pansharp_dist.pansharpen`) is first computed by the
    workers into a temporary Zarr store beside ``out``. CRS, transform and
    nodata come from the store. ``client`` is a ``distributed.Client`` (``None``:
    the current one, else threads); ``progress`` is ``callback(done, total)``
    over the encoding tasks. The file is BigTIFF when it needs 64-bit offsets,
    or always with ``bigtiff``. It appears at ``out`` only once complete; a
    failure leaves nothing there.
    """
    if _is_url(out):
        return _write_remote_cog(source, str(out), client, overwrite, progress, compress, bigtiff, window)
    out = check_output(out, overwrite)
    compress = check_compress(compress)
    with output_lock(out):
        remove_leftovers(out, LEFTOVERS)
        if isinstance(source, (str, Path)):
            return _zarr_to_cog(Path(source), out, compress, client, progress, bigtiff, window)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.encode-", dir=out.parent) as tmp:
            store = Path(tmp) / "hrms.zarr"
            write_output(source, store, client)
            return _zarr_to_cog(store, out, compress, client, progress, bigtiff, window)


def _is_url(out: str | Path) -> bool:
    """Whether ``out`` names a file through fsspec (a scheme other than ``file://``) rather than a local path."""
    scheme, sep, _ = str(out).partition("://")
    return bool(sep) and scheme not in ("", "file")


def _write_remote_cog(
    source, url: str, client, overwrite: bool, progress, compress: str, bigtiff: bool, window: Window | None
) -> str:
    """The COG written locally, then uploaded to ``url`` in one piece."""
    import fsspec

    compress = check_compress(compress)
    try:
        fs, target = fsspec.core.url_to_fs(url)
        exists = fs.exists(target)
    except (ImportError, ValueError) as exc:
        raise InvalidParameterError(f"cannot write to {url}: {exc}", "out") from None
    if exists and not overwrite:
        raise OutputExistsError(f"{url} already exists; pass `overwrite=True` to replace it")
    with tempfile.TemporaryDirectory(prefix="pansharp-cog-") as local:
        path = Path(local) / (Path(target).name or "out.tif")
        write_cog(source, path, client=client, progress=progress, compress=compress, bigtiff=bigtiff, window=window)
        try:
            fs.put_file(str(path), target)
        except OSError as exc:
            raise OutputNotWritableError(f"cannot upload the COG to {url} ({exc}); nothing was written there") from None
    return url


LEFTOVERS = ("parts", "partial", "encode")
"""What a killed COG writer leaves beside its output (``.<name>.parts-*``, ``.partial-*``, ``.encode-*``); the
next writer of the same output removes them."""


@dataclass(frozen=True)
class _CogLayout:
    """What the COG needs to know of the output store: shape, dtype, nodata and georeferencing tags, and the
    window of the store it covers ``(row0, row1, col0, col1)``."""

    bands: int
    dtype: np.dtype
    nodata: float | None
    tags: list[Tag]
    window: Window

    def level_shapes(self) -> list[tuple[int, int]]:
        """``(height, width)`` of full resolution (the window's) and of each overview: halved (rounded down, as
        GDAL's COG driver sizes them) until both sides fit a tile."""
        r0, r1, c0, c1 = self.window
        shapes = [(r1 - r0, c1 - c0)]
        while max(shapes[-1]) > TILE:
            h, w = shapes[-1]
            shapes.append((max(1, h // 2), max(1, w // 2)))
        return shapes


def _cog_layout(store: Path, window: Window | None) -> _CogLayout:
    with rasterio.open(f'ZARR:"{store.resolve()}":/hrms') as src:
        r0, r1, c0, c1 = window or (0, src.height, 0, src.width)
        if r0 >= r1 or c0 >= c1:
            raise InvalidParameterError(f"the COG `window` {window} is empty", "window")
        if (r0 < 0 or c0 < 0 or r1 > src.height or c1 > src.width) and src.nodata is None:
            raise InvalidParameterError(
                f"the COG `window` {window} reaches beyond the output's {src.height} x {src.width} pixels, which "
                "have no nodata value to fill it with; give the store's `hrms` array a fill value or keep the "
                "window inside",
                "window",
            )
        transform = src.transform * Affine.translation(c0, r0)
        tags = _geo_tags(src.crs, transform) if src.crs is not None else []
        if src.nodata is not None:
            tags.append(ascii_tag(42113, _nodata_text(src.nodata)))
        dtype = np.dtype(src.dtypes[0])
        layout = _CogLayout(src.count, dtype, src.nodata, tags, (r0, r1, c0, c1))
    metadata = _gdal_metadata(dict(zarr.open_group(str(store), mode="r", zarr_format=2).attrs))
    if metadata is not None:
        tags.append(metadata)
    return layout


def _gdal_metadata(attrs: dict) -> Tag | None:
    """GDAL's metadata tag (42112) from the output store's attributes: the processing record as dataset items
    (``PANSHARP_METHOD``...: ``gdalinfo`` and ``rasterio``'s ``tags()`` show them), each band's description
    (its name: ``descriptions`` in rasterio, ``Description`` in ``gdalinfo``) and, where the MS declares them,
    each band's scale and offset (``scales``/``offsets`` in rasterio)."""
    items = [
        f'<Item name="{escape(key.upper())}">{escape(str(value))}</Item>'
        for key, value in (attrs.get("processing") or {}).items()
    ]
    items += [
        f'<Item name="DESCRIPTION" sample="{i}" role="description">{escape(str(name))}</Item>'
        for i, name in enumerate(attrs.get("band_names") or [])
    ]
    for key, role in (("scales", "scale"), ("offsets", "offset")):  # the MS's radiometry, kept by the fusion
        items += [
            f'<Item name="{role.upper()}" sample="{i}" role="{role}">{float(v)!r}</Item>'
            for i, v in enumerate(attrs.get(key) or [])
        ]
    return ascii_tag(42112, f"<GDALMetadata>{''.join(items)}</GDALMetadata>") if items else None


def _geo_tags(crs, transform) -> list[Tag]:
    """The GeoTIFF tags GDAL writes for ``crs`` and ``transform`` (read back from a 1 x 1 GeoTIFF)."""
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=1, height=1, count=1, dtype="uint8", crs=crs, transform=transform) as dst:
            dst.write(np.zeros((1, 1, 1), np.uint8))
        return read_tags(mem.read(), GEO_TAGS)


def _nodata_text(nodata: float) -> str:
    return str(int(nodata)) if float(nodata).is_integer() else repr(float(nodata))


def _zarr_to_cog(store: Path, out: Path, compress: str, client, progress, bigtiff: bool, window: Window | None) -> Path:
    """Encode ``store``'s ``hrms`` array (its ``window``) into the COG ``out`` (atomic): the pyramid passes,
    then the assembly."""
    raster = _cog_layout(store, window)
    shapes = raster.level_shapes()
    passes = range(0, len(shapes), _LEVELS_PER_PASS)
    total = sum(len(_blocks(shapes[first])) for first in passes) + 1
    done = 0

    def advance(n: int, _total: int) -> None:
        if progress:
            progress(done + n, total)

    parts = Path(tempfile.mkdtemp(prefix=f".{out.name}.parts-", dir=out.parent))
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        tiles: dict[tuple[int, int, int], tuple[str, int, int]] = {}
        source: str | None = str(store / "hrms")  # then each pass's `below`: None after the last
        for first in passes:
            count = min(_LEVELS_PER_PASS, len(shapes) - first)
            below = None
            if first + count < len(shapes):
                below = str(parts / f"level{first + count}")
                _create_sums(below, (raster.bands, *shapes[first + count]), BLOCK >> count, raster.dtype)
            tasks, labels = [], []
            for y0, x0 in _blocks(shapes[first]):
                part = str(parts / f"{first}_{y0}_{x0}")
                tasks.append(
                    dask.delayed(_encode_block, pure=False)(
                        source, below, part, first, count, y0, x0, raster.nodata, compress, raster.window
                    )
                )
                labels.append(f"COG level {first} block at rows {y0}:{y0 + BLOCK}, columns {x0}:{x0 + BLOCK}")
            for entries in run_tasks(client, tasks, advance, labels):
                tiles.update(cast("dict[tuple[int, int, int], tuple[str, int, int]]", entries))  # _encode_block's
            done += len(tasks)
            source = below
        levels = [
            Level(w, h, tuple(tiles[(n, i, j)][2] for i in range(-(-h // TILE)) for j in range(-(-w // TILE))))
            for n, (h, w) in enumerate(shapes)
        ]
        header = cog_header(levels, raster.dtype, raster.bands, compress, raster.tags, bigtiff=bigtiff)
        order = [
            _frame(tiles[(n, i, j)])
            for n in reversed(range(len(shapes)))
            for i in range(-(-shapes[n][0] // TILE))
            for j in range(-(-shapes[n][1] // TILE))
        ]
        assemble = dask.delayed(_assemble, pure=False)(str(tmp), header, _runs(order))
        for _ in run_tasks(client, [assemble], advance, [f"assembling {out}"]):
            pass
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    return out


def _create_sums(folder: str, shape: tuple[int, int, int], chunk: int, dtype: np.dtype) -> None:
    """Zarr arrays ``sums`` (float64) and ``counts`` (uint32) of a pyramid level, one chunk per task's block."""
    chunks = (shape[0], chunk, chunk)
    sums = zarr.create_array(f"{folder}/sums", shape=shape, dtype="float64", chunks=chunks, compressors=None)
    sums.attrs["dtype"] = np.dtype(dtype).str
    zarr.create_array(f"{folder}/counts", shape=shape, dtype="uint32", chunks=chunks, compressors=None)


def _blocks(shape: tuple[int, int]) -> list[tuple[int, int]]:
    return [(y0, x0) for y0 in range(0, shape[0], BLOCK) for x0 in range(0, shape[1], BLOCK)]


def _read_output(source: str, y0: int, x0: int, window: Window, nodata: float | None) -> np.ndarray:
    """The COG's block at ``(y0, x0)``, all bands: ``(B, h, w)`` in the store's dtype, read from the output
    store's ``window`` (COG pixel ``(y, x)`` is store pixel ``(row0 + y, col0 + x)``), nodata beyond the store.

    Raises:
        StoreError: a chunk there is missing, fails its checksum or cannot be decompressed (a damaged disk, an
            edited store).
    """
    array = zarr.open_array(source, mode="r")
    bands, height, width = array.shape
    r0, r1, c0, c1 = window
    rows, cols = slice(r0 + y0, min(r0 + y0 + BLOCK, r1)), slice(c0 + x0, min(c0 + x0 + BLOCK, c1))
    inside = slice(max(rows.start, 0), min(rows.stop, height)), slice(max(cols.start, 0), min(cols.stop, width))
    remedy = "rerun without `resume` to compute the output again"
    where = (slice(None), *inside)
    if inside == (rows, cols):
        return read_intact(array, Path(source), where, Path(source).parent, "output at PAN", remedy)
    block = np.full((bands, rows.stop - rows.start, cols.stop - cols.start), nodata, array.dtype)
    if inside[0].start < inside[0].stop and inside[1].start < inside[1].stop:
        at = (slice(None), *(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inside, (rows, cols))))
        block[at] = read_intact(array, Path(source), where, Path(source).parent, "output at PAN", remedy)
    return block


def _encode_block(
    source: str,
    below: str | None,
    part: str,
    first: int,
    count: int,
    y0: int,
    x0: int,
    nodata: float | None,
    compress: str,
    window: Window,
) -> dict[tuple[int, int, int], tuple[str, int, int]]:
    """Encode the tiles of levels ``first`` to ``first + count - 1`` under the block at ``(y0, x0)`` of level
    ``first`` into the files ``{part}.{level}``, one per level.

    Level 0 is read from the output array ``source`` (its ``window``); a later first level from the ``sums``
    and ``counts`` arrays of the folder ``source``, which the pass before wrote, as these tasks do into
    ``below`` for the level after their last. Sums and counts of valid pixels carried down the pyramid make
    every overview pixel the mean over its whole footprint at full resolution, as GDAL computes it.

    Returns ``{(level, tile_row, tile_col): (file, offset, bytes)}``: where each tile's frame starts, and the
    size of the tile without its frame.
    """
    rows, cols = slice(y0, y0 + BLOCK), slice(x0, x0 + BLOCK)
    if first == 0:
        block = _read_output(source, y0, x0, window, nodata)
        dtype = block.dtype
        bands, height, width = block.shape
    else:  # float64 sums are 4x the pixels' bytes: read them band by band
        sums_in, counts_in = zarr.open_array(f"{source}/sums", mode="r"), zarr.open_array(f"{source}/counts", mode="r")
        dtype = np.dtype(cast(str, sums_in.attrs["dtype"]))  # written by _create_sums
        bands, height, width = sums_in.shape[0], min(BLOCK, sums_in.shape[1] - y0), min(BLOCK, sums_in.shape[2] - x0)
    levels = [np.empty((bands, max(1, height >> k), max(1, width >> k)), dtype) for k in range(count)]
    carried = None
    for b in range(bands):
        if first == 0:
            levels[0][b] = band = block[b]
            valid = np.ones(band.shape, bool) if nodata is None else _valid(band, nodata)
            sums, counts = np.where(valid, band, 0).astype(np.float64), valid.astype(np.uint32)
        else:
            sums, counts = cast(np.ndarray, sums_in[b, rows, cols]), cast(np.ndarray, counts_in[b, rows, cols])
            levels[0][b] = _mean(sums, counts, dtype, nodata)
        for k in range(1, count + (below is not None)):
            sums, counts = _cell_sums(sums), _cell_sums(counts)
            if k < count:
                levels[k][b] = _mean(sums, counts, dtype, nodata)
        if below is not None:
            if carried is None:
                carried = (np.empty((bands, *sums.shape)), np.empty((bands, *counts.shape), np.uint32))
            carried[0][b], carried[1][b] = sums, counts
    entries = {}
    for k, level in enumerate(levels):
        path = f"{part}.{first + k}"
        with open(path, "wb") as f:
            for i in range(-(-level.shape[1] // TILE)):
                for j in range(-(-level.shape[2] // TILE)):
                    tile = np.full((TILE, TILE, bands), nodata or 0, dtype)
                    piece = level[:, i * TILE : (i + 1) * TILE, j * TILE : (j + 1) * TILE]
                    tile[: piece.shape[1], : piece.shape[2]] = piece.transpose(1, 2, 0)
                    data = encode_tile(tile, compress)
                    entries[(first + k, (y0 >> k) // TILE + i, (x0 >> k) // TILE + j)] = (path, f.tell(), len(data))
                    f.write(framed(data))
    if carried is not None:
        region = (
            slice(None),
            slice(y0 >> count, (y0 >> count) + carried[0].shape[1]),
            slice(x0 >> count, (x0 >> count) + carried[0].shape[2]),
        )
        zarr.open_array(f"{below}/sums", mode="r+")[region] = carried[0]
        zarr.open_array(f"{below}/counts", mode="r+")[region] = carried[1]
    return entries


def _valid(band: np.ndarray, nodata: float) -> np.ndarray:
    return ~np.isnan(band) if np.isnan(nodata) else band != nodata


def _cell_sums(a: np.ndarray) -> np.ndarray:
    """Sums over the 2 x 2 cells of a ``(h, w)`` array: ``(h // 2, w // 2)``, an odd last row or column left
    out (a side of 1 stays 1)."""
    if a.shape[0] > 1:
        even = a.shape[0] // 2 * 2
        a = a[0:even:2] + a[1:even:2]
    if a.shape[1] > 1:
        even = a.shape[1] // 2 * 2
        a = a[:, 0:even:2] + a[:, 1:even:2]
    return a


def _mean(sums: np.ndarray, counts: np.ndarray, dtype: np.dtype, nodata: float | None) -> np.ndarray:
    """``sums / counts`` in ``dtype`` (integers rounded half up), ``nodata`` where ``counts`` is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
    if dtype.kind in "iu":
        mean = np.floor(mean + 0.5)
    return np.where(counts > 0, mean, nodata if nodata is not None else 0).astype(dtype)


def _frame(tile: tuple[str, int, int]) -> tuple[str, int, int]:
    part, offset, size = tile
    return part, offset, size + FRAME


def _runs(order: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """``order``'s ``(part, offset, bytes)`` pieces with neighbours in the same part merged."""
    runs: list[tuple[str, int, int]] = []
    for part, offset, size in order:
        if runs and runs[-1][0] == part and runs[-1][1] + runs[-1][2] == offset:
            runs[-1] = (part, runs[-1][1], runs[-1][2] + size)
        else:
            runs.append((part, offset, size))
    return runs


def _assemble(path: str, header: bytes, runs: list[tuple[str, int, int]]) -> int:
    """Write ``header`` then each ``(part, offset, bytes)`` run, in order, to ``path``; returns the file size.

    Each part is deleted once its last run is copied. Parts hold one level of one block, and levels are
    copied one after the other, so the disk holds the COG and about one block row of parts besides (a
    retried assembly finds parts gone and fails; ``--resume`` then encodes again from the output store).
    """
    last = {part: n for n, (part, _, _) in enumerate(runs)}
    with open(path, "wb") as dst:
        dst.write(header)
        dst.flush()
        for n, (part, offset, size) in enumerate(runs):
            with open(part, "rb") as src:
                _copy_range(src, dst, offset, size)
            if last[part] == n:
                os.remove(part)
        return dst.tell()


def _copy_range(src, dst, offset: int, size: int) -> None:
    """Append ``size`` bytes of ``src`` from ``offset`` to ``dst``, whose buffer is flushed (the kernel writes
    at its file position): in the kernel where the system can (``copy_file_range``, no pass through this
    process's memory), else read and written in 64 MiB pieces; ``dst`` is flushed again after."""
    end = offset + size
    in_kernel = getattr(os, "copy_file_range", None)  # Linux only
    while in_kernel is not None and offset < end:
        try:
            copied = in_kernel(src.fileno(), dst.fileno(), end - offset, offset)
        except OSError:  # not across these file systems: copy through memory
            copied = 0
        if copied == 0:
            break
        offset += copied
    src.seek(offset)
    while offset < end:
        chunk = src.read(min(end - offset, 64 << 20))
        if not chunk:
            raise OSError(f"COG part {src.name} ends at byte {offset}, before {end}")
        dst.write(chunk)
        offset += len(chunk)
    dst.flush()


def write_quicklook(
    cog: str | Path, png: str | Path, rgb: tuple[int, int, int] | None = None, max_size: int = 1024
) -> Path:
    """An 8-bit RGB PNG of the COG, at most ``max_size`` pixels wide, read from its overviews.

    Each band is stretched between its 2nd and 98th percentile of valid pixels.
    ``rgb`` holds 0-based band indexes of red, green and blue (default: the usual ones for the band count,
    :func:`~pansharp_dist.sensors.default_rgb`).
    """
    png = Path(png)
    with rasterio.open(cog) as src:
        if rgb is None:
            from .sensors import default_rgb

            rgb = default_rgb(src.count)
        scale = max(1, -(-max(src.width, src.height) // max_size))
        shape = (3, max(1, src.height // scale), max(1, src.width // scale))
        data = src.read([i + 1 for i in rgb], out_shape=shape, resampling=Resampling.average).astype(np.float64)
        valid = np.all(np.isfinite(data) if src.nodata is None or np.isnan(src.nodata) else data != src.nodata, axis=0)
    out = np.zeros(shape, np.uint8)
    for k in range(3):
        band = data[k]
        if valid.any():
            lo, hi = np.percentile(band[valid], (2, 98))
            out[k] = np.clip((band - lo) / max(hi - lo, 1e-12) * 254 + 1, 1, 255).astype(np.uint8)
        out[k][~valid] = 0
    with warnings.catch_warnings():  # a PNG carries no georeferencing, by design
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(png, "w", driver="PNG", width=shape[2], height=shape[1], count=3, dtype="uint8") as dst:
            dst.write(out)
    return png
