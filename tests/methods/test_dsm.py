"""DSM (Wang et al., AAAI 2021): its requests, its two disturbances, both objectives, and a tiny pretraining run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from conftest import tiny_overrides
from vidssl.cli import main
from vidssl.config import ConfigError
from vidssl.data.augment import ClipAugment
from vidssl.data.catalogs import Catalog, VideoRecord
from vidssl.data.dataset import VideoDataset, collate
from vidssl.data.signals import Signal, dequantize_batch
from vidssl.data.views import VideoInfo
from vidssl.demo import demo_config_dir
from vidssl.methods.base import build_method, method_config
from vidssl.methods.dsm import DSMClips, scale_along_flow, vectors_to_flow
from vidssl.models import build_backbone
from vidssl.video.cache import dequantize_flow, quantize_flow
from vidssl.video.flow import flow_pairs
from vidssl.video.writer import write_video

SIZE = 32


def _dsm(name="dsm", augment=None, **cfg):
    cfg = method_config(name, {"name": name, "clip_len": 4, "queue_size": 16, "proj_dim": 8, "momentum": 0.9,
                               **cfg})
    return build_method(name, build_backbone("r3d", width=4, depth=10), cfg, 2,
                        augment or ClipAugment(crop_size=28))


def _batch(b=4, t=4, size=SIZE, seed=0):
    g = torch.Generator().manual_seed(seed)
    clip = torch.randint(0, 256, (b, 1, t, size, size, 3), dtype=torch.uint8, generator=g)
    return {"clips": clip.expand(b, 3, t, size, size, 3).clone(), "flow": torch.randn(b, t - 1, size, size, 2) * 2,
            "index": torch.arange(b), "generator": torch.Generator().manual_seed(seed + 1)}


# -- sampler: three crops of one clip, the third shifted (eq. 4), flow between its own frames ------------------

@pytest.mark.parametrize("num_frames", [30, 80])
def test_sampler_three_rows_of_one_clip_third_shifted_and_looping(num_frames):
    sampler = DSMClips(clip_len=4, stride=4, shift=(2, 20), flow="dis")
    taus, wrapped = set(), False
    for seed in range(60):
        req = sampler(VideoInfo("", num_frames), np.random.default_rng(seed))
        assert list(req) == ["clips", "flow"]
        clips = req["clips"].indices
        assert clips.shape == (3, 4) and np.array_equal(clips[0], clips[1])
        assert np.array_equal(np.diff(clips[0]), [4, 4, 4]) and clips[0, -1] < num_frames  # the clip fits
        tau = int(req.labels["shift"])
        assert 2 <= tau <= 20
        assert np.array_equal(clips[2], (clips[0] + tau) % num_frames)  # x_hat_i = x_{i + tau}, looped
        wrapped |= bool((clips[0] + tau >= num_frames).any())
        taus.add(tau)
        assert req["flow"].stream == "flow" and req["flow"].options == {"method": "dis"}
        assert np.array_equal(req["flow"].indices, clips[2])  # the negative's own frames
    assert min(taus) <= 4 and max(taus) >= 18
    assert wrapped  # some negatives run past the end and loop to the start


def test_sampler_variants_of_table_4():
    rng = np.random.default_rng(0)
    only_flow = DSMClips(4, 4, shift=None, flow="tvl1")(VideoInfo("", 50), rng)
    assert np.array_equal(only_flow["clips"].indices[2], only_flow["clips"].indices[0])
    assert only_flow["flow"].options == {"method": "tvl1"}
    only_shift = DSMClips(4, 4, shift=(4, 30), flow=None)(VideoInfo("", 50), rng)
    assert list(only_shift) == ["clips"] and 4 <= only_shift.labels["shift"] <= 30
    no_negative = DSMClips(4, 4, negative=False)(VideoInfo("", 50), rng)
    assert no_negative["clips"].indices.shape == (2, 4)
    mv = DSMClips(4, 4, shift=(2, 20), flow="motion_vectors")(VideoInfo("", 30), rng)
    neg = mv["clips"].indices[2]
    steps = mv["motion_vectors"].indices
    assert steps.shape == (3, 4)  # the 4 native frames after each of the first 3 frames, up to the next one
    assert np.array_equal(steps[:, -1], (neg[:-1] + 4) % 30) and np.array_equal(steps[:, 0], (neg[:-1] + 1) % 30)


def test_method_declares_what_it_reads():
    assert _dsm().signals() == (Signal("flow", method="dis"),)
    assert _dsm(flow_method="motion_vectors").signals() == (Signal("motion_vectors"),)
    assert _dsm(flow_scaling=False).signals() == ()
    sampler = _dsm(shift_min=3, shift_max=5).view_sampler()
    assert sampler.shift == (3, 5) and sampler.flow == "dis" and sampler.stride == 4


@pytest.fixture(scope="module")
def square_videos(tmp_path_factory):
    """Two 40-frame videos of a textured square moving 2 px per frame over a flat background."""
    rng, root, paths = np.random.default_rng(0), tmp_path_factory.mktemp("dsm_videos"), []
    for k in range(2):
        frames = np.full((40, SIZE, SIZE, 3), 80, np.uint8)
        texture = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        for t in range(40):
            x = 2 + (2 * t) % 18
            frames[t, 12:20, x:x + 8] = texture
        paths.append(str(root / f"v{k}.avi"))
        write_video(paths[-1], frames, gop=8)
    return Catalog([VideoRecord(p, 0) for p in paths], ["all"], "dsm")


def _load(method, catalog):
    ds = VideoDataset(catalog, method.view_sampler(), frame_size=(SIZE, SIZE), seed=3, declared=method.signals())
    return next(iter(DataLoader(ds, batch_size=2, num_workers=0, collate_fn=collate)))


def test_requests_load_as_a_batch_with_flow_between_the_negatives_frames(square_videos):
    method = _dsm()
    batch = _load(method, square_videos)
    assert batch["clips"].shape == (2, 3, 4, SIZE, SIZE, 3)
    assert torch.equal(batch["clips"][:, 0], batch["clips"][:, 1])
    assert batch["flow"].shape == (2, 3, SIZE, SIZE, 2)
    dequantize_batch(batch)
    for b in range(2):
        frames = batch["clips"][b, 2].numpy()
        expected = dequantize_flow(quantize_flow(flow_pairs(frames[:-1], frames[1:], "dis")))
        np.testing.assert_array_equal(batch["flow"][b].numpy(), expected)
    out = method(batch)
    assert torch.isfinite(out["loss"])


def test_motion_vectors_between_the_negatives_frames_load_and_train(square_videos):
    method = _dsm(flow_method="motion_vectors")
    batch = _load(method, square_videos)
    assert "flow" not in batch and batch["motion_vectors"].shape == (2, 3, 4, SIZE // 4, SIZE // 4, 2)
    dequantize_batch(batch)
    assert torch.isfinite(method(batch)["loss"])


# -- positive: one TPS warp for every frame of a clip, a new one per sample (spatial local disturbance) ----------

def test_tps_positive_is_one_warp_per_clip_and_new_per_sample():
    plain = ClipAugment(crop_size=SIZE, scale=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, gray_p=0.0)
    method = _dsm(augment=plain)
    batch = _batch(b=3)
    batch["clips"][:] = batch["clips"][0, 0, 0]  # every frame of every clip and row: the same image
    a, p, _ = method.views(batch)
    # With a plain augmentation the anchor is the frame itself; the positive is warped.
    torch.testing.assert_close(a, a[:1, :, :1].expand_as(a))
    assert (p - a).abs().mean() > 0.05
    # Identical frames in, identical frames out: the same warp for every frame of a clip ...
    torch.testing.assert_close(p, p[:, :, :1].expand_as(p))
    # ... and a different warp for each sample and each step.
    assert (p[0] - p[1]).abs().mean() > 0.01 and (p[1] - p[2]).abs().mean() > 0.01
    batch["generator"] = torch.Generator().manual_seed(99)
    assert (method.views(batch)[1] - p).abs().mean() > 0.01
    unwarped = _dsm(augment=plain, spatial_warp=False).views(batch)[1]
    torch.testing.assert_close(unwarped, a)


# -- negative: optical-flow scaling (eq. 3) ------------------------------------------------------------------------

def test_flow_scaling_phi_zero_repeats_each_frame():
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 5, 12, 16, 3), dtype=torch.uint8, generator=g)
    out = scale_along_flow(frames, torch.randn(2, 4, 12, 16, 2, generator=g) * 3, torch.zeros(2, 4))
    assert out.dtype == torch.uint8
    assert torch.equal(out[:, 0], frames[:, 0]) and torch.equal(out[:, 1:], frames[:, :-1])


@pytest.mark.parametrize("phi", [1.0, 2.0, 3.0])
def test_flow_scaling_moves_content_by_phi_times_the_flow(phi):
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (1, 3, 24, 24, 3), dtype=torch.uint8, generator=g)
    flow = torch.zeros(1, 2, 24, 24, 2)
    flow[..., 0], flow[..., 1] = 2.0, -1.0  # everything moves 2 px right and 1 px up per frame
    out = scale_along_flow(frames, flow, torch.tensor([[phi, 0.5 * phi]]))
    dx, dy = int(2 * phi), int(-phi)
    # Frame 1 is frame 0 moved by phi * (2, -1): out[y, x] = in[y - dy, x - dx].
    torch.testing.assert_close(out[0, 1, 8:16, 8:16], frames[0, 0, 8 - dy:16 - dy, 8 - dx:16 - dx], rtol=0, atol=0)
    # Outside the frame is black (the paper's boundary): the first dx columns of frame 1.
    assert int(out[0, 1, :, :dx].max()) == 0
    # phi = 1 on a real translation re-synthesises the next frame (eq. 2).
    moving = torch.roll(frames[:, :1], shifts=(-1, 2), dims=(2, 3)).expand(1, 2, 24, 24, 3)
    moving = torch.cat([frames[:, :1], moving[:, :1]], 1)
    again = scale_along_flow(moving, flow[:, :1], torch.ones(1, 1))
    torch.testing.assert_close(again[0, 1, 4:20, 4:20], moving[0, 1, 4:20, 4:20], rtol=0, atol=0)


def test_motion_vectors_summed_over_the_pair_and_spread_over_their_blocks():
    vectors = torch.zeros(1, 2, 4, 3, 3, 2)
    vectors[0, 0, :, 1, 2] = torch.tensor([1.0, -0.5])  # block (1, 2) moves 1 px right per native frame
    flow = vectors_to_flow(vectors, (10, 12))
    assert flow.shape == (1, 2, 10, 12, 2)
    torch.testing.assert_close(flow[0, 0, 4:8, 8:12], torch.tensor([4.0, -2.0]).expand(4, 4, 2))
    assert flow[0, 0, :4].abs().sum() == 0 and flow[0, 1].abs().sum() == 0


# -- objectives -----------------------------------------------------------------------------------------------------

def test_dsm_contrastive_step_trains_query_side_and_queues_anchors():
    torch.manual_seed(0)
    method = _dsm()
    out = method(_batch())
    assert torch.isfinite(out["loss"]) and 0 <= out["pretext_acc"] <= 100 and "pos_minus_neg" in out
    out["loss"].backward()
    assert all(p.grad is not None for p in method.backbone.parameters())
    assert all(p.grad is None for p in method.key_encoder.parameters())
    assert int(method.queue.ptr) == 4 and method.queue.tags[:4].tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(method.queue.features[:4].norm(dim=1), torch.ones(4))
    for _ in range(4):  # a queue of 16 over 4 videos: own-video anchors are masked from then on
        out = method(_batch())
    assert method.queue.tags.tolist().count(0) == 4


def test_dsm_without_negative_is_moco_with_a_warped_positive():
    out = _dsm(temporal_shift=False, flow_scaling=False)(_batch())
    assert torch.isfinite(out["loss"]) and "pos_minus_neg" not in out


def test_dsm_triplet_step_has_no_queue():
    torch.manual_seed(0)
    method = _dsm("dsm-triplet")
    assert not hasattr(method, "queue") and not hasattr(method, "key_encoder")
    batch = _batch()
    del batch["index"]
    out = method(batch)
    assert torch.isfinite(out["loss"]) and 0 <= out["pretext_acc"] <= 100
    out["loss"].backward()
    assert all(p.grad is not None for p in method.backbone.parameters())


@pytest.mark.parametrize("name", ["dsm", "dsm-triplet"])
def test_bf16_autocast_channels_last_loss_is_finite_fp32(name):
    torch.manual_seed(0)
    method = _dsm(name).to(memory_format=torch.channels_last_3d)
    method.channels_last = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(_batch())
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])


def test_config_errors():
    with pytest.raises(ConfigError, match="needs a negative"):
        _dsm("dsm-triplet", temporal_shift=False, flow_scaling=False)
    with pytest.raises(ConfigError, match="shift_max"):
        method_config("dsm", {"shift_min": 5, "shift_max": 2})
    with pytest.raises(ConfigError, match="flow_method"):
        method_config("dsm", {"flow_method": "farneback"})
    with pytest.raises(KeyError, match="index"):
        batch = _batch()
        del batch["index"]
        _dsm()(batch)


# -- a tiny pretraining run of each ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["dsm", "dsm-triplet"])
def test_pretrain_runs_and_exports_the_backbone(name, tiny_benchmark, tmp_path):
    run = tmp_path / name
    overrides = tiny_overrides(tiny_benchmark, run, **{
        # eq. 7 with the paper's flow scaling (DIS between the negative's frames), the triplet as the demo row has it
        "method.name": name, "method.flow_scaling": "true" if name == "dsm" else "false",
        "method.clip_len": 4, "method.queue_size": 16, "method.proj_dim": 8,
        "model.width": 4, "trainer.max_steps": 3, "trainer.checkpoint_every_n_steps": 3})
    assert main(["pretrain", "-c", str(demo_config_dir() / "dsm.yaml"), *overrides]) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert all(np.isfinite(line["loss"]) for line in lines)
    weights = load_file(run / "backbone.safetensors")
    assert weights and not any(k.startswith(("method.", "backbone.")) for k in weights)
