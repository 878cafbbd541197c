"""Context and motion decoupling losses: Huang et al., "Self-supervised Video Representation
Learning by Context and Motion Decoupling", CVPR 2021, section 3 (eq. 1-3) and the motion
prediction alternatives of Table 1.

Pure functions of tensors, computed in fp32 with autocast disabled (the trainer runs bf16).
Similarities are cosines (the inputs are L2-normalised here) divided by a temperature tau; the
paper gives no value, the authors' configuration uses 0.1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cmd_context_logits", "cmd_context_loss", "cmd_pointwise_logits", "cmd_pointwise_loss",
           "cmd_joint_loss", "cmd_motion_mse_loss", "quantize_motion", "cmd_motion_ce_loss"]


def cmd_context_logits(clip: torch.Tensor, iframe: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """[B, B] logits of eq. (1): row i, column k is cos(z_k*, x_i*) / tau (target: column i)."""
    if clip.dim() != 2 or clip.shape != iframe.shape:
        raise ValueError(f"cmd_context_loss: expected clip and iframe embeddings [B, C] of one shape, got "
                         f"{tuple(clip.shape)} and {tuple(iframe.shape)}")
    _check_temperature(temperature)
    with torch.autocast(device_type=clip.device.type, enabled=False):
        x, z = F.normalize(clip.float(), dim=1), F.normalize(iframe.float(), dim=1)
        return x @ z.T / temperature


def cmd_context_loss(clip: torch.Tensor, iframe: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Context matching, eq. (1): InfoNCE between clip and I-frame embeddings over the batch.

        J_I = -1/B sum_i log( exp(cos(z_i, x_i)/tau) / sum_k exp(cos(z_k, x_i)/tau) )

    clip: [B, C] x_i* = g^V(x_i'); iframe: [B, C] z_i* = g^I(z_i'), row i from the same video.
    Each clip is the anchor; the I-frames of the other videos of the batch are its negatives.
    """
    logits = cmd_context_logits(clip, iframe, temperature)
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


def cmd_pointwise_logits(pred: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor | None = None,
                         temperature: float = 0.1) -> torch.Tensor:
    """[B*N, B*N + M] logits of eq. (2): query (i, j) against every real motion point of every
    video, then the M hard-negative points; the positive of query i*N + j is column i*N + j."""
    if pred.dim() != 3 or pred.shape != target.shape:
        raise ValueError(f"cmd_pointwise_loss: expected predicted and real motion embeddings [B, N, C] of one "
                         f"shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if negatives is not None and (negatives.dim() < 2 or negatives.shape[-1] != pred.shape[-1]):
        raise ValueError(f"cmd_pointwise_loss: hard negatives must be [..., {pred.shape[-1]}], "
                         f"got {tuple(negatives.shape)}")
    _check_temperature(temperature)
    with torch.autocast(device_type=pred.device.type, enabled=False):
        c = pred.shape[-1]
        keys = target.reshape(-1, c)
        if negatives is not None:
            keys = torch.cat([keys, negatives.reshape(-1, c)])
        q = F.normalize(pred.reshape(-1, c).float(), dim=1)
        return q @ F.normalize(keys.float(), dim=1).T / temperature


def cmd_pointwise_loss(pred: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor | None = None,
                       temperature: float = 0.1) -> torch.Tensor:
    """Pointwise InfoNCE of motion prediction, eq. (2).

        J_M = -1/(BN) sum_{i,j} log( exp(cos(v_ij, v^_ij)/tau) / sum_{k,l} exp(cos(v_kl, v^_ij)/tau) )

    pred: [B, N, C] predicted embeddings v^_i* = g2^M(T(x_i)); target: [B, N, C] real ones
    v_i* = g1^M(M(motion_i)), N = T3 * H3 * W3 points in the same (t, y, x) order. Only the same
    video and the same point is a positive; every other point of every video is a negative, and
    so is every point of ``negatives`` ([B, K, N, C] or any [..., C]: g1^M of motion clips from
    other times of the same videos, sec. 4.1's hard negatives; None: none).
    """
    logits = cmd_pointwise_logits(pred, target, negatives, temperature)
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


def cmd_joint_loss(context: torch.Tensor, motion: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Joint optimisation, eq. (3): J = (1 - alpha) J_I + alpha J_M, alpha in [0, 1] (paper: 0.5)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"cmd_joint_loss: alpha must be in [0, 1], got {alpha}")
    return (1.0 - alpha) * context.float() + alpha * motion.float()


def cmd_motion_mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Table 1 "MSE": regress the motion values directly. pred, target: [B, N, 2] (x, y per point)."""
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(f"cmd_motion_mse_loss: expected two [..., 2] tensors of one shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        return F.mse_loss(pred.float(), target.float())


def quantize_motion(values: torch.Tensor, num_bins: int, bound: float) -> torch.Tensor:
    """int64 bin of each value: ``num_bins`` equal bins over [-bound, bound], values clamped into it."""
    if num_bins < 2 or not bound > 0:
        raise ValueError(f"quantize_motion: needs num_bins >= 2 and bound > 0, got {num_bins}, {bound}")
    scaled = (values.float().clamp(-bound, bound) + bound) / (2 * bound) * num_bins
    return scaled.floor().long().clamp_(0, num_bins - 1)


def cmd_motion_ce_loss(logits: torch.Tensor, target: torch.Tensor, bound: float) -> torch.Tensor:
    """Table 1 "Cross-Ent.": classify each motion component's quantised value range.

    logits: [B, N, 2, K] scores of K bins for x and y; target: [B, N, 2] real values, quantised by
    :func:`quantize_motion` with K bins over [-bound, bound]. Mean over points and components.
    """
    if logits.dim() != target.dim() + 1 or logits.shape[:-1] != target.shape or target.shape[-1] != 2:
        raise ValueError(f"cmd_motion_ce_loss: expected logits [..., 2, K] and values [..., 2], got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    k = logits.shape[-1]
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.cross_entropy(logits.float().reshape(-1, k), quantize_motion(target, k, bound).reshape(-1))


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
