"""Pretrained backbones split into ``features`` and ``head``, and their checkpoints.

``load("fusionnet-wv3")`` gives a shipped backbone; :func:`list_models` their cards.

Card lookups (:func:`card`, :func:`model_ids`, :func:`list_models`) need no torch; the
names that do (backbones, loading, importing) are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names
from .cards import ModelCard, NativeCheck, card, list_models, model_ids, record_native_checks
from .radiometry import Radiometry, radiometry_for

if TYPE_CHECKING:
    from .backbones import ARCHITECTURES, Backbone, Inputs
    from .checkpoints import import_checkpoint, load

_LAZY = {
    "ARCHITECTURES": ".backbones",
    "Backbone": ".backbones",
    "Inputs": ".backbones",
    "import_checkpoint": ".checkpoints",
    "load": ".checkpoints",
}

__all__ = [
    "ARCHITECTURES",
    "Backbone",
    "Inputs",
    "ModelCard",
    "NativeCheck",
    "Radiometry",
    "card",
    "import_checkpoint",
    "list_models",
    "load",
    "model_ids",
    "radiometry_for",
    "record_native_checks",
]

__getattr__ = lazy_names(__name__, _LAZY)
