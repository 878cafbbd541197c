import numpy as np
import pytest
import torch

import vidssl.methods.moco as moco_mod
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
    requests = _moco().view_sampler()(64, __import__("numpy").random.default_rng(0))
    assert list(requests) == ["clips"] and requests["clips"].indices.shape == (2, 8)


def test_moco_bf16_autocast_loss_is_finite_fp32():
    torch.manual_seed(0)
    moco = _moco().to(memory_format=torch.channels_last_3d)
    moco.channels_last = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = moco(_batch())
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])


def _np_moco_loss(q, k, queue, tags, index, t):
    """MoCo's InfoNCE written from the equation, NumPy: for query i the candidates are its own key and
    the queued keys of other videos (tags != index[i])."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    queue = queue / np.linalg.norm(queue, axis=1, keepdims=True)
    losses = []
    for i in range(len(q)):
        cand = np.concatenate([k[i:i + 1], queue[tags != index[i]]])
        logits = cand @ q[i] / t
        m = logits.max()
        losses.append(-(logits[0] - m - np.log(np.exp(logits - m).sum())))
    return float(np.mean(losses))


def test_moco_queue_larger_than_dataset_masks_own_video_keys(monkeypatch):
    """4 videos, queue of 16: after the first epoch the queue holds keys of every video, a query's own
    among them. Those are not negatives; the loss must match a NumPy InfoNCE that leaves them out."""
    torch.manual_seed(0)
    moco = _moco(queue=16)
    seen = {}

    def spy(q, k, negatives, temperature, **kw):
        seen.update(q=q.detach().double().numpy(), k=k.detach().double().numpy())
        return info_nce(q, k, negatives, temperature, **kw)

    info_nce = moco_mod.info_nce
    monkeypatch.setattr(moco_mod, "info_nce", spy)
    index = torch.tensor([2, 0, 3, 1])
    for step in range(5):  # 5 epochs of a 4-video dataset, one batch each
        batch = _batch()
        batch["index"] = index
        queue, tags = moco.queue.features.double().numpy().copy(), moco.queue.tags.numpy().copy()
        out = moco(batch)
    # Step 5 met a full queue: 4 keys of each video, tagged with its index.
    assert sorted(tags.tolist()) == sorted([0, 1, 2, 3] * 4)
    assert sorted(moco.queue.tags.tolist()) == sorted([0, 1, 2, 3] * 4)
    assert out["masked_negatives"].item() == 4
    want = _np_moco_loss(seen["q"], seen["k"], queue, tags, index.numpy(), moco.cfg.temperature)
    assert out["loss"].item() == pytest.approx(want, rel=1e-5)
    # Not the unmasked loss: the own-video keys really were left out.
    unmasked = _np_moco_loss(seen["q"], seen["k"], queue, np.full_like(tags, -1), index.numpy(),
                             moco.cfg.temperature)
    assert abs(out["loss"].item() - unmasked) > 1e-3


def test_moco_needs_the_video_index():
    batch = _batch()
    del batch["index"]
    with pytest.raises(KeyError, match="index"):
        _moco()(batch)
