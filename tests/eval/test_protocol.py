"""The evaluation protocol: which gallery each test list is scored against, and leak refusal."""
import numpy as np
import pytest

from vidssl.config import EvalConfig
from vidssl.data.catalogs import Catalog, VideoRecord
from vidssl.eval import protocol
from vidssl.eval.features import FeatureSet


def catalog(name, names, labels):
    return Catalog([VideoRecord(f"/videos/{n}.mp4", y) for n, y in zip(names, labels)], ["a", "b"], name)


def feature_set(names, labels, seed=0):
    return FeatureSet(np.random.default_rng(seed).normal(size=(len(names), 4)).astype(np.float32),
                      np.array(labels), [f"/videos/{n}.mp4" for n in names])


def test_gallery_and_queries_sharing_a_video_are_refused(tmp_path):
    gallery = feature_set(["a0", "a1", "b0", "b1"], [0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"refusing to score 'test': 1 of its 2 query videos.*a1\.mp4"):
        protocol.evaluate_feature_sets(gallery, {"test": feature_set(["a1", "b9"], [0, 1], seed=1)}, ks=(1,))
    (tmp_path / "v.mp4").write_bytes(b"")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "v.mp4")  # the same file under another name
    with pytest.raises(ValueError, match="refusing"):
        protocol.check_disjoint([str(tmp_path / "v.mp4")], {"q": [str(tmp_path / "link.mp4")]})
    scores = protocol.evaluate_feature_sets(gallery, {"test": feature_set(["a9", "b9"], [0, 1], seed=1)}, ks=(1,))
    assert set(scores["test"]) == {"R@1", "linear_top1"}


def test_each_test_list_is_scored_against_its_own_train_list(monkeypatch):
    extracted = []

    def fake_extract(backbone, cat, desc, **kwargs):
        extracted.append((desc, cat.name))
        return FeatureSet(np.random.default_rng(len(extracted)).normal(size=(len(cat), 4)).astype(np.float32),
                          cat.labels(), cat.paths())

    monkeypatch.setattr(protocol, "extract_features", fake_extract)
    train1 = catalog("train1", ["a0", "a1", "b0", "b1"], [0, 0, 1, 1])
    train1_again = catalog("train2", ["a0", "a1", "b0", "b1"], [0, 0, 1, 1])  # same videos: one gallery
    train3 = catalog("train3", ["a2", "a3", "b2", "b3"], [0, 0, 1, 1])
    lists = {"s1": (train1, catalog("test1", ["a8", "b8"], [0, 1])),
             "s3": (train3, catalog("test3", ["a0", "b0"], [0, 1])),  # split 1's train videos test split 3
             "s2": (train1_again, catalog("test2", ["a9", "b9"], [0, 1]))}
    results = protocol.evaluate_splits(None, lists, EvalConfig(ks=[1]), frame_size=(32, 32), crop_size=28,
                                       progress=False)
    assert list(results) == ["s1", "s3", "s2"] and all(set(m) == {"R@1", "linear_top1"} for m in results.values())
    assert extracted == [("train", "train1"), ("s1", "test1"), ("s2", "test2"), ("train", "train3"), ("s3", "test3")]
    with pytest.raises(ValueError, match="refusing to score 's3'"):  # against split 1's train list: a leak
        protocol.evaluate_backbone(None, train1, {"s3": lists["s3"][1]}, EvalConfig(ks=[1]), frame_size=(32, 32),
                                   crop_size=28, progress=False)
