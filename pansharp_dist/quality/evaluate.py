"""Scene-level evaluation behind ``pansharp-dist eval``.

* full resolution: a fused image on the PAN grid against the PAN and MS it came
  from (D_lambda, D_lambda_K, D_s, QNR, HQNR; blockwise on dask);
* reduced resolution with a reference: the fused image against a ground truth
  of the same shape (SAM, ERGAS, Q2n, SCC, PSNR; blockwise on dask);
* the reduced-resolution protocol: degrade the scene (Wald), fuse it with a
  method, score against the original MS.
"""

from __future__ import annotations

from pathlib import Path

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


def _open_fused(path: str | Path, scene: Scene) -> xr.DataArray:
    fused = rioxarray.open_rasterio(path, chunks={"band": -1, "y": 2048, "x": 2048}, masked=False)
    if not isinstance(fused, xr.DataArray):  # a file of subdatasets opens as a Dataset (or a list of them)
        raise InvalidParameterError(
            f"fused image {path} holds several rasters (subdatasets), not one image: pass the output of a run on "
            "this `pan`/`ms` pair"
        )
    if fused.shape[1:] != scene.shape or fused.shape[0] != scene.bands:
        raise InvalidParameterError(
            f"fused image {path} is {fused.shape[0]} x {fused.shape[1]} x {fused.shape[2]} (bands, rows, columns); "
            f"the scene's PAN grid is {scene.bands} x {scene.shape[0]} x {scene.shape[1]}: pass the output of "
            "a run on this `pan`/`ms` pair"
        )
    if scene.crs is not None and fused.rio.crs is not None and not fused.rio.transform().almost_equals(scene.transform):
        raise InvalidParameterError(f"fused image {path} is not on the scene's PAN grid (its geotransform differs)")
    return fused


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
    """Full-resolution metrics of ``fused``; with ``reference``, the reduced-resolution ones too."""
    scene = open_scene(pan, ms, sensor, patch=patch)
    fused_da = _open_fused(fused, scene)
    scores = scene_full_scores(scene, fused_da, client)
    if reference is not None:
        truth = rioxarray.open_rasterio(reference, chunks={"band": -1, "y": 2048, "x": 2048}, masked=False)
        if not isinstance(truth, xr.DataArray):  # a file of subdatasets opens as a Dataset (or a list of them)
            raise InvalidParameterError(
                f"reference {reference} holds several rasters (subdatasets), not one image; give the ground truth "
                "as one raster on the fused image's grid"
            )
        if truth.shape != fused_da.shape:
            raise InvalidParameterError(
                f"reference {reference} has shape {truth.shape}, the fused image {fused_da.shape}; "
                "give the ground truth on the fused image's grid"
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
