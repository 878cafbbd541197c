"""Pace prediction (Wang, Jiao, Liu, ECCV 2020): sampler, method forward/backward, configs."""
from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import vidssl
from vidssl.config import ConfigError, load_config
from vidssl.data.augment import ClipAugment
from vidssl.methods.base import build_method, method_config
from vidssl.methods.pace import PaceClips, blend_slow_frames, pace_candidates, slot_fractions
from vidssl.models import build_backbone


def as_views(requests):
    """The sampler's Requests as per-view (indices, meta) pairs: the "clips" rows and their pace labels."""
    from types import SimpleNamespace

    assert list(requests) == ["clips"] and requests["clips"].stream == "rgb"
    return [SimpleNamespace(indices=row, meta={"pace": int(p)})
            for row, p in zip(requests["clips"].indices, requests.labels["pace"])]

CONFIGS = Path(vidssl.__file__).parent / "configs"


class FixedRng:
    """Stands in for np.random.Generator: the pace classes and start frames to use, in order."""

    def __init__(self, classes, starts):
        self.classes, self.starts = list(classes), list(starts)

    def choice(self, n, size, replace):
        out = np.array(self.classes[:size])
        self.classes = self.classes[size:]
        return out

    def integers(self, low, high):
        start = self.starts.pop(0)
        assert low <= start < high, f"start {start} outside the sampler's range [{low}, {high})"
        return start


def make_pace(*, width=8, crop=16, augment=None, **section):
    cfg = method_config("pace", {"name": "pace", "clip_len": 4, **section})
    augment = augment or ClipAugment(crop_size=crop, per_frame_jitter=True)
    return build_method("pace", build_backbone("r3d", width=width, depth=10), cfg, 5, augment)


def fake_batch(method, num_videos=4, num_frames=20, size=20, seed=0):
    """Run the method's own view sampler on random videos and stack like the dataset's collate."""
    rng = np.random.default_rng(seed)
    sampler = method.view_sampler()
    clips, paces = [], []
    for _ in range(num_videos):
        video = rng.integers(0, 256, size=(num_frames, size, size, 3), dtype=np.uint8)
        views = as_views(sampler(num_frames, rng))
        clips.append(np.stack([video[v.indices] for v in views]))
        paces.append([v.meta["pace"] for v in views])
    return {"clips": torch.from_numpy(np.stack(clips)), "pace": torch.tensor(paces),
            "generator": torch.Generator().manual_seed(seed)}


# ---- sampling (sec. 3.1, Fig. 2) -----------------------------------------------------------

def test_paper_examples_through_the_view_sampler():
    # "super fast clip with p = 3 contains frames 11, 14, 17, 20 and 23" (1-based): relative
    # class 2 is p = 3.
    relative = PaceClips(pace_candidates("relative", 4), clip_len=5)
    (view,) = as_views(relative(25, FixedRng(classes=[2], starts=[10])))
    assert view.indices.tolist() == [10, 13, 16, 19, 22]
    assert view.meta == {"pace": 2}
    # "slow clip with p = 1/2, only frames 1, 3, 5 are filled", blanks repeat the preceding frame.
    absolute = PaceClips(pace_candidates("absolute"), clip_len=5)
    assert absolute.paces[1] == Fraction(1, 2)
    (view,) = as_views(absolute(25, FixedRng(classes=[1], starts=[0])))
    assert view.indices.tolist() == [0, 0, 1, 1, 2]
    (view,) = as_views(absolute(25, FixedRng(classes=[0], starts=[0])))
    assert view.indices.tolist() == [0, 0, 0, 1, 1]  # super slow, p = 1/3


def test_pace_candidates_and_classes():
    assert pace_candidates("relative", 4) == (1, 2, 3, 4)
    assert pace_candidates("relative", 6) == (1, 2, 3, 4, 5, 6)
    assert pace_candidates("absolute") == (Fraction(1, 3), Fraction(1, 2), 1, 2, 3)
    with pytest.raises(ValueError, match="pace_set"):
        pace_candidates("fast")


def test_random_start_keeps_clips_inside_the_video_when_they_fit():
    sampler = PaceClips(pace_candidates("relative", 4), clip_len=8, num_views=2)
    rng = np.random.default_rng(0)
    starts, seen = set(), set()
    for _ in range(300):
        views = as_views(sampler(32, rng))
        assert len(views) == 2 and views[0].meta["pace"] != views[1].meta["pace"]
        for v in views:
            pace = v.meta["pace"] + 1
            assert np.array_equal(np.diff(v.indices), np.full(7, pace))  # no wrap-around
            assert v.indices.max() < 32
            starts.add(int(v.indices[0]))
            seen.add(v.meta["pace"])
    assert seen == {0, 1, 2, 3}
    assert min(starts) == 0 and max(starts) == 32 - (7 * 1 + 1)  # pace 1 may start as late as 24


def test_clip_longer_than_the_video_loops_over_it():
    sampler = PaceClips(pace_candidates("relative", 4), clip_len=8)
    rng = np.random.default_rng(1)
    for _ in range(50):
        (view,) = as_views(sampler(10, rng))
        pace = view.meta["pace"] + 1
        if pace >= 2:  # span 15+ frames > 10: wraps
            assert np.array_equal(view.indices, (view.indices[0] + np.arange(8) * pace) % 10)


def test_interpolated_slow_clip_blends_neighbouring_frames():
    sampler = PaceClips(pace_candidates("absolute"), clip_len=6, interpolate=True)
    (view,) = as_views(sampler(25, FixedRng(classes=[0], starts=[3])))  # p = 1/3
    assert view.indices.tolist() == [3, 3, 3, 4, 4, 4] + [3, 4, 4, 4, 5, 5]
    np.testing.assert_allclose(slot_fractions(Fraction(1, 3), 6), [0, 1 / 3, 2 / 3, 0, 1 / 3, 2 / 3])
    video = (np.arange(25) * 9).astype(np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    clips = torch.from_numpy(video[view.indices])[None, None]
    weights = torch.tensor(slot_fractions(Fraction(1, 3), 6), dtype=torch.float32)[None, None]
    blended = blend_slow_frames(clips, weights)[0, 0, :, 0, 0, 0].tolist()
    assert blended == [27, 30, 33, 36, 39, 42]  # frame value 9 * (3 + j / 3): a steady slow motion
    (fast,) = as_views(sampler(25, FixedRng(classes=[3], starts=[0])))  # p = 2: nothing to blend
    assert fast.indices.tolist() == [0, 2, 4, 6, 8, 10] * 2


# ---- the method ------------------------------------------------------------------------------

@pytest.mark.parametrize("section,views,heads", [
    ({}, 2, ("classifier", "projector")),                                    # paper's full model
    ({"contrastive": "same_context", "projection_head": False}, 2, ("classifier",)),
    ({"contrastive": "same_pace"}, 1, ("classifier", "projector")),
    ({"contrastive": "none"}, 1, ("classifier",)),
    ({"pace_set": "absolute", "slow_fill": "interpolate"}, 2, ("classifier", "projector")),
])
def test_forward_backward_gives_finite_losses_and_gradients(section, views, heads):
    torch.manual_seed(0)
    method = make_pace(**section)
    batch = fake_batch(method, num_videos=5)
    assert batch["clips"].shape[1] == views
    out = method(batch)
    assert {"loss", "loss_cls", "pretext_acc"} <= set(out)
    assert ("loss_ctr" in out) == (method.cfg.contrastive != "none")
    for value in out.values():
        assert torch.isfinite(value)
    expected = out["loss_cls"] + (0.1 * out["loss_ctr"] if "loss_ctr" in out else 0)  # eq. 4 defaults
    assert out["loss"].item() == pytest.approx(float(expected.detach()), rel=1e-5)
    assert 0 <= out["pretext_acc"] <= 100
    out["loss"].backward()
    for name in ("backbone",) + heads:
        grads = [p.grad for p in getattr(method, name).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    if "projector" not in heads:
        assert method.projector is None


def test_same_context_pairs_the_two_clips_of_each_video(monkeypatch):
    # Both views of a video are the same pixels and the augmentation is deterministic, so the two
    # embeddings eq. 2 treats as a positive pair must be equal, and differ across videos.
    import vidssl.methods.pace as pace_module

    seen = {}

    def spy(z, z_prime, temperature):
        seen["z"], seen["z_prime"] = z.detach(), z_prime.detach()
        return z.sum() * 0

    monkeypatch.setattr(pace_module, "pace_same_context_loss", spy)
    plain = ClipAugment(crop_size=16, scale=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, gray_p=0.0)
    method = make_pace(augment=plain, projection_head=False)
    clips = torch.randint(0, 256, (3, 1, 4, 16, 16, 3), dtype=torch.uint8).expand(3, 2, 4, 16, 16, 3)
    method({"clips": clips.contiguous(), "pace": torch.tensor([[0, 1], [2, 3], [1, 0]])})
    assert torch.allclose(seen["z"], seen["z_prime"], atol=1e-5)
    assert not torch.allclose(seen["z"][0], seen["z"][1], atol=1e-3)


def test_number_of_pace_classes_follows_the_config():
    assert make_pace(max_pace=6).classifier.num_classes == 6
    assert make_pace(pace_set="absolute").classifier.num_classes == 5


def test_forward_under_bf16_autocast_computes_losses_in_fp32():
    method = make_pace()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(fake_batch(method))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])


def test_interpolate_rejects_clips_from_another_sampler():
    method = make_pace(slow_fill="interpolate")
    batch = fake_batch(make_pace())  # repeat-filled clips: clip_len frames, not 2 * clip_len
    with pytest.raises(ValueError, match="2 \\* clip_len"):
        method(batch)


@pytest.mark.parametrize("section,match", [
    ({"colour": True}, "colour"),
    ({"contrastive": "same_video"}, "method.contrastive"),
    ({"pace_set": "fast"}, "method.pace_set"),
    ({"slow_fill": "flow"}, "method.slow_fill"),
    ({"max_pace": 1}, "method.max_pace"),
    ({"temperature": 0.0}, "method.temperature"),
    ({"clip_len": "long"}, "clip_len"),
])
def test_config_validation_names_the_key(section, match):
    with pytest.raises(ConfigError, match=match):
        method_config("pace", {"name": "pace", **section})


def test_tiny_overfit_raises_pace_accuracy():
    """A few dozen steps on a fixed batch of 4 clips (one per pace) of a drifting texture."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, size=(16, 200, 3), dtype=np.uint8)
    video = np.stack([np.roll(texture, 2 * t, axis=1)[:, :16] for t in range(40)])  # 2 px / frame
    plain = ClipAugment(crop_size=16, scale=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, gray_p=0.0)
    method = make_pace(augment=plain, contrastive="none")
    clips = np.stack([video[PaceClips((1, 2, 3, 4), 4)(40, FixedRng([c], [0]))["clips"].indices[0]] for c in range(4)])
    batch = {"clips": torch.from_numpy(clips)[:, None], "pace": torch.arange(4)[:, None]}
    opt = torch.optim.Adam(method.parameters(), lr=3e-3)
    started = time.perf_counter()
    first = None
    for _ in range(40):
        out = method(batch)
        first = out["loss_cls"].item() if first is None else first
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    method.eval()
    with torch.no_grad():
        final = method(batch)
    assert time.perf_counter() - started < 20
    assert final["pretext_acc"].item() == 100.0
    assert final["loss_cls"].item() < 0.5 * first


# ---- configs ---------------------------------------------------------------------------------

PAPER_CONFIGS = sorted((CONFIGS / "ucf101").glob("pace_*.yaml")) + sorted((CONFIGS / "kinetics400").glob("pace_*.yaml"))


def test_paper_configs_exist_for_each_backbone():
    names = {f"{p.parent.name}/{p.stem}" for p in PAPER_CONFIGS}
    for data in ("ucf101", "kinetics400"):
        assert {f"{data}/pace_r21d", f"{data}/pace_r3d18", f"{data}/pace_c3d"} <= names


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_paper_configs_hold_section_4_1_settings(path):
    cfg = load_config([path], ["data.root=/videos", "data.csv=/videos/train.csv"])
    mcfg = method_config("pace", cfg.method)
    assert (mcfg.max_pace, mcfg.lambda_cls, mcfg.lambda_ctr, mcfg.contrastive) == (4, 1.0, 0.1, "same_context")
    assert cfg.augment.crop_size == 112 and cfg.augment.per_frame_jitter
    assert cfg.trainer.batch_size == 30 and cfg.trainer.max_epochs == 18
    assert cfg.optim.lr * cfg.trainer.batch_size / cfg.optim.base_batch == pytest.approx(1e-3)
    assert cfg.optim.schedule == "step" and list(cfg.optim.step_epochs) == [6, 12] and cfg.optim.gamma == 0.1
    assert cfg.model.backbone == {"r21d": "r2plus1d", "r3d18": "r3d", "c3d": "c3d"}[path.stem.split("_")[1]]
    if path.parent.name == "ucf101":
        assert cfg.data.dataset == "ucf101" and cfg.data.samples_per_epoch == 90000
    else:
        assert cfg.data.dataset == "kinetics400" and cfg.data.samples_per_epoch is None


def test_demo_config_validates():
    cfg = load_config([CONFIGS / "demo" / "pace.yaml"])
    assert cfg.method.name == "pace"
    mcfg = method_config("pace", cfg.method)
    # A clip at the fastest pace must fit in the demo benchmark's 32-frame videos.
    assert (mcfg.clip_len - 1) * mcfg.max_pace + 1 <= 32
    # The demo row: classification + same-pace contrast, no colour jitter (measured in the config's comments).
    assert mcfg.contrastive == "same_pace" and cfg.augment.jitter_p == 0 and cfg.augment.gray_p == 0
    full = load_config([CONFIGS / "demo" / "pace.yaml"], ["method.contrastive=same_context", "augment.jitter_p=0.8"])
    assert full.augment.per_frame_jitter and method_config("pace", full.method).contrastive == "same_context"
