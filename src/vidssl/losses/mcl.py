"""Motion alignment losses: Li et al., "Motion-Focused Contrastive Learning of Video
Representations", ICCV 2021, section 3.3 (eq. 4-7).

Pure functions of tensors, computed in fp32 with autocast disabled. Shapes:

- ``h``: [N, C, t, h, w], the feature map of the backbone's last convolutional layer;
- ``g``: [N, C, t, h, w], ``g_c = d(q . k+) / d h_c`` (the caller takes it with
  ``torch.autograd.grad(..., create_graph=True)`` so these losses train through it);
- ``motion``: [N, t, h, w], the clip's ST-motion (eq. 2) resized to the feature map.

``<x>`` is the L2 normalisation of a map, per sample over all its positions. It is computed
after dividing by the map's (detached) largest magnitude, which changes nothing mathematically
(the normalisation is scale-free) but keeps maps of gradients, often ~1e-10 and below, away
from the normalisation's epsilon; an all-zero map stays zero. The distance
``||<a> - <b>||^2`` of two unit maps is ``2 - 2 cos(a, b)``: the authors' code optimises
``1 - cos``, half of the paper's equation; these functions follow the paper.
"""
from __future__ import annotations

import torch

__all__ = ["unit_map", "gradcam_weights", "alignment_map", "mal_v1_loss", "mal_v2_loss", "mal_v3_loss",
           "motion_alignment_terms", "motion_alignment_loss", "ALIGNMENT_VARIANTS", "ALIGNMENT_TERMS"]

ALIGNMENT_VARIANTS = ("v1", "v2", "v3")
ALIGNMENT_TERMS = ("s", "t", "st")


def unit_map(x: torch.Tensor) -> torch.Tensor:
    """``<x>``: each sample's map [N, ...] scaled to unit L2 norm over all its positions (zero stays zero)."""
    flat = x.float().flatten(1)
    flat = flat / flat.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    norm = flat.norm(dim=1, keepdim=True)
    return (flat / norm.clamp_min(1e-12)).view_as(x)


def gradcam_weights(g: torch.Tensor) -> torch.Tensor:
    """``w_c``: the mean of each channel's gradient map (Grad-CAM, eq. 5), [N, C]."""
    return g.float().mean(dim=(2, 3, 4))


def alignment_map(variant: str, h: torch.Tensor | None = None, g: torch.Tensor | None = None) -> torch.Tensor:
    """The map aligned with the ST-motion, [N, t, h, w], before normalisation:
    v1 ``sum_c h_c`` (eq. 4), v2 ``ReLU(sum_c w_c h_c)`` (eq. 5), v3 ``ReLU(sum_c w_c g_c)`` (eq. 6)."""
    if variant not in ALIGNMENT_VARIANTS:
        raise ValueError(f"alignment variant must be one of {ALIGNMENT_VARIANTS}, got {variant!r}")
    needed = {"v1": (h,), "v2": (h, g), "v3": (g,)}[variant]
    if any(t is None for t in needed):
        raise ValueError(f"alignment {variant} needs {'h' if variant == 'v1' else 'h and g' if variant == 'v2' else 'g'}")
    for t in needed:
        if t.dim() != 5:
            raise ValueError(f"alignment {variant}: maps must be [N, C, t, h, w], got {tuple(t.shape)}")
    if variant == "v2" and h.shape != g.shape:
        raise ValueError(f"alignment v2: h and g must have one shape, got {tuple(h.shape)} and {tuple(g.shape)}")
    with torch.autocast(device_type=needed[0].device.type, enabled=False):
        if variant == "v1":
            return h.float().sum(dim=1)
        w = gradcam_weights(g)[:, :, None, None, None]
        source = h if variant == "v2" else g
        return torch.relu((w * source.float()).sum(dim=1))


def _check_motion(a: torch.Tensor, motion: torch.Tensor, name: str) -> None:
    if motion.shape != a.shape:
        raise ValueError(f"{name}: motion must be [N, t, h, w] = {tuple(a.shape)} (resized to the feature map), "
                         f"got {tuple(motion.shape)}")


def _st_distance(a: torch.Tensor, motion: torch.Tensor, name: str) -> torch.Tensor:
    _check_motion(a, motion, name)
    with torch.autocast(device_type=a.device.type, enabled=False):
        diff = unit_map(a) - unit_map(motion.float())
        return diff.pow(2).flatten(1).sum(1).mean()


def mal_v1_loss(h: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """Eq. (4), align the feature map: ``|| <sum_c h_c> - <m^ST> ||^2``, averaged over the batch."""
    return _st_distance(alignment_map("v1", h=h), motion, "mal_v1_loss")


def mal_v2_loss(h: torch.Tensor, g: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """Eq. (5), align the Grad-CAM weighted feature map: ``|| <ReLU(sum_c w_c h_c)> - <m^ST> ||^2``."""
    return _st_distance(alignment_map("v2", h=h, g=g), motion, "mal_v2_loss")


def mal_v3_loss(g: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """Eq. (6), align the weighted gradient map: ``|| <ReLU(sum_c w_c g_c)> - <m^ST> ||^2`` (the default)."""
    return _st_distance(alignment_map("v3", g=g), motion, "mal_v3_loss")


def motion_alignment_terms(a: torch.Tensor, motion: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three terms of eq. (7) for an alignment map ``a`` [N, t, h, w] (``alignment_map``):

        s:  || <P_t(a)> - <m^S> ||^2      (S-motion, the temporal average pool, [h, w])
        t:  || <P_s(a)> - <m^T> ||^2      (T-motion, the spatial average pool, [t])
        st: || <a> - <m^ST> ||^2

    each averaged over the batch. The paper pools the normalised map ``g^ST``; as normalising is
    scale-free, ``<P(<a>)> = <P(a)>``: pooled maps are normalised again (as in the authors' code)
    so every term compares two unit vectors.
    """
    _check_motion(a, motion, "motion_alignment_terms")
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, motion = a.float(), motion.float()

        def dist(x, y):
            return (unit_map(x) - unit_map(y)).pow(2).flatten(1).sum(1).mean()

        return {"s": dist(a.mean(1), motion.mean(1)), "t": dist(a.mean((2, 3)), motion.mean((2, 3))),
                "st": dist(a, motion)}


def motion_alignment_loss(h: torch.Tensor | None, g: torch.Tensor | None, motion: torch.Tensor,
                          variant: str = "v3", terms=ALIGNMENT_TERMS) -> torch.Tensor:
    """Eq. (7): the sum of the chosen ``terms`` ("s", "t", "st") of :func:`motion_alignment_terms`
    on the ``variant``'s map (v3 in the paper; ``terms=("st",)`` with v1 / v2 / v3 is eq. 4 / 5 / 6)."""
    unknown = [t for t in terms if t not in ALIGNMENT_TERMS]
    if unknown or not terms:
        raise ValueError(f"alignment terms must be a non-empty subset of {ALIGNMENT_TERMS}, got {list(terms)}")
    parts = motion_alignment_terms(alignment_map(variant, h=h, g=g), motion)
    return sum(parts[t] for t in dict.fromkeys(terms))
