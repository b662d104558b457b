"""Scenes: a PAN band and MS bands on aligned grids, read lazily and validated.

A :class:`Scene` holds two dask-backed :class:`xarray.DataArray` objects that
carry their coordinates and CRS (rioxarray): ``pan`` with dims ``(y, x)`` and
``ms`` with dims ``(band, y, x)``, on one grid where MS pixel ``(i, j)`` covers
exactly PAN pixels ``[r*i, r*i + r) x [r*j, r*j + r)``, ``r`` the integer
resolution ratio (:mod:`pansharp_dist.alignment` finds that grid from the
geotransforms, and says which output extent covers what).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import dask.array as da
import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.errors import RasterioIOError

from .alignment import Alignment, RasterGrid, align, extent_window
from .alignment import NotGeoreferencedWarning as NotGeoreferencedWarning  # its name here before alignment.py
from .errors import (
    BandCountError,
    CorruptInputError,
    InputNotFoundError,
    InvalidParameterError,
    UnsupportedDtypeError,
)
from .resample import position
from .sensors import find_sensor, get_sensor, sensor_ids
from .stats import SceneStats

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
GDAL_SCHEMES = {"http", "https", "s3", "gs", "gcs", "az", "azure", "abfs", "oss", "zip", "tar", "vsi"}
_SENSOR_TAGS = ("sensor", "satellite", "satelliteid", "satid", "platform", "spacecraft")


@dataclass(frozen=True)
class Scene:
    """A PAN + MS pair on aligned grids.

    Attributes:
        pan: PAN counts or reflectance, dims ``(y, x)``, native dtype, lazy.
        ms: MS bands, dims ``(band, y, x)`` at MS resolution, native dtype, lazy;
            MS pixel ``(i, j)`` covers PAN pixels ``[r*i, r*i+r) x [r*j, r*j+r)``.
        ratio: integer PAN/MS resolution ratio ``r``.
        sensor: registry id of the sensor (``"wv3"``), or ``None`` if unknown.
        pan_nodata: PAN value that marks missing pixels, or ``None``.
        ms_nodata: MS value that marks missing pixels, or ``None``.
        name: a short label for logs and reports.
        stats: per-scene statistics, when known (scenes opened from a tile store).
        alignment: how the input rasters lie on this grid (their footprints: :meth:`output_window`), for
            scenes opened from them.
        ms_scales, ms_offsets: each MS band's declared scale and offset (physical value = stored value x
            scale + offset), or ``None`` when the MS declares none.
    """

    pan: xr.DataArray
    ms: xr.DataArray
    ratio: int
    sensor: str | None = None
    pan_nodata: float | None = None
    ms_nodata: float | None = None
    name: str = "scene"
    stats: SceneStats | None = None
    alignment: Alignment | None = field(default=None, repr=False)
    ms_scales: tuple[float, ...] | None = None
    ms_offsets: tuple[float, ...] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """PAN grid size ``(height, width)`` in pixels."""
        return self.pan.shape[0], self.pan.shape[1]

    @property
    def bands(self) -> int:
        """Number of MS bands."""
        return self.ms.shape[0]

    @property
    def crs(self) -> Any:
        """The CRS of both grids (``rasterio.crs.CRS``) or ``None``."""
        return self.pan.rio.crs

    @property
    def transform(self) -> Affine:
        """Affine transform of the PAN grid (pixel corner convention)."""
        return self.pan.rio.transform()

    def output_window(self, extent: str = "pan") -> tuple[int, int, int, int]:
        """The output's window of this grid ``(row0, row1, col0, col1)`` for ``extent``: ``pan`` (the PAN
        raster's grid), ``overlap`` (this grid: the pixels both inputs cover) or ``union`` (both footprints);
        it may reach beyond ``0 .. height`` and ``0 .. width``, where the output is nodata.

        Raises:
            InvalidParameterError: an unknown extent, or ``pan``/``union`` for a scene read from a tile store.
        """
        if self.alignment is None:
            if extent != "overlap":
                raise InvalidParameterError(
                    f"the input footprints of {self.name} are not known here (a scene read from a tile store): "
                    "open it from its PAN and MS files for `extent` pan or union",
                    "extent",
                )
            return 0, self.shape[0], 0, self.shape[1]
        return extent_window(self.alignment, extent)

    def rechunk(self, pan_chunk: int) -> Scene:
        """The same scene with PAN chunks of ``pan_chunk`` and MS chunks aligned to them."""
        if pan_chunk % self.ratio:
            raise InvalidParameterError(
                f"chunk size {pan_chunk} is not a multiple of the resolution ratio {self.ratio}"
            )
        ms_chunk = pan_chunk // self.ratio
        return replace(
            self,
            pan=self.pan.chunk({"y": pan_chunk, "x": pan_chunk}),
            ms=self.ms.chunk({"band": -1, "y": ms_chunk, "x": ms_chunk}),
        )


@dataclass(frozen=True)
class _InputRaster:
    """One input raster before alignment: a lazy array and its grid."""

    data: xr.DataArray  # (band, y, x)
    transform: Affine | None  # None without georeferencing
    crs: Any
    nodata: float | None
    sensor: str | None
    source: str
    scales: tuple[float, ...] | None = None  # each band's scale and offset (value = count x scale + offset),
    offsets: tuple[float, ...] | None = None  # None when they are 1 and 0

    @property
    def grid(self) -> RasterGrid:
        _, height, width = self.data.shape
        return RasterGrid(height, width, self.transform, self.crs, self.source)


def open_scene(
    pan: str | Path | xr.DataArray,
    ms: str | Path | xr.DataArray,
    sensor: str | None = None,
    *,
    patch: int | None = None,
    chunk: int = 2048,
) -> Scene:
    """Open and validate a PAN + MS pair as a lazy :class:`Scene`.

    Args:
        pan: PAN GeoTIFF/COG path or URL (GDAL, ``/vsi*`` or fsspec), a ``.mat`` file, or an
            :class:`xarray.DataArray` with a CRS and transform (``rioxarray.open_rasterio``, odc-stac).
        ms: MS, the same kinds (a ``.mat`` file may equal ``pan``); a DataArray's dims are ``(band, y, x)``.
        sensor: sensor name or alias; if ``None``, taken from the file metadata.
        patch: index of the patch in ``.mat`` patch stacks (``pan``/``ms`` keys).
        chunk: PAN chunk size in pixels; MS chunks are ``chunk // ratio``.

    Raises:
        PansharpError: a subclass that says what is wrong with the input (or with the sensor files named
            in ``PANSHARP_SENSORS``, read here first so that a broken one is never silently passed over).
    """
    sensor_ids()
    pan_r = _read_input(pan, "PAN", patch)
    ms_r = _read_input(ms, "MS", patch)
    if pan_r.data.shape[0] != 1:
        raise BandCountError(
            f"PAN {pan_r.source} has {pan_r.data.shape[0]} bands; `pan` needs the single-band "
            "panchromatic image (select its band with gdal_translate -b 1)"
        )
    if ms_r.data.shape[0] < 2:
        raise BandCountError(
            f"MS {ms_r.source} has {ms_r.data.shape[0]} band; `ms` needs the multispectral image "
            "with two or more bands (did you swap `pan` and `ms`?)"
        )
    alignment = align(pan_r.grid, ms_r.grid)
    chosen = get_sensor(sensor).id if sensor is not None else (pan_r.sensor or ms_r.sensor)
    if chosen == "unknown":
        chosen = None
    pan_da = _crop(pan_r, alignment.pan).isel(band=0, drop=True)
    pan_da, ms_da = _grid(pan_da, _aligned_ms(ms_r, alignment), pan_r, alignment.pan, alignment.ratio)
    scene = Scene(
        pan=pan_da.rename("pan"),
        ms=ms_da.rename("ms"),
        ratio=alignment.ratio,
        sensor=chosen,
        pan_nodata=pan_r.nodata,
        ms_nodata=ms_r.nodata,
        name=str(pan.name or "scene") if isinstance(pan, xr.DataArray) else Path(str(pan)).stem,
        alignment=alignment,
        ms_scales=ms_r.scales,
        ms_offsets=ms_r.offsets,
    )
    return scene.rechunk(_fit_chunk(chunk, alignment.ratio))


def _fit_chunk(chunk: int, ratio: int) -> int:
    if chunk < ratio:
        raise InvalidParameterError(f"chunk size {chunk} is smaller than the resolution ratio {ratio}")
    return chunk - chunk % ratio


# --------------------------------------------------------------------------- readers


def _read_input(path: str | Path | xr.DataArray, role: str, patch: int | None) -> _InputRaster:
    if isinstance(path, xr.DataArray):
        return _from_dataarray(path, role)
    text = str(path)
    if text.lower().endswith(".mat"):
        return _read_mat(_local_path(text, role), role, patch)
    return _read_raster(text, role)


def _local_path(text: str, role: str) -> Path:
    parsed = urlparse(text)
    local = Path(parsed.path) if parsed.scheme == "file" else Path(text)
    try:
        local.stat()
    except FileNotFoundError:
        raise InputNotFoundError(f"{role} file not found: {text}; check the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputNotFoundError(f"{role} {text} is a loop of symbolic links; point the link at the file") from None
        raise CorruptInputError(f"cannot read {role} {text} ({exc.strerror or exc})") from None
    return local


def _raster_target(text: str, role: str) -> tuple[str, dict]:
    """What to hand rasterio: a local path, a GDAL URL, or an fsspec opener."""
    parsed = urlparse(text)
    scheme = parsed.scheme.split("+")[0]
    if len(scheme) <= 1 or scheme == "file":  # a path (or a Windows drive letter)
        return str(_local_path(text, role)), {}
    if scheme in GDAL_SCHEMES:
        return text, {}
    import fsspec

    fs, fs_path = fsspec.core.url_to_fs(text)
    if not fs.exists(fs_path):
        raise InputNotFoundError(f"{role} not found at {text}; check the URL")
    return text, {"opener": fs}


def _read_raster(text: str, role: str) -> _InputRaster:
    target, open_kwargs = _raster_target(text, role)
    try:
        with rasterio.open(target, **open_kwargs) as src:
            _check_dtype(src.dtypes[0], role, text)
            _check_readable(src)
            transform, crs, nodata, tags = src.transform, src.crs, src.nodata, src.tags()
            scales, offsets = _radiometry(src.scales, src.offsets)
    except RasterioIOError as exc:
        if "No such file" in str(exc) or "does not exist" in str(exc) or "404" in str(exc):
            raise InputNotFoundError(f"{role} not found: {text}; check the path or URL") from None
        raise CorruptInputError(
            f"{role} {text} is not a readable raster ({_first_line(exc)}); re-download or re-export the file"
        ) from None
    if crs is None and transform == Affine.identity():
        transform = None
    data = rioxarray.open_rasterio(target, lock=False, cache=False, **open_kwargs)
    if not isinstance(data, xr.DataArray):  # a file of subdatasets opens as a Dataset (or a list of them)
        raise CorruptInputError(
            f"{role} {text} holds several rasters (subdatasets), not one image; point at one of them"
        )
    shape = cast("tuple[int, int, int]", data.shape)  # (band, y, x)
    reader = WindowReader(target, role, shape, str(data.dtype), open_kwargs)
    side = READ_CHUNK[role]
    data = data.copy(data=da.from_array(reader, chunks=(-1, side, side), meta=np.empty((0, 0, 0), data.dtype)))
    if nodata is None:
        nodata = 0.0
    return _InputRaster(data, transform, crs, float(nodata), _sensor_from_tags(tags), text, scales, offsets)


def _radiometry(
    scales: tuple[float, ...], offsets: tuple[float, ...]
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Each band's scale and offset, or ``None`` for both when they are all 1 and 0 (no radiometry declared)."""
    if all(v == 1 for v in scales) and all(v == 0 for v in offsets):
        return None, None
    return tuple(float(v) for v in scales), tuple(float(v) for v in offsets)


def _from_dataarray(data: xr.DataArray, role: str) -> _InputRaster:
    """An input given as a DataArray: its grid from rioxarray (``rio.crs``, ``rio.transform()``), its nodata
    from ``rio.nodata`` (else 0, as for files); read lazily in the chunks a file would be read in."""
    source = f"{role} DataArray {data.name!r}" if data.name is not None else f"{role} DataArray"
    if data.ndim == 2:
        data = data.expand_dims(band=[1])
    if data.ndim != 3 or set(data.dims) != {"band", "y", "x"}:
        raise BandCountError(f"{source} has dims {data.dims}; give (band, y, x) or (y, x)")
    data = data.transpose("band", "y", "x")
    _check_dtype(str(data.dtype), role, source)
    crs = data.rio.crs
    transform = data.rio.transform() if crs is not None else None
    nodata = data.rio.nodata if data.rio.nodata is not None else data.rio.encoded_nodata
    bands = data.sizes["band"]
    try:  # rioxarray's attributes, one value or one a band
        scales, offsets = _radiometry(
            tuple(np.broadcast_to(data.attrs.get("scales", data.attrs.get("scale_factor", 1.0)), bands)),
            tuple(np.broadcast_to(data.attrs.get("offsets", data.attrs.get("add_offset", 0.0)), bands)),
        )
    except ValueError:
        raise CorruptInputError(
            f"{source}: its `scales`/`offsets` attributes do not give one value or one a band for its {bands} "
            "bands; fix or drop them"
        ) from None
    side = READ_CHUNK[role]
    data = data.chunk({"band": -1, "y": side, "x": side})
    nodata_value = float(nodata) if nodata is not None else 0.0
    return _InputRaster(data, transform, crs, nodata_value, None, source, scales, offsets)


# Pixels per side of one read. An MS read of 512 pixels covers one 2048-pixel PAN block at ratio 4
# (half of one at ratio 2), so no MS read is shared by the blocks of two rows and held in a
# worker's memory until the second row is written.
READ_CHUNK = {"PAN": 2048, "MS": 512}


@dataclass(frozen=True)
class WindowReader:
    """Windows of a raster for dask (``reader[bands, rows, cols]``), each read on the worker that needs it.

    A window that cannot be decoded raises :class:`CorruptInputError` naming the
    file and the file's own block (tile or strip) that is damaged.
    """

    target: str
    role: str
    shape: tuple[int, int, int]
    dtype: str
    open_kwargs: dict

    @property
    def ndim(self) -> int:
        return 3

    def __getitem__(self, key: tuple[slice | int, ...]) -> np.ndarray:
        key = tuple(key) + (slice(None),) * (3 - len(key))
        squeeze = tuple(axis for axis, k in enumerate(key) if isinstance(k, (int, np.integer)))
        bands, rows, cols = (
            range(*k.indices(n)) if isinstance(k, slice) else range(int(k), int(k) + 1) for k, n in zip(key, self.shape)
        )
        if rows.step != 1 or cols.step != 1:
            raise IndexError(f"strided reads are not supported: {key}")
        window = ((rows.start, rows.stop), (cols.start, cols.stop))
        indexes = [b + 1 for b in bands]
        with rasterio.open(self.target, **self.open_kwargs) as src:
            try:
                return src.read(indexes, window=window).squeeze(axis=squeeze)
            except RasterioIOError as exc:
                detail, where = _first_line(exc.__cause__ or exc), _damaged_block(src, indexes, window)
        # raised outside the handler: a chained GDAL error would not unpickle on the Dask client
        raise CorruptInputError(
            f"{self.role} {self.target}: {where} cannot be read ({detail}); "
            "the file is damaged: re-download or re-export it"
        )


def _damaged_block(src: rasterio.DatasetReader, indexes: list[int], window) -> str:
    """Which of the file's own blocks inside ``window`` fails to decode, in words."""
    (r0, r1), (c0, c1) = window
    for _, block in src.block_windows(1):
        if (
            block.row_off + block.height <= r0
            or block.row_off >= r1
            or block.col_off + block.width <= c0
            or block.col_off >= c1
        ):
            continue
        try:
            src.read(indexes, window=block)
        except RasterioIOError:
            return (
                f"the block at rows {block.row_off}:{block.row_off + block.height}, "
                f"columns {block.col_off}:{block.col_off + block.width}"
            )
    return f"the window at rows {r0}:{r1}, columns {c0}:{c1}"


def _check_dtype(dtype: str, role: str, source: str) -> None:
    if dtype not in SUPPORTED_DTYPES:
        raise UnsupportedDtypeError(
            f"{role} {source} has data type {dtype}; supported are {', '.join(SUPPORTED_DTYPES)} "
            "(convert with gdal_translate -ot UInt16 or -ot Float32)"
        )


def _check_readable(src: rasterio.DatasetReader) -> None:
    """Read the first and the last pixel so that truncated files fail here, not mid-run.

    One pixel reads one block; the last block is where a cut-off file breaks.
    """
    for row, col in ((0, 0), (src.height - 1, src.width - 1)):
        src.read(window=((row, row + 1), (col, col + 1)))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _sensor_from_tags(tags: dict[str, str]) -> str | None:
    for key, value in tags.items():
        if key.lower() in _SENSOR_TAGS:
            found = find_sensor(value)
            if found is not None:
                return found.id
    return None


def _read_mat(path: Path, role: str, patch: int | None) -> _InputRaster:
    """Read a MATLAB research file (``I_PAN``/``I_MS`` or ``pan``/``ms`` stacks)."""
    arrays = _load_mat(path)
    keys = {"PAN": ("I_PAN", "pan"), "MS": ("I_MS", "I_MS_LR", "ms")}[role]
    key = next((k for k in keys if k in arrays), None)
    if key is None:
        raise CorruptInputError(
            f"{path} holds no {role} array (looked for {', '.join(keys)}; found "
            f"{', '.join(sorted(arrays)) or 'nothing'})"
        )
    arr = np.asarray(arrays[key])
    stacked = key in ("pan", "ms")
    dims = (3, 4) if stacked else (2, 3)
    if arr.ndim not in dims or arr.dtype.kind not in "uif" or 0 in arr.shape:
        raise CorruptInputError(
            f"{path}: {key} is a {arr.ndim}-D {arr.dtype} array of shape {arr.shape}; a {role} "
            f"{'stack' if stacked else 'image'} is {' or '.join(f'{d}-D' for d in dims)} numbers "
            f"({'patch, ' if stacked else ''}rows, columns{'' if role == 'PAN' and not stacked else ', bands'})"
        )
    if stacked:
        n = arr.shape[0]
        if patch is None:
            raise InvalidParameterError(f"{path} is a stack of {n} patches; choose one with `patch=N`, 0 <= N < {n}")
        if not 0 <= patch < n:
            raise InvalidParameterError(f"patch {patch} is out of range; {path} holds patches 0..{n - 1}")
        arr = arr[patch]
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)  # (band, y, x)
    _check_dtype(str(arr.dtype), role, str(path))
    data = xr.DataArray(da.from_array(arr, chunks=(-1, 2048, 2048)), dims=("band", "y", "x"))
    data = data.assign_coords(band=np.arange(1, arr.shape[0] + 1))
    sensor_value = np.ravel(arrays.get("sensor", []))
    sensor = find_sensor(str(sensor_value[0])) if sensor_value.size else None  # an empty field: no sensor
    return _InputRaster(data, None, None, None, sensor.id if sensor else None, str(path))


def _load_mat(path: Path) -> dict[str, Any]:
    import scipy.io

    try:
        return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    except NotImplementedError:  # MATLAB v7.3: HDF5, column-major
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return {k: np.asarray(f[k]).T for k in f.keys() if isinstance(f[k], h5py.Dataset)}
        except (OSError, ValueError, TypeError, KeyError) as exc:  # a v7.3 header on what is not HDF5
            raise CorruptInputError(f"{path} is not a readable MATLAB v7.3 file ({_first_line(exc)})") from None
    except (ValueError, OSError, TypeError) as exc:
        raise CorruptInputError(f"{path} is not a readable MATLAB file ({_first_line(exc)})") from None


# --------------------------------------------------------------------------- aligned grids


def _crop(raster: _InputRaster, win: tuple[int, int, int, int]) -> xr.DataArray:
    r0, r1, c0, c1 = win
    return raster.data.isel(y=slice(r0, r1), x=slice(c0, c1))


def _aligned_ms(ms: _InputRaster, alignment: Alignment) -> xr.DataArray:
    """The MS on the aligned grid: cropped, or resampled where its grid is off the PAN's by a fraction."""
    if alignment.ms_rows is None or alignment.ms_cols is None:
        return _crop(ms, alignment.ms)
    moved = position(ms.data.data, alignment.ms_rows, alignment.ms_cols, ms.nodata, READ_CHUNK["MS"])
    return xr.DataArray(moved, dims=("band", "y", "x"), coords={"band": ms.data["band"].values})


def _grid(pan: xr.DataArray, ms: xr.DataArray, pan_r: _InputRaster, win: tuple[int, int, int, int], ratio: int):
    """Coordinates and CRS of the aligned grids: PAN's own, MS exactly ``ratio`` times coarser."""
    r0, _, c0, _ = win
    base = pan_r.transform if pan_r.transform is not None else Affine.identity()
    pan_t = base @ Affine.translation(c0, r0)
    ms_t = pan_t @ Affine.scale(ratio)
    pan = with_grid(pan, pan_t, pan_r.crs)
    ms = with_grid(ms, ms_t, pan_r.crs)
    return pan, ms


def with_grid(arr: xr.DataArray, t: Affine, crs: Any) -> xr.DataArray:
    """``arr`` with pixel-centre x/y coordinates of transform ``t`` and ``crs`` (rioxarray)."""
    ny, nx = arr.sizes["y"], arr.sizes["x"]
    x = t.c + t.a * (np.arange(nx) + 0.5)
    y = t.f + t.e * (np.arange(ny) + 0.5)
    arr = arr.drop_vars([c for c in arr.coords if c not in arr.dims and c != "band"])
    arr = arr.assign_coords(x=("x", x), y=("y", y))
    arr.attrs = {}
    arr.encoding = {}
    if crs is not None:
        arr = arr.rio.write_crs(crs)
    return arr.rio.write_transform(t)
