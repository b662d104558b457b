"""What a run keeps beside its work files so that ``--resume`` continues it only when nothing changed.

* The run record (``<out stem>.run.json`` in the work folder): a fingerprint of
  each input file and the run's settings, written before any work. A resume
  whose inputs or settings differ from the record is refused: reusing the old
  tile store, adaptation and output blocks would write the old scene's pixels.
* The hash of a saved adaptation (``<weights>.sha256`` beside it), written
  right after the weights and checked before they are reused: a damaged file
  (one flipped bit changes every output pixel) is refused.

An input's fingerprint is its resolved path, size and modification time, and
the SHA-256 of its bytes: all of them up to :data:`FULL_HASH_BYTES`, else the
first MiB and :data:`SAMPLES` evenly spread MiB. URLs and GDAL virtual paths
are fingerprinted by their text only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TypedDict

from .errors import StoreError
from .outputs import atomic_write

FULL_HASH_BYTES = 64 << 20
SAMPLES = 16
_PIECE = 1 << 20


def input_fingerprint(source: str | Path) -> dict[str, object]:
    """``{"path", "bytes", "mtime_ns", "sha256"}`` of a local file (``sha256`` over all of it, or its first MiB
    and :data:`SAMPLES` MiB spread over it); ``{"href"}`` for a URL or GDAL virtual path."""
    text = str(source)
    if "://" in text or text.startswith("/vsi"):
        return {"href": text}
    path = Path(text).resolve()
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if stat.st_size <= FULL_HASH_BYTES:
            for piece in iter(lambda: f.read(_PIECE), b""):
                digest.update(piece)
        else:
            step = (stat.st_size - _PIECE) // SAMPLES
            for offset in [0, *(step * k for k in range(1, SAMPLES + 1))]:
                f.seek(offset)
                digest.update(f.read(_PIECE))
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


class RunRecord(TypedDict):
    """A run's record: the fingerprint of each named input (:func:`input_fingerprint`), and the settings."""

    inputs: dict[str, dict[str, object]]
    settings: dict[str, object]


def run_record(inputs: dict[str, str | Path], settings: dict[str, object]) -> RunRecord:
    """The record of a run: the fingerprint of each named input and the settings (JSON values)."""
    return {
        "inputs": {name: input_fingerprint(path) for name, path in inputs.items()},
        "settings": json.loads(json.dumps(settings)),
    }


def write_record(path: str | Path, record: RunRecord) -> None:
    """Save ``record`` at ``path`` (atomically)."""
    atomic_write(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def check_record(path: str | Path, record: RunRecord) -> None:
    """Refuse a resume whose inputs or settings differ from the interrupted run's record at ``path``.

    Raises:
        StoreError: the record is missing or unreadable, or differs (the message names what changed).
    """
    path = Path(path)
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        raise StoreError(
            f"{path} (the record of the interrupted run's inputs and settings) is missing or damaged, so its work "
            "files cannot be trusted; rerun without `resume`"
        ) from None
    changed = [f"input {name}" for name, fp in record["inputs"].items() if kept.get("inputs", {}).get(name) != fp]
    changed += [
        f"setting {name}" for name, value in record["settings"].items() if kept.get("settings", {}).get(name) != value
    ]
    if changed:
        raise StoreError(
            f"`resume`: {', '.join(changed)} changed since the interrupted run (recorded in {path}); its work files "
            "hold another result: rerun without `resume`, or resume with the same inputs and options"
        )


def _hash_file(weights: Path) -> Path:
    return weights.with_name(f"{weights.name}.sha256")


def save_weights(path: str | Path, data: bytes) -> None:
    """Save adaptation weights at ``path`` (atomically), then their SHA-256 beside them."""
    path = Path(path)
    atomic_write(path, data)
    atomic_write(_hash_file(path), (hashlib.sha256(data).hexdigest() + "\n").encode())


def saved_weights(path: str | Path) -> bytes | None:
    """The adaptation weights saved at ``path`` by :func:`save_weights`, checked; ``None`` if there are none.

    Raises:
        StoreError: the file does not match its recorded hash, or the hash is missing (the file is damaged,
            or was not written by this project).
    """
    path = Path(path)
    if not path.exists():
        return None
    data = path.read_bytes()
    try:
        recorded = _hash_file(path).read_text().strip()
    except OSError:
        recorded = None
    if recorded != hashlib.sha256(data).hexdigest():
        raise StoreError(
            f"the saved adaptation {path} does not match its recorded SHA-256 (it is damaged or was replaced); "
            "rerun without `resume` to adapt again"
        )
    return data


def remove_weights(path: str | Path) -> None:
    """Delete saved adaptation weights and their hash, if any."""
    path = Path(path)
    for file in (path, _hash_file(path)):
        file.unlink(missing_ok=True)
