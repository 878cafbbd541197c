"""MCL motion alignment losses (ICCV 2021 eq. 4-7) against independent NumPy computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vidssl.losses import mal_v1_loss, mal_v2_loss, mal_v3_loss, motion_alignment_loss
from vidssl.losses.mcl import alignment_map, motion_alignment_terms, unit_map


def np_unit(x):
    x = np.asarray(x, dtype=np.float64).ravel()
    n = np.sqrt((x ** 2).sum())
    return x / n if n > 0 else x


def np_dist(a, b):
    return float(((np_unit(a) - np_unit(b)) ** 2).sum())


def np_map(variant, h=None, g=None):
    """One sample: h, g [C, t, y, x] -> the map of eq. 4 / 5 / 6 [t, y, x], channel by channel."""
    src = h if variant in ("v1", "v2") else g
    out = np.zeros(src.shape[1:])
    for c in range(src.shape[0]):
        w = 1.0 if variant == "v1" else g[c].mean()
        out += w * src[c]
    return out if variant == "v1" else np.maximum(out, 0.0)


def np_terms(a, m):
    return {"s": np_dist(a.mean(0), m.mean(0)), "t": np_dist(a.mean((1, 2)), m.mean((1, 2))), "st": np_dist(a, m)}


def sample(n, c, t, s, seed):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n, c, t, s, s))
    g = rng.normal(size=(n, c, t, s, s)) * 1e-3 + 2e-4  # gradient maps: small, mostly positive weights
    m = np.abs(rng.normal(size=(n, t, s, s)))
    return h, g, m


def tt(x):
    return torch.tensor(x, dtype=torch.float32)


@pytest.mark.parametrize("n,c,t,s", [(1, 1, 1, 2), (3, 4, 2, 3), (5, 16, 4, 7)])
def test_v1_v2_v3_match_numpy(n, c, t, s):
    h, g, m = sample(n, c, t, s, n * c + s)
    want = {v: np.mean([np_dist(np_map(v, h[i], g[i]), m[i]) for i in range(n)]) for v in ("v1", "v2", "v3")}
    assert mal_v1_loss(tt(h), tt(m)).item() == pytest.approx(want["v1"], rel=1e-4, abs=1e-6)
    assert mal_v2_loss(tt(h), tt(g), tt(m)).item() == pytest.approx(want["v2"], rel=1e-4, abs=1e-6)
    assert mal_v3_loss(tt(g), tt(m)).item() == pytest.approx(want["v3"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("n,c,t,s,terms", [(2, 3, 2, 4, ("s", "t", "st")), (4, 8, 4, 2, ("st",)),
                                           (3, 5, 3, 5, ("s", "t"))])
def test_eq7_matches_numpy(n, c, t, s, terms):
    h, g, m = sample(n, c, t, s, 7 * n + t)
    per = [np_terms(np_map("v3", g=g[i]), m[i]) for i in range(n)]
    want = sum(np.mean([p[k] for p in per]) for k in terms)
    got = motion_alignment_loss(None, tt(g), tt(m), "v3", terms)
    assert got.item() == pytest.approx(want, rel=1e-4)
    parts = motion_alignment_terms(alignment_map("v3", g=tt(g)), tt(m))
    for k in ("s", "t", "st"):
        assert parts[k].item() == pytest.approx(np.mean([p[k] for p in per]), rel=1e-4, abs=1e-6)


def test_aligned_map_scores_zero_and_tiny_gradients_are_normalised():
    # A map equal to the motion (up to scale) costs nothing, even at the 1e-20 scale gradient maps reach.
    m = torch.rand(2, 2, 3, 3) + 0.1
    for scale in (1.0, 1e-20):
        terms = motion_alignment_terms(m * scale, m)
        assert all(v.item() == pytest.approx(0.0, abs=1e-6) for v in terms.values())
    torch.testing.assert_close(unit_map(torch.zeros(2, 3)), torch.zeros(2, 3))
    # An all-zero map (no gradient reaches the layer) or a static clip: distance 1, finite gradients.
    g = torch.zeros(2, 4, 2, 3, 3, requires_grad=True)
    loss = mal_v3_loss(g, m)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert torch.isfinite(g.grad).all()
    assert mal_v3_loss(torch.rand(2, 4, 2, 3, 3), torch.zeros(2, 2, 3, 3)).item() == pytest.approx(1.0)


def test_losses_are_fp32_under_autocast_and_differentiable():
    h = torch.randn(3, 4, 2, 3, 3, requires_grad=True)
    g = (torch.randn(3, 4, 2, 3, 3) * 1e-3).requires_grad_()
    m = torch.rand(3, 2, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = [mal_v1_loss(h, m), mal_v2_loss(h, g, m), motion_alignment_loss(h, g, m)]
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in losses)
    sum(losses).backward()
    assert torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0 and g.grad.abs().sum() > 0


def test_bad_inputs_are_clear_errors():
    h, m = torch.randn(2, 3, 2, 4, 4), torch.rand(2, 2, 4, 4)
    with pytest.raises(ValueError, match="resized to the feature map"):
        mal_v1_loss(h, torch.rand(2, 2, 3, 3))
    with pytest.raises(ValueError, match="variant"):
        motion_alignment_loss(h, h, m, "v4")
    with pytest.raises(ValueError, match="terms"):
        motion_alignment_loss(h, h, m, "v3", ("x",))
    with pytest.raises(ValueError, match="needs h and g"):
        alignment_map("v2", h=h)
    with pytest.raises(ValueError, match=r"\[N, C, t, h, w\]"):
        mal_v3_loss(torch.randn(2, 3, 4), m)
