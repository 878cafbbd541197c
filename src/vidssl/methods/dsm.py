"""DSM (Wang et al., "Enhancing Unsupervised Video Representation Learning by Decoupling the Scene
and the Motion", AAAI 2021): a positive that keeps the motion but breaks the scene, a negative
that keeps the scene but breaks the motion.

Overall architecture: three temporally consistent crops c1, c2, c3 of one clip give the anchor
a = b(c1) (basic augmentation), the positive p = s(c2) (spatial local disturbance: a thin-plate
spline warp) and the negative n = t(c3) (temporal local disturbance: temporal shift, eq. 4,
and/or optical-flow scaling, eq. 3; Table 4's rows are ``temporal_shift`` / ``flow_scaling``,
``spatial_warp: false`` drops the warp). A 3D backbone, global pooling and a fully connected
layer embed them on the unit sphere (z_a, z_p, z_n). ``dsm`` trains with eq. 7 in a MoCo
framework (He et al. 2020: momentum key encoder, queue of anchors of other videos, own-video
keys masked as in ``moco``); ``dsm-triplet`` with the intra-video triplet loss of eq. 5 alone.

Choices where the paper is silent:

- Every view gets its own basic augmentation (crop, flip, colour), the positive's TPS warp on
  top; the warp is drawn on the crop (``sample_tps``), crop and warp are one resampling.
- Flow scaling runs on the delivered frames, before the crop, so the flow needs no geometry;
  phi(t) is drawn per frame pair and per clip from U[0, M]. Warping convention: see
  :func:`scale_along_flow`. Flow comes between the negative's own (shifted) frames.
- Eq. 7 keys: p and n pass through the momentum encoder, and so does a, whose key is what the
  queue stores ("a memory bank with size K to save features of a"); one shuffled key pass of 3B.
- ``flow_method: motion_vectors`` replaces the flow by decoder motion vectors summed over the
  ``stride`` native frames of each pair, upsampled from their 1/4 grid (blocky, free to read).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from vidssl.config import ConfigError
from vidssl.data.geometry import sample_tps
from vidssl.data.sampling import loop_indices, random_clip_indices
from vidssl.data.signals import Signal
from vidssl.data.views import Request, Requests, VideoInfo, as_info
from vidssl.losses.dsm import dsm_contrastive_logits, dsm_contrastive_loss, dsm_triplet_loss
from vidssl.methods.base import Method, register
from vidssl.methods.momentum import FeatureQueue, MomentumEncoder, shuffled_forward
from vidssl.models.heads import MLPHead

__all__ = ["DSM", "DSMTriplet", "DSMClips", "scale_along_flow", "vectors_to_flow"]

FLOW_METHODS = ("dis", "tvl1", "motion_vectors")


@dataclass(frozen=True)
class DSMClips:
    """Sampler: one clip three times (rows c1, c2, c3 of ``"clips"``, cropped on the device), the
    third shifted by tau ~ U{shift[0], ..., shift[1]} frames and looping past the end (eq. 4);
    with ``flow`` the flow (or motion vectors) between the third row's own frames; label ``shift``."""

    clip_len: int
    stride: int
    shift: Optional[tuple[int, int]] = None   # (alpha1, alpha2), None: no temporal shift
    flow: Optional[str] = None                 # dis | tvl1 | motion_vectors, None: no flow scaling
    negative: bool = True                      # False: anchor and positive only

    def __call__(self, info: VideoInfo | int, rng: np.random.Generator) -> Requests:
        num_frames = as_info(info).num_frames
        clip = random_clip_indices(num_frames, self.clip_len, self.stride, rng)
        if not self.negative:
            return Requests({"clips": Request("rgb", np.stack([clip, clip]))}, labels={"shift": 0})
        tau = int(rng.integers(self.shift[0], self.shift[1] + 1)) if self.shift else 0
        shifted = loop_indices(clip + tau, num_frames)                       # eq. 4: x_hat_i = x_{i + tau}
        requests = {"clips": Request("rgb", np.stack([clip, clip, shifted]))}
        if self.flow == "motion_vectors":  # pair t: the native frames after shifted[t] up to the next one
            steps = shifted[:-1, None] + 1 + np.arange(self.stride)
            requests["motion_vectors"] = Request("motion_vectors", loop_indices(steps, num_frames))
        elif self.flow is not None:
            requests["flow"] = Request("flow", shifted, method=self.flow)
        return Requests(requests, labels={"shift": tau})


def scale_along_flow(frames: torch.Tensor, flow: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Optical-flow scaling, eq. (3), on uint8 clips [N, T, H, W, 3] -> uint8 [N, T, H, W, 3].

    Frame 0 is kept; frame t+1 is frame t moved ``phi[:, t]`` times along the flow t -> t+1
    (``flow`` [N, T-1, H, W, 2], pixels, x then y, DESIGN.md). Backward warp: output pixel q of
    frame t+1 samples frame t at ``q - phi(t) * F_t(q)`` (bilinear, one ``grid_sample`` for all
    frames), so content moves by ``phi * F``: phi = 1 approximates frame t+1 (eq. 2), phi = 0
    repeats frame t exactly. The paper's ``I(x + phi V, t)`` is this warp with V read from t+1
    back to t; reading the forward flow at the destination is the usual backward-warp
    approximation. Samples from outside the frame are black (the paper's "wide black boundary"
    for large M).
    """
    n, t, h, w, c = frames.shape
    if flow.shape != (n, t - 1, h, w, 2) or phi.shape != (n, t - 1):
        raise ValueError(f"scale_along_flow: frames {tuple(frames.shape)} need flow [{n}, {t - 1}, {h}, {w}, 2] and "
                         f"phi [{n}, {t - 1}], got {tuple(flow.shape)} and {tuple(phi.shape)}")
    source = frames[:, :-1].permute(0, 1, 4, 2, 3).reshape(n * (t - 1), c, h, w).float()
    ys, xs = torch.meshgrid(torch.arange(h, device=frames.device, dtype=torch.float32) + 0.5,
                            torch.arange(w, device=frames.device, dtype=torch.float32) + 0.5, indexing="ij")
    shift = flow.float().reshape(n * (t - 1), h, w, 2) * phi.to(flow.device, torch.float32).reshape(-1, 1, 1, 1)
    grid = torch.stack([(xs - shift[..., 0]) * (2.0 / w) - 1.0, (ys - shift[..., 1]) * (2.0 / h) - 1.0], dim=-1)
    moved = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    moved = moved.round_().clamp_(0, 255).to(torch.uint8).view(n, t - 1, c, h, w).permute(0, 1, 3, 4, 2)
    return torch.cat([frames[:, :1], moved], dim=1)


def vectors_to_flow(vectors: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Motion vectors [N, T-1, S, h, w, 2] (S native frames per pair, 1/4 grid, delivered pixels)
    -> a flow-like field [N, T-1, H, W, 2]: summed over the S frames, each block spread over its pixels."""
    n, pairs, _, gh, gw, _ = vectors.shape
    total = vectors.float().sum(2).reshape(n * pairs, gh, gw, 2).permute(0, 3, 1, 2)
    dense = F.interpolate(total, scale_factor=4, mode="nearest")[..., :size[0], :size[1]]
    return dense.permute(0, 2, 3, 1).reshape(n, pairs, size[0], size[1], 2)


@register
class DSM(Method):
    name = "dsm"
    objective = "contrastive"   # eq. 7; DSMTriplet: eq. 5

    @dataclass
    class Config:
        name: str = "dsm"
        clip_len: int = 16                 # "16 frames with a temporal stride of 4"
        stride: int = 4
        spatial_warp: bool = True          # positive: TPS warp (S-warping, Table 4)
        tps_grid: int = 4                  # N = tps_grid^2 uniformly spread destination points (N: not given)
        tps_max_offset: float = 0.1        # C: "typically one-tenth of the frame size"
        temporal_shift: bool = True        # negative: T-shift, eq. 4 (Table 4)
        shift_min: int = 2                 # alpha1, alpha2: 2 / 20 for UCF101, 4 / 30 for Kinetics
        shift_max: int = 20
        flow_scaling: bool = True          # negative: Scaling-Of, eq. 3 (both on: "M-disturb")
        flow_scale_max: float = 5.0        # M ("setting M to 5 gives best result")
        flow_method: str = "dis"           # dis | tvl1 | motion_vectors
        margin: float = 0.5                # eq. 5
        queue_size: int = 6536             # K as printed (MoCo's 65536 is likely meant)
        momentum: float = 0.99             # m, "following MoCo"
        temperature: float = 1.0           # eq. 6-7: 1 in the paper, 0.07 in the authors' scripts
        proj_hidden: Optional[int] = None  # None: the paper's one fully connected layer; else an MLP
        proj_dim: int = 128
        shuffle_bn_splits: int = 2         # single-process SplitBN groups for the key encoder

        def __post_init__(self) -> None:
            for key, low in {"clip_len": 2, "stride": 1, "tps_grid": 2, "queue_size": 1, "proj_dim": 1,
                             "shift_min": 0}.items():
                if getattr(self, key) < low:
                    raise ConfigError(f"method.{key}: must be >= {low}, got {getattr(self, key)}")
            if self.shift_max < self.shift_min:
                raise ConfigError(f"method.shift_max: must be >= method.shift_min ({self.shift_min}), "
                                  f"got {self.shift_max}")
            if self.flow_method not in FLOW_METHODS:
                raise ConfigError(f"method.flow_method: must be one of {', '.join(FLOW_METHODS)}, "
                                  f"got {self.flow_method!r}")
            for key in ("tps_max_offset", "flow_scale_max", "margin"):
                if getattr(self, key) < 0:
                    raise ConfigError(f"method.{key}: must be >= 0, got {getattr(self, key)}")
            if not self.temperature > 0 or not 0 <= self.momentum <= 1:
                raise ConfigError("method.temperature must be > 0 and method.momentum in [0, 1]")

    def __init__(self, backbone, cfg: "DSM.Config", num_classes, augment, channels_last=False):
        super().__init__(backbone, cfg, num_classes, augment, channels_last)
        self.has_negative = cfg.temporal_shift or cfg.flow_scaling
        if self.objective == "triplet" and not self.has_negative:
            raise ConfigError("method: dsm-triplet needs a negative: set method.temporal_shift and/or "
                              "method.flow_scaling true")
        dims = [backbone.out_dim, *([cfg.proj_hidden] if cfg.proj_hidden else []), cfg.proj_dim]
        self.head = MLPHead(dims, l2_normalize=True)      # global pooling is the backbone's; FC -> D, L2
        if self.objective == "contrastive":
            self.key_encoder = MomentumEncoder(self.backbone, self.head)
            self.queue = FeatureQueue(cfg.queue_size, cfg.proj_dim)

    def view_sampler(self) -> DSMClips:
        cfg = self.cfg
        return DSMClips(cfg.clip_len, cfg.stride, (cfg.shift_min, cfg.shift_max) if cfg.temporal_shift else None,
                        cfg.flow_method if cfg.flow_scaling else None, self.has_negative)

    def signals(self) -> tuple[Signal, ...]:
        if not self.cfg.flow_scaling:
            return ()
        if self.cfg.flow_method == "motion_vectors":
            return (Signal("motion_vectors"),)
        return (Signal("flow", method=self.cfg.flow_method),)

    # -- the triplet (a, p, n) ------------------------------------------------------------------
    def views(self, batch: Mapping[str, Any]) -> list[torch.Tensor]:
        """Augmented [a, p(, n)], each float [B, 3, T, crop, crop] in the backbone's format."""
        clips, g, crop = batch["clips"], batch.get("generator"), self.augment.crop_size   # [B, V, T, H, W, 3]
        b, _, t, h, w, _ = clips.shape
        a = self.augment(clips[:, 0], generator=g)                                       # a = b(c1)
        tps = sample_tps(b, (crop, crop), grid=self.cfg.tps_grid, max_offset=self.cfg.tps_max_offset,
                         generator=g) if self.cfg.spatial_warp else None
        p = self.augment.apply(clips[:, 1], self.augment.sample_params(b, h, w, g, num_frames=t, tps=tps))  # s(c2)
        views = [a, p]
        if self.has_negative:
            c3 = clips[:, 2]                                   # already shifted by the sampler (eq. 4)
            if self.cfg.flow_scaling:                          # eq. 3, phi(t) ~ U[0, M]
                flow = (vectors_to_flow(batch["motion_vectors"], (h, w)) if self.cfg.flow_method == "motion_vectors"
                        else batch["flow"])
                phi = torch.rand((b, t - 1), generator=g) * self.cfg.flow_scale_max
                c3 = scale_along_flow(c3, flow, phi)
            views.append(self.augment(c3, generator=g))       # n = t(c3)
        return [self.to_backbone_format(v) for v in views]

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        views = self.views(batch)
        if self.objective == "triplet":
            return self._triplet(views)
        return self._contrastive(views, batch)

    def _triplet(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        z_a, z_p, z_n = self.head(self.backbone(torch.cat(views))).chunk(3)
        loss = dsm_triplet_loss(z_a, z_p, z_n, self.cfg.margin)                      # eq. 5
        with torch.no_grad():
            closer = ((z_a - z_p).norm(dim=1) < (z_a - z_n).norm(dim=1)).float().mean() * 100
        return {"loss": loss, "pretext_acc": closer}

    def _contrastive(self, views: list[torch.Tensor], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if "index" not in batch:
            raise KeyError("dsm needs batch['index'], the video of each clip, to keep a video's own queued "
                           "anchors out of its negatives")
        video = torch.as_tensor(batch["index"], dtype=torch.long).to(self.queue.tags.device).reshape(-1)
        z_a = self.head(self.backbone(views[0]))
        with torch.no_grad():
            self.key_encoder.update(self.cfg.momentum)
            keys = shuffled_forward(self.key_encoder, torch.cat(views), batch.get("generator"),
                                    self.cfg.shuffle_bn_splits).chunk(len(views))
        k_a, k_p = keys[0], keys[1]
        k_n = keys[2] if self.has_negative else None
        own_video = self.queue.tags.unsqueeze(0) == video.unsqueeze(1)               # [B, K]
        queue = self.queue.features.clone().detach()
        loss = dsm_contrastive_loss(z_a, k_p, k_n, queue, self.cfg.temperature, own_video)  # eq. 7
        out = {"loss": loss}
        with torch.no_grad():
            logits = dsm_contrastive_logits(z_a, k_p, k_n, queue, own_video)
            out["pretext_acc"] = (logits.argmax(1) == 0).float().mean() * 100
            if k_n is not None:
                out["pos_minus_neg"] = (logits[:, 0] - logits[:, 1]).mean()          # a.p - a.n (cosine)
        self.queue.dequeue_and_enqueue(k_a, video)                                   # the bank holds anchors
        return out


@register
class DSMTriplet(DSM):
    """DSM optimised with the intra-video triplet loss (eq. 5) alone: no key encoder, no queue."""

    name = "dsm-triplet"
    objective = "triplet"

    @dataclass
    class Config(DSM.Config):
        name: str = "dsm-triplet"
