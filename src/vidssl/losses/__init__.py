"""Losses as pure functions of tensors, one per paper equation.

Each function's docstring names its paper and equation; every one is checked in tests against an
independent NumPy computation. Under bf16 autocast they compute in fp32.
"""
from __future__ import annotations

from vidssl._lazy import lazy_exports

_EXPORTS = {
    "info_nce": "contrastive",
    "dsm_triplet_loss": "dsm", "dsm_contrastive_loss": "dsm",
    "pace_cls_loss": "pace", "pace_same_context_loss": "pace", "pace_same_pace_loss": "pace",
    "mal_v1_loss": "mcl", "mal_v2_loss": "mcl", "mal_v3_loss": "mcl", "motion_alignment_loss": "mcl",
    "cmd_context_loss": "cmd", "cmd_pointwise_loss": "cmd", "cmd_joint_loss": "cmd",
    "cmd_motion_mse_loss": "cmd", "cmd_motion_ce_loss": "cmd",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
