"""Evaluation protocols: multi-clip features, retrieval recall (video- and clip-level), linear probe, fine-tuning, the scene-bias
diagnostic, several methods compared under one budget, results report."""
from __future__ import annotations

from vidssl._lazy import lazy_exports

# Public name -> submodule. Imported lazily so `import vidssl.eval` does not pull in torch,
# faiss, sklearn or matplotlib until the protocol that needs them is used.
_EXPORTS = {
    "FeatureSet": "features",
    "extract_features": "features",
    "save_features": "features",
    "load_features": "features",
    "retrieval_recall": "retrieval",
    "nearest_neighbours": "retrieval",
    "clip_features": "clip_retrieval",
    "score_clip_sets": "clip_retrieval",
    "linear_probe": "linear",
    "linear_probe_many": "linear",
    "format_table": "report",
    "write_results": "report",
    "evaluate_features": "protocol",
    "evaluate_feature_sets": "protocol",
    "evaluate_backbone": "protocol",
    "evaluate_splits": "protocol",
    "group_by_gallery": "protocol",
    "check_disjoint": "protocol",
    "calibration_rows": "calibration",
    "calibration_feature_sets": "calibration",
    "scene_only_features": "calibration",
    "motion_only_features": "calibration",
    "fit_linear_probe": "linear",
    "finetune": "finetune",
    "scene_bias": "scene_bias",
    "compare": "compare",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
