"""How a scene's pixel values are mapped into a network's training range and back.

A network learnt its weights on one radiometry (PanCollection: 11-bit counts
divided by 2047, so full scale is 1.0). A scene arrives as 8-, 11-, 12- or
16-bit counts, or as reflectance. The rule, applied once per scene:

1. **Counts of a known bit depth** map full scale to full scale:
   ``scale = 1 / (2**bits - 1)`` model units per count, where ``bits`` is 8 for
   8-bit data and otherwise the sensor's bit depth from the registry (12 for
   SPOT-6 or Pleiades, 11 for the Maxar sensors). A scene whose values exceed
   that depth falls through to rule 2, with a warning.
2. **Anything else** (reflectance, radiance, float DN, an unknown sensor) maps,
   band by band, the scene's 99th percentile (from the tile store's
   statistics) to the 99th percentile the network saw in training
   (``input_p99_ms`` and ``input_p99_pan`` in its model card). Per band,
   because calibrated products change the relative level of the bands
   (on the DOS-corrected ``gdal_hpf_wv3``, one global scale gives PanNet an
   ERGAS of 5.5, per-band scales 3.1).

Outputs are divided by the MS scales, so they come back in scene units.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidParameterError
from ..sensors import UNKNOWN, Sensor
from ..stats import PERCENTILES, SceneStats

P99 = PERCENTILES.index(99.0)


@dataclass(frozen=True)
class Radiometry:
    """Model units per scene unit for the PAN and for each MS band, and the rule that gave them."""

    pan_scale: float
    ms_scale: tuple[float, ...]
    rule: str


def radiometry_for(
    stats: SceneStats, sensor: Sensor, input_p99_ms: tuple[float, ...], input_p99_pan: float
) -> Radiometry:
    """The scene-to-model scales for a scene with statistics ``stats`` from ``sensor``.

    Args:
        stats: the scene's statistics (their ``ms_dtype`` tells counts from reflectance).
        sensor: the scene's sensor (:data:`~pansharp_dist.sensors.UNKNOWN` when not known).
        input_p99_ms, input_p99_pan: the network's training 99th percentiles, in model units.
    """
    dtype = np.dtype(stats.ms_dtype)
    bits = None
    if dtype.kind in "ui":
        bits = 8 if dtype.itemsize == 1 else (sensor.bit_depth if sensor is not UNKNOWN else None)
    if bits is not None:
        full = 2**bits - 1
        top = max(max(stats.ms_max), stats.pan_max)
        if top <= full:
            return Radiometry(1.0 / full, (1.0 / full,) * stats.bands, f"{bits}-bit counts: value / {full}")
        warnings.warn(
            f"values reach {top:g}, above the {bits}-bit range of sensor {sensor.id}; "
            "scaling each band by its 99th percentile instead",
            stacklevel=2,
        )
    ms_p99 = np.array([band[P99] for band in stats.ms_percentiles])
    pan_p99 = stats.pan_percentiles[P99]
    if not (np.all(np.isfinite(ms_p99)) and np.all(ms_p99 > 0) and np.isfinite(pan_p99) and pan_p99 > 0):
        raise InvalidParameterError(
            f"the scene's 99th percentiles (MS {ms_p99.tolist()}, PAN {pan_p99}) are not all positive: "
            "cannot scale it for a network; check the nodata value"
        )
    ms_scale = tuple(float(t / s) for t, s in zip(input_p99_ms, ms_p99))
    return Radiometry(float(input_p99_pan / pan_p99), ms_scale, "per-band 99th percentile matched to training")
