"""Backbones: shapes, short clips, parameter counts, memory format, bf16, errors."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from vidssl.models import STAGES, build_backbone
from vidssl.models.backbones.layers import Conv3d
from vidssl.models.backbones.resnet3d import BasicBlock, r2plus1d_mid_planes

ALL = ["c3d", "r3d", "r2plus1d", "r2d", "s3d", "i3d"]

# [C, t, h, w] of p1..p5 at width 8 (w = 1/8 of the paper's channels) for an 8x56x56 clip,
# written from each module docstring's stride table.
SHAPES_8x56 = {
    "c3d": [(8, 8, 28, 28), (16, 4, 14, 14), (32, 2, 7, 7), (64, 1, 4, 4), (64, 1, 4, 4)],
    "r3d": [(8, 8, 28, 28), (8, 8, 28, 28), (16, 4, 14, 14), (32, 2, 7, 7), (64, 1, 4, 4)],
    "r2plus1d": [(8, 8, 28, 28), (8, 8, 28, 28), (16, 4, 14, 14), (32, 2, 7, 7), (64, 1, 4, 4)],
    "r2d": [(8, 8, 28, 28), (8, 8, 14, 14), (16, 8, 7, 7), (32, 8, 4, 4), (64, 8, 2, 2)],
    # Inception widths: p2 = 192/8, p3 = Mixed_3c 480/8, p4 = Mixed_4f 832/8, p5 = Mixed_5c 1024/8
    "s3d": [(8, 4, 28, 28), (24, 4, 14, 14), (60, 4, 7, 7), (104, 2, 4, 4), (128, 1, 2, 2)],
    "i3d": [(8, 4, 28, 28), (24, 4, 14, 14), (60, 4, 7, 7), (104, 2, 4, 4), (128, 1, 2, 2)],
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def clip(n=2, c=3, t=8, size=56, seed=0):
    return torch.randn(n, c, t, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ALL)
def test_stage_and_pooled_shapes_on_demo_clips(name):
    model = build_backbone(name, width=8).eval()
    with torch.no_grad():
        feats = model.forward_features(clip(), stages=STAGES)
    assert set(feats) == set(STAGES) | {"pooled"}
    for stage, expected in zip(STAGES, SHAPES_8x56[name]):
        assert tuple(feats[stage].shape) == (2, *expected), stage
        assert model.stage_dims[stage] == expected[0]
    assert model.out_dim == SHAPES_8x56[name][-1][0]
    assert tuple(feats["pooled"].shape) == (2, model.out_dim)
    torch.testing.assert_close(feats["pooled"], feats["p5"].mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("name, p5", [("r3d", (64, 2, 7, 7)), ("c3d", (64, 2, 7, 7)), ("i3d", (128, 2, 4, 4))])
def test_paper_clips_16x112(name, p5):
    model = build_backbone(name, width=8).eval()
    with torch.no_grad():
        feats = model.forward_features(clip(n=1, t=16, size=112), stages="p5")
    assert tuple(feats["p5"].shape) == (1, *p5)
    assert tuple(feats["pooled"].shape) == (1, p5[0])


def _expected_times(name: str, t: int) -> list[int]:
    h = lambda n, k: math.ceil(n / 2**k)  # noqa: E731  every downsampling maps n to ceil(n/2)
    return {
        "c3d": [t, h(t, 1), h(t, 2), h(t, 3), h(t, 3)],
        "r3d": [t, t, h(t, 1), h(t, 2), h(t, 3)],
        "r2plus1d": [t, t, h(t, 1), h(t, 2), h(t, 3)],
        "r2d": [t] * 5,
        "s3d": [h(t, 1)] * 3 + [h(t, 2), h(t, 3)],
        "i3d": [h(t, 1)] * 3 + [h(t, 2), h(t, 3)],
    }[name]


@pytest.mark.parametrize("t", [1, 2, 4])
@pytest.mark.parametrize("name", ALL)
def test_short_clips_keep_at_least_one_time_step(name, t):
    model = build_backbone(name, width=8).eval()
    with torch.no_grad():
        feats = model.forward_features(clip(n=1, t=t, size=32), stages=STAGES)
    assert [feats[s].shape[2] for s in STAGES] == _expected_times(name, t)
    assert torch.isfinite(feats["pooled"]).all()


# ---- parameter counts at the papers' width (construction only, no forward) -------------------


def conv_bn(cin: int, cout: int, taps: int) -> int:
    """A bias-free conv with ``taps`` kernel elements followed by a BN (weight + bias)."""
    return cin * cout * taps + 2 * cout


def resnet_params(depth: int, stem: int, block_convs) -> int:
    """Stem + BasicBlocks [64, 128, 256, 512] with a 1x1x1 projection where the width changes."""
    blocks = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 26: (2, 3, 4, 3), 34: (3, 4, 6, 3)}[depth]
    total, cin = stem, 64
    for i, n in enumerate(blocks):
        planes = 64 * 2**i
        for _ in range(n):
            total += block_convs(cin, planes)
            if cin != planes:
                total += conv_bn(cin, planes, 1)
            cin = planes
    return total


def r3d_block(cin, planes):
    return conv_bn(cin, planes, 27) + conv_bn(planes, planes, 27)


def r2plus1d_block(cin, planes):
    # torchvision: both (2+1)D convs of a block use M computed from (cin, planes)
    m = (cin * planes * 27) // (cin * 9 + 3 * planes)
    return conv_bn(cin, m, 9) + conv_bn(m, planes, 3) + conv_bn(planes, m, 9) + conv_bn(m, planes, 3)


def test_r3d18_matches_torchvision_without_fc():
    # torchvision r3d_18 has 33,371,472 parameters; its fc is 512 * 400 + 400 = 205,200.
    expected = resnet_params(18, conv_bn(3, 64, 3 * 7 * 7), r3d_block)
    assert expected == 33_371_472 - 205_200 == 33_166_272
    assert n_params(build_backbone("r3d", depth=18)) == expected


def test_r2plus1d18_matches_torchvision_without_fc():
    # torchvision r2plus1d_18 has 31,505,325 parameters, minus the same 205,200 fc.
    stem = conv_bn(3, 45, 49) + conv_bn(45, 64, 3)
    expected = resnet_params(18, stem, r2plus1d_block)
    assert expected == 31_505_325 - 205_200 == 31_300_125
    assert n_params(build_backbone("r2plus1d", depth=18)) == expected
    assert r2plus1d_mid_planes(64, 64) == 144  # Tran et al. 2018: 64->64 3x3x3 becomes 64->144->64


def test_r3d10_and_r2d18_counts():
    # R3D-10 is the "14.4M" R3D-10 of MCL's Table 3
    expected = resnet_params(10, conv_bn(3, 64, 147), r3d_block)
    assert expected == 14_361_792
    assert n_params(build_backbone("r3d", depth=10)) == expected
    # R2D-18 = torchvision resnet18 (11,689,512) without its 512*1000+1000 fc
    r2d_block = lambda cin, p: conv_bn(cin, p, 9) + conv_bn(p, p, 9)  # noqa: E731
    expected = resnet_params(18, conv_bn(3, 64, 49), r2d_block)
    assert expected == 11_689_512 - 513_000
    assert n_params(build_backbone("r2d", depth=18)) == expected


def test_c3d_count():
    # Eight 3x3x3 convs (no bias: BN follows) + BN; Pace's Table 3 quotes C3D as 27.7M.
    widths = [3, 64, 128, 256, 256, 512, 512, 512, 512]
    expected = sum(conv_bn(a, b, 27) for a, b in zip(widths[:-1], widths[1:]))
    assert expected == 27_658_688
    assert n_params(build_backbone("c3d")) == expected


def inception_params(s3d: bool) -> int:
    """Inception-v1 (Szegedy et al. 2015, Table 1) with 3D kernels; S3D-G: separable + gates."""
    table = [
        (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64),
        (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
        (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128),
        (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),
    ]
    k3 = (lambda a, b: conv_bn(a, b, 9) + conv_bn(b, b, 3)) if s3d else (lambda a, b: conv_bn(a, b, 27))
    gate = (lambda c: c * c) if s3d else (lambda c: 0)
    total = conv_bn(3, 64, 3 * 49 if s3d else 343) + conv_bn(64, 64, 1) + k3(64, 192) + gate(192)
    cin = 192
    for b0, b1a, b1b, b2a, b2b, b3 in table:
        total += conv_bn(cin, b0, 1) + conv_bn(cin, b1a, 1) + k3(b1a, b1b) + conv_bn(cin, b2a, 1)
        total += k3(b2a, b2b) + conv_bn(cin, b3, 1) + sum(gate(c) for c in (b0, b1b, b2b, b3))
        cin = b0 + b1b + b2b + b3
    assert cin == 1024
    return total


@pytest.mark.parametrize("name, s3d, expected", [("i3d", False, 12_287_264), ("s3d", True, 9_119_392)])
def test_inception_counts(name, s3d, expected):
    # I3D + a 400-way classifier is 12.7M; S3D-G + classifier 9.5M ("9.6M" in Pace Table 3).
    assert inception_params(s3d) == expected
    assert n_params(build_backbone(name)) == expected


def test_depth_sets_blocks_per_stage():
    model = build_backbone("r2plus1d", depth=26, width=8)
    counts = [sum(isinstance(m, BasicBlock) for m in model.stages[s].modules()) for s in STAGES[1:]]
    assert counts == [2, 3, 4, 3]


# ---- memory format and mixed precision ----------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_channels_last_3d_matches_contiguous(name):
    model = build_backbone(name, width=8).eval()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
    x = clip(t=4, size=32)
    with torch.no_grad():
        ref = model.forward_features(x, stages=STAGES)
        got = model_cl.forward_features(x.contiguous(memory_format=torch.channels_last_3d), stages=STAGES)
    for key in ref:
        # different summation order in the kernels: tolerance relative to the map's scale
        torch.testing.assert_close(got[key], ref[key], rtol=1e-3, atol=1e-5 * ref[key].abs().max().item())


@pytest.mark.parametrize("name", ALL)
def test_bf16_autocast_channels_last_training_step_is_finite(name):
    model = build_backbone(name, width=8).to(memory_format=torch.channels_last_3d)
    x = clip(t=8, size=32).contiguous(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and out.shape == (2, model.out_dim)
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_conv3d_bf16_weight_grad_is_right_on_clips_shorter_than_the_kernel():
    # oneDNN's CPU bf16 conv3d weight gradient is garbage when T=2 < 3 taps (torch 2.13);
    # vidssl's Conv3d computes that case in fp32. Reference: fp32 on the same bf16-rounded data.
    g = torch.Generator().manual_seed(0)
    conv = Conv3d(16, 32, 3, padding=1, bias=False)
    x = torch.randn(2, 16, 2, 7, 7, generator=g).bfloat16().float()
    grad_out = torch.randn(2, 32, 2, 7, 7, generator=g).bfloat16().float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.bfloat16
    out.float().backward(grad_out)
    got = conv.weight.grad.clone()
    conv.weight.grad = None
    torch.nn.functional.conv3d(x, conv.weight.bfloat16().float(), padding=1).backward(grad_out)
    ref = conv.weight.grad
    assert ((got - ref).norm() / ref.norm()).item() < 0.02


@pytest.mark.parametrize("name", ["c3d", "r3d", "r2plus1d"])
def test_bf16_gradients_agree_with_fp32(name):
    # Eval mode (BN from running statistics) keeps a random network well conditioned, so bf16
    # rounding alone should leave the gradient direction intact (cosine ~0.98-0.997 measured);
    # the oneDNN bug above drove it to 0 or NaN.
    torch.manual_seed(0)
    model = build_backbone(name, width=8).eval()
    model_bf16 = copy.deepcopy(model)
    x = clip(n=1, t=4, size=32)  # T=2 from p3 (ResNets) / p2 (C3D) on: the bug's domain
    target = torch.randn(1, model.out_dim, generator=torch.Generator().manual_seed(1))
    (model(x) * target).sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model_bf16(x)
    (out.float() * target).sum().backward()
    flat = lambda m: torch.cat([p.grad.flatten() for p in m.parameters()])  # noqa: E731
    assert torch.nn.functional.cosine_similarity(flat(model), flat(model_bf16), dim=0).item() > 0.97


# ---- R2D on frames --------------------------------------------------------------------------


def test_r2d_takes_images_and_clips_frame_by_frame():
    model = build_backbone("r2d", width=8).eval()
    x = clip(n=2, t=3, size=32)
    with torch.no_grad():
        clip_feats = model.forward_features(x, stages=("p4", "p5"))
        frame_feats = [model.forward_features(x[:, :, i], stages=("p4", "p5")) for i in range(3)]
    assert frame_feats[0]["p5"].dim() == 4 and frame_feats[0]["p5"].shape == (2, 64, 1, 1)
    for i in range(3):
        torch.testing.assert_close(clip_feats["p4"][:, :, i], frame_feats[i]["p4"], rtol=1e-4, atol=1e-5)
    pooled_over_frames = torch.stack([f["pooled"] for f in frame_feats]).mean(0)
    torch.testing.assert_close(clip_feats["pooled"], pooled_over_frames, rtol=1e-4, atol=1e-5)


def test_r2d_train_mode_batch_norm_pools_over_all_frames():
    # Folding T into the batch: BN statistics over (N, T, H, W) == BN2d over (N*T, H, W).
    model = build_backbone("r2d", width=8)
    x = clip(n=2, t=3, size=32)
    folded = x.transpose(1, 2).reshape(6, 3, 32, 32)
    torch.testing.assert_close(
        model.forward_features(x, "p3")["p3"].transpose(1, 2).reshape(6, 16, 4, 4),
        model.forward_features(folded, "p3")["p3"],
        rtol=1e-4, atol=1e-5,
    )


# ---- options and errors -------------------------------------------------------------------


def test_zero_init_residual_makes_blocks_start_as_identity():
    model = build_backbone("r3d", depth=10, width=8, zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 4 and all((b.last_norm.weight == 0).all() for b in blocks)
    x = torch.relu(torch.randn(1, 8, 4, 8, 8))
    with torch.no_grad():
        torch.testing.assert_close(blocks[0](x), x)  # p2 block: no projection, so relu(0 + x) = x
    default = build_backbone("r3d", depth=10, width=8)
    assert all((b.last_norm.weight == 1).all() for b in default.modules() if isinstance(b, BasicBlock))


def test_other_input_channels_for_motion_streams():
    model = build_backbone("r3d", depth=10, width=8, in_channels=2)
    assert model(torch.randn(2, 2, 4, 32, 32)).shape == (2, 64)
    with pytest.raises(ValueError, match="2 input channels"):
        model(torch.randn(2, 3, 4, 32, 32))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("in_channels", [1, 2])
def test_every_family_takes_other_input_channels(name, in_channels):
    # Optical flow and motion vectors have 2 channels, motion maps 1 (CMD's M-network, MCL's maps).
    model = build_backbone(name, width=4, in_channels=in_channels).eval()
    rgb = build_backbone(name, width=4).eval()
    with torch.no_grad():
        feats = model.forward_features(clip(n=1, c=in_channels, t=4, size=32), stages=STAGES)
        expected = rgb.forward_features(clip(n=1, c=3, t=4, size=32), stages=STAGES)
    assert {k: v.shape for k, v in feats.items()} == {k: v.shape for k, v in expected.items()}
    assert torch.isfinite(feats["pooled"]).all()
    assert model.in_channels == in_channels and model.spec.in_channels == in_channels
    # Only the first convolution differs from the RGB network.
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv3d))
    assert first.in_channels == in_channels
    assert n_params(rgb) - n_params(model) == first.weight[0, 0].numel() * first.out_channels * (3 - in_channels)
    with pytest.raises(ValueError, match=f"{in_channels} input channels"):
        model(clip(n=1, c=3, t=4, size=32))


@pytest.mark.parametrize("name", ALL)
def test_built_backbone_carries_the_spec_that_rebuilds_it(name):
    from vidssl.models import NetworkSpec

    depth = 26 if name in ("r3d", "r2plus1d", "r2d") else None
    model = build_backbone(name, width=4, depth=depth, in_channels=2)
    spec = model.spec
    assert spec == NetworkSpec(name, width=4, depth=depth, in_channels=2)
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    assert n_params(spec.build()) == n_params(model)
    assert "spec" not in "".join(model.state_dict())  # an attribute, not state
    # The architecture's default depth is recorded, so networks.json says what was built.
    assert build_backbone("r2d", width=4).spec.depth == 10 and build_backbone("r3d", width=4).spec.depth == 18


def test_forward_features_returns_only_requested_stages():
    model = build_backbone("c3d", width=8)
    feats = model.forward_features(clip(size=32), stages=["p4"])
    assert set(feats) == {"p4", "pooled"}
    with pytest.raises(ValueError, match="unknown stage"):
        model.forward_features(clip(size=32), stages=("p6",))
    with pytest.raises(ValueError, match=r"expects \[N, C, T, H, W\]"):
        model(torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="r4d"), "unknown backbone"),
        (dict(name="r3d", depth=50), "depth must be one of"),
        (dict(name="c3d", depth=18), "fixed depth"),
        (dict(name="s3d", zero_init_residual=True), "unknown option"),
        (dict(name="r3d", width=0), "width must be a positive integer"),
        (dict(name="i3d", in_channels=0), "in_channels must be a positive integer"),
    ],
)
def test_build_backbone_rejects_bad_arguments(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        build_backbone(name, **kwargs)


def test_second_order_gradients_flow_through_stage_maps():
    # MCL's motion alignment: d(logit)/d(p5) with create_graph, then a loss on that gradient
    # that is back-propagated into the backbone (in-place ReLUs must not break double backward).
    from vidssl.models import MLPHead

    torch.manual_seed(0)
    model = build_backbone("r2plus1d", depth=10, width=8)
    head = MLPHead([64, 32, 16], l2_normalize=True)
    feats = model.forward_features(clip(t=4, size=32), stages="p5")
    key = torch.nn.functional.normalize(torch.randn(2, 16), dim=1)
    logit = (head(feats["pooled"]) * key).sum()
    (grad_map,) = torch.autograd.grad(logit, feats["p5"], create_graph=True)
    channel_weights = grad_map.mean(dim=(2, 3, 4), keepdim=True)  # Grad-CAM style weights
    (channel_weights * feats["p5"]).relu().mean().backward()
    first_conv = model.stages["p1"][0].weight.grad
    assert first_conv is not None and torch.isfinite(first_conv).all() and first_conv.abs().sum() > 0
