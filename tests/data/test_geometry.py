"""The geometry module: clips and their motion fields through the same crop, resize, flip and TPS warp."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from kornia.geometry.transform import get_tps_transform, warp_image_tps

from vidssl.data.augment import ClipAugment
from vidssl.data.geometry import (
    GeometryParams,
    TPSParams,
    crop_resize_flip,
    sample_geometry,
    sample_tps,
    tps_grid_points,
    tps_warp,
    vector_scale,
    warp_clips,
    warp_fields,
)
from vidssl.video import optical_flow, read_compressed
from vidssl.video.writer import write_video


def translating_clip(size=64, frames=5, dx=2, dy=1, blocky=False, seed=0) -> np.ndarray:
    """uint8 [T, size, size, 3]: a texture whose content moves by (dx, dy) px per frame.

    The window over a larger texture moves by (-dx, -dy), so the content moves by (dx, dy):
    forward flow and motion vectors read (dx, dy) everywhere but where content enters.
    Smooth noise for optical flow, 4-px cells for the MPEG-4 encoder's block search.
    """
    rng = np.random.default_rng(seed)
    big = size + frames * max(abs(dx), abs(dy)) * 2 + 8
    if blocky:
        texture = rng.integers(0, 256, (big // 4 + 1, big // 4 + 1, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    else:
        noise = rng.integers(0, 256, (big, big, 3), dtype=np.uint8)
        texture = cv2.GaussianBlur(noise, (0, 0), 2.0)
        texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    y0 = x0 = big // 2 - size // 2
    return np.stack([texture[y0 - dy * t:y0 - dy * t + size, x0 - dx * t:x0 - dx * t + size]
                     for t in range(frames)])


def to_uint8(clips: torch.Tensor) -> np.ndarray:
    return clips.round().clamp(0, 255).to(torch.uint8).numpy()


def interior_mean(field: np.ndarray, margin: int) -> np.ndarray:
    """Mean vector [2] of fields [T, H, W, 2] over the pixels at least ``margin`` from the border."""
    return field[:, margin:field.shape[1] - margin, margin:field.shape[2] - margin].reshape(-1, 2).mean(0)


# ---- (a) optical flow of the transformed clip = transformed optical flow ------------------------------

@pytest.mark.parametrize("box, out, flip", [
    ((8.0, 4.0, 48.0, 40.0), (32, 32), True),     # shrink, anisotropic, flipped
    ((12.0, 10.0, 40.0, 40.0), (56, 56), False),  # enlarge
    ((0.0, 0.0, 64.0, 64.0), (64, 64), True),     # flip only
])
def test_crop_resize_flip_of_a_clip_and_its_dis_flow_agree(box, out, flip):
    frames = translating_clip(dx=2, dy=1)
    flow = optical_flow(frames)                                                # [T, 64, 64, 2]
    assert np.allclose(interior_mean(flow[:-1], 12), [2, 1], atol=0.2)         # the clip moves as built
    params = GeometryParams.from_boxes([box], (64, 64), out, flip=[flip])
    warped = warp_clips(torch.from_numpy(frames[None]), params)[0]             # [T, h, w, 3] float
    flow_of_warped = optical_flow(to_uint8(warped))
    warped_flow = warp_fields(torch.from_numpy(flow[None]), params)[0].numpy()
    assert warped_flow.shape == flow_of_warped.shape
    margin = max(6, out[0] // 6)
    measured, predicted = interior_mean(flow_of_warped[:-1], margin), interior_mean(warped_flow[:-1], margin)
    expected = np.array([2 * out[1] / box[2] * (-1 if flip else 1), 1 * out[0] / box[3]])
    np.testing.assert_allclose(predicted, expected, atol=0.1)
    np.testing.assert_allclose(measured, predicted, atol=0.3)


# ---- (b) motion vectors of the re-encoded transformed clip = transformed motion vectors ---------------

@pytest.mark.parametrize("downsample", [1, 4])
def test_crop_resize_flip_of_motion_vectors_matches_the_reencoded_clip(tmp_path, downsample):
    # 64 px, (3, -3) px per frame; the box (8, 8, 48, 48) resized to 64 px scales by 4/3 and the
    # flip negates x: the transformed clip moves by (-4, -4) px per frame. P-frames only (the
    # writer's default: no B-frames), so every frame after the I-frame holds vectors.
    frames = translating_clip(dx=3, dy=-3, frames=8, blocky=True)
    write_video(tmp_path / "a.avi", frames)
    original = read_compressed(tmp_path / "a.avi", downsample=downsample, iframes=False)
    params = GeometryParams.from_boxes([[8.0, 8.0, 48.0, 48.0]], (64, 64), (64, 64), flip=[True])
    transformed = to_uint8(warp_clips(torch.from_numpy(frames[None]), params)[0])
    write_video(tmp_path / "b.avi", transformed)
    reencoded = read_compressed(tmp_path / "b.avi", downsample=downsample, iframes=False)
    valid = original.mv_valid & reencoded.mv_valid
    assert valid.sum() >= 6, (original.frame_types, original.mv_valid, reencoded.mv_valid)

    maps = torch.from_numpy(original.motion_vectors[None])                     # [1, T, 64/d, 64/d, 2]
    predicted = warp_fields(maps, params)[0].numpy()                           # output grid: 64/d too
    assert predicted.shape == reencoded.motion_vectors.shape
    # Whatever unit read_compressed reports in (frame or grid pixels), both files are read the
    # same way and the geometry is linear in the values, so the two must agree; the ratio to the
    # original motion is the geometry's (4/3, with x negated).
    margin = 16 // downsample                                                   # one macroblock
    got = interior_mean(reencoded.motion_vectors[valid], margin)
    want = interior_mean(predicted[valid], margin)
    source = interior_mean(original.motion_vectors[valid], margin)
    np.testing.assert_allclose(want, source * np.array([-4 / 3, 4 / 3]), rtol=0.05, atol=0.1)
    np.testing.assert_allclose(got, want, atol=0.5)
    assert np.sign(got).tolist() == [-1.0, -1.0]  # moving left and up after the flip


def test_vectors_on_a_quarter_grid_are_rescaled_in_clip_pixels():
    # Units (DESIGN.md): a field in pixels of the delivered frames comes out in pixels of the
    # output clip, whatever its grid; "grid" units take the grid's own pixels instead.
    params = GeometryParams.from_boxes([[0.0, 0.0, 32.0, 40.0], [4.0, 0.0, 48.0, 40.0]], (40, 48), (20, 24),
                                       flip=[False, True])
    field = torch.zeros(2, 3, 10, 12, 2)
    field[..., 0], field[..., 1] = 3.0, -2.0
    out = warp_fields(field, params)
    assert out.shape == (2, 3, 5, 6, 2)
    torch.testing.assert_close(out[0, ..., 0], torch.full((3, 5, 6), 3 * 24 / 32))
    torch.testing.assert_close(out[1, ..., 0], torch.full((3, 5, 6), -3 * 24 / 48))
    torch.testing.assert_close(out[..., 1], torch.full((2, 3, 5, 6), -2 * 20 / 40))
    torch.testing.assert_close(vector_scale(params), torch.tensor([[24 / 32, 0.5], [-0.5, 0.5]]))
    same = warp_fields(field, params, size=(5, 6), units="grid")
    torch.testing.assert_close(same, out)
    channels_first = warp_fields(field.permute(0, 4, 1, 2, 3), params, layout="NCTHW")
    torch.testing.assert_close(channels_first, out.permute(0, 4, 1, 2, 3))
    scalar = warp_fields(field[..., :1], params, vector_field=False)
    torch.testing.assert_close(scalar, torch.full((2, 3, 5, 6, 1), 3.0))


# ---- (c), (d) thin-plate spline ---------------------------------------------------------------------

def test_tps_with_zero_offsets_is_the_identity():
    clips = torch.rand(3, 4, 32, 40, 3, generator=torch.Generator().manual_seed(0))
    points = tps_grid_points(3, (32, 40), grid=4)
    identity = TPSParams(dst=points, src=points.clone(), size=(32, 40))
    assert (tps_warp(clips, identity) - clips).abs().max() < 1e-5
    zero = sample_tps(3, (32, 40), max_offset=0.0, generator=torch.Generator().manual_seed(0))
    channels_first = clips.permute(0, 4, 1, 2, 3)
    assert (tps_warp(channels_first, zero, layout="NCTHW") - channels_first).abs().max() < 1e-5


def coordinate_clip(n, t, h, w):
    """Float clips [n, t, h, w, 3] whose channels are x and y of each pixel centre and the frame index."""
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    frame = torch.stack([xs, ys, torch.zeros_like(xs)], dim=-1)
    clip = frame.expand(n, t, h, w, 3).clone()
    clip[..., 2] = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1)
    return clip


def test_tps_maps_control_points_where_expected_on_every_frame():
    # Bilinear sampling of a coordinate ramp returns the sampled position itself, so the output
    # at each destination point must read its source point, on every frame alike.
    n, t, h, w = 2, 3, 32, 32
    g = torch.Generator().manual_seed(3)
    centres = torch.tensor([4.5, 16.5, 27.5])
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    dst = torch.stack([xs.flatten(), ys.flatten()], dim=1).expand(n, 9, 2).contiguous()
    src = dst + (torch.rand(dst.shape, generator=g) * 6 - 3)                   # offsets in [-3, 3] px
    out = tps_warp(coordinate_clip(n, t, h, w), TPSParams(dst=dst, src=src, size=(h, w)))
    cols, rows = dst[..., 0].long(), dst[..., 1].long()                        # pixel centres -> indices
    for i in range(n):
        for f in range(t):
            got = out[i, f, rows[i], cols[i], :2]
            torch.testing.assert_close(got, src[i], rtol=0, atol=1e-3)
            torch.testing.assert_close(out[i, f, ..., 2], torch.full((h, w), float(f)))
    # The same warp for every frame of a clip, another one for the other clip.
    frames = torch.rand(n, t, h, w, 3, generator=g)
    tps = sample_tps(n, (h, w), grid=4, max_offset=0.1, generator=g)
    assert tps.offsets.abs().max() <= 0.1 * w + 1e-5 and tps.dst.shape == (n, 16, 2)
    warped = tps_warp(frames, tps)
    for f in range(t):
        one = tps_warp(frames[:, f:f + 1].contiguous(), tps)[:, 0]
        torch.testing.assert_close(warped[:, f], one, rtol=0, atol=1e-6)
    assert not torch.allclose(tps.offsets[0], tps.offsets[1])


def test_tps_fast_path_equals_kornia_warp_image_tps_per_frame():
    n, t, h, w = 2, 3, 24, 28
    g = torch.Generator().manual_seed(1)
    clips = torch.rand(n, t, h, w, 3, generator=g)
    tps = sample_tps(n, (h, w), grid=5, max_offset=0.1, generator=g)
    scale = torch.tensor([2.0 / w, 2.0 / h])
    dst, src = tps.dst * scale - 1, tps.src * scale - 1                        # kornia's normalised frame
    kernel, affine = get_tps_transform(dst, src)
    reference = torch.stack([warp_image_tps(clips[:, f].permute(0, 3, 1, 2), src, kernel, affine,
                                            padding_mode="border") for f in range(t)], dim=1)
    torch.testing.assert_close(tps_warp(clips, tps), reference.permute(0, 1, 3, 4, 2), rtol=0, atol=1e-4)


def test_crop_and_tps_compose_into_one_resampling():
    clips = torch.rand(2, 3, 40, 48, 3, generator=torch.Generator().manual_seed(2))
    params = sample_geometry(2, (40, 48), (24, 24), scale=(0.3, 0.9), generator=torch.Generator().manual_seed(0),
                             flip=[True, False])
    points = tps_grid_points(2, (24, 24))
    identity = TPSParams(dst=points, src=points.clone(), size=(24, 24))
    torch.testing.assert_close(warp_clips(clips, params.with_tps(identity)), warp_clips(clips, params),
                               rtol=0, atol=1e-5)
    tps = sample_tps(2, (24, 24), generator=torch.Generator().manual_seed(4))
    # One resampling equals the crop followed by the spline, up to the second interpolation:
    # compare on a coordinate ramp, where bilinear interpolation is exact, away from the border
    # (there the spline reaches outside the crop: two steps clamp to the crop's edge, one step
    # reads the frame around it).
    ramp = coordinate_clip(2, 3, 40, 48)
    once = warp_clips(ramp, params.with_tps(tps))[:, :, 5:-5, 5:-5, :2]
    twice = tps_warp(warp_clips(ramp, params), tps)[:, :, 5:-5, 5:-5, :2]
    torch.testing.assert_close(once, twice, rtol=0, atol=1e-3)
    with pytest.raises(NotImplementedError):
        warp_fields(torch.zeros(2, 3, 40, 48, 2), params.with_tps(tps))


# ---- (e) given boxes are used exactly -----------------------------------------------------------------

def test_given_boxes_are_used_exactly():
    # Fractional boxes on a coordinate ramp: output pixel j reads x0 + (j + 0.5) * w / out_w.
    boxes = [[3.25, 1.5, 20.0, 30.0], [0.0, 6.0, 44.0, 33.0]]
    params = GeometryParams.from_boxes(boxes, (40, 48), (10, 11), flip=[False, True])
    assert torch.equal(params.boxes, torch.tensor(boxes)) and params.flip.tolist() == [False, True]
    out = warp_clips(coordinate_clip(2, 1, 40, 48), params)[:, 0]
    for i, (x0, y0, bw, bh) in enumerate(boxes):
        xs = x0 + (torch.arange(11) + 0.5) * bw / 11
        ys = y0 + (torch.arange(10) + 0.5) * bh / 10
        if i == 1:
            xs = xs.flip(0)
        torch.testing.assert_close(out[i, 0, :, 0], xs, rtol=0, atol=1e-4)
        torch.testing.assert_close(out[i, :, 0, 1], ys, rtol=0, atol=1e-4)
    # ClipAugment: given boxes and flips replace the draw; the colour draws stay the same.
    aug = ClipAugment(crop_size=16)
    drawn = aug.sample_params(2, 40, 48, torch.Generator().manual_seed(0))
    given = aug.sample_params(2, 40, 48, torch.Generator().manual_seed(0), boxes=boxes, flip=[True, True])
    assert torch.equal(given.boxes, torch.tensor(boxes)) and given.flip.all()
    for name in ("jitter", "brightness", "contrast", "saturation", "hue", "gray", "blur_sigma"):
        assert torch.equal(getattr(given, name), getattr(drawn, name)), name
    # ...and its geometry is what ClipAugment.apply used, shareable with motion fields.
    clips = torch.randint(0, 256, (2, 3, 40, 48, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    plain = ClipAugment(crop_size=16, jitter_p=0.0, gray_p=0.0, mean=(0.0,) * 3, std=(1.0,) * 3)
    p = plain.sample_params(2, 40, 48, boxes=boxes, flip=[True, False])
    expected = warp_clips(clips, p.geometry).permute(0, 4, 1, 2, 3) / 255
    torch.testing.assert_close(plain.apply(clips, p), expected, rtol=0, atol=1e-5)


def test_sampled_geometry_is_clip_augment_draw():
    aug = ClipAugment(crop_size=24, scale=(0.3, 0.9), ratio=(0.75, 1.33), hflip_p=0.5)
    p = aug.sample_params(16, 40, 48, torch.Generator().manual_seed(9))
    geo = sample_geometry(16, (40, 48), (24, 24), scale=aug.scale, ratio=aug.ratio, hflip_p=0.5,
                          generator=torch.Generator().manual_seed(9))
    assert torch.equal(geo.boxes, p.boxes) and torch.equal(geo.flip, p.flip)
    assert p.geometry.output_size == (24, 24)
    x0, y0, w, h = geo.boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 48).all() and (y0 + h <= 40).all()
    with pytest.raises(ValueError, match="positive"):
        GeometryParams.from_boxes([[0, 0, 0, 4]], (8, 8), (4, 4))
    with pytest.raises(ValueError, match="drawn for"):
        warp_clips(torch.zeros(16, 2, 30, 48, 3), geo)


# ---- (f) no device-to-host sync --------------------------------------------------------------------

def test_params_stay_on_the_host_and_application_reads_no_device_values():
    # 'meta' tensors have shapes but no values: any branch on a value computed from the clips
    # (a device-to-host read on a GPU) raises here. Every decision is taken on the CPU params.
    g = torch.Generator().manual_seed(0)
    params = sample_geometry(4, (32, 40), (16, 16), scale=(0.3, 1.0), generator=g).with_tps(
        sample_tps(4, (16, 16), generator=g))
    assert params.boxes.device.type == "cpu" and params.tps.src.device.type == "cpu"
    clips = torch.empty(4, 3, 32, 40, 3, dtype=torch.uint8, device="meta")
    assert warp_clips(clips, params).shape == (4, 3, 16, 16, 3)
    plain = GeometryParams.from_boxes(params.boxes, (32, 40), (16, 16), params.flip)
    assert warp_clips(clips, plain).device.type == "meta"
    assert warp_fields(torch.empty(4, 3, 8, 10, 2, device="meta"), plain).shape == (4, 3, 4, 4, 2)
    assert tps_warp(torch.empty(4, 3, 16, 16, 3, device="meta"), params).shape == (4, 3, 16, 16, 3)
    images = torch.empty(4, 9, 32, 40, device="meta")
    assert crop_resize_flip(images, params.boxes, params.flip, (16, 16)).shape == (4, 9, 16, 16)
    aug = ClipAugment(crop_size=16, jitter_p=1.0, gray_p=0.5, blur_p=0.5, per_frame_jitter=True)
    p = aug.sample_params(4, 32, 40, g, num_frames=3)
    assert aug.apply(clips, p).shape == (4, 3, 3, 16, 16)
    assert p.boxes.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_no_sync_and_same_as_cpu():
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (4, 3, 32, 40, 3), dtype=torch.uint8, generator=g)
    params = sample_geometry(4, (32, 40), (16, 16), scale=(0.3, 1.0), generator=g)
    tps = params.with_tps(sample_tps(4, (16, 16), generator=g))
    aug = ClipAugment(crop_size=16, jitter_p=1.0, gray_p=0.5, blur_p=0.5, per_frame_jitter=True)
    p = aug.sample_params(4, 32, 40, g, num_frames=3)
    gpu = clips.cuda()
    field = torch.randn(4, 3, 8, 10, 2, generator=g)
    field_gpu = field.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outs = [warp_clips(gpu, params), warp_clips(gpu, tps), warp_fields(field_gpu, params), aug.apply(gpu, p)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    refs = [warp_clips(clips, params), warp_clips(clips, tps), warp_fields(field, params), aug.apply(clips, p)]
    for out, ref in zip(outs, refs):
        torch.testing.assert_close(out.cpu(), ref, rtol=0, atol=2e-3 * float(ref.abs().max().clamp(min=1)))


@pytest.mark.parametrize("size", [(50, 60), (30, 36)])
def test_centre_crop_geometry_is_eval_transforms_crop(size):
    from vidssl.data.augment import eval_transform

    clips = torch.randint(0, 256, (2, 3, *size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    params = GeometryParams.centre_crop(2, size, 40)
    assert params.output_size == (40, 40) and not params.flip.any()
    fields = warp_fields(clips.float() / 255, params, vector_field=False, size=(40, 40))  # [N, T, 40, 40, 3]
    expected = eval_transform(clips, 40, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).permute(0, 2, 3, 4, 1)
    torch.testing.assert_close(fields, expected, atol=1e-5, rtol=1e-5)
