"""pansharp-dist: distributed pansharpening of multi-gigapixel scenes on Dask.

The public surface, by kind:

* reading: :func:`open_scene`, :class:`Scene`, :func:`ingest`, :func:`open_store`
* fusing: :func:`pansharpen` (lazy), :func:`method_names`
* writing: :func:`write_cog`
* all at once: :func:`run` (what ``pansharp-dist run`` does)
* errors: :class:`PansharpError` and its subclasses in :mod:`pansharp_dist.errors`
"""

from .errors import PansharpError
from .export import write_cog
from .infer import pansharpen
from .methods import method_names
from .pipeline import run
from .scene import Scene, open_scene
from .store import ingest, open_store

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
