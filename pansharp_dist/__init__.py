"""pansharp-dist: distributed pansharpening of multi-gigapixel scenes on Dask."""

from .errors import PansharpError
from .scene import Scene, open_scene

__all__ = ["PansharpError", "Scene", "open_scene"]
__version__ = "0.1.0"
