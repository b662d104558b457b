"""Scene-level evaluation behind ``pansharp-dist eval``.

* full resolution: a fused image on the PAN grid against the PAN and MS it came
  from (D_lambda, D_lambda_K, D_s, QNR, HQNR; blockwise on dask);
* reduced resolution with a reference: the fused image against a ground truth
  of the same shape (SAM, ERGAS, Q2n, SCC, PSNR; blockwise on dask);
* the reduced-resolution protocol: degrade the scene (Wald), fuse it with a
  method, score against the original MS.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dask.array as da
import numpy as np
import rioxarray
import xarray as xr

from ..errors import InvalidParameterError
from ..fusion import make_fuser, pansharpen
from ..methods import Fuser, is_network
from ..scene import Scene, open_scene
from ..sensors import get_sensor
from .blockwise import full_scores_blockwise, reduced_scores_blockwise
from .mtf import degrade

BLOCK = 32


def _open_fused(path: str | Path, scene: Scene, role: str = "fused image") -> tuple[xr.DataArray, Scene]:
    """The fused image at ``path`` and the scene, both on their common PAN-grid window.

    Any tool's output is scored: one on the full PAN grid (GDAL's pansharpened VRT, OTB), on the PAN/MS
    overlap (this project's), or on a part of the scene, as long as its pixels lie on the PAN pixel grid
    (same CRS and pixel size, offset by whole pixels). Without georeferencing on either side the grids
    must be the same size.

    Raises:
        InvalidParameterError: another band count, CRS or pixel size, an offset of a fraction of a pixel,
            or no common window of whole MS pixels.
    """
    fused = rioxarray.open_rasterio(path, chunks={"band": -1, "y": 2048, "x": 2048}, masked=False)
    if not isinstance(fused, xr.DataArray):  # a file of subdatasets opens as a Dataset (or a list of them)
        raise InvalidParameterError(
            f"{role} {path} holds several rasters (subdatasets), not one image: pass the output of a run on "
            "this `pan`/`ms` pair"
        )
    if fused.shape[0] != scene.bands:
        raise InvalidParameterError(
            f"{role} {path} has {fused.shape[0]} bands, the scene's MS {scene.bands}: pass a pansharpened "
            "image of this `pan`/`ms` pair"
        )
    if scene.crs is None or fused.rio.crs is None:
        if fused.shape[1:] != scene.shape:
            raise InvalidParameterError(
                f"{role} {path} is {fused.shape[1]} x {fused.shape[2]} pixels, the scene's PAN grid "
                f"{scene.shape[0]} x {scene.shape[1]}, and without georeferencing they cannot be aligned"
            )
        return fused, scene
    if fused.rio.crs != scene.crs:
        raise InvalidParameterError(
            f"{role} {path} is in {fused.rio.crs}, the scene in {scene.crs}: reproject it onto the PAN grid"
        )
    mine, theirs = scene.transform, fused.rio.transform()
    if not (np.isclose(theirs.a, mine.a, rtol=1e-6) and np.isclose(theirs.e, mine.e, rtol=1e-6)):
        raise InvalidParameterError(
            f"{role} {path} has {abs(theirs.a):g} x {abs(theirs.e):g} pixels, the PAN {abs(mine.a):g} x "
            f"{abs(mine.e):g}: resample it onto the PAN grid first"
        )
    col, row = (theirs.c - mine.c) / mine.a, (theirs.f - mine.f) / mine.e  # its origin in scene pixels
    if abs(col - round(col)) > 0.01 or abs(row - round(row)) > 0.01:
        raise InvalidParameterError(
            f"{role} {path} lies {abs(row - round(row)):.2f} of a row and {abs(col - round(col)):.2f} of a "
            "column off the PAN pixel grid: only whole pixels can be compared; resample it onto the PAN grid first"
        )
    row, col = round(row), round(col)
    r = scene.ratio
    # the common window in scene pixels, cut to whole MS pixels so that the MS crops with it
    y0, x0 = -(-max(0, row) // r) * r, -(-max(0, col) // r) * r
    y1 = min(scene.shape[0], row + fused.shape[1]) // r * r
    x1 = min(scene.shape[1], col + fused.shape[2]) // r * r
    if y1 <= y0 or x1 <= x0:
        raise InvalidParameterError(f"{role} {path} does not overlap the scene by one whole MS pixel")
    window = replace(
        scene, pan=scene.pan[y0:y1, x0:x1], ms=scene.ms[:, y0 // r : y1 // r, x0 // r : x1 // r], stats=None
    )
    return fused[:, y0 - row : y1 - row, x0 - col : x1 - col], window


def scene_full_scores(scene: Scene, fused: xr.DataArray | np.ndarray, client=None) -> dict[str, float]:
    """Full-resolution metrics of ``fused`` on the scene's PAN grid, blockwise (cropped to whole blocks)."""
    r = scene.ratio
    cell = BLOCK * r // np.gcd(BLOCK, r)
    h, w = (n - n % cell for n in scene.shape)
    if h == 0 or w == 0:
        raise InvalidParameterError(
            f"the scene ({scene.shape[0]} x {scene.shape[1]}) is smaller than one {cell}-pixel block"
        )
    data = fused.data if isinstance(fused, xr.DataArray) else fused
    # a float output's nodata is NaN, which the MTF filter of D_lambda_K would spread over the whole scene;
    # scored as 0, as an integer output's nodata is (no-data pixels are not masked)
    data = da.where(da.isfinite(data), data, 0) if np.dtype(data.dtype).kind == "f" else data
    gains = tuple(get_sensor(scene.sensor).mtf_gains(scene.bands))
    return full_scores_blockwise(
        data[:, :h, :w], scene.ms.data[:, : h // r, : w // r], scene.pan.data[:h, :w], r, gains, client=client
    )


def evaluate(
    pan: str | Path,
    ms: str | Path,
    fused: str | Path,
    *,
    reference: str | Path | None = None,
    sensor: str | None = None,
    patch: int | None = None,
    client=None,
) -> dict[str, float]:
    """Full-resolution metrics of ``fused`` (any tool's output on the PAN pixel grid, scored on its common
    window with the scene); with ``reference``, the reduced-resolution ones too."""
    whole = open_scene(pan, ms, sensor, patch=patch)
    fused_da, scene = _open_fused(fused, whole)
    scores = scene_full_scores(scene, fused_da, client)
    if reference is not None:
        truth, truth_scene = _open_fused(reference, whole, "reference")  # cut to its common window as the fused
        if truth.shape != fused_da.shape or not truth_scene.transform.almost_equals(scene.transform):
            raise InvalidParameterError(
                f"reference {reference} covers {truth.shape[1]} x {truth.shape[2]} pixels of the scene at "
                f"{truth_scene.transform.c:.2f}, {truth_scene.transform.f:.2f}, the fused image {fused_da.shape[1]} "
                f"x {fused_da.shape[2]} at {scene.transform.c:.2f}, {scene.transform.f:.2f}; give the ground truth "
                "on the fused image's grid"
            )
        scores.update(reduced_scores_blockwise(truth, fused_da, scene.ratio, client=client))
    return scores


def evaluate_reduced_protocol(
    pan: str | Path,
    ms: str | Path,
    method: str,
    *,
    sensor: str | None = None,
    patch: int | None = None,
    tile: int = 256,
    client=None,
) -> dict[str, float]:
    """Wald protocol: degrade the scene, fuse it with ``method``, score against the original MS.

    A classical method is fitted on the degraded scene; a network on the original
    one, so that its radiometry is the sensor's and not that of the float64 degraded copy.
    """
    scene = open_scene(pan, ms, sensor, patch=patch)
    reduced = degrade(scene)
    fuser: str | Fuser = method
    if is_network(method):
        fuser = make_fuser(scene, method, client)
    fused = pansharpen(reduced, fuser, client=client, tile=tile)
    truth = scene.ms.data[:, : fused.shape[1], : fused.shape[2]].astype(np.float64)
    return reduced_scores_blockwise(truth, fused.data.astype(np.float64), scene.ratio, client=client)
