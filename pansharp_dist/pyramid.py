"""The COG's pyramid, encoded block by block into a parts store, then assembled into one file.

A parts store is a folder (a Zarr v2 group) that holds a COG's tiles before the COG exists:

* ``parts/``: files of encoded tiles, one per pyramid block and level, each tile framed as the COG holds it;
* ``ledger/{y0}_{x0}``: for each task of the first pass (a fused block, which may hold several pyramid
  blocks), the tiles it encoded and the size and CRC32 of its parts (JSON), written once they are all on
  disk; a resumed run skips the blocks listed there whose parts are intact;
* ``level{n}/sums`` and ``counts``: the valid-pixel sums of the first level the first pass does not encode,
  which the next pass reads;
* its attributes: the fingerprint (the fused output's, the codec and the window) and the COG's layout.

The first pass encodes full resolution and the next overview levels of each block. Where the fused blocks
line up with the COG's (:func:`first_levels`: the COG's grid starts at the fused grid's corner and the
blocks are whole multiples of the pyramid block) it runs in the task that fuses the block, so the pixels
are encoded before they leave the worker, with no output store written and read back
(:func:`encode_output`); elsewhere it reads the output Zarr store (:func:`encode_stored`). Either way the
pyramid block of level 0 is 512 x 2^(n-1) pixels for ``n`` levels encoded, so the tiles are the same.
:func:`assemble` runs the passes of the remaining levels, writes the header (every IFD before the data:
:mod:`pansharp_dist.tiff`) and copies the parts in COG order, smallest overview first.

Overviews: levels halve (rounded down) until both sides are at most 512 pixels, as GDAL's COG driver sizes
them. Each overview pixel is the mean of the valid (non-nodata) full-resolution pixels of its 2^k x 2^k
footprint (integers rounded half up), or nodata where there are none; an odd last row or column of a level
has no pixel in the next.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from xml.sax.saxutils import escape

import dask
import numpy as np
import rasterio
import xarray as xr
import zarr
from affine import Affine
from rasterio.io import MemoryFile
from zarr.codecs import Crc32cCodec

from .errors import InvalidParameterError, StoreError
from .outputs import OUTPUT_STORE_ATTR, remove_owned
from .store import LEDGER, WriteReport, block_windows, output_attrs, output_nodata, read_intact, write_output
from .tasks import TaskInput, digest, run_tasks
from .tiff import FRAME, GEO_TAGS, TILE, Level, Tag, ascii_tag, cog_header, encode_tile, framed, read_tags
from .tiling import Window

BLOCK = 2048
"""Edge of the pyramid block a task of a later pass encodes: 4 x 4 tiles, and 2 x 2 and 1 of the next two
levels."""
LEVELS_PER_PASS = 3
PARTS_ATTR = "cog_parts"
"""The attribute that makes a Zarr group a parts store (its layout)."""

TileEntries = dict[tuple[int, int, int], tuple[str, int, int]]
"""``{(level, tile_row, tile_col): (part file, offset, bytes)}``: where each tile's frame starts in its part
(a name in the store's ``parts/``), and the tile's size without its frame."""
PartSums = dict[str, tuple[int, int]]
"""``{part file: (bytes, CRC32)}``, as the ledger keeps them."""


@dataclass(frozen=True)
class CogLayout:
    """What the COG needs to know of the fused output: band count, dtype, nodata, georeferencing and metadata
    tags, and the window of the output it covers ``(row0, row1, col0, col1)``."""

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

    def to_attrs(self) -> dict:
        """The layout as JSON attributes (:meth:`from_attrs` reads them back)."""
        return {
            "bands": self.bands,
            "dtype": self.dtype.str,
            "nodata": None if self.nodata is None else _nodata_text(self.nodata),
            "tags": [[t.code, t.kind, t.count, t.value.hex()] for t in self.tags],
            "window": list(self.window),
        }

    @classmethod
    def from_attrs(cls, attrs: dict) -> CogLayout:
        nodata = attrs["nodata"]
        tags = [Tag(code, kind, count, bytes.fromhex(value)) for code, kind, count, value in attrs["tags"]]
        window = cast("Window", tuple(attrs["window"]))
        return cls(attrs["bands"], np.dtype(attrs["dtype"]), None if nodata is None else float(nodata), tags, window)


def layout(
    bands: int, dtype, nodata: float | None, crs, transform: Affine, attrs: dict, window: Window, size: tuple[int, int]
) -> CogLayout:
    """The layout of a COG of ``window`` (may reach beyond the ``size`` = (height, width) of the fused pixels,
    which nodata fills) over an output of ``bands`` bands in ``dtype``, georeferenced by ``crs`` and
    ``transform``, with the output store's attributes ``attrs`` (:func:`~.store.output_attrs`).

    Raises:
        InvalidParameterError: the window is empty, or reaches beyond the fused pixels of an output without
            a nodata value.
    """
    r0, r1, c0, c1 = window
    if r0 >= r1 or c0 >= c1:
        raise InvalidParameterError(f"the COG `window` {window} is empty", "window")
    if (r0 < 0 or c0 < 0 or r1 > size[0] or c1 > size[1]) and nodata is None:
        raise InvalidParameterError(
            f"the COG `window` {window} reaches beyond the output's {size[0]} x {size[1]} pixels, which have no "
            "nodata value to fill it with; give the output a fill value or keep the window inside",
            "window",
        )
    tags = _geo_tags(crs, transform * Affine.translation(c0, r0)) if crs is not None else []
    if nodata is not None:
        tags.append(ascii_tag(42113, _nodata_text(nodata)))
    metadata = _gdal_metadata(attrs)
    if metadata is not None:
        tags.append(metadata)
    return CogLayout(bands, np.dtype(dtype), nodata, tags, window)


def stored_layout(store: Path, window: Window | None) -> CogLayout:
    """The layout of a COG of ``window`` (default: the whole output) of the output Zarr store ``store``."""
    attrs = dict(zarr.open_group(str(store), mode="r", zarr_format=2).attrs)
    with rasterio.open(f'ZARR:"{store.resolve()}":/hrms') as src:
        window = window or (0, src.height, 0, src.width)
        coefficients = cast("list[float] | None", attrs.get("transform"))  # older stores lack it: GDAL's then
        transform = Affine(*coefficients) if coefficients else src.transform
        facts = (src.count, src.dtypes[0], src.nodata, src.crs, transform)
        size = (src.height, src.width)
    return layout(*facts, attrs, window, size)


def _gdal_metadata(attrs: dict) -> Tag | None:
    """GDAL's metadata tag (42112) from the output's attributes: the processing record as dataset items
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


# --------------------------------------------------------------------------- the parts store


def is_parts_store(path: str | Path) -> bool:
    """Whether ``path`` is a parts store (an output store is not)."""
    try:
        return PARTS_ATTR in json.loads((Path(path) / ".zattrs").read_text())
    except (OSError, ValueError):
        return False


def open_parts(path: Path) -> tuple[CogLayout, str, int]:
    """The layout, codec and levels of the first pass of the parts store at ``path``.

    Raises:
        StoreError: ``path`` is not a whole parts store.
    """
    try:
        attrs = json.loads((path / ".zattrs").read_text())[PARTS_ATTR]
        return CogLayout.from_attrs(attrs["layout"]), attrs["compress"], attrs["first_levels"]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise StoreError(
            f"{path} is not a whole store of encoded COG tiles ({exc!r}); rerun without `resume` to encode again"
        ) from None


def _create_parts(path: Path, layout: CogLayout, compress: str, levels: int, fingerprint: str) -> None:
    """An empty parts store at ``path`` (what was there removed), with the sums arrays of its level
    ``levels`` when the COG has more levels than the first pass encodes. Made under a temporary name beside
    ``path`` and renamed: a store half made is never taken for one, nor for a folder of the user's."""
    remove_owned(path)
    for leftover in path.parent.glob(f".{path.name}.new-*"):  # of a run killed while it made its store
        shutil.rmtree(leftover, ignore_errors=True)
    made = path.with_name(f".{path.name}.new-{uuid.uuid4().hex[:8]}")
    group = zarr.open_group(str(made), mode="w-", zarr_format=2)
    group.attrs.update(
        {
            OUTPUT_STORE_ATTR: fingerprint,
            PARTS_ATTR: {"layout": layout.to_attrs(), "compress": compress, "first_levels": levels},
        }
    )
    (made / LEDGER).mkdir()
    (made / "parts").mkdir()
    shapes = layout.level_shapes()
    if levels < len(shapes):
        _create_sums(made / f"level{levels}", (layout.bands, *shapes[levels]), _pass_block(levels) >> levels, layout)
    os.replace(made, path)


def _create_sums(folder: Path, shape: tuple[int, int, int], chunk: int, layout: CogLayout) -> None:
    """Zarr arrays ``sums`` (float64) and ``counts`` (uint32) of a pyramid level, one chunk per task's block,
    each chunk with its CRC32C (a damaged one fails its read); what was there is replaced (an assembly run
    again makes its levels again)."""
    chunks = (shape[0], chunk, chunk)
    made = {
        name: zarr.create_array(
            f"{folder}/{name}", shape=shape, dtype=dtype, chunks=chunks, compressors=[Crc32cCodec()], overwrite=True
        )
        for name, dtype in (("sums", "float64"), ("counts", "uint32"))
    }
    made["sums"].attrs["dtype"] = layout.dtype.str


def _pass_block(levels: int) -> int:
    """Edge of the level-0 block whose tiles, and those of ``levels - 1`` overviews, one task encodes."""
    return TILE << (levels - 1)


def _record(path: str, key: str, encoded: tuple[TileEntries, PartSums]) -> None:
    """Enter a first-pass block's tiles in the ledger of the parts store ``path``, with the size and CRC32 of
    each of its parts (written and closed before); atomically, so a ledger entry is whole or absent."""
    entries, parts = encoded
    tmp = Path(path) / LEDGER / f".{key}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps({"tiles": [[*tile, *where] for tile, where in entries.items()], "parts": parts}))
    os.replace(tmp, Path(path) / LEDGER / key)


def _recorded(path: Path, verify: bool = False) -> dict[str, TileEntries]:
    """The ledger's blocks whose parts are all on disk at their recorded size (and, with ``verify``, their
    recorded CRC32: every part read): ``{key: their tiles}``. An entry that cannot be read is not a block."""
    try:
        sizes = {p.name: p.stat().st_size for p in (path / "parts").iterdir()}
        ledger = sorted((path / LEDGER).iterdir())
    except OSError:
        return {}
    blocks = {}
    for entry in ledger:
        if entry.name.startswith("."):  # a ledger entry being written, or left by a killed task
            continue
        try:
            recorded = json.loads(entry.read_text())
            tiles = {(level, i, j): (part, offset, size) for level, i, j, part, offset, size in recorded["tiles"]}
            parts = {part: (int(size), int(crc)) for part, (size, crc) in recorded["parts"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
        if any(sizes.get(part) != size for part, (size, _) in parts.items()):
            continue
        if verify and any(zlib.crc32((path / "parts" / p).read_bytes()) != crc for p, (_, crc) in parts.items()):
            continue
        blocks[entry.name] = tiles
    return blocks


# --------------------------------------------------------------------------- the first pass


def first_levels(chunks: tuple[tuple[int, ...], ...], window: Window, n_levels: int) -> int | None:
    """How many pyramid levels the tasks that fuse blocks of these ``(band, y, x)`` ``chunks`` can encode
    themselves for a COG of ``window`` with ``n_levels`` levels: ``None`` when they cannot (the COG's grid
    does not start at the fused grid's corner or does not cover it, or the blocks are not whole multiples of
    the 512-pixel tiles)."""
    r0, r1, c0, c1 = window
    if (r0, c0) != (0, 0) or r1 < sum(chunks[1]) or c1 < sum(chunks[2]):
        return None
    inner = chunks[1][:-1] + chunks[2][:-1]
    for levels in range(min(LEVELS_PER_PASS, n_levels), 0, -1):
        if all(size % _pass_block(levels) == 0 for size in inner):
            return levels
    return None


def encode_output(
    hrms: xr.DataArray,
    path: str | Path,
    *,
    compress: str,
    window: Window | None = None,
    client=None,
    progress=None,
    resume: bool = False,
) -> WriteReport:
    """Compute ``hrms`` block by block and encode its COG tiles into the parts store ``path`` in the same
    tasks, where its blocks line up with the COG's (:func:`first_levels`); elsewhere into an output Zarr store
    at ``path`` (:func:`~.store.write_output`), which :func:`encode_stored` encodes. Either way ``path`` is
    what :func:`~.export.write_cog` makes the COG from.

    Args:
        hrms: the lazy output (:func:`~pansharp_dist.fusion.pansharpen`).
        path: the store to write.
        compress: the COG's codec (:func:`~.export.check_compress`'s spelling).
        window: the COG's window of ``hrms`` (default: all of it).
        client: a ``distributed.Client``, or ``None`` for the current one, else threads.
        progress: ``callback(done, total)`` over the blocks computed now.
        resume: keep the store a run with the same settings left, and compute only the blocks its ledger
            lists as missing (or whose parts are gone).

    Returns:
        The blocks: the fused ones, and the COG's blocks wholly beyond them (nodata), in all and computed now.

    Raises:
        StoreError: ``resume`` and the store holds the output of other settings, or of another route.
        InvalidParameterError: an empty ``window``, or one reaching beyond an output without nodata.
    """
    path = Path(path)
    data = hrms.data.rechunk({0: -1})  # a task encodes every band of its tiles
    height, width = data.shape[1:]
    window = window or (0, height, 0, width)
    attrs, nodata = output_attrs(hrms), output_nodata(hrms)
    cog = layout(data.shape[0], data.dtype, nodata, hrms.rio.crs, hrms.rio.transform(), attrs, window, (height, width))
    shapes = cog.level_shapes()
    levels = first_levels(data.chunks, window, len(shapes))
    if levels is None:
        return write_output(hrms, path, client, progress, resume=resume)
    fingerprint = digest(attrs["fingerprint"], compress, window, levels)
    finished: dict[str, TileEntries] = {}
    if resume and path.exists():
        if not is_parts_store(path) or json.loads((path / ".zattrs").read_text())[OUTPUT_STORE_ATTR] != fingerprint:
            raise StoreError(
                f"{path} holds the output of a run with other settings (method, adaptation, tile size, scene, "
                "codec or extent, or another version's); rerun without `resume` to start again"
            )
        finished = _recorded(path, verify=True)
    else:
        _create_parts(path, cog, compress, levels, fingerprint)
    first = _FirstPass(str(path), shapes, levels, nodata, compress, window)
    size = first.edge
    tasks, labels = [], []
    for i, j, y0, h, x0, w in block_windows(*data.chunks[1:]):
        if f"{y0}_{x0}" not in finished:
            tasks.append(dask.delayed(_fuse_and_encode, pure=False)(TaskInput(data.blocks[0, i, j]), y0, x0, first))
            labels.append(f"output block at PAN rows {y0}:{y0 + h}, columns {x0}:{x0 + w}")
    beyond = [  # COG blocks wholly outside the fused pixels: nodata
        (y, x) for y in range(0, window[1], size) for x in range(0, window[3], size) if y >= height or x >= width
    ]
    for y, x in beyond:
        if f"{y}_{x}" not in finished:
            tasks.append(dask.delayed(_encode_nodata, pure=False)(data.shape[0], data.dtype, y, x, first))
            labels.append(f"nodata block at rows {y}:{y + size}, columns {x}:{x + size}")
    resources = json.loads(hrms.attrs.get("resources") or "{}")
    for _ in run_tasks(client, tasks, progress, labels, resources=resources):
        pass
    return WriteReport(blocks=len(data.chunks[1]) * len(data.chunks[2]) + len(beyond), computed=len(tasks))


@dataclass(frozen=True)
class _FirstPass:
    """What every task of a first pass shares: the parts store ``path``, every level's ``(height, width)``,
    the ``levels`` it encodes, nodata, the codec and the COG's window of the output."""

    path: str
    shapes: list[tuple[int, int]]
    levels: int
    nodata: float | None
    compress: str
    window: Window

    @property
    def edge(self) -> int:
        """The edge of its pyramid blocks at full resolution."""
        return _pass_block(self.levels)

    def encode(self, pixels: np.ndarray, y: int, x: int) -> tuple[TileEntries, PartSums]:
        """Encode the COG block at ``(y, x)`` (COG pixels) from its ``(B, h, w)`` pixels, padded with nodata to
        its size in the COG where they end inside it."""
        r0, r1, c0, c1 = self.window
        shape = (min(self.edge, r1 - r0 - y), min(self.edge, c1 - c0 - x))
        if pixels.shape[1:] != shape:
            padded = np.full((pixels.shape[0], *shape), self.nodata, pixels.dtype)
            padded[:, : pixels.shape[1], : pixels.shape[2]] = pixels
            pixels = padded
        return _encode_levels(pixels, self.path, self.shapes, 0, self.levels, y, x, self.nodata, self.compress)


def _fuse_and_encode(block: TaskInput, y0: int, x0: int, first: _FirstPass) -> int:
    """Compute the output block at PAN ``(y0, x0)`` and encode the COG blocks it holds (those that start in
    it); enters them in the ledger as ``{y0}_{x0}``. Returns the bytes of the fused pixels."""
    (pixels,) = block.compute()
    entries: TileEntries = {}
    parts: PartSums = {}
    for y in range(y0, y0 + pixels.shape[1], first.edge):
        for x in range(x0, x0 + pixels.shape[2], first.edge):
            tiles, sums = first.encode(pixels[:, y - y0 : y - y0 + first.edge, x - x0 : x - x0 + first.edge], y, x)
            entries.update(tiles)
            parts.update(sums)
    _record(first.path, f"{y0}_{x0}", (entries, parts))
    return int(pixels.nbytes)


def _encode_nodata(bands: int, dtype: np.dtype, y: int, x: int, first: _FirstPass) -> int:
    """Encode the COG block at ``(y, x)``, which lies outside the fused pixels, as nodata."""
    _record(first.path, f"{y}_{x}", first.encode(np.full((bands, 0, 0), first.nodata, dtype), y, x))
    return 0


def encode_stored(store: Path, path: Path, *, compress: str, window: Window | None, client=None, progress=None) -> None:
    """The first pass from the output Zarr store ``store`` (its ``window``): a parts store at ``path``.

    Raises:
        StoreError: a chunk of the output store is missing or damaged.
    """
    cog = stored_layout(store, window)
    shapes = cog.level_shapes()
    levels = min(LEVELS_PER_PASS, len(shapes))
    _create_parts(path, cog, compress, levels, digest(str(store), compress, cog.window))
    first = _FirstPass(str(path), shapes, levels, cog.nodata, compress, cog.window)
    tasks, labels = [], []
    for y0, x0 in _blocks(shapes[0], first.edge):
        tasks.append(dask.delayed(_read_and_encode, pure=False)(str(store / "hrms"), y0, x0, first))
        labels.append(f"COG level 0 block at rows {y0}:{y0 + first.edge}, columns {x0}:{x0 + first.edge}")
    for _ in run_tasks(client, tasks, progress, labels):
        pass


def _read_and_encode(source: str, y0: int, x0: int, first: _FirstPass) -> int:
    """Encode the COG block at ``(y0, x0)`` read from the output array ``source``; enters it in the ledger."""
    block = _read_output(source, y0, x0, first.edge, first.window, first.nodata)
    _record(first.path, f"{y0}_{x0}", first.encode(block, y0, x0))
    return int(block.nbytes)


def _blocks(shape: tuple[int, int], size: int = BLOCK) -> list[tuple[int, int]]:
    return [(y0, x0) for y0 in range(0, shape[0], size) for x0 in range(0, shape[1], size)]


def _read_output(source: str, y0: int, x0: int, size: int, window: Window, nodata: float | None) -> np.ndarray:
    """The COG's block of ``size`` at ``(y0, x0)``, all bands: ``(B, h, w)`` in the store's dtype, read from
    the output store's ``window`` (COG pixel ``(y, x)`` is store pixel ``(row0 + y, col0 + x)``), nodata
    beyond the store.

    Raises:
        StoreError: a chunk there is missing, fails its checksum or cannot be decompressed (a damaged disk, an
            edited store).
    """
    array = zarr.open_array(source, mode="r")
    bands, height, width = array.shape
    r0, r1, c0, c1 = window
    rows, cols = slice(r0 + y0, min(r0 + y0 + size, r1)), slice(c0 + x0, min(c0 + x0 + size, c1))
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


# --------------------------------------------------------------------------- encoding a pyramid block


def _encode_levels(
    source: np.ndarray | str,
    path: str,
    shapes: list[tuple[int, int]],
    first: int,
    count: int,
    y0: int,
    x0: int,
    nodata: float | None,
    compress: str,
) -> tuple[TileEntries, PartSums]:
    """Encode the tiles of levels ``first`` to ``first + count - 1`` under the block at ``(y0, x0)`` of level
    ``first`` into the parts ``{first}_{y0}_{x0}.{level}`` of the parts store ``path``, one per level; where
    the COG has a level after those (``shapes``: every level's ``(height, width)``), add the block's
    valid-pixel sums and counts of that level to its arrays.

    ``source`` is the block's pixels ``(B, h, w)`` (level 0), or the folder of the ``sums`` and ``counts``
    arrays of level ``first``, which the pass before wrote (a :data:`BLOCK` of them). Sums and counts of
    valid pixels carried down the pyramid make every overview pixel the mean over its whole footprint at
    full resolution, as GDAL computes it. Part names carry this run's id: a copy of the task running at the
    same time (its worker thought lost) writes its own, and the ledger entry, written last, names one run's.

    Returns the tiles' places and each part's size and CRC32, summed as it is written.
    """
    below = first + count < len(shapes)
    if isinstance(source, np.ndarray):
        dtype, bands = source.dtype, source.shape[0]
    else:  # float64 sums are 4x the pixels' bytes: read them band by band
        sums_in, counts_in = zarr.open_array(f"{source}/sums", mode="r"), zarr.open_array(f"{source}/counts", mode="r")
        dtype, bands = np.dtype(cast(str, sums_in.attrs["dtype"])), sums_in.shape[0]  # written by _create_sums
        rows, cols = slice(y0, y0 + BLOCK), slice(x0, x0 + BLOCK)

        def intact(array: zarr.Array, name: str, b: int) -> np.ndarray:
            remedy = "rerun with `resume` to encode the blocks above it again"
            key = (slice(b, b + 1), rows, cols)
            return read_intact(array, Path(source) / name, key, path, f"level {first} {name} at", remedy)[0]

    levels: list[np.ndarray] = []
    carried: tuple[np.ndarray, np.ndarray] | None = None
    for b in range(bands):
        if isinstance(source, np.ndarray):
            band = source[b]
            valid = np.ones(band.shape, bool) if nodata is None else _valid(band, nodata)
            sums, counts = np.where(valid, band, 0).astype(np.float64), valid.astype(np.uint32)
        else:
            sums, counts = intact(sums_in, "sums", b), intact(counts_in, "counts", b)
            band = _mean(sums, counts, dtype, nodata)
        pyramid = [band]
        for k in range(1, count + below):
            # a level's rows past its height (an odd last row's cell, a last block of one row) have no pixel
            height, width = shapes[first + k][0] - (y0 >> k), shapes[first + k][1] - (x0 >> k)
            sums, counts = _cell_sums(sums)[:height, :width], _cell_sums(counts)[:height, :width]
            if k < count:
                pyramid.append(_mean(sums, counts, dtype, nodata))
        if not levels:
            levels = [np.empty((bands, *level.shape), dtype) for level in pyramid]
        for level, pixels in zip(levels, pyramid):
            level[b] = pixels
        if below:
            if carried is None:
                carried = (np.empty((bands, *sums.shape)), np.empty((bands, *counts.shape), np.uint32))
            carried[0][b], carried[1][b] = sums, counts
    entries: TileEntries = {}
    parts: PartSums = {}
    run = uuid.uuid4().hex[:8]  # a task run twice at once (a worker thought lost) writes parts of its own
    for k, level in enumerate(levels):
        name, crc = f"{first}_{y0}_{x0}.{first + k}.{run}", 0
        with open(Path(path) / "parts" / name, "wb") as f:
            for i in range(-(-level.shape[1] // TILE)):
                for j in range(-(-level.shape[2] // TILE)):
                    tile = np.full((TILE, TILE, bands), nodata or 0, dtype)
                    piece = level[:, i * TILE : (i + 1) * TILE, j * TILE : (j + 1) * TILE]
                    tile[: piece.shape[1], : piece.shape[2]] = piece.transpose(1, 2, 0)
                    data = encode_tile(tile, compress)
                    entries[(first + k, (y0 >> k) // TILE + i, (x0 >> k) // TILE + j)] = (name, f.tell(), len(data))
                    frame = framed(data)
                    crc = zlib.crc32(frame, crc)
                    f.write(frame)
            parts[name] = (f.tell(), crc)
    if carried is not None:
        next_level = f"{path}/level{first + count}"
        region = (
            slice(None),
            slice(y0 >> count, (y0 >> count) + carried[0].shape[1]),
            slice(x0 >> count, (x0 >> count) + carried[0].shape[2]),
        )
        for name, values in zip(("sums", "counts"), carried):
            array = zarr.open_array(f"{next_level}/{name}", mode="r+")
            array.with_config({"write_empty_chunks": True})[region] = values  # an absent chunk is then damage
    return entries, parts


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


# --------------------------------------------------------------------------- the remaining passes, the file


def assemble(path: Path, out: Path, *, client=None, progress=None, bigtiff: bool = False) -> int:
    """Write the COG of the parts store ``path`` at ``out`` (not atomic: the caller writes a temporary name):
    the passes of the levels the first pass left, then the header and the parts in COG order.

    Returns the COG's size in bytes. ``progress`` is ``callback(done, total)`` over those passes' blocks and
    the assembly.

    Raises:
        StoreError: a block of the first pass is missing from the ledger, or its parts are gone.
    """
    cog, compress, first = open_parts(path)
    shapes = cog.level_shapes()
    tiles: TileEntries = {}
    for entries in _recorded(path).values():
        tiles.update(entries)
    missing = {(n, i, j) for n in range(min(first, len(shapes))) for i, j in _tile_indexes(shapes[n])}.difference(tiles)
    if missing:
        level, row, col = min(missing)
        raise StoreError(
            f"{path} lacks {len(missing)} encoded COG tiles (level {level}, row {row}, column {col} the first): a "
            "run stopped before they were written, or their parts were removed; rerun with `resume` to encode them"
        )
    passes = range(first, len(shapes), LEVELS_PER_PASS)
    total = sum(len(_blocks(shapes[n])) for n in passes) + 1
    done = 0

    def advance(n: int, _total: int) -> None:
        if progress:
            progress(done + n, total)

    for level in passes:
        count = min(LEVELS_PER_PASS, len(shapes) - level)
        if level + count < len(shapes):
            _create_sums(path / f"level{level + count}", (cog.bands, *shapes[level + count]), BLOCK >> count, cog)
        source = str(path / f"level{level}")
        tasks, labels = [], []
        for y0, x0 in _blocks(shapes[level]):
            args = (source, str(path), shapes, level, count, y0, x0, cog.nodata, compress)
            tasks.append(dask.delayed(_encode_levels, pure=False)(*args))
            labels.append(f"COG level {level} block at rows {y0}:{y0 + BLOCK}, columns {x0}:{x0 + BLOCK}")
        for encoded in run_tasks(client, tasks, advance, labels):
            tiles.update(cast("tuple[TileEntries, PartSums]", encoded)[0])
        done += len(tasks)
    levels = [Level(w, h, tuple(tiles[(n, *ij)][2] for ij in _tile_indexes((h, w)))) for n, (h, w) in enumerate(shapes)]
    header = cog_header(levels, cog.dtype, cog.bands, compress, cog.tags, bigtiff=bigtiff)
    order = [
        (str(path / "parts" / tiles[(n, *ij)][0]), tiles[(n, *ij)][1], tiles[(n, *ij)][2] + FRAME)
        for n in reversed(range(len(shapes)))
        for ij in _tile_indexes(shapes[n])
    ]
    written = dask.delayed(_assemble, pure=False)(str(out), header, _runs(order))
    (size,) = run_tasks(client, [written], advance, [f"assembling {out}"])
    return cast(int, size)


def _tile_indexes(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """``(row, column)`` of the tiles of a level of ``shape``, row-major."""
    return [(i, j) for i in range(-(-shape[0] // TILE)) for j in range(-(-shape[1] // TILE))]


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

    The parts stay: a retried assembly (its worker lost) finds them, and so does a resumed run.

    Raises:
        StoreError: a part is gone or shorter than its runs.
    """
    with open(path, "wb") as dst:
        dst.write(header)
        dst.flush()
        for part, offset, size in runs:
            try:
                with open(part, "rb") as src:
                    _copy_range(src, dst, offset, size)
            except (FileNotFoundError, EOFError) as exc:
                raise StoreError(
                    f"{exc}: the COG's encoded tiles were changed while it was assembled; rerun with `resume` to "
                    "encode the blocks again"
                ) from None
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
            raise EOFError(f"COG part {src.name} ends at byte {offset}, before {end}")
        dst.write(chunk)
        offset += len(chunk)
    dst.flush()
