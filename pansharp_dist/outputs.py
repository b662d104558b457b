"""What a run may write, replace and delete, and how it writes it.

* :func:`check_output`: before any work, an output path must be writable, must
  not be one of the run's inputs (symlinks and hard links resolved), and may
  replace only a file, or a store this project wrote, and only with
  ``overwrite``;
* :func:`output_lock`: one run at a time per output path; a second run that
  asks for the same path fails at once with :class:`~.errors.OutputLockedError`;
  a lock left by a killed run is taken over;
* :func:`remove_owned`: deletes a folder only if this project wrote it (a tile
  store or an output store, recognised by its own metadata) and refuses
  anything else, so that a path given by mistake never costs the user's files;
* :func:`atomic_write`: bytes to a temporary name beside the target, then a
  rename: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import OutputExistsError, OutputLockedError, OutputNotWritableError

TILE_STORE_ATTR = "pansharp_dist"
"""The attribute (in the root ``zarr.json``) that marks a tile store this project wrote."""
OUTPUT_STORE_ATTR = "fingerprint"
"""The attribute (in the root ``.zattrs``, beside a ``ledger`` folder) that marks an output store or a parts
store (:mod:`pansharp_dist.pyramid`)."""


def check_output(out: str | Path, overwrite: bool, inputs: Iterable[str | Path] = (), *, store: bool = False) -> Path:
    """Fail early, before any work, if ``out`` cannot or must not be written.

    Args:
        out: the output path.
        overwrite: whether an existing output may be replaced.
        inputs: the paths the run reads (URLs are skipped); ``out`` may be none of them.
        store: ``out`` is a Zarr store (a folder) rather than a file.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is False; or it is one of ``inputs``; or it is a
            folder (of the user's, or any folder where a file is written).
        OutputNotWritableError: the folder is missing or not writable.
    """
    out = Path(out)
    for source in inputs:
        if _same_file(out, source):
            raise OutputExistsError(f"{out} is also an input of this run ({source}); choose another output path")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise OutputExistsError(f"{out} already exists; pass `overwrite=True` to replace it")
        if out.is_dir() and not store:
            raise OutputExistsError(f"{out} is a folder; give the path of the file to write")
        if out.is_dir() and not is_own_store(out):
            raise OutputExistsError(
                f"{out} is a folder that pansharp-dist did not write; `overwrite=True` replaces only its own stores: "
                "choose another path"
            )
    folder = out.parent
    if not folder.is_dir():
        raise OutputNotWritableError(f"output folder {folder} does not exist; create it first")
    probe = folder / f".{out.name}.probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot write to output folder {folder} ({exc.strerror or exc}); choose a writable `out`"
        ) from None
    return out


def _same_file(out: Path, source: str | Path) -> bool:
    """Whether ``out`` names the local file or folder ``source`` (through symlinks and hard links)."""
    text = str(source)
    if "://" in text or text.startswith("/vsi"):
        return False
    try:
        return out.resolve() == Path(text).resolve() or (out.exists() and os.path.samefile(out, text))
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError from resolve), a path that vanished
        return False


def is_own_store(path: str | Path) -> bool:
    """Whether the folder ``path`` is a Zarr store this project wrote: a tile store (``zarr.json`` carrying
    :data:`TILE_STORE_ATTR`) or an output or parts store (``.zattrs`` carrying :data:`OUTPUT_STORE_ATTR` and a
    ledger)."""
    path = Path(path)
    try:
        if (path / "zarr.json").is_file():
            meta = json.loads((path / "zarr.json").read_text())
            return meta.get("node_type") == "group" and TILE_STORE_ATTR in meta.get("attributes", {})
        if (path / ".zattrs").is_file() and (path / "ledger").is_dir():
            return OUTPUT_STORE_ATTR in json.loads((path / ".zattrs").read_text())
    except (OSError, ValueError, AttributeError):
        return False
    return False


def remove_owned(path: str | Path) -> None:
    """Delete ``path`` if it is a file or a store this project wrote; do nothing if it does not exist.

    Raises:
        OutputExistsError: ``path`` is a folder this project did not write; it is left as it is.
    """
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        if not is_own_store(path):
            raise OutputExistsError(
                f"{path} is a folder that pansharp-dist did not write, where it would put a store; move it "
                "away or choose another `work_dir`"
            )
        shutil.rmtree(path)


DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
"""Write errors that no retry mends: a full disk, a quota, a read-only file system, a file-size limit."""


@contextlib.contextmanager
def disk_errors(where: str) -> Iterator[None]:
    """Turn a write error of :data:`DISK_FULL` met in the block (in this process or in a task) into
    :class:`OutputNotWritableError` naming ``where`` (the output, the work folder)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise OutputNotWritableError(
            f"cannot write {where}: {os.strerror(exc.errno)}; free space there or choose another place "
            "(`out`, `work_dir`); nothing was written at the output"
        ) from None


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a unique temporary name beside it and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


_HELD: dict[Path, int] = {}
"""Locks this process holds, by lock file, with how many blocks hold each (a run holds its output's lock
around the COG writer, which takes it too)."""


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold the lock of the output ``out`` (a hidden ``.<name>.lock`` file beside it) for the block.

    The lock is an advisory ``flock``: the system drops it when its process dies, so a run killed with its
    lock held leaves a file that the next run takes over. The file is removed on release. A process that
    holds the lock may take it again (the blocks nest).

    Raises:
        OutputLockedError: another live run holds the lock of ``out``.
    """
    out = Path(out)
    lock = out.with_name(f".{out.name}.lock").absolute()
    if lock in _HELD:
        yield
        return
    _HELD[lock] = _acquire(lock, out)
    try:
        yield
    finally:
        fd = _HELD.pop(lock)
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)  # closing drops the flock


def remove_leftovers(out: str | Path, kinds: Iterable[str]) -> None:
    """Delete what runs killed while writing ``out`` left beside it: hidden ``.<name>.<kind>-*`` files and
    folders, names only this project's writers use. Call it holding :func:`output_lock`, so that no live run's
    files are taken."""
    out = Path(out)
    for kind in kinds:
        for left in out.parent.glob(f".{out.name}.{kind}-*"):
            if left.is_dir() and not left.is_symlink():
                shutil.rmtree(left, ignore_errors=True)
            else:
                left.unlink(missing_ok=True)


def _acquire(lock: Path, out: Path, attempts: int = 5) -> int:
    for _ in range(attempts):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputLockedError(
                    f"another run is writing {out} (it holds {lock}); wait for it to finish or choose another `out`"
                ) from None
            raise OutputNotWritableError(f"cannot lock {lock} ({exc.strerror or exc}); choose another `out`") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its last holder removed between our open and our lock
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
    raise OutputLockedError(f"could not take the lock {lock}: other runs keep taking it; choose another `out`")
