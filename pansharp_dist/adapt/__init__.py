"""Per-scene adaptation: tile sampling, unsupervised losses, and the tailor fit loop."""
