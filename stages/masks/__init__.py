"""Motion masks (paper 3.1, docs/masks.md): instance masks of moving objects from optical flow, or imported.

``stages.masks.stage.compute_masks(store, MasksConfig(...))`` writes the ``masks``
artifact; the other modules are its steps: ``camera`` (camera-motion fit and residual),
``motion`` (moving pixels of a frame pair by the geometric rule), ``learned`` (moving pixels
by a trained segmenter: the default), ``instances`` (components, splits, persistence, ids),
``geometric`` (a run of frames), ``importer`` (id PNGs in and out), ``quality``
(P/R/F1 against GT), ``params`` (the tunables). Nothing heavy is imported here, so the CLI
can read ``params`` cheaply.
"""
