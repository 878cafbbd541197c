"""Linear probe: a linear classifier trained on frozen video features.

The linear protocol of MCL (ICCV 2021, sec. 4.2 "Linear Protocol"): the pretrained backbone
is a fixed feature extractor, video features are averaged over clips, a linear classifier
is trained on the training split and its top-1 accuracy on the test split is reported. MCL
trains a linear SVM on UCF101 (``kind="svm"``); multinomial logistic regression
(``kind="logreg"``, the default) is the same linear model with a softmax loss, matching the
fully-connected + softmax classifier MCL uses on Kinetics-400.

Features are standardised with the training split's mean and standard deviation first, so
the regularisation strength ``C`` means the same thing whatever the scale of a backbone's
activations. Both solvers are deterministic (lbfgs; liblinear with a fixed seed).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from vidssl.eval.retrieval import check_labelled_features

__all__ = ["linear_probe", "linear_probe_many", "fit_linear_probe", "LinearProbe", "LINEAR_KINDS"]

LINEAR_KINDS = ("logreg", "svm")


def linear_probe(
    train_f: np.ndarray,
    train_y: np.ndarray,
    test_f: np.ndarray,
    test_y: np.ndarray,
    kind: str = "logreg",
    *,
    C: float = 1.0,
    max_iter: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Train a linear classifier on ``train_f`` and return ``{"linear_top1": %}`` on the test split.

    Args:
        train_f, test_f: [N, D] features (any float dtype; computed in float64 by sklearn).
        train_y, test_y: [N] integer class labels.
        kind: "logreg" (sklearn ``LogisticRegression``, lbfgs, multinomial) or "svm"
            (sklearn ``LinearSVC``, one-vs-rest squared hinge).
        C: inverse regularisation strength of either classifier.
        max_iter: solver iteration cap; 2000 converges on standardised features of a few
            thousand videos. Non-convergence is reported as one warning, not an error.
        seed: fixes liblinear's coordinate order so the SVM is reproducible.
    """
    return linear_probe_many(train_f, train_y, {"test": (test_f, test_y)}, kind, C=C, max_iter=max_iter,
                             seed=seed)["test"]


def linear_probe_many(
    train_f: np.ndarray,
    train_y: np.ndarray,
    tests: Mapping[str, tuple[np.ndarray, np.ndarray]],
    kind: str = "logreg",
    *,
    C: float = 1.0,
    max_iter: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``linear_probe`` scored on several test splits ``{name: (features, labels)}`` with one fit.

    The fit is most of the probe's cost (about 1.7 s for 2,000 videos here), and test lists
    that share a training split share its classifier.
    """
    if kind not in LINEAR_KINDS:
        raise ValueError(f"linear probe kind must be one of {LINEAR_KINDS}, got {kind!r}")
    train_f, train_y = check_labelled_features("train", train_f, train_y)
    checked = {}
    for name, (test_f, test_y) in tests.items():
        test_f, test_y = check_labelled_features(name, test_f, test_y)
        if train_f.shape[1] != test_f.shape[1]:
            raise ValueError(f"train features have dim {train_f.shape[1]} but {name} features have "
                             f"dim {test_f.shape[1]}")
        checked[name] = (test_f, test_y)
    probe = fit_linear_probe(train_f, train_y, kind, C=C, max_iter=max_iter, seed=seed)
    return {name: {"linear_top1": probe.accuracy(f, y)} for name, (f, y) in checked.items()}


@dataclass
class LinearProbe:
    """A fitted probe: ``scaler`` (the training split's standardisation) then ``classifier``.

    ``weight`` [K, D] and ``bias`` [K] (row k: label ``classes[k]``) fold the standardisation into
    one affine map of the raw features, ``scores(f) = f @ weight.T + bias`` (the classifier's
    decision function; its argmax is ``predict``), so the probe can sit on a backbone as a linear
    head (class activation maps, ``vidssl.viz.saliency``). sklearn keeps one decision value d for
    two classes; its rows are then -d/2 and +d/2, which keeps the argmax.
    """

    scaler: Any
    classifier: Any

    @property
    def classes(self) -> np.ndarray:
        return self.classifier.classes_

    @property
    def weight(self) -> np.ndarray:
        return self._two_rows(self.classifier.coef_ / self.scaler.scale_)

    @property
    def bias(self) -> np.ndarray:
        coef = self.classifier.coef_ / self.scaler.scale_
        return self._two_rows(self.classifier.intercept_ - coef @ self.scaler.mean_)

    def _two_rows(self, values: np.ndarray) -> np.ndarray:
        if len(self.classes) == 2 and len(values) == 1:
            return np.concatenate([-values / 2, values / 2])
        return values

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.classifier.predict(self.scaler.transform(np.asarray(features, dtype=np.float64)))

    def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
        """Top-1 accuracy in percent."""
        return float(100.0 * np.mean(self.predict(features) == np.asarray(labels)))


def fit_linear_probe(train_f: np.ndarray, train_y: np.ndarray, kind: str = "logreg", *, C: float = 1.0,
                     max_iter: int = 2000, seed: int = 0) -> LinearProbe:
    """The classifier ``linear_probe`` fits (same arguments), returned for reuse."""
    from sklearn.exceptions import ConvergenceWarning  # sklearn is imported lazily: ~1 s
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind not in LINEAR_KINDS:
        raise ValueError(f"linear probe kind must be one of {LINEAR_KINDS}, got {kind!r}")
    if C <= 0:
        raise ValueError(f"C must be positive, got {C}")
    train_f, train_y = check_labelled_features("train", train_f, train_y)
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"linear probe needs at least 2 classes in the training split, got "
                         f"{np.unique(train_y).tolist()}")

    train_f = train_f.astype(np.float64)
    scaler = StandardScaler().fit(train_f)
    if kind == "logreg":
        clf = LogisticRegression(C=C, max_iter=max_iter)
    else:
        clf = LinearSVC(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        # sklearn's own warning repeats per call and names no setting; ours says what to change.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(train_f), train_y)
    if np.max(clf.n_iter_) >= max_iter:
        warnings.warn(f"linear probe ({kind}, C={C}) did not converge in {max_iter} iterations; "
                      "accuracy may be slightly off (raise max_iter)", RuntimeWarning, stacklevel=3)
    return LinearProbe(scaler, clf)
