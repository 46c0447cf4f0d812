"""The flow stage: optical flow for every video into a versioned Zarr artifact (docs/flow.md).

Backends (``backends``): every ptlflow model, OpenCV DIS and Farneback. ``compute_flow`` runs
the stage, ``finalize_flow`` completes a sharded artifact, ``flow_epe_report`` scores one
against ground-truth flow, ``render_flow`` draws it.
"""

from stages.flow.stage import FlowConfig, compute_flow, finalize_flow

__all__ = ["FlowConfig", "compute_flow", "finalize_flow"]
