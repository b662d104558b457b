"""The PansharpError family.

Every error the library raises on purpose is a :class:`PansharpError`. Each
subclass also inherits the builtin it resembles, so callers that already catch
``ValueError`` or ``OSError`` keep working. Messages say what was wrong and
what to do about it; the CLI prints them on one line and exits with status 2.
"""

from __future__ import annotations

import errno


class PansharpError(Exception):
    """Root of every error raised by pansharp-dist. Its message never shows credentials: URLs in it lose their
    user, password and query (:func:`~pansharp_dist.redact.redact_text`)."""

    def __str__(self) -> str:
        from .redact import redact_text

        return redact_text(super().__str__())


class InputNotFoundError(PansharpError, FileNotFoundError):
    """An input file or URL does not exist."""


class CorruptInputError(PansharpError, OSError):
    """An input file exists but cannot be read as a raster."""


class BandCountError(PansharpError, ValueError):
    """PAN is not single-band, or MS has fewer than two bands."""


class CRSMismatchError(PansharpError, ValueError):
    """PAN and MS are in different coordinate reference systems."""


class NoOverlapError(PansharpError, ValueError):
    """PAN and MS footprints do not overlap."""


class ResolutionRatioError(PansharpError, ValueError):
    """The MS/PAN pixel-size ratio is not an integer."""


class UnsupportedDtypeError(PansharpError, TypeError):
    """A raster's data type cannot be pansharpened."""


class EmptySceneError(PansharpError, ValueError):
    """Every pixel of the scene is nodata."""


class OutputExistsError(PansharpError, FileExistsError):
    """The output exists and overwriting was not asked for."""


class OutputNotWritableError(PansharpError, PermissionError):
    """The output folder cannot be written."""


class UnknownMethodError(PansharpError, KeyError):
    """No fusion method has the requested name."""

    def __str__(self) -> str:
        from .redact import redact_text

        return redact_text(str(self.args[0])) if self.args else ""


class UnknownSensorError(PansharpError, KeyError):
    """No sensor has the requested name."""

    def __str__(self) -> str:
        from .redact import redact_text

        return redact_text(str(self.args[0])) if self.args else ""


class InvalidParameterError(PansharpError, ValueError):
    """A parameter (tile size, weights, patch index, ...) is out of range.

    ``parameter`` names it as the Python API does (``tile``, ``task_megapixels``); the command line shows
    the flag that sets it.
    """

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class ClusterError(PansharpError, ConnectionError):
    """A Dask cluster could not be started or reached."""


class StoreError(PansharpError, OSError):
    """A Zarr tile store is missing, incomplete or of another layout."""


class HrefRefusedError(PansharpError, PermissionError):
    """A catalogue href points outside the allowed roots or schemes."""


class OutputLockedError(PansharpError, BlockingIOError):
    """Another run is writing the same output at the same time."""


_TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE}


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: connection and timeout errors, and OS errors of a transient kind; never the
    library's own errors (bad input stays bad)."""
    if isinstance(exc, PansharpError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS
