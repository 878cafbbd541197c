import numpy as np
import pytest

from vidssl.eval.linear import linear_probe, linear_probe_many


def separable(rng, n, dim=16, classes=4, scale=1000.0):
    # Class centres far apart relative to the noise, with a large overall offset/scale so the
    # standardisation inside the probe matters.
    centres = rng.normal(size=(classes, dim)) * 6
    y = np.arange(n) % classes
    f = centres[y] + rng.normal(size=(n, dim))
    return (scale * f + 5e3).astype(np.float32), y


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_separable_data_is_classified_perfectly(kind):
    rng = np.random.default_rng(0)
    train_f, train_y = separable(rng, 200)
    test_f, test_y = separable(np.random.default_rng(0), 200)
    test_f = test_f + np.random.default_rng(1).normal(size=test_f.shape).astype(np.float32) * 100
    result = linear_probe(train_f, train_y, test_f, test_y, kind=kind)
    assert set(result) == {"linear_top1"}
    assert result["linear_top1"] >= 99.0


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_random_labels_give_chance(kind):
    rng = np.random.default_rng(1)
    classes = 5
    train_f = rng.normal(size=(600, 8)).astype(np.float32)
    test_f = rng.normal(size=(2000, 8)).astype(np.float32)
    train_y = rng.integers(0, classes, 600)
    test_y = rng.integers(0, classes, 2000)
    acc = linear_probe(train_f, train_y, test_f, test_y, kind=kind)["linear_top1"]
    assert abs(acc - 100.0 / classes) < 5.0


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_deterministic(kind):
    rng = np.random.default_rng(2)
    f, y = rng.normal(size=(300, 12)), rng.integers(0, 3, 300)
    a = linear_probe(f[:200], y[:200], f[200:], y[200:], kind=kind, C=0.1)
    b = linear_probe(f[:200], y[:200], f[200:], y[200:], kind=kind, C=0.1)
    assert a == b


def test_bad_input_is_a_clear_error():
    f = np.ones((4, 3))
    with pytest.raises(ValueError, match="kind"):
        linear_probe(f, [0, 1, 0, 1], f, [0, 1, 0, 1], kind="knn")
    with pytest.raises(ValueError, match="2 classes"):
        linear_probe(f, [1, 1, 1, 1], f, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="test labels"):
        linear_probe(f, [0, 1, 0, 1], f, [0, 1])
    with pytest.raises(ValueError, match="dim"):
        linear_probe(f, [0, 1, 0, 1], np.ones((4, 2)), [0, 1, 0, 1])


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_several_test_splits_share_one_fit_and_match_separate_probes(kind):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 10)) * 2
    y = rng.integers(0, 4, 500)
    f = centres[y] + rng.normal(size=(500, 10))
    tests = {"a": (f[300:400], y[300:400]), "b": (f[400:], y[400:])}
    many = linear_probe_many(f[:300], y[:300], tests, kind=kind)
    assert set(many) == {"a", "b"}
    for name, (tf, ty) in tests.items():
        assert many[name] == linear_probe(f[:300], y[:300], tf, ty, kind=kind)
    with pytest.raises(ValueError, match="b features have dim"):
        linear_probe_many(f[:300], y[:300], {"a": tests["a"], "b": (np.ones((5, 3)), y[:5])})
