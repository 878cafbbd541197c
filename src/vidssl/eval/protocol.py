"""The evaluation protocol of the papers on one backbone: features, retrieval R@k, linear probe.

Training videos are the gallery (and the linear probe's training set); test videos are the
queries (and the probe's test set). Several test lists can share one gallery, which is how the
embedded benchmark scores the decorrelated and the biased test list with one extraction.
"""
from __future__ import annotations

from typing import Mapping

from torch import nn

from vidssl.eval.features import FeatureSet, extract_features
from vidssl.eval.linear import linear_probe_many
from vidssl.eval.retrieval import retrieval_recall

__all__ = ["evaluate_features", "evaluate_feature_sets", "evaluate_backbone"]


def evaluate_features(train: FeatureSet, test: FeatureSet, *, ks=(1, 5, 10, 20, 50),
                      linear: str = "logreg") -> dict[str, float]:
    """R@k of test-queries-train retrieval plus linear-probe top-1, all in percent."""
    return evaluate_feature_sets(train, {"test": test}, ks=ks, linear=linear)["test"]


def evaluate_feature_sets(train: FeatureSet, tests: Mapping[str, FeatureSet], *, ks=(1, 5, 10, 20, 50),
                          linear: str = "logreg") -> dict[str, dict[str, float]]:
    """``evaluate_features`` for several test lists on one gallery: ``{name: metrics}``, one probe fit."""
    probe = linear_probe_many(train.features, train.labels, {n: (t.features, t.labels) for n, t in tests.items()},
                              kind=linear)
    results = {}
    for name, test in tests.items():
        results[name] = retrieval_recall(test.features, test.labels, train.features, train.labels, ks=tuple(ks))
        results[name].update(probe[name])
    return results


def evaluate_backbone(backbone: nn.Module, train_catalog, test_catalogs: Mapping[str, object], eval_cfg,
                      *, frame_size, crop_size: int, num_workers: int = 0, device: str = "cpu",
                      frame_cache=None, progress: bool = True) -> dict[str, dict[str, float]]:
    """Extract features once for the gallery and each test list; returns ``{test name: metrics}``."""
    def features(catalog, what: str) -> FeatureSet:
        return extract_features(backbone, catalog, clip_len=eval_cfg.clip_len, stride=eval_cfg.stride,
                                num_clips=eval_cfg.num_clips, frame_size=tuple(frame_size), crop_size=crop_size,
                                stage=eval_cfg.stage, batch_size=eval_cfg.batch_size, num_workers=num_workers,
                                device=device, frame_cache=frame_cache, progress=progress, desc=what)

    gallery = features(train_catalog, "train")
    tests = {name: features(catalog, name) for name, catalog in test_catalogs.items()}
    return evaluate_feature_sets(gallery, tests, ks=eval_cfg.ks, linear=eval_cfg.linear)

