"""Data: catalogs of videos, clip sampling, requests, the shared Dataset and on-device augmentation."""
from __future__ import annotations

from vidssl._lazy import lazy_exports

# Public name -> submodule. Imported lazily so `import vidssl.data` stays cheap: a worker that
# only decodes never loads kornia, and reading a catalog never loads PyAV.
_EXPORTS = {
    "VideoRecord": "catalogs",
    "Catalog": "catalogs",
    "ucf101": "catalogs",
    "hmdb51": "catalogs",
    "kinetics400": "catalogs",
    "folder": "catalogs",
    "csv_catalog": "catalogs",
    "load_catalog": "catalogs",
    "holdout_split": "catalogs",
    "video_group": "catalogs",
    "catalog_from_config": "from_config",
    "evaluation_catalogs": "from_config",
    "frame_cache_from_config": "from_config",
    "loop_indices": "sampling",
    "clip_indices": "sampling",
    "random_clip_indices": "sampling",
    "uniform_clip_indices": "sampling",
    "pace_indices": "sampling",
    "VideoInfo": "views",
    "Request": "views",
    "Requests": "views",
    "Sampler": "views",
    "RandomClips": "views",
    "SingleClip": "views",
    "UniformClips": "views",
    "TiledClips": "views",
    "generate_benchmark": "synthetic",
    "VideoDataset": "dataset",
    "BadVideoWarning": "dataset",
    "BadVideoTally": "dataset",
    "TooManyBadVideos": "dataset",
    "collate": "dataset",
    "Signal": "signals",
    "SignalSet": "signals",
    "dequantize_batch": "signals",
    "ClipAugment": "augment",
    "AugmentParams": "augment",
    "eval_transform": "augment",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
