import dataclasses

import pytest
import torch

from vidssl.data.augment import ClipAugment, crop_resize_flip, eval_transform

NO_COLOUR = dict(jitter_p=0.0, gray_p=0.0, blur_p=0.0)
IDENTITY_NORM = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def random_clips(n=3, t=4, h=40, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, t, h, w, 3), generator=g, dtype=torch.uint8)


def test_output_shape_dtype_and_normalisation():
    aug = ClipAugment(crop_size=32, blur_p=0.5)
    out = aug(random_clips(), torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 4, 32, 32)
    assert out.dtype == torch.float32
    assert out.is_contiguous()
    # Values are normalised [0, 1] pixels: (v - 0.45) / 0.225 lies in [-2, 2.45].
    assert out.min() >= -2.0 - 1e-4 and out.max() <= 2.45 + 1e-4


def test_rejects_bad_input():
    aug = ClipAugment(crop_size=16)
    with pytest.raises(TypeError, match="uint8"):
        aug(random_clips().float())
    with pytest.raises(ValueError, match=r"\[N, T, H, W, 3\]"):
        aug(random_clips()[..., :2])
    with pytest.raises(ValueError, match="scale"):
        ClipAugment(scale=(0.8, 0.5))
    with pytest.raises(ValueError, match="gray_p"):
        ClipAugment(gray_p=1.5)
    params = aug.sample_params(3, 40, 48)
    with pytest.raises(ValueError, match="drawn for"):
        aug.apply(random_clips(h=44), params)


def test_identical_frames_stay_identical_with_per_clip_augmentation():
    # Every random op on (crop, flip, jitter, gray, blur); a clip of identical frames must come
    # out as identical frames, which fails if any op were drawn per frame.
    aug = ClipAugment(crop_size=24, scale=(0.3, 1.0), ratio=(0.75, 1.33), hflip_p=0.5,
                      jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=1.0, gray_p=0.5, blur_p=1.0)
    frame = random_clips(n=6, t=1)
    clips = frame.expand(-1, 5, -1, -1, -1).contiguous()
    out = aug(clips, torch.Generator().manual_seed(1))
    for t in range(1, 5):
        torch.testing.assert_close(out[:, :, t], out[:, :, 0], rtol=0, atol=1e-5)
    # ...while the clips themselves were augmented differently from each other.
    assert not torch.allclose(out[0], out[1])


def test_same_crop_on_every_frame_of_a_moving_clip():
    # Frames differ by a constant brightness offset; with the same crop on every frame, the
    # output frames differ by exactly that offset at every pixel.
    base = (torch.arange(40).view(40, 1) * 3 + torch.arange(48).view(1, 48) * 2).clamp(max=200)
    clip = torch.stack([base + 10 * t for t in range(4)]).to(torch.uint8)  # [T, H, W]
    clips = clip[None, ..., None].expand(2, -1, -1, -1, 3).contiguous()
    aug = ClipAugment(crop_size=20, scale=(0.2, 0.6), **NO_COLOUR, **IDENTITY_NORM)
    out = aug(clips, torch.Generator().manual_seed(3))
    for t in range(4):
        diff = out[:, :, t] - out[:, :, 0]
        torch.testing.assert_close(diff, torch.full_like(diff, 10 * t / 255), rtol=0, atol=1e-4)


def test_per_frame_jitter_gives_differing_frames():
    frame = random_clips(n=2, t=1)
    clips = frame.expand(-1, 4, -1, -1, -1).contiguous()
    aug = ClipAugment(crop_size=24, jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=1.0, gray_p=0.0,
                      per_frame_jitter=True)
    params = aug.sample_params(2, 40, 48, torch.Generator().manual_seed(0), num_frames=4)
    assert params.brightness.shape == (2, 4)
    out = aug.apply(clips, params)
    for t in range(1, 4):
        assert (out[:, :, t] - out[:, :, 0]).abs().max() > 0.05


def test_per_frame_params_must_match_clip_length():
    aug = ClipAugment(crop_size=16, jitter_p=1.0, per_frame_jitter=True)
    params = aug.sample_params(3, 40, 48, num_frames=3)
    with pytest.raises(ValueError, match="frames per clip"):
        aug.apply(random_clips(t=4), params)


def test_flip_on_known_pattern():
    # Full-frame box at the output size: the resampling is the identity, so the flipped
    # output must be the input with its columns reversed.
    clips = random_clips(n=2, t=3, h=16, w=16)
    aug = ClipAugment(crop_size=16, scale=(1.0, 1.0), hflip_p=1.0, **NO_COLOUR, **IDENTITY_NORM)
    out = aug(clips)
    expected = clips.flip(3).permute(0, 4, 1, 2, 3).float() / 255
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    no_flip = ClipAugment(crop_size=16, scale=(1.0, 1.0), hflip_p=0.0, **NO_COLOUR, **IDENTITY_NORM)
    torch.testing.assert_close(no_flip(clips), clips.permute(0, 4, 1, 2, 3).float() / 255, rtol=0, atol=1e-5)


def test_crop_box_maps_with_half_pixel_convention():
    # A 2x2-block average: box (2, 2, 4, 4) resized to 2x2 samples at pixel centres 2.5 and 4.5.
    img = torch.arange(64.0).view(1, 1, 8, 8)
    out = crop_resize_flip(img, torch.tensor([[2.0, 2.0, 4.0, 4.0]]), torch.tensor([False]), (2, 2))
    torch.testing.assert_close(out, torch.tensor([[[[22.5, 24.5], [38.5, 40.5]]]]))


def test_unscaled_integer_boxes_are_sliced_and_match_the_resampling_path():
    # Boxes of exactly the output size at integer corners take the slicing path; in a batch
    # with one scaled box everything goes through grid_sample, which must give the same pixels.
    images = torch.rand(3, 6, 12, 10, generator=torch.Generator().manual_seed(1))
    plain = torch.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 4.0, 8.0, 8.0], [1.0, 3.0, 8.0, 8.0]])
    flip = torch.tensor([False, True, False])
    sliced = crop_resize_flip(images, plain, flip, (8, 8))
    expected = torch.stack([images[0, :, 0:8, 0:8], images[1, :, 4:12, 2:10].flip(-1), images[2, :, 3:11, 1:9]])
    assert torch.equal(sliced, expected)
    mixed = torch.cat([plain, torch.tensor([[0.0, 0.0, 10.0, 12.0]])])
    resampled = crop_resize_flip(torch.cat([images, images[:1]]), mixed, torch.cat([flip, torch.tensor([False])]), (8, 8))
    torch.testing.assert_close(resampled[:3], sliced, rtol=0, atol=1e-5)
    # A fractional corner or a box reaching outside the image is not a plain crop.
    for box in ([0.5, 0.0, 8.0, 8.0], [4.0, 0.0, 8.0, 8.0]):
        out = crop_resize_flip(images[:1], torch.tensor([box]), torch.tensor([False]), (8, 8))
        assert out.shape == (1, 6, 8, 8) and torch.isfinite(out).all()


def test_boxes_lie_inside_the_frame_and_respect_scale():
    aug = ClipAugment(crop_size=16, scale=(0.3, 0.6), ratio=(0.5, 2.0))
    p = aug.sample_params(500, 40, 60, torch.Generator().manual_seed(0))
    x0, y0, w, h = p.boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= 60).all() and (y0 + h <= 40).all()
    area = w * h / (40 * 60)
    assert area.min() > 0.27 and area.max() < 0.65  # rounding to whole pixels
    assert 0.3 < p.flip.float().mean() < 0.7


def test_vector_field_geometry():
    aug = ClipAugment(crop_size=20, scale=(0.3, 0.9), ratio=(0.75, 1.33))
    params = aug.sample_params(4, 40, 48, torch.Generator().manual_seed(5))
    params.flip[:] = torch.tensor([True, True, False, False])
    field = torch.zeros(4, 3, 40, 48, 2)
    field[..., 0] = 3.0
    field[..., 1] = -2.0
    out = aug.apply_geometry(field, params, vector_field=True)
    assert out.shape == (4, 2, 3, 20, 20)
    sx = 20 / params.boxes[:, 2]
    sy = 20 / params.boxes[:, 3]
    sign = torch.tensor([-1.0, -1.0, 1.0, 1.0])
    for i in range(4):
        torch.testing.assert_close(out[i, 0], torch.full_like(out[i, 0], float(3 * sx[i] * sign[i])))
        torch.testing.assert_close(out[i, 1], torch.full_like(out[i, 1], float(-2 * sy[i])))


def test_vector_field_at_half_resolution_uses_its_own_pixels():
    aug = ClipAugment(crop_size=20, scale=(0.5, 0.5), ratio=(1.0, 1.0), hflip_p=1.0)
    params = aug.sample_params(1, 40, 40, torch.Generator().manual_seed(0))
    field = torch.zeros(1, 2, 20, 20, 2)
    field[..., 0] = 1.0
    out = aug.apply_geometry(field, params, vector_field=True, size=(10, 10))
    box_w_in_map = float(params.boxes[0, 2]) / 2
    torch.testing.assert_close(out[0, 0], torch.full((2, 10, 10), -10 / box_w_in_map))


def test_scalar_maps_follow_the_clip_geometry():
    clips = random_clips(n=3, t=2)
    aug = ClipAugment(crop_size=24, scale=(0.3, 0.8), ratio=(0.75, 1.33), **NO_COLOUR, **IDENTITY_NORM)
    params = aug.sample_params(3, 40, 48, torch.Generator().manual_seed(2))
    frames = aug.apply(clips, params)
    maps = aug.apply_geometry(clips[..., :1].float() / 255, params)
    assert maps.shape == (3, 1, 2, 24, 24)
    torch.testing.assert_close(maps[:, 0], frames[:, 0], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="C = 2"):
        aug.apply_geometry(torch.zeros(3, 2, 40, 48, 1), params, vector_field=True)


def test_seeded_generator_is_deterministic():
    clips = random_clips()
    aug = ClipAugment(crop_size=24, blur_p=0.5, per_frame_jitter=True)
    a = aug(clips, torch.Generator().manual_seed(7))
    b = aug(clips, torch.Generator().manual_seed(7))
    c = aug(clips, torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_eval_transform_centre_crop():
    clips = random_clips(n=2, t=3, h=40, w=48)
    out = eval_transform(clips, 32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert out.shape == (2, 3, 3, 32, 32)
    expected = clips[:, :, 4:36, 8:40].permute(0, 4, 1, 2, 3).float() / 255
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    small = eval_transform(clips, 56)
    assert small.shape == (2, 3, 3, 56, 56) and torch.isfinite(small).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_matches_cpu():
    clips = random_clips(n=4, t=3)
    aug = ClipAugment(crop_size=24, jitter_p=1.0, gray_p=0.5, blur_p=0.5, per_frame_jitter=True)
    params = aug.sample_params(4, 40, 48, torch.Generator().manual_seed(0), num_frames=3)
    out = aug.apply(clips.cuda(), params)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), aug.apply(clips, params), rtol=0, atol=1e-3)
    field = torch.randn(4, 3, 40, 48, 2)
    torch.testing.assert_close(aug.apply_geometry(field.cuda(), params, vector_field=True).cpu(),
                               aug.apply_geometry(field, params, vector_field=True), rtol=0, atol=1e-4)
    assert eval_transform(clips.cuda(), 32).device.type == "cuda"


def test_tps_in_the_augmentation_is_one_resampling_of_the_crop():
    # DSM's positive: ClipAugment with a TPS warp of its crop equals warp_clips on the same
    # geometry; zero offsets leave the plain augmentation unchanged.
    from vidssl.data.geometry import TPSParams, sample_tps, tps_grid_points, warp_clips

    clips = random_clips(n=2, t=3)
    aug = ClipAugment(crop_size=16, scale=(0.4, 0.9), **NO_COLOUR, **IDENTITY_NORM)
    g = torch.Generator().manual_seed(0)
    tps = sample_tps(2, (16, 16), generator=torch.Generator().manual_seed(1))
    params = aug.sample_params(2, 40, 48, g, tps=tps)
    assert params.tps is tps and params.geometry.tps is tps
    out = aug.apply(clips, params)
    expected = warp_clips(clips, params.geometry).permute(0, 4, 1, 2, 3) / 255
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    plain = aug.apply(clips, dataclasses.replace(params, tps=None))
    assert (out - plain).abs().max() > 0.05
    points = tps_grid_points(2, (16, 16))
    still = aug.apply(clips, dataclasses.replace(params, tps=TPSParams(points, points.clone(), (16, 16))))
    torch.testing.assert_close(still, plain, rtol=0, atol=1e-5)
    with pytest.raises(NotImplementedError):
        aug.apply_geometry(torch.zeros(2, 3, 40, 48, 2), params, vector_field=True)
