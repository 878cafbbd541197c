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

import numpy as np

__all__ = ["linear_probe", "LINEAR_KINDS"]

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
    from sklearn.exceptions import ConvergenceWarning  # sklearn is imported lazily: ~1 s
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind not in LINEAR_KINDS:
        raise ValueError(f"linear probe kind must be one of {LINEAR_KINDS}, got {kind!r}")
    if C <= 0:
        raise ValueError(f"C must be positive, got {C}")
    train_f, train_y = _check_split("train", train_f, train_y)
    test_f, test_y = _check_split("test", test_f, test_y)
    if train_f.shape[1] != test_f.shape[1]:
        raise ValueError(f"train features have dim {train_f.shape[1]} but test features have "
                         f"dim {test_f.shape[1]}")
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"linear probe needs at least 2 classes in the training split, got "
                         f"{np.unique(train_y).tolist()}")

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
                      "accuracy may be slightly off (raise max_iter)", RuntimeWarning, stacklevel=2)
    predicted = clf.predict(scaler.transform(test_f))
    return {"linear_top1": float(100.0 * np.mean(predicted == test_y))}


def _check_split(name: str, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"{name} features must be a non-empty [N, D] array, got shape {features.shape}")
    if labels.shape != (len(features),):
        raise ValueError(f"{name} labels must have shape ({len(features)},), got {labels.shape}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name} features contain NaN or inf")
    return features, labels.astype(np.int64)
