"""Clip-level retrieval: DSM's own protocol (Wang et al., AAAI 2021, "Video Retrieval").

"The videos from both UCF101 and HMDB51 are divided into clips in units of 16 frames. All the
clips in the training set constitute a *Gallery*, and each clip in the test set is used as a
*query* to retrieve the most similar clip in the *Gallery* with cosine distance. If the
category of the query appears in the K-nearest neighbors is retrieved, then it is considered
as a hit. ... we replaced the original global average pooling with an adaptive max pooling,
yielding representations with a fixed scale of 1024 x 2 x 7 x 7." (The protocol is Clip
Order's, Xu et al., CVPR 2019; the authors' released ``feature_extractor.py`` averages one clip
per video instead, which is the video-level protocol of :mod:`vidssl.eval.features`.)

So every video is cut into back-to-back clips (``TiledClips``: ``eval.clip_len`` frames every
``eval.stride``), each clip's ``eval.stage`` map is adaptively max-pooled to ``eval.clip_pool``
(T, H, W) and flattened, and R@k counts query *clips*. Pooling to a size larger than the map
repeats its cells (a tiny demo network's 1 x 3 x 3 map becomes 2 x 7 x 7); ``clip_pool: null``
takes the global average instead. Memory: the gallery holds clips x channels x prod(clip_pool)
float32 values, 400 KB per clip for I3D's 1024 x 2 x 7 x 7, so about 40 GB for UCF101's ~100k
training clips at 16 frames: a smaller ``clip_pool`` or a larger ``eval.stride`` bounds it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidssl.data.augment import eval_transform
from vidssl.data.catalogs import Catalog
from vidssl.data.views import TiledClips
from vidssl.eval.features import FeatureSet, ReadableBatches, frozen
from vidssl.eval.retrieval import retrieval_recall
from vidssl.models.backbones.base import STAGES
from vidssl.video.frame_cache import FrameCache

__all__ = ["DSM_CLIP_POOL", "clip_features", "pool_clip_map", "score_clip_sets"]

DSM_CLIP_POOL = (2, 7, 7)  # the paper's "1024 x 2 x 7 x 7" after the adaptive max pool


def pool_clip_map(maps: torch.Tensor, pool: Sequence[int] | None) -> torch.Tensor:
    """A stage's map -> one flat descriptor per clip: [N, C, T, H, W] (or an image network's
    [N, C, H, W]) adaptively max-pooled to ``pool`` (T, H, W; H, W for images) and flattened, or
    globally averaged when ``pool`` is None."""
    if pool is None:
        return maps.flatten(2).mean(-1)
    if maps.ndim == 5:
        return F.adaptive_max_pool3d(maps, tuple(pool)).flatten(1)
    if maps.ndim == 4:
        return F.adaptive_max_pool2d(maps, tuple(pool)[-2:]).flatten(1)
    raise ValueError(f"expected a [N, C, T, H, W] or [N, C, H, W] map, got shape {tuple(maps.shape)}")


def clip_features(
    backbone: nn.Module,
    catalog: Catalog,
    *,
    clip_len: int = 16,
    stride: int = 1,
    pool: Sequence[int] | None = DSM_CLIP_POOL,
    stage: str = "p5",
    frame_size: tuple[int, int] | None = (64, 64),
    crop_size: int = 56,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    max_bad_fraction: float = 0.05,
    frame_cache: FrameCache | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> FeatureSet:
    """One row per clip of every readable video of ``catalog`` (``TiledClips``), in catalog and
    time order; ``paths`` and ``labels`` repeat each video's per clip. ``batch_size`` is in clips:
    videos are read one at a time (their clip counts differ) and their clips gathered into
    batches of at least that many for the backbone. Other arguments as ``extract_features``."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if pool is not None and (len(pool) != 3 or any(isinstance(p, bool) or int(p) != p or p < 1 for p in pool)):
        raise ValueError(f"pool must be three positive integers (T, H, W) or None, got {pool!r}")
    device = torch.device(device)
    rows: list[np.ndarray] = []
    owners: list[int] = []
    pending: list[torch.Tensor] = []
    waiting = 0  # clips in pending

    def flush() -> None:
        nonlocal waiting
        clips = torch.cat(pending).to(device, non_blocking=True)  # [N, T, H, W, 3]
        pending.clear()
        waiting = 0
        maps = backbone.forward_features(eval_transform(clips, crop_size), stages=(stage,))[stage]
        rows.append(pool_clip_map(maps.float(), pool).cpu().numpy())

    batches = ReadableBatches(catalog, TiledClips(clip_len=clip_len, stride=stride), batch_size=1,
                              num_workers=num_workers, device=device, frame_size=frame_size, frame_cache=frame_cache,
                              max_bad_fraction=max_bad_fraction, progress=progress, desc=desc)
    with frozen(backbone, device):
        for clips, (index,) in batches:  # one video: [1, V, T, H, W, 3]
            pending.append(clips[0])
            owners += [index] * len(clips[0])
            waiting += len(clips[0])
            if waiting >= batch_size:
                flush()
        if pending:
            flush()
    dim = rows[0].shape[1] if rows else 0
    features = np.concatenate(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    meta = {"catalog": catalog.name, "backbone": getattr(backbone, "name", type(backbone).__name__),
            "protocol": "clips", "stage": stage, "clip_pool": list(pool) if pool is not None else None,
            "clip_len": clip_len, "stride": stride, "crop_size": crop_size,
            "frame_size": list(frame_size) if frame_size is not None else None,
            "videos": len(dict.fromkeys(owners))}
    return FeatureSet(features=features, labels=catalog.labels()[owners] if owners else np.zeros(0, np.int64),
                      paths=[catalog.records[i].path for i in owners], skipped=batches.skipped, meta=meta)


def score_clip_sets(gallery: FeatureSet, tests: Mapping[str, FeatureSet], *,
                    ks: Sequence[int] = (1, 5, 10, 20, 50)) -> dict[str, dict[str, float]]:
    """R@k (percent of query clips) of each test list's clips against the gallery's clips, with the
    numbers of query and gallery clips and videos: ``{name: {"R@1": .., "query_clips": ..}}``."""
    results = {}
    for name, test in tests.items():
        metrics: dict[str, float] = retrieval_recall(test.features, test.labels, gallery.features, gallery.labels,
                                                     ks=tuple(ks))
        metrics.update(query_clips=len(test), query_videos=len(set(test.paths)), gallery_clips=len(gallery),
                       gallery_videos=len(set(gallery.paths)))
        results[name] = metrics
    return results
