"""The built-in synthetic driving-like dataset (``diod data synth``).

A level pinhole camera pans, zooms and drives forward over a textured ground plane in
front of a far photographic backdrop; upright objects of four families (car, pedestrian,
truck, cyclist) stand on the ground, some driving or walking, at least a third parked.
Everything is textured with photographs shipped inside scikit-image, rendered by inverse
warping with a per-pixel z-buffer, and the ground-truth instance masks and forward flow
come from the same geometry. Output: the ``folder`` layout plus ``meta.json`` and
``flow.npz`` per video (read by ``stages.datasets.synth``). That is the default ``flat``
world; ``stages.synthgen.street`` is the ``street`` world (real streets' hard cases).
"""

from stages.synthgen.config import SynthConfig
from stages.synthgen.dataset import generate
from stages.synthgen.street import StreetConfig

#: ``diod data synth --world``: name -> config class (the first is the default)
WORLDS = {SynthConfig.world: SynthConfig, StreetConfig.world: StreetConfig}

__all__ = ["WORLDS", "StreetConfig", "SynthConfig", "generate"]
