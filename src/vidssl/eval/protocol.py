"""The evaluation protocol of the papers on one backbone: features, retrieval R@k, linear probe.

Training videos are the gallery (and the linear probe's training set); test videos are the
queries (and the probe's test set). Several test lists can share one gallery, which is how the
embedded benchmark scores the decorrelated and the biased test list with one extraction; each
test list is scored against the train list of its own split (``evaluate_splits``). A gallery and
queries that share a video are refused: every such query would find itself at distance zero.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

from torch import nn

from vidssl.eval.features import FeatureSet, extract_features
from vidssl.eval.linear import LinearProbe, fit_linear_probe
from vidssl.eval.retrieval import retrieval_recall

__all__ = ["evaluate_features", "evaluate_feature_sets", "score_feature_sets", "backbone_feature_sets",
           "evaluate_backbone", "evaluate_splits", "group_by_gallery", "check_disjoint"]


def check_disjoint(gallery: Sequence[str], queries: Mapping[str, Sequence[str]]) -> None:
    """Raise ``ValueError`` when a query list shares a video (same file) with the gallery."""
    seen = {os.path.realpath(p) for p in gallery}
    for name, paths in queries.items():
        shared = [p for p in paths if os.path.realpath(p) in seen]
        if shared:
            raise ValueError(
                f"refusing to score {name!r}: {len(shared)} of its {len(paths)} query videos are also in the "
                f"gallery (the training videos), e.g. {shared[0]}; each would retrieve itself and the scores "
                f"would mean nothing. Score a held-out test list (folder / csv datasets: data.test_root, "
                f"data.test_csv or data.test_fraction)")


def evaluate_features(train: FeatureSet, test: FeatureSet, *, ks=(1, 5, 10, 20, 50),
                      linear: str = "logreg") -> dict[str, float]:
    """R@k of test-queries-train retrieval plus linear-probe top-1, all in percent."""
    return evaluate_feature_sets(train, {"test": test}, ks=ks, linear=linear)["test"]


def evaluate_feature_sets(train: FeatureSet, tests: Mapping[str, FeatureSet], *, ks=(1, 5, 10, 20, 50),
                          linear: str = "logreg") -> dict[str, dict[str, float]]:
    """``evaluate_features`` for several test lists on one gallery: ``{name: metrics}``, one probe fit."""
    return score_feature_sets(train, tests, ks=ks, linear=linear)[0]


def score_feature_sets(train: FeatureSet, tests: Mapping[str, FeatureSet], *, ks=(1, 5, 10, 20, 50),
                       linear: str = "logreg") -> tuple[dict[str, dict[str, float]], LinearProbe]:
    """``evaluate_feature_sets`` plus the fitted linear probe (per-class accuracy, saliency weights)."""
    check_disjoint(train.paths, {name: test.paths for name, test in tests.items()})
    probe = fit_linear_probe(train.features, train.labels, kind=linear)
    results = {}
    for name, test in tests.items():
        results[name] = retrieval_recall(test.features, test.labels, train.features, train.labels, ks=tuple(ks))
        results[name]["linear_top1"] = probe.accuracy(test.features, test.labels)
    return results, probe


def evaluate_backbone(backbone: nn.Module, train_catalog, test_catalogs: Mapping[str, object], eval_cfg,
                      *, frame_size, crop_size: int, num_workers: int = 0, device: str = "cpu",
                      frame_cache=None, progress: bool = True, max_bad_fraction: float = 0.05,
                      clip_input=None) -> dict[str, dict[str, float]]:
    """Extract features once for the gallery and each test list; returns ``{test name: metrics}``.

    ``eval_cfg.protocol`` "video" scores one feature per video (R@k and the linear probe);
    "clips" is DSM's clip-level retrieval (:mod:`vidssl.eval.clip_retrieval`, R@k per query clip).
    ``clip_input`` (:class:`vidssl.eval.features.ClipInput`) feeds a network that does not take RGB
    clips (video protocol only). Unreadable videos are left out of each list (one warning per list
    names them) unless they are more than ``max_bad_fraction`` of it (``data.max_bad_fraction``, as
    in pretraining)."""
    if getattr(eval_cfg, "protocol", "video") == "clips":
        if clip_input is not None:
            raise ValueError(f"eval.protocol=clips scores RGB networks only; this network takes {clip_input.stream} "
                             f"(use eval.protocol=video)")
        return _evaluate_clips(backbone, train_catalog, test_catalogs, eval_cfg, frame_size=frame_size,
                               crop_size=crop_size, num_workers=num_workers, device=device, frame_cache=frame_cache,
                               progress=progress, max_bad_fraction=max_bad_fraction)
    gallery, tests = backbone_feature_sets(backbone, train_catalog, test_catalogs, eval_cfg, frame_size=frame_size,
                                           crop_size=crop_size, num_workers=num_workers, device=device,
                                           frame_cache=frame_cache, progress=progress,
                                           max_bad_fraction=max_bad_fraction, clip_input=clip_input)
    return evaluate_feature_sets(gallery, tests, ks=eval_cfg.ks, linear=eval_cfg.linear)


def backbone_feature_sets(backbone: nn.Module, train_catalog, test_catalogs: Mapping[str, object], eval_cfg,
                          *, frame_size, crop_size: int, num_workers: int = 0, device: str = "cpu",
                          frame_cache=None, progress: bool = True, max_bad_fraction: float = 0.05,
                          clip_input=None) -> tuple[FeatureSet, dict[str, FeatureSet]]:
    """``(gallery features, {test name: features})`` of ``backbone`` as ``eval_cfg`` asks (refused
    before any decoding when a test list shares a video with the gallery)."""
    def features(catalog, what: str) -> FeatureSet:
        return extract_features(backbone, catalog, clip_len=eval_cfg.clip_len, stride=eval_cfg.stride,
                                num_clips=eval_cfg.num_clips, frame_size=tuple(frame_size), crop_size=crop_size,
                                stage=eval_cfg.stage, batch_size=eval_cfg.batch_size, num_workers=num_workers,
                                device=device, frame_cache=frame_cache, progress=progress, desc=what,
                                max_bad_fraction=max_bad_fraction, clip_input=clip_input)

    check_disjoint(train_catalog.paths(), {name: c.paths() for name, c in test_catalogs.items()})
    gallery = features(train_catalog, "train")
    return gallery, {name: features(catalog, name) for name, catalog in test_catalogs.items()}


def _evaluate_clips(backbone: nn.Module, train_catalog, test_catalogs: Mapping[str, object], eval_cfg, *,
                    frame_size, crop_size: int, **kwargs) -> dict[str, dict[str, float]]:
    from vidssl.eval.clip_retrieval import clip_features, score_clip_sets

    def features(catalog, what: str) -> FeatureSet:
        return clip_features(backbone, catalog, clip_len=eval_cfg.clip_len, stride=eval_cfg.stride,
                             pool=eval_cfg.clip_pool, stage=eval_cfg.stage, frame_size=tuple(frame_size),
                             crop_size=crop_size, batch_size=eval_cfg.batch_size, desc=what, **kwargs)

    check_disjoint(train_catalog.paths(), {name: c.paths() for name, c in test_catalogs.items()})
    gallery = features(train_catalog, "train clips")
    return score_clip_sets(gallery, {name: features(c, f"{name} clips") for name, c in test_catalogs.items()},
                           ks=eval_cfg.ks)


def group_by_gallery(lists: Mapping[str, tuple[object, object]]) -> list[tuple[object, dict[str, object]]]:
    """``{name: (train, test)}`` -> ``[(train, {name: test, ...}), ...]``, one entry per distinct train list.

    Train lists holding the same videos in the same order are one gallery, so its features are
    extracted and its linear probe fitted once (the embedded benchmark's splits 1 and 2).
    """
    groups: dict[tuple, tuple[object, dict[str, object]]] = {}
    for name, (train, test) in lists.items():
        key = tuple((r.path, r.label) for r in train.records)
        groups.setdefault(key, (train, {}))[1][name] = test
    return list(groups.values())


def evaluate_splits(backbone: nn.Module, lists: Mapping[str, tuple[object, object]], eval_cfg,
                    **kwargs) -> dict[str, dict[str, float]]:
    """``evaluate_backbone`` of each test list against its own train list: ``{name: (train, test)}``.

    Keyword arguments are ``evaluate_backbone``'s; results come back in the order of ``lists``.
    """
    results: dict[str, dict[str, float]] = {}
    for train, tests in group_by_gallery(lists):
        results.update(evaluate_backbone(backbone, train, tests, eval_cfg, **kwargs))
    return {name: results[name] for name in lists}
