"""Fréchet distance, k-NN precision/recall and nearest-neighbour distances against references and known answers."""

from __future__ import annotations

import numpy as np
import pytest

from medlens.generative.quality import frechet_distance, kth_neighbour_radii, nearest, precision_recall


def test_frechet_distance_matches_eigenvalue_form_and_is_zero_for_identical_sets() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    b = rng.normal(loc=0.5, scale=1.5, size=(250, 8))
    # independent form (as torchmetrics computes it): Tr((S_a S_b)^(1/2)) is the sum of the square roots of the
    # eigenvalues of S_a S_b, which are real and non-negative
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_trace = np.sqrt(np.clip(np.linalg.eigvals(s_a @ s_b).real, 0, None)).sum()
    reference = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * root_trace
    assert frechet_distance(a, b) == pytest.approx(float(reference), rel=1e-6)
    assert frechet_distance(a, b) > 1.0  # shifted and scaled: clearly apart
    assert frechet_distance(a, a.copy()) == pytest.approx(0.0, abs=1e-6)


def test_precision_recall_of_identical_sets_is_one_and_of_distant_sets_zero() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(120, 5))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    # generated points in one corner of the real cloud (a tenth of it): precise, but they cover little of it
    cloud = rng.normal(size=(400, 2))
    corner = cloud[np.argsort(cloud[:, 0])[:40]]
    precision, recall = precision_recall(cloud, corner)
    assert precision == 1.0 and recall < 0.3


def test_radii_and_nearest_match_scikit_learn() -> None:
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(2)
    points, queries = rng.normal(size=(90, 4)), rng.normal(size=(30, 4))
    distances, _ = NearestNeighbors(n_neighbors=4).fit(points).kneighbors(points)
    np.testing.assert_allclose(kth_neighbour_radii(points, 3), distances[:, 3], rtol=1e-9)
    d, i = nearest(queries, points)
    ref_d, ref_i = NearestNeighbors(n_neighbors=1).fit(points).kneighbors(queries)
    np.testing.assert_allclose(d, ref_d[:, 0], rtol=1e-5)
    np.testing.assert_array_equal(i, ref_i[:, 0])
