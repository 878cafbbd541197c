"""Training: one LightningModule for every method, a resumable data module, atomic checkpoints."""
from __future__ import annotations

from vidssl._lazy import lazy_exports

_EXPORTS = {"pretrain": "run", "MethodModule": "module", "VideoDataModule": "data",
            "load_backbone": "export", "save_backbone": "export"}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
