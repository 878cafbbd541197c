"""Motion-Focused Contrastive Learning (Li, Zhang, Qiu, Yao, Liu, Mei, ICCV 2021), sections 3.1-3.3.

MoCo with a queue (``vidssl.methods.momentum``) on *motion-focused* views, plus a *motion
alignment loss*, both driven by the motion map of eq. (1) (motion boundaries: camera motion cancels).

3.1  Motion: TV-L1 flow (the paper), DIS, or compressed-domain motion vectors (``motion_source:
     mv``, beyond the paper, far cheaper), eq. (1) on any of them.
3.2  Temporal sampling: each view's clip is drawn among the candidate clips whose mean T-motion is
     above the median over the video's candidates (``info.motion``, before any decode). Spatial
     cropping: the clip's S-motion, its 90th percentile as threshold, a box drawn at random among
     boxes covering 80 % of the hot pixels (:func:`motion_boxes`, batched on the device, one
     transfer per batch), the same box for every frame; then the ``augment`` section's colour
     jitter, grayscale, blur and flip (its ``scale``/``ratio``: the boxes' random scales).
3.3  ``L = L_NCE + w L_MAL``: InfoNCE (eq. 3) and eq. (7) on the query, ``g_c = d(q . k+) / d h_c``
     from ``torch.autograd.grad(create_graph=True)``.

Where the paper is silent: ``h`` is the output of the last convolution of the last block
(:func:`alignment_layers`; the authors hook ``layer4.2.conv3``), so BN, shortcut and ReLU lie
between it and the pooled feature (on ``p5`` itself v3 is void: under a global average pool
``d(q . k)/d p5`` is the same at every position). ``w_c`` is each gradient map's mean (the paper;
the authors' code pools per time step). The paper sums the losses; the authors' code weighs
``L_MAL`` 2 in the first 5 epochs (``mal_warmup_epochs: 5``; off by default). The two views are
sampled independently; the MAL target is the query's ST-motion cropped like its clip and
average-pooled to the feature map. Sec. 4.2: queue 131072, momentum 0.999, temperature 0.1,
MLP 2048 -> 128 with L2 normalisation, shuffle-BN.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidssl.config import ConfigError
from vidssl.data.geometry import sample_boxes
from vidssl.data.sampling import clip_indices, clip_span
from vidssl.data.signals import Signal
from vidssl.data.views import Request, Requests, VideoInfo, as_info
from vidssl.losses import info_nce
from vidssl.losses.contrastive import info_nce_logits
from vidssl.losses.mcl import ALIGNMENT_TERMS, alignment_map, motion_alignment_terms
from vidssl.methods.base import Method, register
from vidssl.methods.momentum import FeatureQueue, MomentumEncoder, shuffled_forward
from vidssl.models.heads import MLPHead

__all__ = ["MCL", "MotionClips", "motion_boxes", "vector_motion_map", "alignment_layers", "MOTION_SOURCES"]

MOTION_SOURCES = ("tvl1", "dis", "mv")


# -- 3.1 / 3.2: motion-focused temporal sampling (in the workers, before decoding) -------------------

@dataclass(frozen=True)
class MotionClips:
    """``num_views`` clips, each drawn among the candidate clips (every start where it fits) whose
    clip-level motion, the mean T-motion of its frames, is above the median over the video's
    candidates (all candidates when none is, or without ``temporal_sampling``); plus each clip's
    motion maps (``motion_map``) or motion vectors (``motion_source: mv``) as ``"motion"``."""

    num_views: int = 2
    clip_len: int = 8
    stride: int = 2
    motion_source: str = "tvl1"
    temporal_sampling: bool = True

    def __call__(self, info: VideoInfo | int, rng: np.random.Generator) -> Requests:
        info = as_info(info)
        n = info.num_frames
        starts = np.arange(max(n - clip_span(self.clip_len, self.stride) + 1, 1))
        statistic = "mv_t_motion" if self.motion_source == "mv" else "t_motion"  # vidssl.data.signals
        t_motion = info.motion.get(statistic) if self.temporal_sampling and len(starts) > 1 else None
        if t_motion is not None and len(t_motion) == n:
            frames = starts[:, None] + np.arange(self.clip_len) * self.stride
            level = np.asarray(t_motion, dtype=np.float64)[frames].mean(axis=1)
            above = starts[level > np.median(level)]  # relative to this video only
            starts = above if len(above) else starts
        rows = np.stack([clip_indices(n, int(s), self.clip_len, self.stride)
                         for s in rng.choice(starts, size=self.num_views)])
        motion = (Request("motion_vectors", rows) if self.motion_source == "mv"
                  else Request("motion_map", rows, method=self.motion_source))
        return Requests({"clips": Request("rgb", rows), "motion": motion})


def vector_motion_map(vectors: torch.Tensor) -> torch.Tensor:
    """Eq. (1) on the device for motion vectors [..., h, w, 2] -> [..., h, w]: the norm of the four
    motion boundaries (``vidssl.video.flow.motion_map``'s central differences, one-sided at borders)."""
    gy, gx = torch.gradient(vectors.float(), dim=(-3, -2))
    return (gx.square() + gy.square()).sum(-1).sqrt()


# -- 3.2: motion-focused spatial cropping (batched, on the device) -----------------------------------

def motion_boxes(s_motion: torch.Tensor, scale, ratio, generator: torch.Generator | None = None, *,
                 quantile: float = 0.9, coverage: float = 0.8, candidates: int = 16) -> torch.Tensor:
    """One crop box per clip from its S-motion [N, H, W]: float32 [N, 4] (x0, y0, w, h) on the CPU.

    Hot pixels lie above the clip's ``quantile``. ``candidates`` random-resized-crop boxes per clip
    (``scale``, ``ratio``), half placed anywhere, half at random around the hot pixels' bounding
    box; the box is drawn among those holding ``coverage`` of the hot pixels (an integral image
    counts them), else it is that bounding box. ``.cpu()`` is the batch's one transfer.
    """
    n, height, width = s_motion.shape
    dev = s_motion.device
    boxes = sample_boxes(n * candidates, height, width, scale, ratio, generator).view(n, candidates, 4)
    u = torch.rand(n, candidates, 3, generator=generator)
    x0, y0, w, h = boxes.to(dev, non_blocking=True).unbind(-1)
    u = u.to(dev, non_blocking=True)
    flat = s_motion.float().flatten(1)
    rows = max(1, 2**24 // flat.shape[1])  # torch.quantile takes at most 2^24 values a call
    level = torch.cat([torch.quantile(part, quantile, dim=1, keepdim=True) for part in flat.split(rows)])
    hot = (flat > level).view(n, height, width)
    total = hot.sum((1, 2))[:, None]

    def span(mask, size):  # first and one-past-last index where mask [N, size] holds
        idx = torch.arange(size, device=dev)
        return torch.where(mask, idx, size).amin(1)[:, None], torch.where(mask, idx + 1, 0).amax(1)[:, None]

    (by0, by1), (bx0, bx1) = span(hot.any(2), height), span(hot.any(1), width)

    def place(b0, b1, size, limit, r):  # a start whose box holds [b0, b1) (or lies inside it)
        lo, hi = torch.minimum(b1 - size, b0), torch.maximum(b1 - size, b0)
        return torch.minimum(torch.clamp(lo + torch.floor(r * (hi - lo + 1)), min=0), limit - size)

    around = torch.arange(candidates, device=dev) >= candidates // 2
    x0 = torch.where(around, place(bx0, bx1, w, width, u[..., 0]), x0)
    y0 = torch.where(around, place(by0, by1, h, height, u[..., 1]), y0)
    integral = F.pad(hot.long().cumsum(1).cumsum(2), (1, 0, 1, 0)).flatten(1)

    def at(y, x):
        return integral.gather(1, (y * (width + 1) + x).long())

    inside = at(y0 + h, x0 + w) - at(y0, x0 + w) - at(y0 + h, x0) + at(y0, x0)
    ok = (inside >= coverage * total) | (total == 0)
    pick = torch.where(ok, u[..., 2], -1.0).argmax(1)[:, None, None].expand(-1, 1, 4)
    chosen = torch.stack([x0, y0, w, h], -1).gather(1, pick)[:, 0]
    tight = torch.cat([bx0, by0, bx1 - bx0, by1 - by0], 1).float()
    return torch.where(ok.any(1, keepdim=True), chosen, tight).cpu()


# -- 3.3: the feature map the alignment loss looks at ------------------------------------------------

def alignment_layers(backbone: nn.Module) -> list[nn.Module]:
    """The last convolution (shortcut aside) of p5's last block, of each branch of an Inception block."""
    block = list(backbone.stages["p5"].children())[-1]
    paths = [getattr(block, f"branch{i}") for i in range(4)] if hasattr(block, "branch0") else [block]
    return [[m for name, m in path.named_modules() if isinstance(m, nn.Conv3d) and "shortcut" not in name][-1]
            for path in paths]


@contextmanager
def captured_outputs(modules):
    """The outputs of ``modules`` in one forward; no hook outlives it (key encoder copies, export)."""
    out: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, o: out.append(o)) for m in modules]
    try:
        yield out
    finally:
        for handle in handles:
            handle.remove()


@register
class MCL(Method):
    name = "mcl"

    @dataclass
    class Config:
        name: str = "mcl"
        clip_len: int = 16
        stride: int = 2
        queue_size: int = 131072
        momentum: float = 0.999
        temperature: float = 0.1
        proj_hidden: int = 2048
        proj_dim: int = 128
        shuffle_bn_splits: int = 2            # single-process SplitBN groups for the key encoder
        motion_source: str = "tvl1"           # tvl1 (the paper) | dis | mv (compressed-domain vectors)
        temporal_sampling: bool = True        # TA of Table 1
        spatial_cropping: bool = True         # SA of Table 1
        hot_quantile: float = 0.9
        box_coverage: float = 0.8
        box_candidates: int = 16
        alignment: str = "v3"                 # v1 | v2 | v3 | none (MoCo + motion-focused views)
        alignment_terms: list[str] = field(default_factory=lambda: list(ALIGNMENT_TERMS))
        mal_weight: float = 1.0
        mal_warmup_weight: float = 2.0        # the authors' code: 2 in the first epochs
        mal_warmup_epochs: float = 0.0        # 5 in the authors' code; 0: the paper's plain sum

        def __post_init__(self) -> None:
            for key, allowed in {"motion_source": MOTION_SOURCES, "alignment": ("v1", "v2", "v3", "none")}.items():
                if getattr(self, key) not in allowed:
                    raise ConfigError(f"method.{key}: must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
            checks = {"alignment_terms": bool(self.alignment_terms) and set(self.alignment_terms) <= set(ALIGNMENT_TERMS),
                      "hot_quantile": 0 < self.hot_quantile < 1, "box_coverage": 0 < self.box_coverage <= 1,
                      "temperature": self.temperature > 0, "mal_weight": min(self.mal_weight, self.mal_warmup_weight) >= 0,
                      **{k: getattr(self, k) >= 1 for k in ("clip_len", "stride", "queue_size", "proj_hidden",
                                                             "proj_dim", "box_candidates")}}
            for key, ok in checks.items():
                if not ok:
                    raise ConfigError(f"method.{key}: invalid value {getattr(self, key)!r}")

    def __init__(self, backbone, cfg: "MCL.Config", num_classes, augment, channels_last=False):
        super().__init__(backbone, cfg, num_classes, augment, channels_last)
        self.head = MLPHead([backbone.out_dim, cfg.proj_hidden, cfg.proj_dim], l2_normalize=True)
        self.key_encoder = MomentumEncoder(self.backbone, self.head)
        self.queue = FeatureQueue(cfg.queue_size, cfg.proj_dim)
        self.align_to = alignment_layers(backbone) if cfg.alignment != "none" else []

    def view_sampler(self) -> MotionClips:
        return MotionClips(2, self.cfg.clip_len, self.cfg.stride, self.cfg.motion_source, self.cfg.temporal_sampling)

    def signals(self) -> tuple[Signal, ...]:
        source = self.cfg.motion_source
        return (Signal("motion_vectors"),) if source == "mv" else (Signal("motion_map", method=source),)

    def motion_focused_views(self, batch: Mapping[str, Any], generator):
        """Sec. 3.2 on the device: (augmented clips [B*2, 3, T, c, c], ST-motion [B*2, T, c, c] cropped alike)."""
        clips = batch["clips"].flatten(0, 1)                     # [B*2, T, H, W, 3], view-major per video
        motion = batch["motion"].flatten(0, 1)
        if self.cfg.motion_source == "mv":
            motion = vector_motion_map(motion)                   # eq. (1) on the vectors' 1/4 grid
        n, t, height, width = clips.shape[:4]
        boxes = None
        if self.cfg.spatial_cropping:
            s_motion = motion.mean(1)                            # eq. (2): S-motion
            if s_motion.shape[-2:] != (height, width):
                s_motion = F.interpolate(s_motion[:, None], size=(height, width), mode="nearest")[:, 0]
            boxes = motion_boxes(s_motion, self.augment.scale, self.augment.ratio, generator,
                                 quantile=self.cfg.hot_quantile, coverage=self.cfg.box_coverage,
                                 candidates=self.cfg.box_candidates)
        params = self.augment.sample_params(n, height, width, generator, num_frames=t, boxes=boxes)
        x = self.to_backbone_format(self.augment.apply(clips, params))
        st_motion = self.augment.apply_geometry(motion[..., None], params)[:, 0] if self.align_to else None
        return x, st_motion

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if "index" not in batch:
            raise KeyError("mcl needs batch['index'] to keep a video's own queued keys out of its negatives")
        video = torch.as_tensor(batch["index"], dtype=torch.long).to(self.queue.tags.device).reshape(-1)
        generator = batch.get("generator")
        x, st_motion = self.motion_focused_views(batch, generator)
        x_q, x_k = x.unflatten(0, (-1, 2)).unbind(1)
        with captured_outputs(self.align_to) as maps:
            q = self.head(self.backbone(x_q))
        with torch.no_grad():
            self.key_encoder.update(self.cfg.momentum)
            k = shuffled_forward(self.key_encoder, x_k, generator, self.cfg.shuffle_bn_splits)
        own_video = self.queue.tags.unsqueeze(0) == video.unsqueeze(1)
        negatives = self.queue.features.clone().detach()
        loss_nce = info_nce(q, k, negatives, self.cfg.temperature, negative_mask=own_video)   # eq. (3)
        out = {"loss_nce": loss_nce}
        loss = loss_nce
        if self.align_to:
            h = torch.cat(maps, 1)
            g = None
            if self.cfg.alignment != "v1":  # g_c = d(q . k+) / d h_c, differentiable (second order)
                g = torch.cat(torch.autograd.grad((q * k).sum(), maps, create_graph=True), 1)
            target = F.adaptive_avg_pool3d(st_motion.unflatten(0, (-1, 2))[:, 0][:, None], h.shape[2:])[:, 0]
            terms = motion_alignment_terms(alignment_map(self.cfg.alignment, h=h, g=g), target)   # eq. (7)
            loss_mal = sum(terms[name] for name in dict.fromkeys(self.cfg.alignment_terms))
            epoch = float(batch.get("epoch", float("inf")))
            weight = self.cfg.mal_warmup_weight if epoch < self.cfg.mal_warmup_epochs else self.cfg.mal_weight
            loss = loss + weight * loss_mal
            out.update(loss_mal=loss_mal.detach(), mal_weight=torch.tensor(float(weight)),
                       **{f"mal_{name}": value.detach() for name, value in terms.items()})
        with torch.no_grad():
            acc = (info_nce_logits(q, k, negatives, own_video).argmax(1) == 0).float().mean() * 100
        self.queue.dequeue_and_enqueue(k, video)
        return {"loss": loss, **out, "pretext_acc": acc, "masked_negatives": own_video.sum(1).float().mean()}
