"""pansharp-dist: distributed pansharpening of multi-gigapixel scenes on Dask.

The public surface, by kind:

* reading: :func:`open_scene`, :class:`Scene`, :func:`ingest`, :func:`open_store`
* fusing: :func:`pansharpen` (lazy), :func:`method_names`
* writing: :func:`write_cog`
* all at once: :func:`run` (what ``pansharp-dist run`` does)
* errors: :class:`PansharpError` and its subclasses in :mod:`pansharp_dist.errors`

The names are imported when first used, so that ``import pansharp_dist`` (and
the command line's ``--help``) does not pay for torch, Dask's distributed
scheduler or SciPy until a function needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import PansharpError
from .lazy import lazy_names

if TYPE_CHECKING:
    from .export import write_cog
    from .fusion import pansharpen
    from .methods import method_names
    from .pipeline import run
    from .scene import Scene, open_scene
    from .store import ingest, open_store

_LAZY = {
    "Scene": ".scene",
    "ingest": ".store",
    "method_names": ".methods",
    "open_scene": ".scene",
    "open_store": ".store",
    "pansharpen": ".fusion",
    "run": ".pipeline",
    "write_cog": ".export",
}

__all__ = [
    "PansharpError",
    "Scene",
    "ingest",
    "method_names",
    "open_scene",
    "open_store",
    "pansharpen",
    "run",
    "write_cog",
]
__version__ = "0.1.0"


__getattr__ = lazy_names(__name__, _LAZY)
