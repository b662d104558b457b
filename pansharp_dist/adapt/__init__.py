"""Per-scene adaptation: tile sampling, unsupervised losses, and the tailor fit loop."""

MODES = ("tailor", "full", "none")
"""How a network is adapted to a scene: the Feature Tailor, every weight fine-tuned, or not at all."""
