"""How close generated images are to real ones, as pure functions of feature (or pixel) vectors.

- Fréchet distance between two Gaussians fitted to the features (Heusel et al. 2017; the FID formula, here in the
  feature space the caller chooses).
- Precision and recall of Kynkäänniemi et al. 2019: each set's manifold is the union of balls around its points,
  each ball reaching the point's k-th nearest neighbour in its own set; precision is the share of generated points
  inside the real manifold, recall the share of real points inside the generated one.
- Nearest-neighbour distances, for memorisation: how close each generated image comes to a training image.

Written by hand: torchmetrics and torch-fidelity compute these only on their own Inception features (which would
have to be downloaded and know nothing of medical images); the formulas are a few lines each, and the tests check
the Fréchet distance against torchmetrics' own function.
"""

from __future__ import annotations

import numpy as np
import torch

_CHUNK = 1024


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` for feature sets ``a`` (N, D) and ``b`` (M, D).

    Example:
        >>> x = np.random.default_rng(0).normal(size=(200, 4))
        >>> round(frechet_distance(x, x), 6)
        0.0
    """
    from scipy import linalg

    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a64.mean(axis=0), b64.mean(axis=0)
    s_a = np.atleast_2d(np.cov(a64, rowvar=False))
    s_b = np.atleast_2d(np.cov(b64, rowvar=False))
    root, _ = linalg.sqrtm(s_a @ s_b, disp=False)
    if not np.all(np.isfinite(root)):  # singular product: nudge both covariances, as pytorch-fid does
        eps = np.eye(len(s_a)) * 1e-6
        root = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    root = np.real(root)
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(root))
    return max(value, 0.0)  # rounding can leave -1e-12 for identical sets


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # exact pairwise distances (no matrix-product shortcut), so that a point's distance to itself is exactly 0
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def kth_neighbour_radii(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Each point's distance to its ``k``-th nearest other point of the same set: (N,)."""
    x = torch.as_tensor(np.asarray(points, dtype=np.float64))
    k = min(k, len(x) - 1)
    if k < 1:
        return np.zeros(len(x))
    radii = []
    for start in range(0, len(x), _CHUNK):
        d = _distances(x[start : start + _CHUNK], x)  # (chunk, N), the point itself at distance 0
        radii.append(torch.topk(d, k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii).numpy()


def manifold_coverage(queries: np.ndarray, points: np.ndarray, k: int = 3) -> float:
    """The share of ``queries`` inside the k-NN manifold of ``points`` (within some point's k-th neighbour ball)."""
    radii = torch.as_tensor(kth_neighbour_radii(points, k))
    x = torch.as_tensor(np.asarray(points, dtype=np.float64))
    q = torch.as_tensor(np.asarray(queries, dtype=np.float64))
    inside = []
    for start in range(0, len(q), _CHUNK):
        d = _distances(q[start : start + _CHUNK], x)  # (chunk, N)
        inside.append((d <= radii[None, :]).any(dim=1))
    return float(torch.cat(inside).double().mean()) if inside else float("nan")


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.'s improved precision and recall of ``generated`` against ``real`` (features (N, D)).

    Example:
        >>> x = np.random.default_rng(0).normal(size=(50, 3))
        >>> precision_recall(x, x)
        (1.0, 1.0)
    """
    return manifold_coverage(generated, real, k), manifold_coverage(real, generated, k)


def nearest(queries: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query (N, D): the distance to its nearest ``reference`` row (M, D), and that row's index."""
    r = torch.as_tensor(np.asarray(reference, dtype=np.float32))
    q = torch.as_tensor(np.asarray(queries, dtype=np.float32))
    distances, indices = [], []
    for start in range(0, len(q), _CHUNK):
        d = torch.cdist(q[start : start + _CHUNK].double(), r.double())  # (chunk, M)
        best = d.min(dim=1)
        distances.append(best.values)
        indices.append(best.indices)
    if not distances:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return torch.cat(distances).clamp_min(0).numpy(), torch.cat(indices).numpy()
