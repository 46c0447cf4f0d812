"""The results table: every scored source of a dataset side by side.

An `eval` artifact scores either a masks artifact (motion masks as predictions, the weakest
baseline) or an `export` of a `burnin` or `distill` model; following its lineage names the
row, and each row says the protocol that made its scores (``diod`` or ``paper``, see
``stages.protocols``). By default the newest score of each kind and protocol is shown, so
after `make demo` the table reads motion masks -> burn-in -> DIOD; LiDAR models
(DIOD-3D, docs/lidar.md) get rows of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stages.artifacts import Artifact, ArtifactStore
from stages.evaluate import read_scores
from stages.settings import flatten

KIND_ORDER = ("masks", "burnin", "distill", "xmod")
KIND_LABEL = {
    "masks": "motion masks",
    "burnin": "burn-in (BMOD+)",
    "distill": "DIOD",
    "xmod": "xMOD-2D",
}
#: rows of LiDAR networks: DIOD-3D after its burn-in and distillation, xMOD's 3D student
LIDAR_LABEL = {"burnin": "DIOD-3D burn-in", "distill": "DIOD-3D", "xmod": "xMOD-3D"}
#: the row of an xmod model's two networks late-fused (``diod export --modality fused``)
FUSED_LABEL = {"xmod": "xMOD fused"}
#: distill options that make a run an ablation of paper table 4 (or of xMOD's cross-modal
#: labels), and how the row names them
ABLATIONS = {
    "connection": ("one-to-one", "one-to-one"),
    "motion_masks": (False, "no motion masks"),
    "offline": (True, "offline pseudo-labels"),
    "dist_source": ("same", "same-modality labels"),
}


@dataclass
class Row:
    kind: str
    label: str
    protocol: str
    source: str  # id of the masks / burnin / distill artifact that was scored
    eval_id: str
    finished: str
    scores: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        motion = self.scores.get("by_motion") or {}
        return {
            "kind": self.kind,
            "label": self.label,
            "protocol": self.protocol,
            "source": self.source,
            "eval": self.eval_id,
            "fg_ari": self.scores.get("fg_ari"),
            "all_ari": self.scores.get("all_ari"),
            "f1_50": self.scores.get("f1_50"),
            "precision": self.scores.get("precision"),
            "recall": self.scores.get("recall"),
            "moving_recall": (motion.get("moving") or {}).get("recall"),
            "static_recall": (motion.get("static") or {}).get("recall"),
        }


def _label(kind: str, model: Artifact | None, export: Artifact | None) -> str:
    if model is None:
        return KIND_LABEL[kind]
    modality = model.params.get("config", {}).get("model", {}).get("modality", "rgb")
    if kind == "xmod":  # two networks: the export says which one ran
        modality = export.params.get("modality", "rgb")
    label = {"lidar": LIDAR_LABEL, "fused": FUSED_LABEL}.get(modality, KIND_LABEL)[kind]
    if kind == "burnin":
        return label
    settings = flatten(model.params.get("config", model.params))  # nested by section
    tags = [name for key, (value, name) in ABLATIONS.items() if settings.get(key) == value]
    return f"{label} ({', '.join(tags)})" if tags else label


def _row(store: ArtifactStore, scored: Artifact) -> Row | None:
    export = None
    if "masks" in scored.upstream:
        kind, source, model = "masks", scored.upstream["masks"], None
    elif "export" in scored.upstream:
        export = store.get(scored.dataset, "export", scored.upstream["export"])
        kinds = [k for k in ("xmod", "distill", "burnin") if k in export.upstream]
        if not kinds:
            return None
        kind, source = kinds[0], export.upstream[kinds[0]]
        model = store.get(scored.dataset, kind, source, require_complete=False)
    else:
        return None
    return Row(
        kind=kind,
        label=_label(kind, model, export),
        protocol=scored.params.get("protocol", "diod"),
        source=source,
        eval_id=scored.id,
        finished=scored.manifest.get("finished", ""),
        scores=read_scores(scored),
    )


def results(store: ArtifactStore, dataset: str, split: str, *, every: bool = False) -> list[Row]:
    """Scored sources of a split, newest per (kind, label, protocol) unless ``every``."""
    rows = []
    for scored in store.list(dataset, "eval"):
        dense = scored.params.get("pixels", "all") == "all"  # LiDAR-pixel scores: a diagnostic
        if scored.is_complete and scored.params.get("split") == split and dense:
            row = _row(store, scored)
            if row is not None:
                rows.append(row)
    rows.sort(key=lambda r: (KIND_ORDER.index(r.kind), r.label, r.protocol, r.finished))
    if every:
        return rows
    newest: dict[tuple[str, str, str], Row] = {}
    for row in rows:
        newest[(row.kind, row.label, row.protocol)] = row  # rows are sorted oldest first
    return list(newest.values())
