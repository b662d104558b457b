"""Catalogue-driven reprocessing: which STAC items need a run, under which roots hrefs may point, and a ledger.

* :class:`HrefPolicy`: hrefs are resolved only under configured roots (local
  folders, or URL prefixes such as ``s3://bucket/scenes/``), compared as the
  reader resolves them; anything else, ``..`` escapes and percent-encoded ones
  included, is refused, and so are raster formats that read other files.
* :func:`scan_catalog`: the items that carry a PAN and an MS asset, from a
  static STAC catalogue (local or ``http(s)``, walked with pystac, each link
  checked before it is followed) or from a STAC API's item search
  (pystac-client).
* :func:`safe_name`: an item id as a file name that stays in its folder.
* :class:`ItemLedger`: one JSON record per item id (``updated``, input checksums,
  pipeline and model versions, status, outputs). An item needs a run when it
  has no record, or when any of those changed; an item that failed is not
  retried until it changes (or its record is deleted), so a damaged scene does
  not fail again on every scheduled scan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import posixpath
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import pystac

from . import __version__
from .errors import CorruptInputError, HrefRefusedError, InputNotFoundError, InvalidParameterError
from .outputs import atomic_write
from .redact import redact_href, redact_text
from .stac import SceneAssets, acquisition_time, scene_assets

SAFE_DRIVERS = frozenset({"GTiff"})
"""GDAL drivers a catalogue input may be read with: formats that do not point at other files (a VRT, for
one, names its sources anywhere on the machine or the network)."""
_ENCODED = re.compile(r"%(2e|2f|5c|25)", re.I)  # ".", "/", "\\" and "%" itself (double encoding)


@dataclass(frozen=True)
class HrefPolicy:
    """Where catalogue hrefs may point: local folders and URL prefixes.

    An href is compared with the roots as the reader will see it: percent-decoded, ``.`` and ``..``
    resolved (and, for local paths, symlinks). Percent-encoded dots, slashes, backslashes and percent signs,
    backslashes themselves, and GDAL virtual paths (``/vsicurl/...``) are refused outright: no scene href
    needs them, and each has been used to reach outside a root that a plain string comparison checks.
    """

    roots: tuple[str, ...]

    def check(self, href: str) -> str:
        """``href`` itself when it lies under a root.

        Raises:
            HrefRefusedError: it does not, or it is written in one of the refused ways (the message says which).
        """
        if _ENCODED.search(href) or "\\" in href or href.startswith("/vsi"):
            raise HrefRefusedError(
                f"{redact_href(href)} is refused: percent-encoded dots or separators, backslashes and GDAL virtual "
                "paths cannot be checked against the allowed roots; give a plain path or URL"
            )
        target = _location(href)
        if target is not None and any(_under(target, _location(root)) for root in self.roots):
            return href
        raise HrefRefusedError(
            f"{redact_href(href)} is outside the allowed roots ({', '.join(self.roots)}); add its folder or URL prefix "
            "to the allowed roots if it is trusted"
        )

    def check_raster(self, href: str) -> str:
        """:meth:`check`, then open ``href`` and check what GDAL would read: a format of :data:`SAFE_DRIVERS`,
        and every file GDAL lists for it (overviews, masks, sidecars) under a root as well.

        Raises:
            HrefRefusedError: a refused href, format or file.
            InputNotFoundError: ``href`` cannot be opened.
        """
        import rasterio
        from rasterio.errors import RasterioIOError

        self.check(href)
        try:
            with rasterio.open(href) as src:
                driver, files = src.driver, list(src.files)
        except RasterioIOError as exc:
            missing = any(s in str(exc) for s in ("No such file", "does not exist", "404"))
            raise (InputNotFoundError if missing else CorruptInputError)(
                f"cannot open {redact_href(href)} as a raster ({redact_text(str(exc))})"
            ) from None
        if driver not in SAFE_DRIVERS:
            raise HrefRefusedError(
                f"{redact_href(href)} is a {driver} file; catalogue inputs must be {', '.join(sorted(SAFE_DRIVERS))} "
                "(formats such as VRT read other files, which the allowed roots cannot vouch for)"
            )
        for file in files:
            self.check(file.removeprefix("/vsicurl/"))
        return href


def _location(href: str) -> tuple[str, str, str] | None:
    """``(scheme, host[:port], path)`` of ``href`` as a reader resolves it: percent-decoded, ``.``/``..`` resolved,
    local paths made absolute through symlinks; ``None`` for an href that cannot be parsed."""
    try:
        parsed = urlparse(href)
        scheme = parsed.scheme.lower() if len(parsed.scheme) > 1 else "file"
        if scheme == "file":
            local = unquote(parsed.path) if parsed.scheme else href
            return "file", "", str(Path(local).resolve())
        host = (parsed.hostname or "") + (f":{parsed.port}" if parsed.port else "")
        return scheme, host, posixpath.normpath("/" + unquote(parsed.path).lstrip("/"))
    except (ValueError, OSError, RuntimeError):  # a bad port, a symlink loop
        return None


def _under(target: tuple[str, str, str], root: tuple[str, str, str] | None) -> bool:
    if root is None or target[:2] != root[:2]:
        return False
    base = root[2].rstrip("/") or "/"
    return target[2] == base or target[2].startswith(base.rstrip("/") + "/")


def safe_name(item_id: str) -> str:
    """An item id as a file name that stays in its folder and is not hidden: characters other than letters,
    digits, ``-``, ``_`` and ``.`` become ``_``, and so do leading dots (``../../x`` is ``___.._x``); an empty id
    is ``item``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in item_id)
    dots = len(safe) - len(safe.lstrip("."))
    return "_" * dots + safe[dots:] or "item"


@dataclass(frozen=True)
class SceneRequest:
    """The inputs of one scene run, resolved from PAN and MS hrefs or from a STAC item: checked hrefs, the
    sensor (given, or the item's), a safe output name, and the redacted hrefs of the sources."""

    pan: str
    ms: str
    sensor: str | None
    name: str
    sources: list[str]
    acquired: dt.datetime | None = None


def scene_request(
    pan: str | None,
    ms: str | None,
    item_href: str | None = None,
    allowed_roots: list[str] | None = None,
    sensor: str | None = None,
    name: str | None = None,
) -> SceneRequest:
    """Resolve a scene run's inputs: ``pan`` and ``ms`` hrefs (checked against ``allowed_roots`` when given), or
    a STAC item at ``item_href`` (``allowed_roots`` required; its assets must be GeoTIFFs that read no file
    outside them). ``name`` defaults to the item id, else the PAN file's stem, and is made a safe file name.

    Raises:
        InvalidParameterError: neither a pair nor an item, or an item without ``allowed_roots``.
        HrefRefusedError: an href outside the allowed roots, or an asset that is no plain GeoTIFF.
    """
    if item_href is not None:
        if not allowed_roots:
            raise InvalidParameterError(
                "a STAC item needs allowed_roots: the folders or URL prefixes its assets may use", "allowed_roots"
            )
        policy = HrefPolicy(tuple(allowed_roots))
        policy.check(item_href)
        assets = scene_assets(pystac.Item.from_file(item_href))
        return SceneRequest(
            policy.check_raster(assets.pan),
            policy.check_raster(assets.ms),
            sensor or assets.sensor,
            safe_name(name or assets.item_id),
            [redact_href(item_href)],
            assets.acquired,
        )
    if pan is None or ms is None:
        raise InvalidParameterError("give pan and ms hrefs, or item_href", "pan")
    if allowed_roots:
        policy = HrefPolicy(tuple(allowed_roots))
        pan, ms = policy.check(pan), policy.check(ms)
    return SceneRequest(
        pan, ms, sensor, safe_name(name or Path(pan).stem), [redact_href(pan), redact_href(ms)], acquisition_time(pan)
    )


def scan_catalog(
    href: str, policy: HrefPolicy, collections: list[str] | None = None
) -> tuple[list[SceneAssets], list[str]]:
    """Items of the catalogue or STAC API at ``href`` with PAN and MS assets, and one line per item skipped.

    A static catalogue is walked link by link, and a child or item link is followed only if its href lies
    under the allowed roots; a link refused or unreadable, or an item without the assets, is one line of
    the skipped list, and the walk goes on.

    Args:
        href: a local ``catalog.json``, or an ``http(s)`` catalogue or STAC API root.
        policy: where the catalogue, and everything it links to, may lie.
        collections: API collections to search (all when ``None``).

    Raises:
        InputNotFoundError: the catalogue itself cannot be read.
        HrefRefusedError: the catalogue itself lies outside the roots.
    """
    policy.check(href)
    skipped: list[str] = []
    try:
        api = _item_search(href) if urlparse(href).scheme in ("http", "https") else None
        items = (
            api.search(collections=collections).items()
            if api is not None
            else _walk(pystac.Catalog.from_file(href), policy, skipped)
        )
        scenes = []
        for item in items:
            try:
                scenes.append(scene_assets(item))
            except (InvalidParameterError, ValueError, KeyError) as exc:
                skipped.append(redact_text(f"item {getattr(item, 'id', '?')}: {exc}"))
    except (OSError, pystac.STACError, ValueError) as exc:
        raise InputNotFoundError(f"cannot read the STAC catalogue {redact_href(href)} ({exc})") from None
    return scenes, skipped


def _walk(catalog: pystac.Catalog, policy: HrefPolicy, skipped: list[str]):
    """The items under ``catalog``, following only child and item links whose hrefs the policy allows."""
    for link in catalog.get_links():
        if link.rel not in ("child", "item"):
            continue
        target = link.get_absolute_href() or link.href
        try:
            policy.check(target)
            linked = link.resolve_stac_object(root=catalog.get_root()).target
        except HrefRefusedError as exc:
            skipped.append(f"{link.rel} link of {catalog.id}: {exc}")
            continue
        except (OSError, pystac.STACError, ValueError, KeyError) as exc:
            skipped.append(redact_text(f"{link.rel} link of {catalog.id} to {target} cannot be read ({exc})"))
            continue
        if isinstance(linked, pystac.Item):
            yield linked
        elif isinstance(linked, pystac.Catalog):
            yield from _walk(linked, policy, skipped)


def _item_search(href: str):
    """The pystac-client API at ``href`` when it offers item search; ``None`` for a static catalogue (walked by
    :func:`_walk`, links checked, like a local one)."""
    from pystac_client import Client, ConformanceClasses

    client = Client.open(href)
    return client if client.conforms_to(ConformanceClasses.ITEM_SEARCH) else None


@dataclass
class ItemRecord:
    """What the ledger knows of one item."""

    item_id: str
    updated: str | None
    checksums: dict[str, str]
    pipeline_version: str
    model_version: str
    status: str = "pending"
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def same_inputs(self, other: ItemRecord) -> bool:
        """The same inputs, ``updated``, versions and run options (:func:`run_options`)."""
        keys = ("updated", "checksums", "pipeline_version", "model_version", "options")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


def run_options(
    adapt: str | None = None, extent: str = "pan", dtype: str | None = None, compress: str | None = None
) -> dict[str, str]:
    """The options of a catalogue's runs that change its outputs, as a ledger records them: checked, the codec
    spelled as :func:`~pansharp_dist.export.check_compress` spells it (``zstd:9`` is ``ZSTD:9``), and only
    those given (``extent``: other than ``pan``), so that a record written before an option existed matches
    a run that leaves it at its default.

    Raises:
        InvalidParameterError: an unknown adaptation, extent, data type or codec (before any item runs).
    """
    from .adapt import MODES
    from .alignment import EXTENTS
    from .export import check_compress
    from .fusion import OUTPUT_DTYPES

    for name, value, allowed in (("adapt", adapt, MODES), ("extent", extent, EXTENTS), ("dtype", dtype, OUTPUT_DTYPES)):
        if value is not None and value not in allowed:
            raise InvalidParameterError(f"`{name}` must be one of {', '.join(allowed)}, got {value!r}", name)
    given = {
        "adapt": adapt,
        "extent": None if extent == "pan" else extent,
        "dtype": dtype,
        "compress": None if compress is None else check_compress(compress),
    }
    return {name: value for name, value in given.items() if value is not None}


class ItemLedger:
    """A folder of ``<item id>.json`` records, each written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._hashes_path = self.folder / ".checksums.json"
        self._hashes: dict[str, str] = json.loads(self._hashes_path.read_text()) if self._hashes_path.exists() else {}

    def _path(self, item_id: str) -> Path:
        return self.folder / f"{safe_name(item_id)}.json"

    def get(self, item_id: str) -> ItemRecord | None:
        path = self._path(item_id)
        return ItemRecord(**json.loads(path.read_text())) if path.exists() else None

    def put(self, record: ItemRecord) -> None:
        _write_json(self._path(record.item_id), asdict(record))

    def records(self) -> list[ItemRecord]:
        """Every item's record (the ledger's own hidden files, such as its checksum cache, left out)."""
        return [
            ItemRecord(**json.loads(p.read_text()))
            for p in sorted(self.folder.glob("*.json"))
            if not p.name.startswith(".")
        ]

    def expected(self, scene: SceneAssets, method: str, options: dict[str, str] | None = None) -> ItemRecord:
        """The record a run of ``scene`` with ``method`` and ``options`` (:func:`run_options`) would have now
        (checksums of the inputs included)."""
        return ItemRecord(
            item_id=scene.item_id,
            updated=scene.updated,
            checksums={"pan": self.checksum(scene.pan), "ms": self.checksum(scene.ms)},
            pipeline_version=__version__,
            model_version=model_version(method),
            options=options or {},
        )

    def needs_run(self, expected: ItemRecord) -> bool:
        """True when the item was never run, or its inputs, ``updated``, versions or run options changed since."""
        seen = self.get(expected.item_id)
        return seen is None or not seen.same_inputs(expected)

    def checksum(self, href: str) -> str:
        """``sha256:<hex>`` of a local input (cached by size and modification time), or ``href:<href>`` for URLs."""
        parsed = urlparse(href)
        if len(parsed.scheme) > 1 and parsed.scheme != "file":
            return f"href:{href}"
        path = Path(parsed.path if parsed.scheme == "file" else href)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return "missing"
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in self._hashes:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    digest.update(chunk)
            self._hashes[key] = f"sha256:{digest.hexdigest()}"
            _write_json(self._hashes_path, self._hashes)
        return self._hashes[key]


def model_version(method: str) -> str:
    """A network's checkpoint hash (``fusionnet-wv3@sha256:...``), or the method name for classical methods."""
    from .methods import is_network

    if is_network(method):
        from .models import card

        return f"{method.lower()}@sha256:{card(method).sha256}"
    return method.lower()


def _write_json(path: Path, obj: object) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode())
