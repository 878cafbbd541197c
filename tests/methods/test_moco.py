import torch

from vidssl.data.augment import ClipAugment
from vidssl.methods.base import build_method, method_config
from vidssl.models import build_backbone


def _batch(b=4, v=2, t=8, size=40):
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (b, v, t, size, size, 3), dtype=torch.uint8, generator=g)
    return {"clips": clips, "label": torch.arange(b) % 2, "index": torch.arange(b),
            "generator": torch.Generator().manual_seed(1)}


def _moco(queue=16):
    cfg = method_config("moco", {"name": "moco", "queue_size": queue, "proj_hidden": 32, "proj_dim": 16,
                                 "momentum": 0.9})
    return build_method("moco", build_backbone("r3d", width=8, depth=10), cfg, 2, ClipAugment(crop_size=32))


def test_moco_step_trains_query_side_only_and_fills_queue():
    torch.manual_seed(0)
    moco = _moco()
    out = moco(_batch())
    assert torch.isfinite(out["loss"]) and 0 <= out["pretext_acc"] <= 100
    out["loss"].backward()
    assert all(p.grad is not None for p in moco.backbone.parameters())
    assert all(p.grad is None for p in moco.key_encoder.parameters())
    assert int(moco.queue.ptr) == 4
    # Enqueued keys are unit vectors produced by the key encoder this step.
    torch.testing.assert_close(moco.queue.features[:4].norm(dim=1), torch.ones(4))


def test_moco_views_are_two_clips():
    views = _moco().view_sampler()(64, __import__("numpy").random.default_rng(0))
    assert len(views) == 2 and all(len(v.indices) == 8 for v in views)


def test_moco_bf16_autocast_loss_is_finite_fp32():
    torch.manual_seed(0)
    moco = _moco().to(memory_format=torch.channels_last_3d)
    moco.channels_last = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = moco(_batch())
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
