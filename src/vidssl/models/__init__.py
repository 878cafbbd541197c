"""Video backbones (C3D, R3D, R(2+1)D, R2D, S3D-G, I3D) and the heads methods put on them."""
from __future__ import annotations

from vidssl._lazy import lazy_exports

# Public name -> submodule, imported on first use like vidssl.video and vidssl.losses.
_EXPORTS = {
    "Backbone": "backbones",
    "BACKBONES": "backbones",
    "STAGES": "backbones",
    "NetworkSpec": "backbones",
    "build_backbone": "backbones",
    "MLPHead": "heads",
    "LinearHead": "heads",
    "L2Normalize": "heads",
    "TransformerPredictor": "predictors", "ConvGRUPredictor": "predictors", "feature_grid": "predictors",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
