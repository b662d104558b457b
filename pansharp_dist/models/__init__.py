"""Pretrained backbones split into ``features`` and ``head``, and their checkpoints.

``load("fusionnet-wv3")`` gives a shipped backbone; :func:`list_models` their cards.
"""

from .backbones import ARCHITECTURES, Backbone, Inputs
from .checkpoints import (
    ModelCard,
    card,
    import_checkpoint,
    list_models,
    load,
    model_ids,
)
from .radiometry import Radiometry, radiometry_for

__all__ = [
    "ARCHITECTURES",
    "Backbone",
    "Inputs",
    "ModelCard",
    "Radiometry",
    "card",
    "import_checkpoint",
    "list_models",
    "load",
    "model_ids",
    "radiometry_for",
]
