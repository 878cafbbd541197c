"""Context and motion decoupling (Huang, Liu, Wang, Pan, Xu, Jin, CVPR 2021).

Sec. 3.1: one V-network (the ``backbone``) learns from two decoupled pretext tasks supervised by
the compressed stream: context from I-frames, motion from motion vectors.

- Context matching (3.2, eq. 1): pooled clip features (head g^V) and those of an I-frame near the
  clip (I-network R2D-10, head g^I) are matched by InfoNCE over the batch.
- Motion prediction (3.3, eq. 2): an encoder-decoder T (Transformer, or ConvGRU) turns the clip's
  feature map into the predicted features of the motion vectors of the next 8 frames, which the
  M-network (R3D-10 on 2 channels) computes; real and predicted features are embedded point by
  point (g1^M, g2^M) and matched by pointwise InfoNCE; 3 motion clips from other times of the
  same video add hard negatives (sec. 4.1).
- Joint optimisation (3.4, eq. 3): J = (1 - alpha) J_I + alpha J_M, alpha = 0.5.

Views (sec. 4.1; offsets from the authors' code): a clip (16 frames, stride 4), an I-frame within
5 frames of it, the vectors of ``future`` frames from ``gap`` frames after its last one, and
``negatives`` clips of vectors sharing no frame with those. The clip and its vectors share one
crop and flip (vectors rescaled, x negated on a flip: ``warp_fields``), resized to the crop as
the paper resizes them to 112; the I-frame and the negatives get their own. Where the video gives
less: no I-frame within the window takes the nearest (a video with one keyframe always gives
frame 0: one context image per video, still distinct between videos), no known frame types take
the clip's first frame, a video shorter than clip + gap + future loops its indices.

Ablations from config alone: ``period``, ``motion_loss``, ``predictor`` (Table 1), ``supervision``
(Table 4; ``iframe_flow`` reads optical flow instead of vectors). A network a setting leaves
unused is frozen (so DDP needs no unused-parameter search) and exported as initialised. Both
losses take their negatives from the local batch. ``supervised`` reuses :class:`MotionPrediction`
as a regulariser (Table 6, ``method.motion_weight: 0.2``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidssl.config import ConfigError
from vidssl.data.geometry import GeometryParams, sample_geometry, warp_fields
from vidssl.data.sampling import clip_indices, clip_span, loop_indices
from vidssl.data.signals import Signal
from vidssl.data.views import Request, Requests, VideoInfo, as_info
from vidssl.losses import cmd_joint_loss, cmd_motion_ce_loss, cmd_motion_mse_loss
from vidssl.losses.cmd import cmd_context_logits, cmd_pointwise_logits
from vidssl.methods.base import Method, register
from vidssl.models.backbones import NetworkSpec
from vidssl.models.heads import MLPHead
from vidssl.models.predictors import ConvGRUPredictor, TransformerPredictor, feature_grid

__all__ = ["CMD", "CMDViews", "MotionPrediction", "nearby_keyframe", "motion_network", "motion_config"]

CHOICES = {"period": ("future", "current"), "supervision": ("both", "iframe", "motion", "iframe_flow"),
           "motion_loss": ("infonce", "mse", "ce"), "predictor": ("transformer", "convgru")}


def nearby_keyframe(keyframes: np.ndarray, clip: np.ndarray, window: int, rng: np.random.Generator) -> int | None:
    """A random I-frame within ``window`` frames of the clip, else the nearest one; None without any."""
    if not len(keyframes):
        return None
    near = keyframes[(keyframes >= clip.min() - window) & (keyframes <= clip.max() + window)]
    return int(rng.choice(near)) if len(near) else int(keyframes[np.argmin(np.abs(keyframes - clip.mean()))])


@dataclass(frozen=True)
class CMDViews:
    """Sampler: ``"clips"`` rgb [1, clip_len], ``"iframe"`` [1] (with ``iframe``), ``"motion"``
    [future] (``motion_vectors``, or ``flow`` [future + 1] indices, i.e. ``future`` fields) and
    ``"motion_negatives"`` [negatives, ...] of the same stream (with ``motion``)."""

    clip_len: int = 16
    stride: int = 4
    future: int = 8
    gap: int = 2
    negatives: int = 3
    iframe_window: int = 5
    period: str = "future"
    iframe: bool = True
    motion: Optional[str] = "motion_vectors"  # motion_vectors | flow | None
    flow_method: Optional[str] = None

    def __call__(self, info: VideoInfo | int, rng: np.random.Generator) -> Requests:
        info = as_info(info)
        n, span = info.num_frames, clip_span(self.clip_len, self.stride)
        reach = span - 1 + self.gap + self.future if self.motion and self.period == "future" else span
        start = int(rng.integers(0, max(n - reach, 0) + 1))
        clip = clip_indices(n, start, self.clip_len, self.stride)
        requests = {"clips": Request("rgb", clip[None])}
        if self.iframe:
            key = nearby_keyframe(info.keyframes, clip, self.iframe_window, rng)
            requests["iframe"] = Request("iframe", [key]) if key is not None else Request("rgb", clip[:1])
        if self.motion:
            first = start + (span - 1 + self.gap if self.period == "future" else max(span - self.future, 0) // 2)
            first = max(first, 1) if self.motion == "flow" else first
            rows = [s + np.arange(self.future) for s in [first, *self._negative_starts(n, first, rng)]]
            options = {}
            if self.motion == "flow":  # field j: flow from frame s+j-1 to s+j, the vectors' meaning
                rows, options = [np.concatenate([r[:1] - 1, r]) for r in rows], {"method": self.flow_method}
            rows = loop_indices(np.stack(rows), n)
            requests["motion"] = Request(self.motion, rows[0], **options)
            if self.negatives:
                requests["motion_negatives"] = Request(self.motion, rows[1:], **options)
        return Requests(requests)

    def _negative_starts(self, n: int, first: int, rng: np.random.Generator) -> np.ndarray:
        if not self.negatives:
            return np.zeros(0, np.int64)
        lowest = 1 if self.motion == "flow" else 0  # a flow field needs the frame before its first
        starts = np.arange(lowest, max(n - self.future, lowest) + 1)
        apart = starts[np.abs(starts - first) >= self.future]  # no frame shared with the positive
        pool = apart if len(apart) else (starts[starts != first] if (starts != first).any() else starts)
        return rng.choice(pool, self.negatives, replace=len(pool) < self.negatives)


def motion_network(backbone: nn.Module) -> nn.Module:
    """The paper's M-network for a method without ``extra_networks``: R3D-10 on 2 channels."""
    spec = getattr(backbone, "spec", None)
    return NetworkSpec("r3d", width=spec.width if spec is not None else 64, depth=10, in_channels=2).build()


def motion_config(cfg) -> "CMD.Config":
    """cmd's config for the motion prediction of another method (``cfg.motion``: cmd keys), at its clips."""
    given = set(cfg.motion)
    unknown = sorted((given - set(CMD.Config.__dataclass_fields__)) | (given & {"name", "supervision"}))
    if unknown:
        raise ConfigError(f"method.motion.{unknown[0]}: not a setting of cmd's motion prediction")
    return CMD.Config(**{**cfg.motion, "clip_len": cfg.clip_len, "stride": cfg.stride, "supervision": "motion"})


def _head(in_dim: int, cfg) -> MLPHead:  # the authors' heads end with BN then L2 (models/heads.py)
    return MLPHead([in_dim, cfg.proj_hidden, cfg.proj_dim], norm_last=True, l2_normalize=True)


def _diagonal_ce(logits: torch.Tensor) -> torch.Tensor:  # cmd_context_loss / cmd_pointwise_loss from their logits
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


@torch.no_grad()
def _top1(logits: torch.Tensor) -> torch.Tensor:  # % of queries whose positive (column i) scores highest
    return (logits.argmax(1) == torch.arange(len(logits), device=logits.device)).float().mean() * 100


def _points(maps: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W] -> [B, N, C], N in (t, y, x) order
    return maps.flatten(2).transpose(1, 2)


class MotionPrediction(nn.Module):
    """Sec. 3.3: T predicts the M-network's features of the near-future motion from the clip's map;
    g1^M / g2^M embed real / predicted features point by point for eq. (2), or a value head
    predicts the motion itself, pooled to the same points (Table 1: MSE, cross-entropy on bins)."""

    def __init__(self, video_net: nn.Module, motion_net: nn.Module, cfg, augment, channels_last: bool = False):
        super().__init__()
        self.cfg, self.augment, self.channels_last = cfg, augment, channels_last
        crop_size = augment.crop_size
        self.size = cfg.motion_size or crop_size
        self.stream = "flow" if cfg.supervision == "iframe_flow" else "motion_vectors"
        src = feature_grid(video_net, video_net.in_channels, cfg.clip_len, (crop_size, crop_size))
        self.grid = feature_grid(motion_net, motion_net.in_channels, cfg.future, (self.size, self.size))
        c1, c3 = video_net.out_dim, motion_net.out_dim
        if cfg.predictor == "transformer":
            self.predictor = TransformerPredictor(c1, c3, src, self.grid, d_model=cfg.d_model, nhead=cfg.nhead,
                                                  num_encoder_layers=cfg.encoder_layers,
                                                  num_decoder_layers=cfg.decoder_layers,
                                                  dim_feedforward=cfg.ffn_dim, dropout=cfg.dropout)
        else:
            self.predictor = ConvGRUPredictor(c1, c3, self.grid, hidden_dim=cfg.gru_hidden)
        if cfg.motion_loss == "infonce":
            self.head_real, self.head_pred = _head(c3, cfg), _head(c3, cfg)   # g1^M, g2^M
        else:
            self.head_value = nn.Linear(c3, 2 * (cfg.mv_bins if cfg.motion_loss == "ce" else 1))

    def views(self, iframe: bool = False) -> CMDViews:
        c = self.cfg
        return CMDViews(c.clip_len, c.stride, c.future, c.gap, c.negatives if c.motion_loss == "infonce" else 0,
                        c.iframe_window, c.period, iframe, self.stream, c.flow_method)

    def signals(self) -> tuple:
        return (Signal(self.stream, method=self.cfg.flow_method) if self.stream == "flow" else Signal(self.stream),)

    def fields(self, batch: Mapping[str, Any], geometry, generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Positive motion [B, 2, F, s, s] in the clip's crop and flip; negatives [B*K, 2, F, s, s], own draws."""
        size = (self.size, self.size)
        pos = warp_fields(batch["motion"], geometry, size=size).permute(0, 4, 1, 2, 3)
        neg = batch.get("motion_negatives")
        if neg is not None:
            neg = neg.flatten(0, 1)
            a = self.augment
            own = sample_geometry(len(neg), geometry.input_size, geometry.output_size, scale=a.scale, ratio=a.ratio,
                                  hflip_p=a.hflip_p, generator=generator)
            neg = warp_fields(neg, own, size=size).permute(0, 4, 1, 2, 3)
        return pos, neg

    def _predict(self, x_map: torch.Tensor, generator) -> torch.Tensor:
        """T(x); its dropout drawn from a seed of the step's generator, so a resumed run replays it."""
        if not (self.training and generator is not None and self.cfg.predictor == "transformer" and self.cfg.dropout):
            return self.predictor(x_map)
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[x_map.device.index or 0] if x_map.device.type == "cuda" else []):
            torch.manual_seed(seed)
            return self.predictor(x_map)

    def forward(self, x_map: torch.Tensor, batch: Mapping[str, Any], geometry, motion_net: nn.Module,
                generator=None) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        pos, neg = self.fields(batch, geometry, generator)
        pred = _points(self._predict(x_map, generator))                          # v^_i = T(x_i): [B, N, C3]
        if cfg.motion_loss != "infonce":
            target = _points(F.adaptive_avg_pool3d(pos, self.grid))              # [B, N, 2] pixels / frame
            value = self.head_value(pred)
            if cfg.motion_loss == "mse":
                return {"loss_motion": cmd_motion_mse_loss(value, target)}
            return {"loss_motion": cmd_motion_ce_loss(value.unflatten(-1, (2, -1)), target, cfg.mv_bound)}
        fields = pos if neg is None else torch.cat([pos, neg])
        fields = fields.clamp(-cfg.motion_norm, cfg.motion_norm) / cfg.motion_norm  # authors' code: +-10 px -> +-1
        if self.channels_last:
            fields = fields.contiguous(memory_format=torch.channels_last_3d)
        real = _points(motion_net.forward_features(fields, "p5")["p5"])             # v_i: [B(1+K), N, C3]
        b, n = pred.shape[:2]
        v = self.head_real(real.flatten(0, 1)).unflatten(0, (-1, n))              # g1^M
        v_hat = self.head_pred(pred.flatten(0, 1)).unflatten(0, (b, n))           # g2^M
        v, v_neg = v[:b], (v[b:] if neg is not None else None)
        logits = cmd_pointwise_logits(v_hat, v, v_neg, cfg.temperature)          # eq. (2), computed once
        return {"loss_motion": _diagonal_ce(logits), "motion_acc": _top1(logits)}


def motion_network_input(vectors: torch.Tensor, *, crop_size: int, frame_size, size: int | None,
                         norm: float) -> torch.Tensor:
    """Motion vectors [N, T, h, w, 2] (pixels of the delivered frames, any grid) -> the M-network's
    input [N, 2, T, s, s]: centre-cropped like ``eval_transform`` crops the clips, resized to
    ``size`` (None: the crop), clamped to +-``norm`` px and divided by it, as in training."""
    n, _, gh, gw, _ = vectors.shape
    frame = tuple(frame_size) if frame_size is not None else (4 * gh, 4 * gw)  # the decoder's 1/4 grid
    side = size or crop_size
    fields = warp_fields(vectors.float(), GeometryParams.centre_crop(n, frame, crop_size), size=(side, side))
    return fields.permute(0, 4, 1, 2, 3).clamp(-norm, norm) / norm


@register
class CMD(Method):
    name = "cmd"
    extra_networks = {"iframe": {"backbone": "r2d", "depth": 10},
                      "motion": {"backbone": "r3d", "depth": 10, "in_channels": 2}}

    @dataclass
    class Config:
        name: str = "cmd"
        clip_len: int = 16              # sec. 4.1: 16 frames at stride 4
        stride: int = 4
        iframe_window: int = 5          # I-frame within +-5 frames of the clip (authors' code)
        future: int = 8                 # "the next 8 consecutive frames"
        gap: int = 2                    # first motion frame = the clip's last + gap (authors' code)
        negatives: int = 3              # hard-negative motion clips from the same video (sec. 4.1)
        period: str = "future"          # future | current (Table 1)
        supervision: str = "both"       # both | iframe | motion | iframe_flow (Table 4)
        motion_loss: str = "infonce"    # infonce (eq. 2) | mse | ce (Table 1)
        predictor: str = "transformer"  # transformer | convgru (Table 1)
        alpha: float = 0.5              # eq. (3)
        temperature: float = 0.1        # paper silent: the authors' configuration
        proj_hidden: int = 2048         # MLP heads: hidden 2048, output 512 (sec. 4.1)
        proj_dim: int = 512
        d_model: int = 512              # Transformer: width 512, 8 heads, 2 + 4 layers (sec. 4.1)
        nhead: int = 8
        encoder_layers: int = 2
        decoder_layers: int = 4
        ffn_dim: int = 2048             # paper silent: Vaswani et al.'s 4 x width
        dropout: float = 0.1            # the authors' Transformer
        gru_hidden: int = 512           # ConvGRU state channels
        motion_size: Optional[int] = None  # side the motion maps are resized to; None: the crop size
        motion_norm: float = 10.0       # M-network input: vectors clamped to +-10 px, divided by 10 (authors)
        flow_method: Optional[str] = None  # iframe_flow: dis | tvl1 | None (the cache's, else dis)
        mv_bins: int = 9                # ce: bins per component over [-mv_bound, mv_bound] px of the crop
        mv_bound: float = 8.0

        def __post_init__(self) -> None:
            bad = [f"{k}: must be one of {', '.join(v)}" for k, v in CHOICES.items() if getattr(self, k) not in v]
            bad += [f"{k}: must be >= 1" for k in ("clip_len", "stride", "future", "proj_dim", "d_model", "mv_bins")
                    if getattr(self, k) < 1]
            bad += [f"{k}: must be >= 0" for k in ("negatives", "gap", "iframe_window") if getattr(self, k) < 0]
            bad += [f"{k}: must be > 0" for k in ("temperature", "mv_bound", "motion_norm") if not getattr(self, k) > 0]
            bad += ["alpha: must be in [0, 1]"] if not 0.0 <= self.alpha <= 1.0 else []
            if bad:
                raise ConfigError(f"method.{bad[0]}, got {getattr(self, bad[0].split(':')[0])!r}")

    def __init__(self, backbone, cfg: "CMD.Config", num_classes, augment, channels_last=False, networks=None):
        super().__init__(backbone, cfg, num_classes, augment, channels_last, networks)
        self.context = cfg.supervision != "motion"
        self.motion = None
        if self.context:                                                     # g^V, g^I (sec. 3.2)
            self.head_video = _head(backbone.out_dim, cfg)
            self.head_iframe = _head(self.networks["iframe"].out_dim, cfg)
        else:
            self.networks["iframe"].requires_grad_(False)
        if cfg.supervision != "iframe":                                      # T, g1^M, g2^M (sec. 3.3)
            self.motion = MotionPrediction(backbone, self.networks["motion"], cfg, augment, channels_last)
        if self.motion is None or cfg.motion_loss != "infonce":
            self.networks["motion"].requires_grad_(False)

    @classmethod
    def network_input(cls, network: str, cfg: "CMD.Config"):
        """The M-network's evaluation input (Table 5's retrieval from it): ``future`` consecutive
        frames of motion vectors per clip, as it was trained on them (:func:`motion_network_input`)."""
        if network != "motion" or cfg.supervision == "iframe_flow":
            return None
        from vidssl.eval.features import ClipInput

        return ClipInput("motion_vectors", cfg.future, 1, partial(motion_network_input, size=cfg.motion_size,
                                                                  norm=cfg.motion_norm))

    def view_sampler(self) -> CMDViews:
        if self.motion is not None:
            return self.motion.views(iframe=self.context)
        return CMDViews(self.cfg.clip_len, self.cfg.stride, iframe_window=self.cfg.iframe_window, motion=None)

    def signals(self) -> tuple:
        return self.motion.signals() if self.motion is not None else ()

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        g = batch.get("generator")
        clips = batch["clips"].flatten(0, 1)                                  # [B, T, H, W, 3]
        b, t, h, w, _ = clips.shape
        params = self.augment.sample_params(b, h, w, g, num_frames=t)         # shared with the motion
        maps = self.backbone.forward_features(self.to_backbone_format(self.augment.apply(clips, params)), "p5")
        out: dict[str, torch.Tensor] = {}
        if self.context:                                                     # context matching, eq. (1)
            z = self.networks["iframe"](self.to_backbone_format(self.augment(batch["iframe"], g)))
            x_star, z_star = self.head_video(maps["pooled"]), self.head_iframe(z)
            logits = cmd_context_logits(x_star, z_star, self.cfg.temperature)
            out["loss_context"], out["context_acc"] = _diagonal_ce(logits), _top1(logits)
        if self.motion is not None:                                          # motion prediction, eq. (2)
            out.update(self.motion(maps["p5"], batch, params.geometry, self.networks["motion"], g))
        if self.context and self.motion is not None:                         # joint optimisation, eq. (3)
            out["loss"] = cmd_joint_loss(out["loss_context"], out["loss_motion"], self.cfg.alpha)
        else:
            out["loss"] = out["loss_context"] if self.context else out["loss_motion"]
        return out
