"""Sensor registry: one row of facts per sensor, looked up by name or alias.

MTF gains are the amplitude responses at the Nyquist frequency of each MS band
and of the PAN, as used by the pansharpening benchmark of Vivone et al.
(IEEE TGRS 2015 / GRSM 2021). A sensor that is not known gets the documented
default: 0.3 for every MS band and 0.15 for the PAN.

Users add sensors without touching code: a TOML file with one ``[[sensor]]``
table per sensor (the fields of :class:`Sensor`), loaded with
:func:`load_sensors` or named in the ``PANSHARP_SENSORS`` environment variable
(paths separated by ``os.pathsep``)::

    [[sensor]]
    id = "spot6"
    name = "SPOT-6"
    bands = ["blue", "green", "red", "nir"]
    bit_depth = 12
    ratio = 4
    mtf_ms = [0.33, 0.33, 0.33, 0.33]
    mtf_pan = 0.15
    rgb = [2, 1, 0]
    aliases = ["spot-6"]
"""

from __future__ import annotations

import os
import re
import tomllib
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import InvalidParameterError, UnknownSensorError

DEFAULT_MTF_MS = 0.3
DEFAULT_MTF_PAN = 0.15


@dataclass(frozen=True)
class Sensor:
    """Facts about one optical sensor.

    Attributes:
        id: short lower-case identifier (``"wv3"``).
        name: human-readable name.
        bands: MS band names, in the order the products store them.
        bit_depth: radiometric resolution of the delivered counts (bits).
        ratio: PAN/MS linear resolution ratio.
        mtf_ms: MTF gain at Nyquist of each MS band, in ``bands`` order.
        mtf_pan: MTF gain at Nyquist of the PAN band.
        rgb: 0-based indexes of the red, green and blue bands (quicklooks).
        aliases: other names that resolve to this sensor.
    """

    id: str
    name: str
    bands: tuple[str, ...]
    bit_depth: int
    ratio: int
    mtf_ms: tuple[float, ...]
    mtf_pan: float
    rgb: tuple[int, int, int]
    aliases: tuple[str, ...] = ()

    def band_names(self, n_bands: int) -> tuple[str, ...]:
        """Names of the MS bands of a scene of ``n_bands`` bands: the sensor's, when it has that many;
        ``band 1``, ``band 2``... otherwise (an unknown sensor, a subset of bands)."""
        if n_bands == len(self.bands):
            return self.bands
        return tuple(f"band {i}" for i in range(1, n_bands + 1))

    def mtf_gains(self, n_bands: int) -> tuple[float, ...]:
        """MS MTF gains for a scene of ``n_bands`` bands.

        A product that carries a different number of bands than the sensor's
        full set (a 4-band WorldView-2 subset, say) gets the mean gain for
        every band, with a warning.
        """
        if n_bands == len(self.mtf_ms):
            return self.mtf_ms
        mean = sum(self.mtf_ms) / len(self.mtf_ms)
        if len(set(self.mtf_ms)) > 1:
            warnings.warn(
                f"sensor {self.id} has {len(self.mtf_ms)} MS bands but the scene has {n_bands}; "
                f"using the mean MTF gain {mean:.3f} for every band",
                stacklevel=2,
            )
        return (mean,) * n_bands


_BGRN = ("blue", "green", "red", "nir")
_SENSORS = (
    Sensor("qb", "QuickBird", _BGRN, 11, 4, (0.34, 0.32, 0.30, 0.22), 0.15, (2, 1, 0), ("quickbird",)),
    Sensor("ikonos", "IKONOS", _BGRN, 11, 4, (0.26, 0.28, 0.29, 0.28), 0.17, (2, 1, 0), ("ik",)),
    Sensor("ge1", "GeoEye-1", _BGRN, 11, 4, (0.23,) * 4, 0.16, (2, 1, 0), ("geoeye1", "geoeye", "wv4")),
    Sensor(
        "wv2",
        "WorldView-2",
        ("coastal", "blue", "green", "yellow", "red", "rededge", "nir1", "nir2"),
        11,
        4,
        (0.35,) * 7 + (0.27,),
        0.11,
        (4, 2, 1),
        ("worldview2",),
    ),
    Sensor(
        "wv3",
        "WorldView-3",
        ("coastal", "blue", "green", "yellow", "red", "rededge", "nir1", "nir2"),
        11,
        4,
        (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315),
        0.14,
        (4, 2, 1),
        ("worldview3",),
    ),
    Sensor("pleiades", "Pleiades 1A/1B", _BGRN, 12, 4, (0.3,) * 4, 0.15, (2, 1, 0), ("phr", "phr1a", "phr1b")),
    # Landsat 8 OLI: the toolboxes publish no Nyquist gains for it; the documented default is used.
    Sensor(
        "landsat8",
        "Landsat 8 OLI",
        ("coastal", "blue", "green", "red", "nir", "swir1", "swir2"),
        12,
        2,
        (DEFAULT_MTF_MS,) * 7,
        DEFAULT_MTF_PAN,
        (3, 2, 1),
        ("l8", "oli", "landsat"),
    ),
)

UNKNOWN = Sensor("unknown", "unknown sensor", (), 16, 0, (DEFAULT_MTF_MS,), DEFAULT_MTF_PAN, (2, 1, 0))


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_REGISTRY: dict[str, Sensor] = {s.id: s for s in _SENSORS}
_BY_KEY: dict[str, Sensor] = {}
_ENV_LOADED: set[str] = set()


def register_sensor(sensor: Sensor) -> Sensor:
    """Add ``sensor`` to the registry (replacing one with the same id)."""
    _REGISTRY[sensor.id] = sensor
    _BY_KEY.clear()
    return sensor


def load_sensors(path: str | Path) -> list[Sensor]:
    """Register every ``[[sensor]]`` table of a TOML file; returns the sensors added."""
    try:
        tables = tomllib.loads(Path(path).read_text()).get("sensor", [])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidParameterError(
            f"cannot read the sensor file {path} ({exc}); fix it or unset PANSHARP_SENSORS", "sensors"
        ) from None
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise InvalidParameterError(
            f"the sensor file {path} holds no [[sensor]] tables; see pansharp_dist/sensors.py", "sensors"
        )
    names = {f.name for f in fields(Sensor)}
    added = []
    for table in tables:
        unknown = set(table) - names
        missing = names - set(table) - {"aliases"}
        if unknown or missing:
            raise InvalidParameterError(
                f"sensor {table.get('id', '?')} in {path}: unknown fields {sorted(unknown)}, "
                f"missing fields {sorted(missing)}",
                "sensors",
            )
        wrong = [f"{name} ({_TYPES[name][1]})" for name in table if not _TYPES[name][0](table[name])]
        if wrong:
            raise InvalidParameterError(
                f"sensor {table.get('id', '?')} in {path}: wrong values of {', '.join(wrong)}", "sensors"
            )
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}  # checked above
        sensor = Sensor(**values)
        if len(sensor.mtf_ms) not in (1, len(sensor.bands)) or not all(0 < g < 1 for g in sensor.mtf_ms):
            raise InvalidParameterError(f"sensor {sensor.id} in {path}: one MTF gain in (0, 1) per band", "sensors")
        if not all(0 <= i < len(sensor.bands) for i in sensor.rgb):
            raise InvalidParameterError(
                f"sensor {sensor.id} in {path}: rgb indexes must name bands (0-based)", "sensors"
            )
        added.append(register_sensor(sensor))
    return added


def _strings(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


def _whole(v: object, low: int, high: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _gain(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1


_TYPES = {
    "id": (lambda v: isinstance(v, str) and bool(_key(v)), "a non-empty text"),
    "name": (lambda v: isinstance(v, str) and bool(v), "a non-empty text"),
    "bands": (lambda v: _strings(v) and bool(v), "a list of band names"),
    "bit_depth": (lambda v: _whole(v, 1, 32), "a whole number of bits, 1 to 32"),
    "ratio": (lambda v: _whole(v, 1, 64), "a whole PAN/MS ratio, 1 to 64"),
    "mtf_ms": (lambda v: isinstance(v, list) and bool(v) and all(_gain(g) for g in v), "a list of gains in (0, 1)"),
    "mtf_pan": (_gain, "a gain in (0, 1)"),
    "rgb": (lambda v: isinstance(v, list) and len(v) == 3 and all(_whole(i, 0, 255) for i in v), "three band indexes"),
    "aliases": (_strings, "a list of names"),
}
"""What each field of a ``[[sensor]]`` table must hold, and how to say it."""


def _lookup() -> dict[str, Sensor]:
    for path in filter(None, os.environ.get("PANSHARP_SENSORS", "").split(os.pathsep)):
        if path not in _ENV_LOADED:
            _ENV_LOADED.add(path)
            load_sensors(path)
    if not _BY_KEY:
        _BY_KEY.update({_key(alias): s for s in _REGISTRY.values() for alias in (s.id, s.name, *s.aliases)})
    return _BY_KEY


class UnknownSensorWarning(UserWarning):
    """A method that uses the sensor's MTF runs on a scene whose sensor is not known: default gains are used."""


def warn_default_mtf(scene_name: str, n_bands: int) -> None:
    """Say that ``scene_name``'s sensor is not known, which MTF gains stand in, and how to name the sensor."""
    warnings.warn(
        f"the sensor of {scene_name} is not known (not given, not in its metadata): the MTF-matched filters use "
        f"the default gains {DEFAULT_MTF_MS} ({n_bands} MS bands) and {DEFAULT_MTF_PAN} (PAN); name it with "
        f"`sensor=NAME` (one of {', '.join(sensor_ids())}) or describe it in a file named by PANSHARP_SENSORS",
        UnknownSensorWarning,
        stacklevel=3,
    )


def sensor_ids() -> list[str]:
    """Identifiers of every registered sensor."""
    _lookup()
    return list(_REGISTRY)


def get_sensor(name: str | None) -> Sensor:
    """The sensor called ``name`` (any alias, case and punctuation ignored).

    ``None`` or ``"unknown"`` gives :data:`UNKNOWN` with the default MTF gains.
    """
    if name is None or _key(name) == "unknown":
        return UNKNOWN
    try:
        return _lookup()[_key(name)]
    except KeyError:
        raise UnknownSensorError(
            f"unknown sensor {name!r}; use one of {', '.join(sensor_ids())} or 'unknown' "
            f"(default MTF gains {DEFAULT_MTF_MS} MS / {DEFAULT_MTF_PAN} PAN)"
        ) from None


def find_sensor(name: str | None) -> Sensor | None:
    """Like :func:`get_sensor` but ``None`` for names that are not registered."""
    if name is None:
        return None
    return _lookup().get(_key(name))


def default_rgb(n_bands: int) -> tuple[int, int, int]:
    """RGB band indexes for a scene of unknown sensor, by its band count.

    8 bands: the WorldView layout (red 4, green 2, blue 1); 4 or more: blue,
    green, red first (the usual VHR order); 3: blue, green, red.
    """
    if n_bands >= 8:
        return (4, 2, 1)
    return (2, 1, 0)
