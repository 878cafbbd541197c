"""Where a 3D backbone looks: class activation maps (CAM) and Grad-CAM, per frame and pooled in time.

- CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016): for a
  linear head on the global average of a stage map A [C, t, h, w], the score of class k is
  ``w_k . mean_thw(A) + b_k``, so ``CAM_k(t, h, w) = sum_c w_kc A_c(t, h, w)`` is the map whose
  average is that score (less the bias). The head is any linear classifier over the pooled
  feature: a fine-tuned classifier, or the evaluation's linear probe on a frozen backbone
  (:class:`vidssl.eval.linear.LinearProbe` folds its standardisation into ``weight`` / ``bias``).
- Grad-CAM (Selvaraju et al., ICCV 2017, eq. 1-2): for any score and any layer with 3D
  activations A [C, t, h, w], ``alpha_c = mean_thw dS/dA_c`` and ``L = ReLU(sum_c alpha_c A_c)``.
  For a linear head on the average of the hooked layer itself, ``dS/dA_c = w_c / (t h w)``, so
  Grad-CAM is ``ReLU(CAM) / (t h w)``: the two agree there, and Grad-CAM reaches earlier layers.

Maps come out at the layer's resolution [N, t, h, w]; :func:`upsample_to_clip` resizes them in
time and space to the clip (trilinear), :func:`normalise_maps` scales each to [0, 1] over the
whole clip (so frames stay comparable) and :func:`temporal_pool` averages them over time.
Backbone stages are named ``stages.p1`` .. ``stages.p5``; any submodule name works, e.g.
``stages.p4.0.conv2`` (``dict(backbone.named_modules())`` lists them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SaliencyMaps", "LinearOnStage", "cam", "class_activation_maps", "grad_cam", "upsample_to_clip",
           "normalise_maps", "temporal_pool", "resolve_layer", "saliency"]


@dataclass
class SaliencyMaps:
    """Saliency of a batch of clips: ``frames`` [N, T, H, W] (upsampled to the clip, each clip
    scaled to [0, 1]), ``pooled`` [N, H, W] (their temporal average, scaled to [0, 1]) and ``raw``
    [N, t, h, w] (at the layer's resolution, unscaled)."""

    frames: np.ndarray
    pooled: np.ndarray
    raw: np.ndarray


class LinearOnStage(nn.Module):
    """A linear head on the global average of one backbone stage: scores [N, K] of clips [N, 3, T, H, W].

    ``weight`` [K, C] and ``bias`` [K] are the head's (a classifier's, or a fitted probe's folded
    ``weight`` / ``bias``); ``stage`` is the map it pools ("p5", or "p4" for an evaluation on p4).
    """

    def __init__(self, backbone: nn.Module, weight, bias=None, stage: str = "p5") -> None:
        super().__init__()
        self.backbone = backbone
        weight = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
        if weight.ndim != 2:
            raise ValueError(f"weight must be [classes, channels], got shape {tuple(weight.shape)}")
        dims = getattr(backbone, "stage_dims", {})
        if stage in dims and dims[stage] != weight.shape[1]:
            raise ValueError(f"weight has {weight.shape[1]} channels but stage {stage} of "
                             f"{getattr(backbone, 'name', 'the backbone')} has {dims[stage]}")
        bias = torch.zeros(len(weight)) if bias is None else torch.as_tensor(np.asarray(bias), dtype=torch.float32)
        if bias.shape != (len(weight),):
            raise ValueError(f"bias must be [{len(weight)}], got shape {tuple(bias.shape)}")
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.stage = stage

    def stage_map(self, clips: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(clips, stages=(self.stage,))[self.stage]

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        pooled = self.stage_map(clips).flatten(2).mean(-1)  # flatten: R2D's 4-D image maps too
        return pooled @ self.weight.T + self.bias


def cam(feature_map: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CAM of one class per clip: ``feature_map`` [N, C, t, h, w], ``weight`` [N, C] -> [N, t, h, w]."""
    if feature_map.ndim != 5 or weight.shape != feature_map.shape[:2]:
        raise ValueError(f"cam needs a feature map [N, C, t, h, w] and weights [N, C], got "
                         f"{tuple(feature_map.shape)} and {tuple(weight.shape)}")
    return torch.einsum("nc,ncthw->nthw", weight.to(feature_map.dtype), feature_map)


@torch.no_grad()
def class_activation_maps(head: LinearOnStage, clips: torch.Tensor, classes) -> torch.Tensor:
    """CAM [N, t, h, w] of class ``classes[i]`` (a row of ``head.weight``) for each clip [N, 3, T, H, W]."""
    classes = _class_indices(classes, len(clips), len(head.weight)).to(head.weight.device)
    with _eval_mode(head):
        fmap = head.stage_map(clips)
    if fmap.ndim != 5:
        raise ValueError(f"stage {head.stage} gave a map of shape {tuple(fmap.shape)}; CAM needs [N, C, t, h, w]")
    return cam(fmap.float(), head.weight[classes])


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """``layer`` itself, or the submodule of ``model`` it names (e.g. "backbone.stages.p4")."""
    if isinstance(layer, nn.Module):
        return layer
    modules = dict(model.named_modules())
    if layer not in modules:
        near = [n for n in modules if n.endswith(layer.split(".")[-1])][:5]
        raise ValueError(f"no layer named {layer!r} in {type(model).__name__}"
                         + (f"; similar names: {', '.join(near)}" if near else ""))
    return modules[layer]


def grad_cam(model: Callable[[torch.Tensor], torch.Tensor] | nn.Module, clips: torch.Tensor, classes,
             layer: nn.Module) -> torch.Tensor:
    """Grad-CAM [N, t, h, w] of score ``model(clips)[i, classes[i]]`` w.r.t. ``layer``'s output.

    ``layer`` must produce 3D activations [N, C, t, h, w] (a 3D convolution, a block, a stage).
    Its output is cloned in the hook, so in-place operations after it (ReLU(inplace=True))
    leave the activations and gradients Grad-CAM reads as the layer produced them. The model
    runs in eval mode (BatchNorm statistics frozen) and is put back as it was.
    """
    captured: list[torch.Tensor] = []

    def keep(module, inputs, output):
        act = output if output.requires_grad else output.detach().requires_grad_()
        captured.append(act)
        return act.clone()

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad(), _eval_mode(model):
            scores = model(clips)
            if scores.ndim != 2 or len(scores) != len(clips):
                raise ValueError(f"the model must return scores [N, classes], got shape {tuple(scores.shape)}")
            classes = _class_indices(classes, len(clips), scores.shape[1]).to(scores.device)
            if not captured:
                raise ValueError(f"layer {type(layer).__name__} did not run in the model's forward")
            act = captured[-1]
            if act.ndim != 5:
                raise ValueError(f"Grad-CAM needs 3D activations [N, C, t, h, w]; the layer gave {tuple(act.shape)}")
            picked = scores.gather(1, classes[:, None]).sum()  # each clip's score depends on its own row only
            (grads,) = torch.autograd.grad(picked, act)
    finally:
        handle.remove()
    alpha = grads.float().mean(dim=(2, 3, 4))  # eq. 1: global-average-pooled gradients
    return F.relu(torch.einsum("nc,ncthw->nthw", alpha, act.detach().float()))  # eq. 2


def upsample_to_clip(maps: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """[N, t, h, w] -> [N, T, H, W], trilinear (half-pixel centres, as the strided layers sample)."""
    if maps.ndim != 4:
        raise ValueError(f"maps must be [N, t, h, w], got shape {tuple(maps.shape)}")
    return F.interpolate(maps[:, None].float(), size=tuple(int(s) for s in size), mode="trilinear",
                         align_corners=False)[:, 0]


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each map (over all its frames) scaled to [0, 1]; a constant map becomes zeros."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    span = (high - low).clamp_min(1e-12)
    scaled = (flat - low[:, None]) / span[:, None]
    return torch.where((high - low)[:, None] > 1e-12, scaled, torch.zeros_like(scaled)).view_as(maps)


def temporal_pool(maps: torch.Tensor) -> torch.Tensor:
    """[N, T, H, W] -> [N, H, W]: the average over time."""
    return maps.mean(1)


def saliency(head: LinearOnStage, clips: torch.Tensor, classes, *, method: str = "grad-cam",
             layer: str | nn.Module | None = None) -> SaliencyMaps:
    """CAM or Grad-CAM of ``classes`` for ``clips`` [N, 3, T, H, W], upsampled and pooled.

    ``layer`` (Grad-CAM only): a submodule of the backbone or its name under it ("stages.p4",
    "stages.p5.0.conv1"); default the stage the head pools.
    """
    if method == "cam":
        raw = class_activation_maps(head, clips, classes)
    elif method == "grad-cam":
        target = resolve_layer(head.backbone, layer if layer is not None else f"stages.{head.stage}")
        raw = grad_cam(head, clips, classes, target)
    else:
        raise ValueError(f"saliency method must be 'cam' or 'grad-cam', got {method!r}")
    frames = normalise_maps(upsample_to_clip(raw, clips.shape[2:]))
    pooled = normalise_maps(temporal_pool(frames)[:, None])[:, 0]
    return SaliencyMaps(frames.cpu().numpy(), pooled.cpu().numpy(), raw.cpu().numpy())


def _class_indices(classes, n: int, num_classes: int) -> torch.Tensor:
    classes = torch.as_tensor(np.asarray(classes), dtype=torch.int64).reshape(-1)
    if classes.numel() == 1 and n > 1:
        classes = classes.expand(n)
    if len(classes) != n:
        raise ValueError(f"need one class per clip ({n}), got {len(classes)}")
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"class indices must be in [0, {num_classes}), got {classes.tolist()}")
    return classes


class _eval_mode:
    """Run a module in eval mode and restore its (and its children's) train flags afterwards."""

    def __init__(self, model) -> None:
        self.modules = list(model.modules()) if isinstance(model, nn.Module) else []
        self.flags = [m.training for m in self.modules]

    def __enter__(self):
        for m in self.modules:
            m.training = False
        return self

    def __exit__(self, *exc) -> None:
        for m, flag in zip(self.modules, self.flags):
            m.training = flag
