"""Pretrained backbones split into ``features`` and ``head``, and their checkpoints.

``load("fusionnet-wv3")`` gives a shipped backbone; :func:`list_models` their cards.
"""

from .backbones import ARCHITECTURES, Backbone, Inputs
from .checkpoints import (
    ModelCard,
    NativeCheck,
    card,
    import_checkpoint,
    list_models,
    load,
    model_ids,
    record_native_checks,
)
from .radiometry import Radiometry, radiometry_for

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
