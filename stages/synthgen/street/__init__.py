"""The ``street`` world of ``diod data synth --world street``: the hard cases of real
driving footage.

A camera drives down a 3-D street (facades, road and sidewalks, trees, poles, signs) with
parked cars, people standing and walking, and traffic ahead, oncoming and crossing, at
speeds in m/s turned into motion per frame by the frame rate; a quarter of the videos come
from a still camera above the sidewalk instead. Rendered by ray casting simple shapes
(rectangles, yawed boxes, vertical cylinders, ellipsoids) with a z-buffer; instance ids and
forward flow come from the same geometry. Same files as the flat world (docs/synth.md).
"""

from stages.synthgen.street.config import StreetConfig

__all__ = ["StreetConfig"]
