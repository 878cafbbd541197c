"""Pace prediction (Wang, Jiao, Liu, "Self-supervised Video Representation Learning by Pace
Prediction", ECCV 2020), with its contrastive regularisation (section 3.2), which the authors'
public release leaves out.

Section 3.1: clips are sampled at a random pace p and the network classifies p (eq. 1). Fast
clips take every p-th frame, slow clips (p < 1) repeat the preceding frame in the blank slots
(``slow_fill: repeat``, the paper's choice) or blend the two neighbouring frames
(``slow_fill: interpolate``, the alternative the paper mentions). Paces are either *relative*,
p in {1, ..., max_pace} (class p - 1; max_pace 4 is the paper's best, Table 1), or *absolute*,
p in {1/3, 1/2, 1, 2, 3} (5 classes).

Section 3.2: a contrastive term regularises the features: ``same_context`` (eq. 2: two clips of
one video at two different paces are positives, clips of other videos negatives) or
``same_pace`` (eq. 3: clips of equal pace are positives whatever their video). An optional
non-linear projection head sits between the pooled features and the contrastive space (Table 2,
last row). The total loss is eq. 4: ``lambda_cls * L_cls + lambda_ctr * L_ctr`` (1 and 0.1, §4.1).

Choices where the paper is silent (documented here and in the config):

- Similarity: the paper uses a plain dot product and no temperature. We L2-normalise the
  embeddings and divide by ``temperature`` 0.1 (as the other papers' code does); set
  ``l2_normalize: false, temperature: 1.0`` for the literal formula.
- Start frame: random among the starts where the clip fits; only a clip longer than the video
  loops over it (§3.1's wording). Starting anywhere would make the wrap-around jump more frequent
  for faster paces, a cut the network could use as a pace shortcut.
- Colour jitter per frame (the paper's choice, Table 1) or per clip is the ``augment`` section's
  ``per_frame_jitter`` (one switch for every method, so no second copy of the augmentation
  here); the UCF101 / Kinetics-400 pace recipes set it true with the authors' strength
  (0.8, 0.8, 0.8, 0.2), p = 0.8; the demo recipe sets it true at base.yaml's mild strength.
- Contrastive negatives are the clips of the local batch (no gather across devices).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from vidssl.config import ConfigError
from vidssl.data.sampling import loop_indices, pace_indices
from vidssl.data.views import Request, Requests, VideoInfo, as_info
from vidssl.losses import pace_cls_loss, pace_same_context_loss, pace_same_pace_loss
from vidssl.methods.base import Method, register
from vidssl.models.heads import LinearHead, MLPHead

__all__ = ["Pace", "PaceClips", "pace_candidates", "slot_fractions", "blend_slow_frames"]

ABSOLUTE_PACES = (Fraction(1, 3), Fraction(1, 2), Fraction(1), Fraction(2), Fraction(3))
CONTRASTIVE = ("none", "same_context", "same_pace")
SLOW_FILL = ("repeat", "interpolate")


def pace_candidates(pace_set: str, max_pace: int = 4) -> tuple[Fraction, ...]:
    """The M paces of the classification task; class index i is pace ``candidates[i]``."""
    if pace_set == "relative":
        return tuple(Fraction(p) for p in range(1, max_pace + 1))
    if pace_set == "absolute":
        return ABSOLUTE_PACES
    raise ValueError(f"pace_set must be 'relative' or 'absolute', got {pace_set!r}")


@dataclass(frozen=True)
class PaceClips:
    """Sampler: ``num_views`` clips of one video at distinct random paces (§3.1, Fig. 2).

    Requests ``"clips"``: rgb [num_views, T] and labels ``{"pace": class index per view}``. With
    ``interpolate`` a view holds 2 * clip_len indices: the clip's frames (the repeat-filled clip)
    followed by each slot's next frame, which :func:`blend_slow_frames` mixes in by the slot's
    fractional position.
    """

    paces: tuple[Fraction, ...]
    clip_len: int
    num_views: int = 1
    interpolate: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.num_views <= len(self.paces):
            raise ValueError(f"PaceClips: num_views must be in [1, {len(self.paces)}] (one distinct pace "
                             f"per view), got {self.num_views}")
        if self.clip_len < 1:
            raise ValueError(f"PaceClips: clip_len must be >= 1, got {self.clip_len}")

    def __call__(self, info: VideoInfo | int, rng: np.random.Generator) -> Requests:
        num_frames = as_info(info).num_frames
        classes = rng.choice(len(self.paces), size=self.num_views, replace=False)
        rows = [self._view(num_frames, int(c), rng) for c in classes]
        return Requests({"clips": Request("rgb", np.stack(rows))}, labels={"pace": classes.astype(np.int64)})

    def _view(self, num_frames: int, pace_class: int, rng: np.random.Generator) -> np.ndarray:
        pace = self.paces[pace_class]
        blends = self.interpolate and pace.denominator > 1
        span = int((self.clip_len - 1) * pace) + 1 + int(blends)
        last_start = num_frames - span
        start = int(rng.integers(0, last_start + 1 if last_start >= 0 else num_frames))
        indices = pace_indices(num_frames, start, self.clip_len, pace)
        if self.interpolate:
            # A slot on a whole frame (weight 0) names its own frame again: nothing extra to decode.
            following = np.where(slot_fractions(pace, self.clip_len) > 0, indices + 1, indices)
            indices = np.concatenate([indices, loop_indices(following, num_frames)])
        return indices


def slot_fractions(pace: Fraction, clip_len: int) -> np.ndarray:
    """Fractional part of slot j's position j * pace in the video: how far it sits past its frame."""
    slots = np.arange(clip_len)
    return (slots * pace.numerator % pace.denominator) / pace.denominator


def blend_slow_frames(clips: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Linear frame interpolation for slow clips: uint8 [B, V, 2T, H, W, 3] -> [B, V, T, H, W, 3].

    ``weights`` [B, V, T] is each slot's fractional position (0 for fast and normal paces, so the
    clip is unchanged; 1/3 and 2/3 for the slots between two frames at pace 1/3).
    """
    t = clips.shape[2] // 2
    frames, following = clips[:, :, :t].float(), clips[:, :, t:].float()
    w = weights.to(frames)[..., None, None, None]
    return ((1 - w) * frames + w * following).round_().to(torch.uint8)


@register
class Pace(Method):
    name = "pace"

    @dataclass
    class Config:
        name: str = "pace"
        clip_len: int = 16                 # §4.1 (K-400: "a consecutive 16-frame video clip")
        pace_set: str = "relative"         # relative: {1..max_pace}; absolute: {1/3, 1/2, 1, 2, 3}
        max_pace: int = 4                  # Table 1's best; ignored for the absolute set
        slow_fill: str = "repeat"          # repeat (paper) | interpolate; only matters for p < 1
        contrastive: str = "same_context"  # none | same_context (eq. 2) | same_pace (eq. 3)
        lambda_cls: float = 1.0            # eq. 4, §4.1
        lambda_ctr: float = 0.1
        projection_head: bool = True       # non-linear head before the contrastive space (Table 2)
        proj_hidden: Optional[int] = None  # default: backbone.out_dim
        proj_dim: int = 128
        l2_normalize: bool = True          # paper: plain dot product (see module docstring)
        temperature: float = 0.1

        def __post_init__(self) -> None:
            choices = {"pace_set": ("relative", "absolute"), "slow_fill": SLOW_FILL, "contrastive": CONTRASTIVE}
            for key, allowed in choices.items():
                if getattr(self, key) not in allowed:
                    raise ConfigError(f"method.{key}: must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
            positive = {"clip_len": 1, "max_pace": 2, "proj_dim": 1}
            for key, low in positive.items():
                if getattr(self, key) < low:
                    raise ConfigError(f"method.{key}: must be >= {low}, got {getattr(self, key)}")
            if self.temperature <= 0:
                raise ConfigError(f"method.temperature: must be > 0, got {self.temperature}")
            if self.lambda_cls < 0 or self.lambda_ctr < 0:
                raise ConfigError("method.lambda_cls / method.lambda_ctr: must be >= 0")

    def __init__(self, backbone, cfg: "Pace.Config", num_classes, augment, channels_last=False):
        super().__init__(backbone, cfg, num_classes, augment, channels_last)
        self.paces = pace_candidates(cfg.pace_set, cfg.max_pace)
        self.classifier = LinearHead(backbone.out_dim, len(self.paces))  # eq. 1's h = f(x)
        self.projector = None
        if cfg.contrastive != "none" and cfg.projection_head:
            hidden = cfg.proj_hidden or backbone.out_dim
            # Linear -> ReLU -> Linear (MoCo-v2 / SimCLR form): the paper only says "non-linear".
            self.projector = MLPHead([backbone.out_dim, hidden, cfg.proj_dim], bn=False)
        # Fractional slot positions per pace class, for slow_fill: interpolate.
        self.register_buffer("slot_fractions", torch.tensor(
            np.stack([slot_fractions(p, cfg.clip_len) for p in self.paces]), dtype=torch.float32), persistent=False)

    def view_sampler(self) -> PaceClips:
        # Same context needs two clips of each video at different paces (n = 2, §3.2); the
        # classification and same-pace losses need one (same-pace positives are other videos).
        num_views = 2 if self.cfg.contrastive == "same_context" else 1
        return PaceClips(self.paces, self.cfg.clip_len, num_views, self.cfg.slow_fill == "interpolate")

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        clips, pace = batch["clips"], batch["pace"]                  # [B, V, T, H, W, 3], [B, V]
        if self.cfg.slow_fill == "interpolate":
            if clips.shape[2] != 2 * self.cfg.clip_len:
                raise ValueError(f"pace with slow_fill=interpolate expects clips of 2 * clip_len = "
                                 f"{2 * self.cfg.clip_len} frames from its PaceClips sampler, got {clips.shape[2]}")
            clips = blend_slow_frames(clips, self.slot_fractions[pace])
        x = self.augment_views(clips, batch.get("generator"))       # [B*V, 3, T, h, w], view-major
        features = self.backbone(x)                                  # pooled [B*V, D]
        target = pace.flatten()
        logits = self.classifier(features).float()
        loss_cls = pace_cls_loss(logits, target)                     # eq. 1
        out = {"loss_cls": loss_cls}
        loss = self.cfg.lambda_cls * loss_cls
        if self.cfg.contrastive != "none":
            loss_ctr = self._contrastive_loss(features, target, pace.shape[1])
            out["loss_ctr"] = loss_ctr
            loss = loss + self.cfg.lambda_ctr * loss_ctr                # eq. 4
        out["loss"] = loss
        with torch.no_grad():
            out["pretext_acc"] = (logits.argmax(1) == target).float().mean() * 100
        return out

    def _contrastive_loss(self, features: torch.Tensor, pace: torch.Tensor, num_views: int) -> torch.Tensor:
        z = self.projector(features) if self.projector is not None else features
        z = z.float()
        if self.cfg.l2_normalize:
            z = F.normalize(z, dim=1)
        if self.cfg.contrastive == "same_context":                  # eq. 2
            z_a, z_b = z.unflatten(0, (-1, num_views)).unbind(1)
            return pace_same_context_loss(z_a, z_b, self.cfg.temperature)
        return pace_same_pace_loss(z, pace, self.cfg.temperature)    # eq. 3
