import numpy as np
import pytest

from vidssl.eval.retrieval import nearest_neighbours, retrieval_recall


def brute_force_recall(qf, qy, gf, gy, ks):
    """Independent reference: full cosine-similarity matrix in float64, full sort, per-query loop."""
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    sim = qn.astype(np.float64) @ gn.astype(np.float64).T
    out = {}
    for k in ks:
        hits = 0
        for i in range(len(qf)):
            ranked = sorted(range(len(gf)), key=lambda j: -sim[i, j])[:k]
            hits += any(gy[j] == qy[i] for j in ranked)
        out[f"R@{k}"] = 100.0 * hits / len(qf)
    return out


def random_split(rng, n, dim, classes):
    # Class-dependent means so recall is neither 0 nor 100 and the test discriminates.
    centres = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, size=n)
    return (centres[y] + 1.5 * rng.normal(size=(n, dim))).astype(np.float32), y


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
@pytest.mark.parametrize("n_query,n_gallery,dim,classes,ks", [
    (7, 13, 4, (3), (1, 2, 5)),
    (40, 120, 16, 10, (1, 5, 10, 20, 50)),
    (33, 200, 32, 25, (1, 3, 7)),
])
def test_recall_matches_brute_force(backend, n_query, n_gallery, dim, classes, ks):
    rng = np.random.default_rng(n_query * 1000 + n_gallery)
    qf, qy = random_split(rng, n_query, dim, classes)
    gf, gy = random_split(rng, n_gallery, dim, classes)
    got = retrieval_recall(qf, qy, gf, gy, ks=ks, backend=backend)
    expected = brute_force_recall(qf, qy, gf, gy, ks)
    assert list(got) == [f"R@{k}" for k in ks]
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key
    # Non-trivial: the recalls actually vary with k on at least one setting.
    values = list(got.values())
    assert values == sorted(values)


def test_hand_made_case_r1_zero_r5_full():
    # Each query's nearest neighbour is of the wrong class; the 5th nearest is right.
    gallery = np.array([[1.0, 0.0], [0.99, 0.14], [0.98, 0.2], [0.97, 0.24], [0.0, 1.0],
                        [-1.0, 0.0]], dtype=np.float32)
    gallery_y = np.array([0, 0, 0, 0, 1, 2])
    queries = np.array([[1.0, 0.01], [2.0, 0.02]], dtype=np.float32)  # scale must not matter
    queries_y = np.array([1, 1])
    for backend in ("numpy", "faiss"):
        got = retrieval_recall(queries, queries_y, gallery, gallery_y, ks=(1, 4, 5), backend=backend)
        assert got == {"R@1": 0.0, "R@4": 0.0, "R@5": 100.0}


def test_k_larger_than_gallery_is_clamped():
    gallery = np.eye(3, dtype=np.float32)
    gallery_y = np.array([0, 1, 2])
    queries = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    queries_y = np.array([2, 7])  # class 7 is absent from the gallery: never a hit
    got = retrieval_recall(queries, queries_y, gallery, gallery_y, ks=(1, 50))
    assert got == {"R@1": 0.0, "R@50": 50.0}


def test_faiss_and_numpy_rank_identically():
    rng = np.random.default_rng(3)
    qf = rng.normal(size=(300, 64)).astype(np.float32)
    gf = rng.normal(size=(2000, 64)).astype(np.float32)
    a = nearest_neighbours(qf, gf, 50, backend="numpy")
    b = nearest_neighbours(qf, gf, 50, backend="faiss")
    np.testing.assert_array_equal(a, b)
    qy, gy = rng.integers(0, 20, 300), rng.integers(0, 20, 2000)
    assert (retrieval_recall(qf, qy, gf, gy, backend="numpy")
            == retrieval_recall(qf, qy, gf, gy, backend="faiss"))


def test_bad_input_is_a_clear_error():
    f = np.ones((3, 4), dtype=np.float32)
    y = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="dim"):
        retrieval_recall(f, y, np.ones((3, 5)), y)
    with pytest.raises(ValueError, match="gallery labels"):
        retrieval_recall(f, y, f, y[:2])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_recall(np.full((3, 4), np.nan), y, f, y)
    with pytest.raises(ValueError, match="ks"):
        retrieval_recall(f, y, f, y, ks=(0,))
    with pytest.raises(ValueError, match="backend"):
        retrieval_recall(f, y, f, y, backend="annoy")
