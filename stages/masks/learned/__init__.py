"""A learned moving-object segmenter: per-pixel motion evidence (flow against the camera,
its noise, the image) -> probability that the pixel belongs to an object moving in the world.
Trained on synthetic worlds with exact moving/static ground truth (``diod segmenter``), used
by ``diod masks`` (by default the packaged model, ``--segmenter builtin``) in place of the
geometric threshold (docs/masks.md)."""
