"""Alignment: where the MS lies on the PAN grid, and which grid the output covers.

Pansharpening needs MS pixel ``(i, j)`` to cover exactly PAN pixels
``[r*i, r*i + r) x [r*j, r*j + r)``. :func:`align` finds the integer ratio
``r`` and the PAN window of that aligned grid from the two geotransforms,
as GDAL's pansharpened VRT positions the spectral bands by georeference:

* where the MS grid falls on whole PAN pixels (the usual case), the aligned
  grid is the MS's own and the MS is cropped, not resampled;
* where it is off by a fraction of a PAN pixel, or its pixel size is not
  exactly ``r`` PAN pixels, each aligned MS pixel is computed at its true
  place by cubic convolution (:func:`~pansharp_dist.resample.position`).

Pairs without georeferencing are taken to share their top-left corner.

The output's extent (:func:`extent_window`) is a window of the aligned grid,
chosen as GDAL's ``-spat_adjust`` chooses it: the PAN raster's own grid
(``pan``, the default), the pixels both inputs cover (``overlap``) or the
union of both footprints (``union``); pixels the MS does not reach are nodata.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from affine import Affine

from .errors import CRSMismatchError, InvalidParameterError, NoOverlapError, ResolutionRatioError
from .resample import AxisMap
from .tiling import Window

RATIO_TOLERANCE = 0.01
"""Largest relative difference between the pixel-size ratio and the integer ``r`` it is taken for."""
POSITION_TOLERANCE = 0.1
"""PAN pixels by which the MS grid may be off the aligned one and still be cropped rather than resampled: pixel
sizes rounded in a product's header (SpaceNet 6's drift by 0.04 PAN pixels across the scene) keep their own
values; more than a tenth of a pixel (Landsat 8's 0.45, the sample's 1.5 at the edges) is resampled."""
Extent = Literal["pan", "overlap", "union"]
EXTENTS: tuple[Extent, ...] = ("pan", "overlap", "union")


class NotGeoreferencedWarning(UserWarning):
    """A pair without CRS or geotransform was assumed to share its origin."""


@dataclass(frozen=True)
class RasterGrid:
    """An input raster's grid, read from its header: ``(height, width)`` in pixels, the geotransform and CRS
    (``None`` without georeferencing) and where it came from (for messages)."""

    height: int
    width: int
    transform: Affine | None
    crs: Any
    source: str


@dataclass(frozen=True)
class Alignment:
    """How a PAN + MS pair lies on one grid.

    Attributes:
        ratio: the integer PAN/MS resolution ratio ``r``.
        pan: the aligned grid's window of the PAN raster ``(row0, row1, col0, col1)``, a multiple of ``r``.
        ms: the MS raster's window of the same ground (its own pixels), when the MS is cropped.
        ms_rows, ms_cols: where the aligned MS pixels lie in the MS raster, when it is resampled; ``None``
            when it is cropped.
        pan_footprint: the PAN raster in PAN pixels of the aligned grid (row 0, column 0: its first pixel).
        ms_footprint: the MS raster there, grown to whole PAN pixels.
    """

    ratio: int
    pan: Window
    ms: Window
    ms_rows: AxisMap | None
    ms_cols: AxisMap | None
    pan_footprint: Window
    ms_footprint: Window

    @property
    def resampled(self) -> bool:
        """Whether the MS is moved onto the aligned grid by resampling (else cropped)."""
        return self.ms_rows is not None


def align(pan: RasterGrid, ms: RasterGrid) -> Alignment:
    """The ratio and the aligned grid of ``pan`` and ``ms``.

    Raises:
        CRSMismatchError: one is georeferenced and the other not, or their CRSs differ.
        ResolutionRatioError: the pixel sizes (or image sizes) are not an integer ratio >= 2 apart.
        NoOverlapError: the rasters share less than one MS pixel.
        InvalidParameterError: a rotated geotransform.
    """
    if (pan.crs is not None) != (ms.crs is not None):
        has, lacks = ("PAN", "MS") if pan.crs is not None else ("MS", "PAN")
        raise CRSMismatchError(
            f"{has} is georeferenced but {lacks} has no CRS; give both files a CRS (gdal_edit.py -a_srs) or neither"
        )
    if pan.crs is None:
        return _shared_origin(pan, ms)
    if pan.crs != ms.crs:
        raise CRSMismatchError(
            f"PAN CRS ({pan.crs}) differs from MS CRS ({ms.crs}); reproject one onto the "
            "other's CRS with gdalwarp -t_srs"
        )
    pt, mt = pan.transform, ms.transform
    assert pt is not None and mt is not None  # only rasters without a CRS lack a transform
    if pt.b or pt.d or mt.b or mt.d:
        raise InvalidParameterError("rotated geotransforms are not supported; warp to north-up with gdalwarp")
    ratio = _integer_ratio(mt.a / pt.a, mt.e / pt.e, pan.source, ms.source, "pixel sizes")
    (p_left, p_right), (p_top, p_bottom) = _span(pt, pan.width, pan.height)
    (m_left, m_right), (m_top, m_bottom) = _span(mt, ms.width, ms.height)
    left, right = max(p_left, m_left), min(p_right, m_right)
    bottom, top = max(p_bottom, m_bottom), min(p_top, m_top)
    if left >= right or bottom >= top:
        raise NoOverlapError(
            f"PAN {pan.source} and MS {ms.source} do not overlap (PAN x {p_left:.1f}..{p_right:.1f}, "
            f"y {p_bottom:.1f}..{p_top:.1f}; MS x {m_left:.1f}..{m_right:.1f}, y {m_bottom:.1f}..{m_top:.1f}); "
            "check that they are the same scene"
        )
    rows = _Axis(pt.f, pt.e, pan.height, mt.f, mt.e, ms.height, ratio, (bottom + top) / 2)
    cols = _Axis(pt.c, pt.a, pan.width, mt.c, mt.a, ms.width, ratio, (left + right) / 2)
    if rows.count <= 0 or cols.count <= 0:
        raise NoOverlapError(f"PAN {pan.source} and MS {ms.source} share less than one MS pixel")
    resample = not (rows.on_grid and cols.on_grid)
    r0, c0 = rows.pan_start, cols.pan_start
    return Alignment(
        ratio=ratio,
        pan=(r0, r0 + rows.count * ratio, c0, c0 + cols.count * ratio),
        ms=(rows.first, rows.first + rows.count, cols.first, cols.first + cols.count),
        ms_rows=rows.map if resample else None,
        ms_cols=cols.map if resample else None,
        pan_footprint=(-r0, pan.height - r0, -c0, pan.width - c0),
        ms_footprint=(*rows.ms_footprint(resample), *cols.ms_footprint(resample)),
    )


def extent_window(alignment: Alignment, extent: str) -> Window:
    """The output's window of the aligned grid ``(row0, row1, col0, col1)`` for ``extent`` (one of
    :data:`EXTENTS`); it may reach beyond the fused pixels (``0 .. height``, ``0 .. width``), where the
    output is nodata.

    Raises:
        InvalidParameterError: an unknown extent.
    """
    if extent not in EXTENTS:
        raise InvalidParameterError(f"`extent` must be one of {', '.join(EXTENTS)}, got {extent!r}", "extent")
    r0, r1, c0, c1 = alignment.pan
    if extent == "overlap":
        return 0, r1 - r0, 0, c1 - c0
    if extent == "pan":
        return alignment.pan_footprint
    p, m = alignment.pan_footprint, alignment.ms_footprint
    return min(p[0], m[0]), max(p[1], m[1]), min(p[2], m[2]), max(p[3], m[3])


@dataclass(frozen=True)
class _Axis:
    """One axis of a georeferenced pair: PAN origin and pixel size, MS origin and pixel size (map units), the
    sizes in pixels, the ratio and the map coordinate where the grids are matched (the overlap's centre)."""

    pan_origin: float
    pan_step: float
    pan_size: int
    ms_origin: float
    ms_step: float
    ms_size: int
    ratio: int
    centre: float

    @property
    def shift(self) -> int:
        """The PAN pixel where MS pixel 0 of the aligned grid starts: the MS origin's offset at the centre,
        rounded (with pixel sizes not exactly ``ratio`` apart, the MS grid drifts away from the centre)."""
        at_pan = (self.centre - self.pan_origin) / self.pan_step
        at_ms = (self.centre - self.ms_origin) / self.ms_step
        return round(at_pan - self.ratio * at_ms)

    @property
    def step(self) -> float:
        """MS pixels from one aligned MS pixel to the next (1 when the pixel sizes are exactly ``ratio`` apart)."""
        return self.ratio * self.pan_step / self.ms_step

    def source(self, k: float) -> float:
        """Where aligned MS pixel ``k``'s centre lies in the MS raster (its pixel centres at 0, 1, ...)."""
        centre = self.pan_origin + self.pan_step * (self.shift + (k + 0.5) * self.ratio)
        return (centre - self.ms_origin) / self.ms_step - 0.5

    @property
    def first(self) -> int:
        """The first aligned MS pixel inside both rasters: its PAN pixels in the PAN, its centre in the MS."""
        in_pan = math.ceil(-self.shift / self.ratio)
        in_ms = math.ceil((-0.5 - 1e-6 - self.source(0)) / self.step)
        return max(in_pan, in_ms)

    @property
    def count(self) -> int:
        """How many aligned MS pixels lie inside both rasters, from :attr:`first`."""
        in_pan = (self.pan_size - self.shift) // self.ratio
        in_ms = math.floor((self.ms_size - 0.5 + 1e-6 - self.source(0)) / self.step) + 1
        return min(in_pan, in_ms) - self.first

    @property
    def pan_start(self) -> int:
        return self.shift + self.first * self.ratio

    @property
    def on_grid(self) -> bool:
        """Whether the aligned MS pixels are the MS raster's own (to :data:`POSITION_TOLERANCE`)."""
        ends = (self.first, self.first + self.count - 1)
        return all(abs(self.source(k) - k) * self.ratio <= POSITION_TOLERANCE for k in ends)

    @property
    def map(self) -> AxisMap:
        """Where the aligned MS pixels lie in the MS raster: the MS's own pixels on an axis that is on the grid
        (no interpolation there, when only the other axis is off), else their true places."""
        if self.on_grid:
            return AxisMap(float(self.first), 1.0, self.count)
        return AxisMap(self.source(self.first), self.step, self.count)

    def ms_footprint(self, resampled: bool) -> tuple[int, int]:
        """The MS raster along this axis in PAN pixels of the aligned grid: its own pixels as the aligned grid
        takes them when it is cropped, else its true edges grown to whole PAN pixels (less than
        :data:`POSITION_TOLERANCE` past an edge does not count)."""
        if not resampled:
            return -self.first * self.ratio, (self.ms_size - self.first) * self.ratio
        ends = [(self.ms_origin + self.ms_step * n - self.pan_origin) / self.pan_step for n in (0, self.ms_size)]
        tolerance = POSITION_TOLERANCE
        return math.floor(min(ends) + tolerance) - self.pan_start, math.ceil(max(ends) - tolerance) - self.pan_start


def _shared_origin(pan: RasterGrid, ms: RasterGrid) -> Alignment:
    """The alignment of a pair without georeferencing: the grids share their top-left corner."""
    warnings.warn(
        f"{pan.source} and {ms.source} carry no georeferencing; assuming the grids share their top-left corner",
        NotGeoreferencedWarning,
        stacklevel=4,
    )
    ratio = _integer_ratio(pan.width / ms.width, pan.height / ms.height, pan.source, ms.source, "image sizes")
    rows, cols = min(ms.height, pan.height // ratio), min(ms.width, pan.width // ratio)
    return Alignment(
        ratio=ratio,
        pan=(0, rows * ratio, 0, cols * ratio),
        ms=(0, rows, 0, cols),
        ms_rows=None,
        ms_cols=None,
        pan_footprint=(0, pan.height, 0, pan.width),
        ms_footprint=(0, ms.height * ratio, 0, ms.width * ratio),
    )


def _integer_ratio(rx: float, ry: float, pan: str, ms: str, what: str) -> int:
    ratio = round(rx)
    ok = ratio >= 2 and all(abs(v - ratio) <= RATIO_TOLERANCE * ratio for v in (rx, ry))
    if not ok:
        raise ResolutionRatioError(
            f"the {what} of MS {ms} and PAN {pan} give a resolution ratio of {rx:.3f} x {ry:.3f}; "
            "pansharpening needs the same integer ratio (2, 3, 4...) on both axes; resample the MS "
            "to an integer multiple of the PAN pixel size (gdalwarp -tr)"
        )
    return ratio


def _span(t: Affine, width: int, height: int) -> tuple[tuple[float, float], tuple[float, float]]:
    xs = sorted((t.c, t.c + t.a * width))
    ys = sorted((t.f, t.f + t.e * height))
    return (xs[0], xs[1]), (ys[1], ys[0])
