"""Nearest-neighbour video retrieval: test videos query the training videos.

The protocol of the self-supervised video papers (from Xu et al., clip order prediction,
CVPR 2019; used by Pace Prediction, ECCV 2020 sec. 4.4; DSM, AAAI 2021 "Video Retrieval";
MCL, ICCV 2021 sec. 4.2 "Downstream Task Evaluations"; CMD, CVPR 2021 "Video retrieval
settings"): every test video's feature is a query, every training video's feature is in
the gallery, neighbours are ranked by cosine similarity, and a query counts as a hit at k
when *any* of its k nearest neighbours has the query's class. R@k is the percentage of
hits (0-100).

Two exact backends give the same ranking: ``faiss.IndexFlatIP`` on L2-normalised float32
features for large galleries, and a chunked numpy matrix product for small ones (no faiss
start-up, easy to read). Cosine similarity of L2-normalised vectors is their inner product,
so both rank by the same number; they can only disagree on exact ties in similarity, which
real features practically never have.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["retrieval_recall", "nearest_neighbours", "DEFAULT_KS", "FAISS_MIN_GALLERY"]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 50)
# Below this many gallery items a numpy matrix product is as fast as faiss and skips its
# thread-pool start-up; above it faiss's blocked BLAS search keeps memory bounded.
FAISS_MIN_GALLERY = 4096
# Queries per numpy block: bounds the [block, gallery] similarity matrix to a few hundred MB.
_NUMPY_QUERY_BLOCK = 1024


def retrieval_recall(
    query_f: np.ndarray,
    query_y: np.ndarray,
    gallery_f: np.ndarray,
    gallery_y: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    backend: str = "auto",
) -> dict[str, float]:
    """Recall at each k (percent) of cosine-similarity retrieval from queries into the gallery.

    Args:
        query_f: [Nq, D] query features (the test split).
        query_y: [Nq] integer class labels of the queries.
        gallery_f: [Ng, D] gallery features (the training split).
        gallery_y: [Ng] integer class labels of the gallery.
        ks: the k of each R@k. A k larger than the gallery is clamped to the gallery size
            (every item is then retrieved), so R@k reports the fraction of queries whose
            class appears anywhere in the gallery; the key stays ``"R@{k}"`` as asked.
        backend: "faiss", "numpy" or "auto" (faiss for galleries of at least
            ``FAISS_MIN_GALLERY`` items).

    Returns:
        ``{"R@1": 53.2, "R@5": ...}`` in the order of ``ks``; floats in [0, 100].
    """
    query_f, query_y = check_labelled_features("query", query_f, query_y)
    gallery_f, gallery_y = check_labelled_features("gallery", gallery_f, gallery_y)
    if query_f.shape[1] != gallery_f.shape[1]:
        raise ValueError(f"query features have dim {query_f.shape[1]} but gallery features "
                         f"have dim {gallery_f.shape[1]}")
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")

    k_max = min(max(ks), len(gallery_f))
    neighbours = nearest_neighbours(query_f, gallery_f, k_max, backend=backend)
    same_class = gallery_y[neighbours] == query_y[:, None]  # [Nq, k_max]
    # hit_at[:, j] is True when any of the first j+1 neighbours shares the query's class.
    hit_at = np.logical_or.accumulate(same_class, axis=1)
    return {f"R@{k}": float(100.0 * hit_at[:, min(k, k_max) - 1].mean()) for k in ks}


def nearest_neighbours(query_f: np.ndarray, gallery_f: np.ndarray, k: int, *,
                       backend: str = "auto") -> np.ndarray:
    """Indices [Nq, k] of the k gallery items most cosine-similar to each query, best first.

    Exact search; ``k`` must not exceed the gallery size. Features are L2-normalised here in
    float32 (zero vectors stay zero, i.e. similarity 0 to everything).
    """
    if backend not in ("auto", "faiss", "numpy"):
        raise ValueError(f"backend must be 'auto', 'faiss' or 'numpy', got {backend!r}")
    if not 1 <= k <= len(gallery_f):
        raise ValueError(f"k={k} must be between 1 and the gallery size {len(gallery_f)}")
    q = _l2_normalise(query_f)
    g = _l2_normalise(gallery_f)
    if backend == "faiss" or (backend == "auto" and len(g) >= FAISS_MIN_GALLERY):
        return _faiss_search(q, g, k)
    return _numpy_search(q, g, k)


def _faiss_search(q: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    import faiss  # imported lazily: loading it costs ~0.3 s and OpenMP threads

    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    _, idx = index.search(q, k)
    return idx.astype(np.int64, copy=False)


def _numpy_search(q: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(q), k), dtype=np.int64)
    for start in range(0, len(q), _NUMPY_QUERY_BLOCK):
        sim = q[start:start + _NUMPY_QUERY_BLOCK] @ g.T  # [b, Ng] float32, cosine similarity
        if k < sim.shape[1]:
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(sim.shape[1]), sim.shape)
        top_sim = np.take_along_axis(sim, top, axis=1)
        # Highest similarity first; equal similarities by lower gallery index (stable order).
        order = np.lexsort((top, -top_sim), axis=1)
        out[start:start + len(sim)] = np.take_along_axis(top, order, axis=1)
    return out


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, np.float32(1e-12)))


def check_labelled_features(name: str, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a [N, D] finite feature array and its [N] labels; returns them with int64 labels."""
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"{name} features must be a non-empty [N, D] array, got shape {features.shape}")
    if labels.shape != (len(features),):
        raise ValueError(f"{name} labels must have shape ({len(features)},), got {labels.shape}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name} features contain NaN or inf")
    return features, labels.astype(np.int64)
