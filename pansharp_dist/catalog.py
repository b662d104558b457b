"""Catalogue-driven reprocessing: which STAC items need a run, under which roots hrefs may point, and a ledger.

* :class:`HrefPolicy`: hrefs are resolved only under configured roots (local
  folders, or URL prefixes such as ``s3://bucket/scenes/``); anything else,
  ``..`` escapes included, is refused.
* :func:`scan_catalog`: the items that carry a PAN and an MS asset, from a
  static STAC catalogue (a local ``catalog.json``, read with pystac) or from an
  ``http(s)`` catalogue or STAC API (pystac-client: item search when the API
  offers it, else a walk of the catalogue).
* :class:`Ledger`: one JSON record per item id (``updated``, input checksums,
  pipeline and model versions, status, outputs). An item needs a run when it
  has no record, or when any of those changed; an item that failed is not
  retried until it changes (or its record is deleted), so a damaged scene does
  not fail again on every scheduled scan.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pystac

from . import __version__
from .errors import HrefRefusedError, InputNotFoundError, InvalidParameterError
from .stac import SceneAssets, scene_assets


@dataclass(frozen=True)
class HrefPolicy:
    """Where catalogue hrefs may point: local folders and URL prefixes."""

    roots: tuple[str, ...]

    def check(self, href: str) -> str:
        """``href`` itself when it lies under a root.

        Raises:
            HrefRefusedError: it does not (the message names the roots).
        """
        parsed = urlparse(href)
        scheme = parsed.scheme if len(parsed.scheme) > 1 else "file"
        for root in self.roots:
            root_scheme = urlparse(root).scheme if len(urlparse(root).scheme) > 1 else "file"
            if root_scheme != scheme:
                continue
            if scheme == "file":
                path = Path(parsed.path if parsed.scheme == "file" else href).resolve()
                base = Path(urlparse(root).path if root.startswith("file:") else root).resolve()
                if path.is_relative_to(base):
                    return href
            elif href.startswith(root.rstrip("/") + "/") and "/../" not in href:
                return href
        raise HrefRefusedError(
            f"{redact_href(href)} is outside the allowed roots ({', '.join(self.roots)}); add its folder or URL prefix "
            "to the allowed roots if it is trusted"
        )


def redact_href(href: str) -> str:
    """``href`` without credentials: user and password, and the query string (signed-URL tokens), removed."""
    parsed = urlparse(href)
    if len(parsed.scheme) <= 1 or parsed.scheme == "file":
        return href
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc += f":{parsed.port}"
    return parsed._replace(netloc=netloc, query="", fragment="").geturl()


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"),;]+")


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_href` (for logs, ledgers and artifacts)."""
    return _URL.sub(lambda m: redact_href(m.group()), text)


def scan_catalog(
    href: str, policy: HrefPolicy, collections: list[str] | None = None
) -> tuple[list[SceneAssets], list[str]]:
    """Items of the catalogue or STAC API at ``href`` with PAN and MS assets, and one line per item skipped.

    Args:
        href: a local ``catalog.json``, or an ``http(s)`` catalogue or STAC API root.
        policy: where the catalogue may lie.
        collections: API collections to search (all when ``None``).

    Raises:
        InputNotFoundError: the catalogue cannot be read.
        HrefRefusedError: the catalogue itself lies outside the roots.
    """
    policy.check(href)
    try:
        items = _remote_items(href, collections) if urlparse(href).scheme in ("http", "https") else \
            pystac.Catalog.from_file(href).get_items(recursive=True)
        scenes, skipped = [], []
        for item in items:
            try:
                scenes.append(scene_assets(item))
            except InvalidParameterError as exc:
                skipped.append(str(exc))
    except (OSError, pystac.STACError) as exc:
        raise InputNotFoundError(f"cannot read the STAC catalogue {redact_href(href)} ({exc})") from None
    return scenes, skipped


def _remote_items(href: str, collections: list[str] | None):
    """Items of an ``http(s)`` catalogue: an API's item search, or a walk of a static catalogue."""
    import warnings

    from pystac_client import Client, ConformanceClasses
    from pystac_client.warnings import FallbackToPystac

    client = Client.open(href)
    if client.conforms_to(ConformanceClasses.ITEM_SEARCH):
        return client.search(collections=collections).items()
    with warnings.catch_warnings():  # a static catalogue served over HTTP: walking it is the only way
        warnings.simplefilter("ignore", FallbackToPystac)
        return list(client.get_items(recursive=True))


@dataclass
class LedgerRecord:
    """What the ledger knows of one item."""

    item_id: str
    updated: str | None
    checksums: dict[str, str]
    pipeline_version: str
    model_version: str
    status: str = "pending"
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def same_inputs(self, other: "LedgerRecord") -> bool:
        keys = ("updated", "checksums", "pipeline_version", "model_version")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


class Ledger:
    """A folder of ``<item id>.json`` records, each written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._hashes_path = self.folder / ".checksums.json"
        self._hashes: dict[str, str] = json.loads(self._hashes_path.read_text()) if self._hashes_path.exists() else {}

    def _path(self, item_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in item_id)
        return self.folder / f"{safe}.json"

    def get(self, item_id: str) -> LedgerRecord | None:
        path = self._path(item_id)
        return LedgerRecord(**json.loads(path.read_text())) if path.exists() else None

    def put(self, record: LedgerRecord) -> None:
        _write_json(self._path(record.item_id), asdict(record))

    def records(self) -> list[LedgerRecord]:
        return [LedgerRecord(**json.loads(p.read_text())) for p in sorted(self.folder.glob("*.json"))]

    def expected(self, scene: SceneAssets, method: str) -> LedgerRecord:
        """The record a run of ``scene`` with ``method`` would have now (checksums of the inputs included)."""
        return LedgerRecord(
            item_id=scene.item_id, updated=scene.updated,
            checksums={"pan": self.checksum(scene.pan), "ms": self.checksum(scene.ms)},
            pipeline_version=__version__, model_version=model_version(method),
        )

    def needs_run(self, expected: LedgerRecord) -> bool:
        """True when the item was never run, or its inputs, ``updated`` or versions changed since."""
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    tmp.replace(path)
