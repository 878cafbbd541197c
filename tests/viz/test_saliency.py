"""CAM and Grad-CAM against NumPy on a hand-built 3D net, on every backbone family, and their resizing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vidssl.models.backbones import Backbone, build_backbone
from vidssl.viz.saliency import (LinearOnStage, class_activation_maps, grad_cam, normalise_maps, resolve_layer,
                                 saliency, upsample_to_clip)


def hand_built(in_ch: int = 3, out_ch: int = 4, seed: int = 0) -> Backbone:
    """p1..p4 pass the clip through; p5 is a 1x1x1 convolution then an in-place ReLU."""
    torch.manual_seed(seed)
    stages = {f"p{i}": nn.Identity() for i in range(1, 5)}
    stages["p5"] = nn.Sequential(nn.Conv3d(in_ch, out_ch, 1), nn.ReLU(inplace=True))
    return Backbone("hand-built", stages, {"p1": in_ch, "p2": in_ch, "p3": in_ch, "p4": in_ch, "p5": out_ch},
                    in_channels=in_ch)


def numpy_p5(net: Backbone, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pre-ReLU conv output, p5) of the hand-built net, in NumPy: [N, O, T, H, W] each."""
    conv = net.stages["p5"][0]
    w, b = conv.weight.detach().numpy()[:, :, 0, 0, 0], conv.bias.detach().numpy()
    pre = np.einsum("oc,ncthw->nothw", w, x) + b[None, :, None, None, None]
    return pre, np.maximum(pre, 0)


@pytest.fixture
def setup():
    net = hand_built()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 5, 6)).astype(np.float32)
    weight, bias = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    return net, x, weight, bias


def test_cam_is_the_einsum_of_head_weights_and_features(setup):
    net, x, weight, bias = setup
    head = LinearOnStage(net, weight, bias)
    classes = [2, 0]
    got = class_activation_maps(head, torch.from_numpy(x), classes).numpy()
    _, feats = numpy_p5(net, x)
    want = np.einsum("no,nothw->nthw", weight[classes], feats)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # CAM's defining property: its average is the class score less the bias.
    scores = head(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got.mean((1, 2, 3)) + bias[classes], scores[[0, 1], classes], rtol=1e-5, atol=1e-5)


def test_grad_cam_before_an_inplace_relu_matches_numpy(setup):
    net, x, weight, bias = setup
    head = LinearOnStage(net, weight, bias)
    classes = [1, 2]
    got = grad_cam(head, torch.from_numpy(x), classes, resolve_layer(net, "stages.p5.0")).numpy()
    pre, _ = numpy_p5(net, x)
    thw = np.prod(pre.shape[2:])
    # score = w_k . mean(relu(A)) + b_k  =>  dS/dA_c = w_kc 1[A_c > 0] / thw;  alpha_c = its mean.
    alpha = np.stack([weight[k][:, None] * (pre[n] > 0).reshape(4, -1).mean(1)[:, None] / thw
                      for n, k in enumerate(classes)])[..., 0]
    want = np.maximum(np.einsum("nc,ncthw->nthw", alpha, pre), 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["r3d", "r2plus1d", "c3d", "r2d", "s3d"])
def test_grad_cam_on_the_pooled_stage_equals_relu_cam(name):
    torch.manual_seed(0)
    backbone = build_backbone(name, width=4).eval()
    clips = torch.randn(2, 3, 8, 32, 32)
    weight = torch.randn(5, backbone.out_dim)
    head = LinearOnStage(backbone, weight, torch.zeros(5))
    classes = [3, 1]
    cam_maps = class_activation_maps(head, clips, classes)
    grad_maps = grad_cam(head, clips, classes, resolve_layer(backbone, "stages.p5"))
    thw = cam_maps[0].numel()
    torch.testing.assert_close(grad_maps * thw, torch.relu(cam_maps), rtol=1e-4, atol=1e-5)
    assert backbone.training is False and not any(p.grad is not None for p in backbone.parameters())


def test_saliency_upsamples_to_the_clip_and_pools_in_time():
    torch.manual_seed(0)
    backbone = build_backbone("r3d", width=4, depth=10)
    backbone.train()
    head = LinearOnStage(backbone, torch.randn(3, backbone.out_dim), stage="p5")
    clips = torch.randn(2, 3, 8, 32, 32)
    maps = saliency(head, clips, [0, 2], layer="stages.p4")
    assert maps.frames.shape == (2, 8, 32, 32) and maps.pooled.shape == (2, 32, 32)
    assert maps.raw.shape == (2, 2, 4, 4)  # p4 of R3D: T/4, H/8
    for m in (maps.frames, maps.pooled):
        assert m.min() >= 0 and m.max() <= 1 + 1e-6
    assert backbone.training  # the caller's mode is restored
    with pytest.raises(ValueError, match="no layer named 'stages.p9'"):
        saliency(head, clips, [0, 2], layer="stages.p9")
    with pytest.raises(ValueError, match="'cam' or 'grad-cam'"):
        saliency(head, clips, [0, 2], method="lime")
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 3\)"):
        saliency(head, clips, [0, 3])
    with pytest.raises(ValueError, match="weight has 7 channels"):
        LinearOnStage(backbone, torch.randn(3, 7))


def test_upsampling_keeps_a_hot_cell_in_its_region_and_normalising_scales_each_map():
    maps = torch.zeros(2, 2, 2, 2)
    maps[0, 1, 0, 1] = 5.0  # second half in time, top row, right column
    maps[1] = 3.0  # constant
    up = upsample_to_clip(maps, (4, 8, 8))
    assert up.shape == (2, 4, 8, 8)
    t, y, x = np.unravel_index(int(up[0].argmax()), (4, 8, 8))
    assert t >= 2 and y < 4 and x >= 4
    torch.testing.assert_close(up[1], torch.full((4, 8, 8), 3.0))
    scaled = normalise_maps(up)
    assert float(scaled[0].max()) == pytest.approx(1.0) and float(scaled[0].min()) == pytest.approx(0.0)
    assert float(scaled[1].abs().max()) == 0.0  # nothing stands out in a constant map


@pytest.mark.parametrize("classes", [2, 3])
def test_a_fitted_probe_is_a_linear_head_on_raw_features(classes):
    """What saliency relies on: the probe's folded weight and bias give its decision and its argmax."""
    from vidssl.eval.linear import fit_linear_probe

    rng = np.random.default_rng(0)
    labels = np.arange(60) % classes
    feats = (rng.normal(size=(60, 6)) * [1, 10, 0.1, 3, 1, 5] + 4 + labels[:, None]).astype(np.float32)
    probe = fit_linear_probe(feats, labels)
    scores = feats.astype(np.float64) @ probe.weight.T + probe.bias
    assert probe.weight.shape == (classes, 6) and probe.bias.shape == (classes,)
    np.testing.assert_array_equal(probe.classes[scores.argmax(1)], probe.predict(feats))
    decision = probe.classifier.decision_function(probe.scaler.transform(feats.astype(np.float64)))
    want = decision if classes > 2 else decision[:, None] * [-0.5, 0.5]
    np.testing.assert_allclose(scores, want, rtol=1e-6, atol=1e-6)
