"""CMD (Huang et al., CVPR 2021): its requests, the clip's crop and flip shared with its motion
vectors, every ablation's forward, a short pretraining run with all three networks exported, and
the motion-prediction regulariser of ``supervised`` (Table 6)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from conftest import tiny_overrides
from vidssl.cli import main
from vidssl.config import ConfigError, load_config
from vidssl.data.augment import ClipAugment
from vidssl.data.catalogs import Catalog, VideoRecord
from vidssl.data.dataset import VideoDataset, collate
from vidssl.data.geometry import warp_fields
from vidssl.data.signals import dequantize_batch
from vidssl.data.views import RandomClips, VideoInfo
from vidssl.demo import demo_config_dir
from vidssl.methods.base import build_method, method_config
from vidssl.methods.cmd import CMD, CMDViews, MotionPrediction
from vidssl.models.backbones import build_backbone
from vidssl.train.export import backbone_from_run
from vidssl.train.run import pretrain
from vidssl.video.writer import write_video

GOP = 12
SMALL = {"clip_len": 4, "stride": 1, "future": 4, "proj_hidden": 16, "proj_dim": 8, "d_model": 32, "nhead": 4,
         "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 32, "gru_hidden": 8}


def gop_info(n: int, gop: int = GOP) -> VideoInfo:
    return VideoInfo("v.avi", n, frame_types="".join("I" if t % gop == 0 else "P" for t in range(n)))


def make_cmd(augment=None, **overrides):
    cfg = method_config("cmd", {"name": "cmd", **SMALL, **overrides})
    return build_method("cmd", build_backbone("r3d", width=4, depth=10), cfg, 2,
                        augment or ClipAugment(crop_size=28), model={"width": 4})


def synthetic_batch(b=3, t=4, size=32, future=4, negatives=3, flow=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    grid = size if flow else size // 4
    batch = {"clips": torch.randint(0, 256, (b, 1, t, size, size, 3), dtype=torch.uint8, generator=g),
             "iframe": torch.randint(0, 256, (b, 1, size, size, 3), dtype=torch.uint8, generator=g),
             "motion": torch.randn(b, future, grid, grid, 2, generator=g) * 3,
             "generator": torch.Generator().manual_seed(seed + 1)}
    if negatives:
        batch["motion_negatives"] = torch.randn(b, negatives, future, grid, grid, 2, generator=g) * 3
    return batch


# -- views (sec. 4.1) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(20))
def test_clip_nearby_iframe_future_vectors_and_hard_negatives(seed):
    views = CMDViews()  # paper scale: 16 frames at stride 4, I-frame +-5, 8 vectors 2 after, 3 negatives
    info = gop_info(150)
    req = views(info, np.random.default_rng(seed))
    assert set(req) == {"clips", "iframe", "motion", "motion_negatives"}
    clip = req["clips"].indices
    assert req["clips"].stream == "rgb" and clip.shape == (1, 16)
    assert np.array_equal(clip[0], clip[0, 0] + 4 * np.arange(16))
    (key,) = req["iframe"].indices
    assert req["iframe"].stream == "iframe" and key % GOP == 0 and clip.min() - 5 <= key <= clip.max() + 5
    motion = req["motion"].indices
    assert req["motion"].stream == "motion_vectors"
    assert np.array_equal(motion, clip[0, -1] + 2 + np.arange(8)) and motion[-1] < 150
    negatives = req["motion_negatives"].indices
    assert req["motion_negatives"].stream == "motion_vectors" and negatives.shape == (3, 8)
    for row in negatives:  # other times of the same video: 8 consecutive frames, none shared with the positive
        assert np.array_equal(row, row[0] + np.arange(8)) and row[-1] < 150
        assert not set(row) & set(motion)


def test_current_motion_and_optical_flow_requests():
    rng = np.random.default_rng(0)
    current = CMDViews(period="current")(gop_info(150), rng)
    clip, motion = current["clips"].indices[0], current["motion"].indices
    assert clip[0] <= motion[0] and motion[-1] <= clip[-1] and np.array_equal(motion, motion[0] + np.arange(8))
    flow = CMDViews(motion="flow", flow_method="tvl1")(gop_info(150), rng)
    clip, fields = flow["clips"].indices[0], flow["motion"].indices
    # 9 indices give 8 fields, field j from frame s+j-1 to s+j: the same frames the vectors describe.
    assert flow["motion"].stream == "flow" and flow["motion"].options == {"method": "tvl1"}
    assert np.array_equal(fields, clip[-1] + 1 + np.arange(9))
    assert flow["motion_negatives"].indices.shape == (3, 9)
    # A negative drawn at frame 0 would need the flow from frame -1 (it crashed the demo-scale
    # `supervision=iframe_flow` run): every field of every draw starts at a real frame and is consecutive.
    demo = CMDViews(clip_len=8, stride=2, motion="flow")
    for seed in range(200):
        req = demo(gop_info(32), np.random.default_rng(seed))
        rows = np.concatenate([req["motion"].indices[None], req["motion_negatives"].indices])
        assert (np.diff(rows, axis=1) == 1).all() and rows.min() >= 0, (seed, rows)
    only_iframes = CMDViews(motion=None)(gop_info(150), rng)
    assert set(only_iframes) == {"clips", "iframe"}
    only_motion = CMDViews(iframe=False)(gop_info(150), rng)
    assert set(only_motion) == {"clips", "motion", "motion_negatives"}


def test_short_videos_single_keyframes_and_unknown_frame_types():
    rng = np.random.default_rng(1)
    # One keyframe (frame 0) far from the clip: the nearest keyframe, always frame 0.
    single = gop_info(80, gop=1000)
    starts = set()
    for _ in range(10):
        req = CMDViews(clip_len=4, stride=4)(single, rng)
        starts.add(int(req["clips"].indices[0, 0]))
        assert req["iframe"].indices.tolist() == [0]
    assert max(starts) > 10
    # No frame types known: the clip's first frame stands in for the I-frame (an rgb request).
    req = CMDViews(clip_len=4, stride=2)(VideoInfo("v.avi", 40), rng)
    assert req["iframe"].stream == "rgb" and req["iframe"].indices.tolist() == req["clips"].indices[0, :1].tolist()
    # Shorter than clip + gap + future: indices loop inside the video, negatives still drawn.
    req = CMDViews()(gop_info(30), rng)
    for name in ("clips", "motion", "motion_negatives"):
        assert req[name].indices.max() < 30
    assert req["motion_negatives"].indices.shape == (3, 8)


def test_views_load_as_a_batch_from_mpeg4_videos(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(3):
        frames = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
        for t in range(40):  # a textured band moving right by 1 px per frame
            frames[t, 8:24] = np.roll(frames[0, 8:24], t, axis=1)
        write_video(tmp_path / f"v{k}.avi", frames, gop=GOP)
        paths.append(str(tmp_path / f"v{k}.avi"))
    method = make_cmd()
    ds = VideoDataset(Catalog([VideoRecord(p, 0) for p in paths], ["all"], "cmd"), method.view_sampler(),
                      frame_size=(32, 32), seed=0, declared=method.signals())
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate)))
    assert batch["clips"].shape == (3, 1, 4, 32, 32, 3) and batch["iframe"].shape == (3, 1, 32, 32, 3)
    assert batch["motion"].shape == (3, 4, 8, 8, 2) and batch["motion_negatives"].shape == (3, 3, 4, 8, 8, 2)
    dequantize_batch(batch)
    batch["generator"] = torch.Generator().manual_seed(0)
    out = method(batch)
    assert torch.isfinite(out["loss"])


# -- the clip's crop and flip on its motion vectors -----------------------------------------------------

def test_clip_and_motion_vectors_share_crop_and_flip(monkeypatch):
    augment = ClipAugment(crop_size=24, scale=(0.4, 0.6), hflip_p=1.0, jitter_p=0.0, gray_p=0.0)
    method = make_cmd(augment, motion_size=24)
    b = 4
    batch = synthetic_batch(b=b, negatives=0)
    # A bright bar over columns 12..19 of the 32 px frames. Its vectors: x = +2 px everywhere (to
    # read the rescaling and the sign), y = +1 px only under the bar (cells 3..4 of the 1/4 grid).
    clips = torch.zeros(b, 1, 4, 32, 32, 3, dtype=torch.uint8)
    clips[..., 12:20, :] = 255
    fields = torch.zeros(b, 4, 8, 8, 2)
    fields[..., 0] = 2.0
    fields[:, :, :, 3:5, 1] = 1.0
    batch.update(clips=clips, motion=fields)
    seen = {}
    real = MotionPrediction.fields

    def spy(self, batch, geometry, generator):
        seen["geometry"] = geometry
        seen["out"] = real(self, batch, geometry, generator)
        return seen["out"]

    monkeypatch.setattr(MotionPrediction, "fields", spy)
    method(dict(batch, generator=torch.Generator().manual_seed(7)))
    params = augment.sample_params(b, 32, 32, torch.Generator().manual_seed(7), num_frames=4)  # the clip's draw
    assert torch.equal(seen["geometry"].boxes, params.boxes) and bool(params.flip.all())
    pos = seen["out"][0]                                                       # [B, 2, F, 24, 24]
    torch.testing.assert_close(pos, warp_fields(fields, params.geometry, size=(24, 24)).permute(0, 4, 1, 2, 3))
    x = augment.apply(clips[:, 0], params)                                     # [B, 3, T, 24, 24]
    for i in range(b):
        bar = x[i, 0, 0].mean(0) > x[i, 0, 0].mean()                          # columns of the bar in the clip
        marked = pos[i, 1, 0].mean(0) > pos[i, 1, 0].max() / 2                # columns of its vectors
        assert bar.any() and (bar & marked).sum() >= 0.75 * max(bar.sum(), marked.sum())
        # Flipped: x negated and rescaled from 32 px frames to the 24 px crop of a box_w wide box.
        torch.testing.assert_close(pos[i, 0], torch.full_like(pos[i, 0], -2.0 * 24 / params.boxes[i, 2].item()))


# -- forward: the paper's model and every ablation ------------------------------------------------------

@pytest.mark.parametrize("overrides,losses", [
    ({}, {"loss_context", "loss_motion"}),
    ({"predictor": "convgru"}, {"loss_context", "loss_motion"}),
    ({"period": "current"}, {"loss_context", "loss_motion"}),
    ({"motion_loss": "mse"}, {"loss_context", "loss_motion"}),
    ({"motion_loss": "ce"}, {"loss_context", "loss_motion"}),
    ({"supervision": "iframe"}, {"loss_context"}),
    ({"supervision": "motion"}, {"loss_motion"}),
    ({"supervision": "iframe_flow"}, {"loss_context", "loss_motion"}),
])
def test_every_ablation_trains(overrides, losses):
    torch.manual_seed(0)
    method = make_cmd(**overrides)
    cfg = method.cfg
    views = method.view_sampler()
    assert views.iframe == (cfg.supervision != "motion")
    assert views.motion == {"iframe": None, "iframe_flow": "flow"}.get(cfg.supervision, "motion_vectors")
    assert views.negatives == (3 if cfg.motion_loss == "infonce" else 0) and views.period == cfg.period
    streams = {s.stream for s in method.signals()}
    assert streams == ({views.motion} if views.motion else set())
    out = method(synthetic_batch(negatives=views.negatives, flow=views.motion == "flow"))
    assert {k for k in out if k.startswith("loss_")} == losses and torch.isfinite(out["loss"])
    if losses == {"loss_context", "loss_motion"}:  # eq. (3), alpha 0.5
        torch.testing.assert_close(out["loss"], 0.5 * out["loss_context"] + 0.5 * out["loss_motion"])
    out["loss"].backward()
    assert method.backbone.stages["p1"][0].weight.grad.abs().sum() > 0
    used = {"iframe": "loss_context" in losses, "motion": "loss_motion" in losses and cfg.motion_loss == "infonce"}
    for name, net in method.networks.items():  # an unused network is frozen, a used one learns
        grads = [p.grad for p in net.parameters()]
        assert all(p.requires_grad == used[name] for p in net.parameters()), name
        learned = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert learned if used[name] else all(g is None for g in grads), name


def test_paper_defaults_and_bad_config():
    cfg = method_config("cmd", {"name": "cmd"})
    assert (cfg.clip_len, cfg.stride, cfg.future, cfg.gap, cfg.negatives, cfg.iframe_window) == (16, 4, 8, 2, 3, 5)
    assert (cfg.alpha, cfg.proj_hidden, cfg.proj_dim, cfg.d_model, cfg.nhead) == (0.5, 2048, 512, 512, 8)
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.predictor, cfg.motion_loss) == (2, 4, "transformer", "infonce")
    method = make_cmd()
    assert method.networks["iframe"].spec.describe() == "r2d-10 (width 4, 3 input channels)"
    assert method.networks["motion"].spec.describe() == "r3d-10 (width 4, 2 input channels)"
    for key, value in [("predictor", "lstm"), ("motion_loss", "l1"), ("supervision", "flow"), ("alpha", 2.0)]:
        with pytest.raises(ConfigError, match=f"method.{key}"):
            method_config("cmd", {"name": "cmd", key: value})


# -- a short pretraining run ----------------------------------------------------------------------------

def test_pretrain_exports_all_three_networks(tiny_benchmark, tmp_path):
    small = {f"method.{k}": v for k, v in SMALL.items() if k != "stride"}
    small.update({"method.stride": 2, "method.motion_size": "null", "trainer.max_steps": 3})
    cfg = load_config([demo_config_dir() / "cmd.yaml"], tiny_overrides(tiny_benchmark, tmp_path / "run", **small))
    run = pretrain(cfg)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert all(np.isfinite(line["loss"]) and np.isfinite(line["loss_motion"]) for line in lines)
    index = json.loads((run / "networks.json").read_text())
    assert set(index) == {"backbone", "iframe", "motion"}
    assert (index["iframe"]["backbone"], index["motion"]["backbone"]) == ("r2d", "r3d")
    assert index["motion"]["in_channels"] == 2
    for name in index:
        weights = load_file(run / f"{name}.safetensors")
        assert weights and not any(k.startswith(("networks.", "backbone.")) for k in weights)
        assert backbone_from_run(run, network=name).spec.backbone == index[name]["backbone"]
    # The run's config reloads for evaluation; the V- and I-networks score RGB clips, the M-network
    # the motion vectors of `future` consecutive frames (Table 5's retrieval from each network).
    for name in ("backbone", "iframe", "motion"):
        assert main(["evaluate", str(run), "--network", name, "--device", "cpu"]) == 0
    assert json.loads((run / "eval_iframe.json").read_text())["split1"]["R@1"] >= 0
    motion = json.loads((run / "eval_motion.json").read_text())["split1"]
    assert 0 <= motion["R@1"] <= motion["R@5"] <= 100 and "linear_top1" in motion


def test_the_m_network_is_fed_vectors_as_in_training():
    from vidssl.eval.features import ClipInput
    from vidssl.methods.cmd import motion_network_input

    cfg = method_config("cmd", {"name": "cmd", "future": 6, "motion_size": 28})
    clip_input = CMD.network_input("motion", cfg)
    assert isinstance(clip_input, ClipInput)
    assert (clip_input.stream, clip_input.clip_len, clip_input.stride) == ("motion_vectors", 6, 1)
    assert CMD.network_input("iframe", cfg) is None
    assert CMD.network_input("motion", method_config("cmd", {"name": "cmd", "supervision": "iframe_flow"})) is None
    # A uniform (3, -1) px field on the 1/4 grid of 48 px frames. Values are in pixels of the crop (as
    # in training, whatever grid the M-network sees): the centre 42 px crop keeps them, then the
    # +-10 px clamp and the division by 10.
    vectors = torch.tensor([3.0, -1.0]).expand(2, 6, 12, 12, 2).clone()
    vectors[1, :, :, :, 0] = 100.0                                           # clamped to +10 px
    x = clip_input.transform(vectors, crop_size=42, frame_size=(48, 48))
    assert x.shape == (2, 2, 6, 28, 28)
    torch.testing.assert_close(x[0, 0], torch.full((6, 28, 28), 0.3))
    torch.testing.assert_close(x[0, 1], torch.full((6, 28, 28), -0.1))
    torch.testing.assert_close(x[1, 0], torch.ones(6, 28, 28))
    # A crop larger than the frame resizes its central square up (48 -> 56 px): vectors x 56/48.
    up = motion_network_input(vectors, crop_size=56, frame_size=None, size=None, norm=10.0)  # grid x 4 = 48
    assert up.shape == (2, 2, 6, 56, 56)
    torch.testing.assert_close(up[0, 0], torch.full((6, 56, 56), 0.35))


def test_a_resumed_run_is_the_uninterrupted_one(tiny_benchmark, tmp_path):
    import lightning as L

    class Crash(RuntimeError):
        pass

    class CrashAt(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if int(pl_module.batches_seen) == 2:
                raise Crash("simulated crash at batch 2")

    small = {f"method.{k}": v for k, v in SMALL.items() if k != "stride"}
    small.update({"method.stride": 2, "method.motion_size": "null", "method.dropout": 0.5})

    def cfg(name):
        return load_config([demo_config_dir() / "cmd.yaml"], tiny_overrides(tiny_benchmark, tmp_path / name, **small))

    whole = pretrain(cfg("whole"))
    with pytest.raises(Crash):
        pretrain(cfg("split"), callbacks=[CrashAt()])
    resumed = pretrain(cfg("split"), resume=True)
    for name in ("backbone", "iframe", "motion"):
        a, b = load_file(whole / f"{name}.safetensors"), load_file(resumed / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


# -- supervised with motion prediction as a regulariser (Table 6) -----------------------------------------

def _supervised(**method):
    cfg = method_config("supervised", {"name": "supervised", "clip_len": 4, "stride": 1, **method})
    torch.manual_seed(0)
    return build_method("supervised", build_backbone("r3d", width=4, depth=10), cfg, 3, ClipAugment(crop_size=28))


def test_supervised_default_is_unchanged():
    method = _supervised()
    assert method.cfg.motion_weight == 0.0 and len(method.networks) == 0 and method.signals() == ()
    assert set(method.state_dict()) == {f"backbone.{k}" for k in method.backbone.state_dict()} | {
        "classifier.fc.weight", "classifier.fc.bias"}
    assert method.view_sampler() == RandomClips(num_views=1, clip_len=4, stride=1)
    batch = synthetic_batch(b=4, negatives=0)
    batch["label"] = torch.tensor([0, 1, 2, 0])
    out = method(dict(batch, generator=torch.Generator().manual_seed(3)))
    # Today's forward, written out: augment_views -> backbone -> classifier -> cross-entropy.
    x = method.augment_views(batch["clips"], torch.Generator().manual_seed(3))
    logits = method.classifier(method.backbone(x)).float()
    assert set(out) == {"loss", "train_acc"} and torch.equal(out["loss"], F.cross_entropy(logits, batch["label"]))


def test_supervised_with_motion_prediction_regulariser():
    method = _supervised(motion_weight=0.2, motion={k: v for k, v in SMALL.items() if k not in ("clip_len", "stride")})
    assert method.networks["motion"].spec.describe() == "r3d-10 (width 4, 2 input channels)"
    views = method.view_sampler()
    assert isinstance(views, CMDViews) and not views.iframe and views.motion == "motion_vectors"
    assert [s.stream for s in method.signals()] == ["motion_vectors"]
    batch = synthetic_batch(b=4)
    batch["label"] = torch.tensor([0, 1, 2, 0])
    out = method(batch)
    torch.testing.assert_close(out["loss"], out["loss_cls"] + 0.2 * out["loss_motion"])
    out["loss"].backward()
    assert method.networks["motion"].stages["p1"][0].weight.grad.abs().sum() > 0
    assert set(method.named_networks()) == {"backbone", "motion"}  # exported beside the backbone
    for bad, match in [({"motion_weight": 0.2, "motion": {"max_pace": 3}}, "method.motion.max_pace"),
                       ({"motion": {"predictor": "lstm"}}, "method.predictor"),  # checked while off too
                       ({"motion_weight": -1.0}, "method.motion_weight")]:
        with pytest.raises(ConfigError, match=match):
            _supervised(**bad)


def test_a_step_is_a_function_of_its_generator_and_runs_channels_last_in_bf16():
    for predictor in ("transformer", "convgru"):
        method = make_cmd(predictor=predictor, dropout=0.5)
        losses = []
        for global_seed in (1, 2):  # the Transformer's dropout does not follow the global RNG
            torch.manual_seed(global_seed)
            losses.append(method(synthetic_batch(seed=4))["loss"])
        assert torch.equal(losses[0], losses[1]), predictor
        method = make_cmd(predictor=predictor).to(memory_format=torch.channels_last_3d)
        method.channels_last = method.motion.channels_last = True
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = method(synthetic_batch())
        assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
        out["loss"].backward()


def test_supervised_with_motion_prediction_pretrains_and_exports_the_m_network(tiny_benchmark, tmp_path):
    motion = {f"method.motion.{k}": v for k, v in SMALL.items() if k not in ("clip_len", "stride")}
    overrides = {"method.clip_len": 4, "method.motion_weight": 0.2, "trainer.max_steps": 2, **motion}
    cfg = load_config([demo_config_dir() / "supervised.yaml"], tiny_overrides(tiny_benchmark, tmp_path / "run",
                                                                              **overrides))
    run = pretrain(cfg)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(line["loss_motion"]) for line in lines)
    assert set(json.loads((run / "networks.json").read_text())) == {"backbone", "motion"}
    assert backbone_from_run(run, network="motion").spec.in_channels == 2
