"""MCL (Li et al., ICCV 2021): motion-focused views (sec. 3.2), the second-order alignment loss (3.3),
the motion sources, configs and a short pretraining run."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

import vidssl.methods.mcl as mcl_mod
from vidssl.config import ConfigError, load_config
from vidssl.data.augment import ClipAugment
from vidssl.data.catalogs import Catalog, VideoRecord
from vidssl.data.dataset import VideoDataset, collate
from vidssl.data.signals import Signal, SignalSet, dequantize_batch
from vidssl.data.views import VideoInfo
from vidssl.methods.base import build_method, method_config
from vidssl.methods.mcl import MotionClips, alignment_layers, motion_boxes, vector_motion_map
from vidssl.models import build_backbone
from vidssl.video.flow import motion_map
from vidssl.video.writer import write_video

NATIVE, SIZE, FRAMES, STILL, DX = 64, 32, 40, 20, 2  # 64 px files read at 32 px; the square moves from frame 20


def render(seed: int) -> np.ndarray:
    """A 16 px textured square (rows 24..40 native) still until frame STILL, then moving right DX px a frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:NATIVE, 0:NATIVE]
    background = np.stack([60 + xx * 2, 60 + yy * 2, np.full_like(xx, 90)], -1).astype(np.uint8)
    texture = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    out = np.repeat(background[None], FRAMES, axis=0)
    for t in range(FRAMES):
        x = 4 + DX * max(t - STILL, 0)
        out[t, 24:40, x:x + 16] = texture
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("mcl")
    paths = []
    for k in range(2):
        write_video(root / f"v{k}.avi", render(k), gop=12)
        paths.append(str(root / f"v{k}.avi"))
    return paths


def _mcl(backbone="r3d", **method):
    cfg = method_config("mcl", {"name": "mcl", "queue_size": 16, "proj_hidden": 16, "proj_dim": 8, "clip_len": 8,
                                **method})
    kw = {"depth": 10} if backbone.startswith("r") else {}
    return build_method("mcl", build_backbone(backbone, width=8, **kw), cfg, 2, ClipAugment(crop_size=32))


def _batch(b=4, t=8, size=32, vectors=False):
    g = torch.Generator().manual_seed(0)
    motion = torch.zeros(b, 2, t, size, size)
    motion[..., 4:14, 18:30] = torch.rand(b, 2, t, 10, 12, generator=g) + 1  # moving region, top right
    if vectors:
        motion = torch.randn(b, 2, t, size // 4, size // 4, 2, generator=g)
    return {"clips": torch.randint(0, 256, (b, 2, t, size, size, 3), dtype=torch.uint8, generator=g),
            "motion": motion, "index": torch.arange(b), "generator": torch.Generator().manual_seed(1), "epoch": 0.0}


# -- 3.2 temporal sampling ---------------------------------------------------------------------

def test_sampler_draws_clips_above_the_median_clip_level_motion():
    t_motion = np.r_[np.zeros(30), np.linspace(1, 2, 30)].astype(np.float32)  # still, then moving
    info = VideoInfo("v.avi", 60, motion={"t_motion": t_motion})
    sampler = MotionClips(num_views=2, clip_len=8, stride=2)
    rng = np.random.default_rng(0)
    level = {s: t_motion[s:s + 15:2].mean() for s in range(60 - 14)}
    median = np.median(list(level.values()))
    starts = set()
    for _ in range(200):
        req = sampler(info, rng)
        assert req["clips"].indices.shape == (2, 8) and req["motion"].stream == "motion_map"
        np.testing.assert_array_equal(req["motion"].indices, req["clips"].indices)
        assert req["motion"].options == {"method": "tvl1"}
        for row in req["clips"].indices:
            assert level[int(row[0])] > median
            starts.add(int(row[0]))
    assert len(starts) > 10  # at random among them, not the most moving one
    # Without the statistic, or with temporal sampling off, any clip; motion vectors read their own.
    off = MotionClips(temporal_sampling=False, clip_len=8)
    assert min(int(off(info, rng)["clips"].indices[0, 0]) for _ in range(100)) < 15
    mv = MotionClips(clip_len=8, motion_source="mv")(VideoInfo("v.avi", 60, motion={"mv_t_motion": t_motion}), rng)
    assert mv["motion"].stream == "motion_vectors" and mv["clips"].indices[0, 0] >= 14
    assert MotionClips(clip_len=8)(VideoInfo("v.avi", 5), rng)["clips"].indices.shape == (2, 8)  # short: loops


# -- 3.2 spatial cropping -----------------------------------------------------------------------

def _coverage(s_motion, box, quantile=0.9):
    hot = s_motion > np.quantile(s_motion, quantile)
    x0, y0, w, h = (int(v) for v in box)
    return hot[y0:y0 + h, x0:x0 + w].sum() / hot.sum()


@pytest.mark.parametrize("scale", [(0.7, 1.0), (0.2, 1.0), (0.05, 0.1)])
def test_boxes_cover_80_percent_of_the_hot_pixels(scale):
    g = torch.Generator().manual_seed(0)
    s = torch.rand(6, 40, 48, generator=g) * 0.1
    s[:, 5:19, 26:46] += 1 + torch.rand(6, 14, 20, generator=g)  # the moving object, 15 % of the frame
    s[0] = 0.0  # a static clip: any box
    boxes = torch.cat([motion_boxes(s, scale, (0.75, 4 / 3), g) for _ in range(20)])
    assert boxes.device.type == "cpu" and boxes.shape == (120, 4)
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 48).all() and (y0 + h <= 40).all() and (w >= 1).all()
    sm = s.repeat(20, 1, 1).numpy()
    for i in range(120):
        if i % 6:
            assert _coverage(sm[i], boxes[i]) >= 0.8
    moving = boxes.view(20, 6, 4)[:, 1:].reshape(-1, 4)
    if scale[1] >= 0.2:  # drawn at random among the covering boxes
        assert len({tuple(b.tolist()) for b in moving}) > 20
    else:  # no box this small holds 80 % of the object: the hot pixels' own bounding box
        assert {tuple(b.tolist()) for b in moving} <= {(float(x0), 5.0, float(x1 - x0), 14.0)
                                                        for x0 in range(26, 30) for x1 in range(43, 47)}


def test_method_crops_each_clip_around_its_own_motion(monkeypatch):
    seen = []
    real = mcl_mod.motion_boxes

    def spy(s, *args, **kw):
        boxes = real(s, *args, **kw)
        seen.append((s.clone(), boxes))
        return boxes

    monkeypatch.setattr(mcl_mod, "motion_boxes", spy)
    method = _mcl()
    batch = _batch()
    batch["motion"][1] = 0.0  # a static video: thresholds are per clip, so its boxes are random
    x, st_motion = method.motion_focused_views(batch, batch["generator"])
    assert x.shape == (8, 3, 8, 32, 32) and st_motion.shape == (8, 8, 32, 32)
    (s, boxes), = seen
    for i in (0, 1, 4, 5, 6, 7):
        assert _coverage(s[i].numpy(), boxes[i]) >= 0.8
        x0, y0, w, h = boxes[i].tolist()
        assert x0 <= 18 + 2 and x0 + w >= 30 - 2 and y0 <= 4 + 2  # around the top-right region
    # The target is the ST-motion cropped like the clip: its mass sits where the region went.
    assert st_motion[0].sum() > 0 and torch.equal(st_motion[2], torch.zeros_like(st_motion[2]))


def test_generated_video_moving_object_picks_moving_clip_and_its_box(videos, tmp_path):
    method = _mcl(motion_source="dis")
    catalog = Catalog([VideoRecord(p, 0) for p in videos], ["all"], "mcl")
    ds = VideoDataset(catalog, method.view_sampler(), frame_size=(SIZE, SIZE), seed=0, declared=method.signals())
    t_motion = ds.signal_set.motion_stats(videos[0])["t_motion"]
    # Still, then moving (a few codec flickers at GOP boundaries in the still half).
    assert np.median(t_motion[:STILL - 1]) == 0 and t_motion[:STILL - 1].mean() < 0.2 * t_motion[STILL + 1:].mean()
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate)))
    assert batch["motion"].shape == (2, 2, 8, SIZE, SIZE)
    dequantize_batch(batch)
    # Every drawn clip (8 frames at stride 2) overlaps the frames where the square moves (above the median).
    sampler = method.view_sampler()
    info = VideoInfo(videos[0], FRAMES, motion={"t_motion": t_motion})
    rng = np.random.default_rng(0)
    assert all(int(sampler(info, rng)["clips"].indices[v, 0]) >= STILL - 14 for _ in range(50) for v in range(2))
    # The box of each view covers >= 80 % of its above-90th-percentile S-motion, around the square's rows.
    s_motion = batch["motion"].flatten(0, 1).mean(1)
    boxes = motion_boxes(s_motion, (0.7, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0))
    for i in range(4):
        assert _coverage(s_motion[i].numpy(), boxes[i]) >= 0.8
        x0, y0, w, h = boxes[i].tolist()
        assert y0 <= 24 * SIZE / NATIVE + 1 and y0 + h >= 40 * SIZE / NATIVE - 1


# -- 3.3 the alignment loss and its second-order gradient ----------------------------------------

def _grads(loss, params):
    return [g if g is not None else torch.zeros_like(p)
            for g, p in zip(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True), params)]


@pytest.mark.parametrize("backbone", ["r3d", "r2plus1d", "c3d"])
def test_alignment_loss_trains_the_backbone_through_second_order_gradients(backbone):
    torch.manual_seed(0)
    method = _mcl(backbone, box_candidates=8)
    out = method(_batch(size=48))
    assert {"loss_nce", "loss_mal", "mal_s", "mal_t", "mal_st"} <= set(out) and torch.isfinite(out["loss"])
    assert 0 < out["loss_mal"] < 6
    backbone_p, head_p = list(method.backbone.parameters()), list(method.head.parameters())
    total, nce = _grads(out["loss"], backbone_p + head_p), _grads(out["loss_nce"], backbone_p + head_p)
    mal = [a - b for a, b in zip(total, nce)]
    assert all(torch.isfinite(g).all() for g in total)
    # The MAL reaches the first stage and changes the backbone's gradients ...
    first = sum(g.abs().sum() for g, p in zip(mal, backbone_p) if any(p is q for q in method.backbone.stages["p1"].parameters()))
    assert first > 0
    # ... and the head's: v3's map depends on the head only through g, i.e. through the second-order term.
    assert sum(g.abs().sum() for g in mal[len(backbone_p):]) > 0
    assert all(p.grad is None for p in method.key_encoder.parameters())


def test_alignment_layer_is_the_last_convolution_before_bn_shortcut_and_relu():
    r3d = build_backbone("r3d", width=8, depth=10)
    assert alignment_layers(r3d) == [r3d.stages["p5"][-1].conv2[0]]
    r21d = build_backbone("r2plus1d", width=8, depth=10)
    assert alignment_layers(r21d) == [r21d.stages["p5"][-1].conv2[0][3]]
    s3d = build_backbone("s3d", width=8)
    assert len(alignment_layers(s3d)) == 4  # one per Inception branch of mixed 5c
    method = _mcl("s3d")
    out = method(_batch(size=64))
    assert torch.isfinite(out["loss"])
    # No hook stays behind (the momentum encoder and the export see a plain backbone).
    assert not any(m._forward_hooks for m in method.modules())


@pytest.mark.parametrize("alignment", ["v1", "v2", "none"])
def test_other_alignments_and_ablations_run(alignment):
    method = _mcl(alignment=alignment, alignment_terms=["st"], spatial_cropping=alignment != "none")
    out = method(_batch())
    assert torch.isfinite(out["loss"])
    assert ("loss_mal" in out) == (alignment != "none")
    out["loss"].backward()


def test_loss_weight_follows_the_epoch_when_warmup_is_set():
    method = _mcl(mal_warmup_epochs=5.0, mal_warmup_weight=2.0, mal_weight=1.0)
    early, late = _batch(), _batch()
    late["epoch"] = 5.0
    a, b = method(early), method(late)
    assert a["mal_weight"].item() == 2.0 and b["mal_weight"].item() == 1.0
    assert a["loss"].item() == pytest.approx(a["loss_nce"].item() + 2 * a["loss_mal"].item(), rel=1e-5)


def test_bf16_autocast_is_finite():
    method = _mcl()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(_batch())
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])


# -- 3.1 motion sources ---------------------------------------------------------------------------

def test_motion_vectors_source_uses_eq1_on_the_device_and_its_own_t_motion(videos):
    field = np.random.default_rng(0).normal(size=(3, 2, 5, 7, 2)).astype(np.float32)
    np.testing.assert_allclose(vector_motion_map(torch.tensor(field)).numpy(),
                               motion_map(field.reshape(6, 5, 7, 2)).reshape(3, 2, 5, 7), rtol=1e-5, atol=1e-6)
    method = _mcl(motion_source="mv")
    assert method.signals() == (Signal("motion_vectors"),)
    out = method(_batch(vectors=True))
    assert torch.isfinite(out["loss"])
    stats = SignalSet([Signal("motion_vectors")], frame_size=(SIZE, SIZE)).motion_stats(videos[0])
    mv = stats["mv_t_motion"]
    assert mv.shape == (FRAMES,) and mv[STILL + 2:].mean() > 5 * mv[:STILL - 1].mean()


def test_config_errors_name_the_key():
    for bad, key in [({"motion_source": "farneback"}, "motion_source"), ({"alignment": "v4"}, "alignment"),
                     ({"alignment_terms": ["x"]}, "alignment_terms"), ({"box_coverage": 0}, "box_coverage"),
                     ({"queue_size": 0}, "queue_size")]:
        with pytest.raises(ConfigError, match=key):
            method_config("mcl", {"name": "mcl", **bad})
    cfg = method_config("mcl", {"name": "mcl"})
    assert (cfg.queue_size, cfg.momentum, cfg.temperature, cfg.proj_hidden, cfg.proj_dim) == (131072, 0.999, 0.1, 2048, 128)


# -- end to end ---------------------------------------------------------------------------------

def test_pretrain_a_few_steps_exports_the_backbone(tiny_benchmark, tmp_path):
    from safetensors.torch import load_file

    from conftest import tiny_overrides
    from vidssl.demo import demo_config_dir
    from vidssl.train.run import pretrain

    cfg = load_config([demo_config_dir() / "mcl.yaml"],
                      tiny_overrides(tiny_benchmark, tmp_path / "run", **{"method.queue_size": 16, "method.proj_hidden": 16,
                                                                          "trainer.max_steps": 3}))
    run = pretrain(cfg)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert all(np.isfinite(line["loss"]) for line in lines)
    weights = load_file(run / "backbone.safetensors")
    fresh = build_backbone("r3d", width=8, depth=10)
    fresh.load_state_dict(weights)


def _ddp_steps(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # same initial weights on both ranks
        method = _mcl()
        ddp = torch.nn.parallel.DistributedDataParallel(method)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
        for step in range(2):
            batch = _batch()
            batch["clips"] = batch["clips"].roll(rank, 0)  # each rank its own videos
            batch["index"] = torch.arange(4) + 4 * rank
            batch["generator"] = torch.Generator().manual_seed(step)
            out = ddp(batch)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        torch.save({"params": [p.detach() for p in method.parameters()], "loss_mal": float(out["loss_mal"])},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_second_order_step_keeps_replicas_identical(tmp_path):
    # autograd.grad inside the DDP forward (w.r.t. activations only) and shuffle-BN across ranks.
    mp.start_processes(_ddp_steps, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["loss_mal"] != r1["loss_mal"]  # different data on each rank ...
    for a, b in zip(r0["params"], r1["params"]):  # ... one model after the all-reduced updates
        torch.testing.assert_close(a, b)
