"""Per-scene adaptation: tile sampling, unsupervised losses, and the training loop of the tailor."""

MODES = ("tailor", "full", "none")
"""How a network is adapted to a scene: the Feature Tailor, every weight fine-tuned, or not at all."""

TRAINED = MODES[:2]
"""The modes that train something (and write weights): ``tailor`` and ``full``."""
