"""Case-resampling bootstrap, vectorised over resamples.

A bootstrap resample of ``N`` cases is represented by its *count vector*: how many times each case was
drawn (a row of ``W``, shape ``(B, N)``, summing to ``N``). Every metric here is written as a function of
such weights, so one matrix product or one cumulative sum evaluates it on all ``B`` resamples at once, and
the original data is the special case ``W = 1``. Integer weights reproduce the resampled data set exactly,
so a weighted metric equals the metric of the resampled cases (the tests check this against scikit-learn).

The rank metrics (ROC AUC, average precision) are written by hand because neither scikit-learn nor
torchmetrics evaluates them on many weight vectors at once; their definitions follow scikit-learn's
(trapezoidal ROC AUC with ties counted half, step-wise average precision).

**Patients, not images.** When several cases belong to one patient (two views, follow-up visits), they are not
independent, and resampling cases makes intervals too narrow. Given each case's group (:func:`group_index` of
the patient IDs), :func:`resample_weights` draws *patients* with replacement and expands each patient's count to
all of its cases, so a patient's cases are always drawn together; a resample then holds a varying number of
cases, which every weighted metric here allows for (it divides by the weights' sum). A data set where every case
is its own patient gets ``None`` from :func:`group_index` and is resampled case by case, exactly as before.

**Two kinds of interval.** Metrics that are (ratios of) means of per-case values (segmentation Dice or HD95 per
case, regression errors, coverage of conformal sets) get bias-corrected and accelerated (BCa) intervals from
``scipy.stats.bootstrap`` (:func:`bca_entry`), with patients as the resampled units. The rank metrics (AUC, AP),
ECE and the confusion-count rates keep the vectorised percentile bootstrap above: BCa's jackknife would cost one
evaluation per case for each, and their percentile intervals are the ones published benchmarks report.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

#: upper bound on the elements of one block of resample weights (B_chunk * N), to bound memory
_MAX_BLOCK_ELEMENTS = 4_000_000


def resample_weights(
    n_cases: int, n_bootstrap: int, seed: int, groups: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Yield blocks of bootstrap count vectors: cases (or, with ``groups``, patients) drawn with replacement.

    The blocks are drawn from one seeded generator, so the same ``(n_cases, n_bootstrap, seed, groups)`` always
    gives the same resamples, and every metric computed from them is paired (the same resamples for all).

    Args:
        n_cases: number of cases ``N``.
        n_bootstrap: total number of resamples ``B`` over all blocks.
        seed: seed of the random generator.
        groups: ``(N,)`` group index (``0..G-1``) of each case, from :func:`group_index`; ``None`` resamples cases.
            With groups, ``G`` groups are drawn with replacement and each case gets its group's count.

    Yields:
        Integer arrays of shape ``(b, N)``, ``b <= B``; each row sums to ``N`` when cases are drawn, and to the
        number of cases of the drawn patients when groups are.
    """
    rng = np.random.default_rng(seed)
    units = n_cases if groups is None else int(groups.max()) + 1 if len(groups) else 0
    block = max(1, min(n_bootstrap, _MAX_BLOCK_ELEMENTS // max(n_cases, units, 1)))
    done = 0
    while done < n_bootstrap:
        b = min(block, n_bootstrap - done)
        idx = rng.integers(0, units, size=(b, units))  # (b, units) drawn cases or groups
        counts = counts_from_indices(idx, units)  # (b, units)
        yield counts if groups is None else counts[:, groups]  # (b, N): each case gets its group's count
        done += b


def group_index(labels: Sequence[str]) -> np.ndarray | None:
    """The group of each case (``0..G-1``, in order of first appearance) from its patient ID; ``None`` when every
    case is its own patient (then cases are resampled one by one).

    Example:
        >>> group_index(["p1", "p2", "p1"]).tolist()
        [0, 1, 0]
        >>> group_index(["a", "b"]) is None
        True
    """
    first: dict[str, int] = {}
    index = np.array([first.setdefault(str(label), len(first)) for label in labels], dtype=np.int64)
    return None if len(first) == len(index) else index


def bootstrap_method(groups: np.ndarray | None, n_cases: int) -> dict[str, Any]:
    """What was resampled, for ``metrics.json``: the unit (cases or patients) and how many there were."""
    if groups is None:
        return {"unit": "case", "n_units": n_cases}
    return {"unit": "patient", "n_units": int(groups.max()) + 1}


def counts_from_indices(idx: np.ndarray, n_cases: int) -> np.ndarray:
    """Turn drawn case indices ``(b, N)`` into count vectors ``(b, n_cases)``."""
    b = idx.shape[0]
    offsets = (np.arange(b) * n_cases)[:, None]  # (b, 1)
    counts = np.bincount((idx + offsets).ravel(), minlength=b * n_cases)
    return counts.reshape(b, n_cases)


def _tie_groups(score: np.ndarray, target: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted positives and all cases per group of tied scores, in ascending score order.

    Returns:
        ``(pos, total)``, each of shape ``(b, G)`` for ``G`` distinct scores, float64.
    """
    order = np.argsort(score, kind="stable")
    s = score[order]
    t = target[order].astype(bool)
    # float32 is exact here: weights and group sums are integers below N < 2**24
    w = weights[:, order].astype(np.float32, copy=False)  # (b, N) weights in score order
    if np.all(s[1:] != s[:-1]):  # no ties: every case is its own group
        pos = np.where(t, w, np.float32(0.0))
        return pos.astype(np.float64), w.astype(np.float64)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1])  # first index of each tie group
    total = np.add.reduceat(w, starts, axis=1).astype(np.float64)  # (b, G)
    w[:, ~t] = 0.0  # keep positives only (w is a fresh copy from the fancy index)
    return np.add.reduceat(w, starts, axis=1).astype(np.float64), total


def weighted_rank_metrics(score: np.ndarray, target: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision of one binary problem under each row of case weights.

    AUC is the probability that a random positive scores above a random negative, ties counting half,
    which equals scikit-learn's trapezoidal ``roc_auc_score``. Average precision is scikit-learn's
    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct scores taken as thresholds, highest first.

    Args:
        score: scores ``(N,)``, higher meaning more likely positive.
        target: 0/1 truth ``(N,)``.
        weights: case weights ``(b, N)``.

    Returns:
        ``(auc, ap)``, each ``(b,)``; AUC is NaN where a row has no positive or no negative case, AP where
        it has no positive case.
    """
    pos, total = _tie_groups(score, target, weights)  # (b, G) each, ascending score
    cum_pos, cum_total = np.cumsum(pos, axis=1), np.cumsum(total, axis=1)
    n_pos, n_all = cum_pos[:, -1].copy(), cum_total[:, -1].copy()
    n_neg = n_all - n_pos
    # AUC: each positive wins over the negatives below its group and half of those tied with it.
    # In-place arithmetic on (b, G) buffers: this is the hot loop of the bootstrap.
    beaten = np.subtract(cum_total, cum_pos)  # negatives at or below each group
    tied = np.subtract(total, pos)
    tied *= 0.5
    beaten -= tied
    wins = np.einsum("ij,ij->i", pos, beaten)
    # AP: at the threshold of each group, the cases at or above it are predicted positive
    tp = np.subtract(pos, cum_pos, out=cum_pos)
    tp += n_pos[:, None]
    predicted = np.subtract(total, cum_total, out=cum_total)
    predicted += n_all[:, None]
    np.maximum(predicted, 1.0, out=predicted)  # 0 only where tp and pos are 0 too
    tp /= predicted
    precision_mass = np.einsum("ij,ij->i", pos, tp)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where((n_pos > 0) & (n_neg > 0), wins / (n_pos * n_neg), np.nan)
        ap = np.where(n_pos > 0, precision_mass / n_pos, np.nan)
    return auc, ap


def weighted_roc_auc(score: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC per row of case weights (see :func:`weighted_rank_metrics`)."""
    return weighted_rank_metrics(score, target, weights)[0]


def weighted_average_precision(score: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision per row of case weights (see :func:`weighted_rank_metrics`)."""
    return weighted_rank_metrics(score, target, weights)[1]


def percentile_ci(samples: np.ndarray, min_valid_fraction: float = 0.5) -> tuple[list[float | None], str]:
    """95% percentile interval of bootstrap values, skipping resamples where the metric is undefined.

    Args:
        samples: ``(B,)`` metric values, NaN where undefined on that resample.
        min_valid_fraction: below this fraction of defined resamples no interval is given.

    Returns:
        ``([lo, hi], note)``; ``[None, None]`` when there are too few defined resamples, and a note (empty
        when nothing needs saying) about skipped resamples.
    """
    total = int(samples.size)
    if total == 0:
        return [None, None], "no bootstrap resamples requested"
    valid = samples[~np.isnan(samples)]
    skipped = total - int(valid.size)
    if valid.size == 0 or valid.size < min_valid_fraction * total:
        return [None, None], f"interval not given: defined on only {valid.size} of {total} resamples"
    lo, hi = np.percentile(valid, [2.5, 97.5])
    note = f"{skipped} of {total} resamples left it undefined and were skipped" if skipped else ""
    return [float(lo), float(hi)], note


def weighted_confusion_counts(truth: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest confusion counts per column under each row of case weights.

    Args:
        truth: ``(N, M)`` 0/1 indicators of the true class (one-hot for single-label tasks) or labels.
        predicted: ``(N, M)`` 0/1 indicators of the prediction.
        weights: ``(b, N)`` case weights.

    Returns:
        ``{"tp", "fp", "fn", "tn"}``, each ``(b, M)`` float counts.
    """
    t, p = truth.astype(np.float64), predicted.astype(np.float64)
    w = weights.astype(np.float64)
    m = t.shape[1]
    stacked = np.concatenate([t * p, t, p], axis=1)  # (N, 3M): hits, true, predicted
    counts = w @ stacked  # (b, 3M)
    tp, true, pred = counts[:, :m], counts[:, m : 2 * m], counts[:, 2 * m :]
    n = w.sum(axis=1, keepdims=True)  # (b, 1)
    fp, fn = pred - tp, true - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": n - tp - fp - fn}


def rates_from_counts(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, precision and F1 per column; NaN where the denominator is zero.

    These follow scikit-learn's ``recall_score``, ``precision_score`` and ``f1_score`` with
    ``zero_division=np.nan``; specificity is the recall of the negative class.
    """
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)

    return {
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "precision": ratio(tp, tp + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def weighted_nanmean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over cases ignoring NaN: values (N, K), weights (B, N) -> (B, K), NaN where undefined."""
    defined = ~np.isnan(values)
    filled = np.where(defined, values, 0.0)
    total = weights @ filled  # (B, K)
    count = weights @ defined.astype(float)  # (B, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1e-12), np.nan)


def interval_entry(value: float, samples: np.ndarray | None) -> dict[str, Any]:
    """A JSON-ready metric entry ``{"value", "ci95"}`` (and ``note``) from a point value and its resamples."""
    entry: dict[str, Any] = {"value": None if np.isnan(value) else float(value), "ci95": [None, None]}
    if entry["value"] is not None and samples is not None:
        entry["ci95"], note = percentile_ci(samples)
        if note:
            entry["note"] = note
    return entry


def _group_sums(values: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per group and column: the sum of defined values and how many there are; ``(G, K)`` each."""
    defined = ~np.isnan(values)
    filled = np.where(defined, values, 0.0)
    if groups is None:
        return filled, defined.astype(np.float64)
    n_groups = int(groups.max()) + 1
    sums = np.zeros((n_groups, values.shape[1]))
    counts = np.zeros((n_groups, values.shape[1]))
    np.add.at(sums, groups, filled)
    np.add.at(counts, groups, defined.astype(np.float64))
    return sums, counts


def bca_entry(
    values: np.ndarray,
    *,
    denominators: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """A mean of per-case values with its 95% BCa interval (``scipy.stats.bootstrap``), patients resampled.

    The statistic is, per column, the sum of the defined (non-NaN) values over the sum of the denominators (1 per
    defined case unless ``denominators`` are given: e.g. correct-and-kept over kept), then the mean over columns
    where it is defined, then ``transform`` (``np.sqrt`` for an RMSE). With ``groups`` the resampled units are
    patients (their sums travel together, as paired samples); without, cases. When BCa is undefined (all
    values equal, or a jackknife value undefined) the percentile interval of the same resamples is given, with
    a note.

    Args:
        values: ``(N,)`` or ``(N, K)`` per-case values, NaN where undefined.
        denominators: ``(N,)`` or ``(N, K)`` per-case weights of the ratio; default 1 where a value is defined.
        groups: ``(N,)`` patient group of each case (:func:`group_index`), or ``None``.
        n_bootstrap: resamples (0: no interval).
        seed: seed of the resamples.
        transform: applied to the statistic (point and resamples).

    Returns:
        ``{"value", "ci95"}`` (and ``note``), JSON-ready; ``value`` is ``None`` when nothing is defined.

    Example:
        >>> bca_entry(np.array([1.0, 2.0, 3.0, 4.0]), n_bootstrap=0)
        {'value': 2.5, 'ci95': [None, None]}
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values  # (N, K)
    if denominators is None:
        sums, counts = _group_sums(values, groups)
    else:
        den = np.asarray(denominators, dtype=np.float64).reshape(values.shape)
        sums, _ = _group_sums(values, groups)
        counts, _ = _group_sums(np.where(np.isnan(values), np.nan, den), groups)
    k = values.shape[1]
    finish = transform or (lambda x: x)

    def statistic(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        num = np.stack([a.sum(axis=axis) for a in arrays[:k]])  # (K, ...)
        den = np.stack([a.sum(axis=axis) for a in arrays[k:]])  # (K, ...)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column undefined in a resample: left out
            ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
            return np.asarray(finish(np.nanmean(ratio, axis=0)))

    columns = [sums[:, j] for j in range(k)] + [counts[:, j] for j in range(k)]
    point = float(statistic(*columns))
    entry: dict[str, Any] = {"value": None if np.isnan(point) else point, "ci95": [None, None]}
    units = len(sums)
    if entry["value"] is None or n_bootstrap <= 0 or units < 2:
        return entry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns when BCa is undefined (degenerate data); handled below
        result = bootstrap(
            tuple(columns),
            statistic,
            n_resamples=n_bootstrap,
            paired=True,
            vectorized=True,
            method="BCa",
            rng=np.random.default_rng(seed),
            batch=max(1, _MAX_BLOCK_ELEMENTS // max(units, 1)),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if np.isfinite(low) and np.isfinite(high):
        entry["ci95"] = [low, high]
        return entry
    entry["ci95"], note = percentile_ci(np.asarray(result.bootstrap_distribution, dtype=np.float64).ravel())
    entry["note"] = "; ".join(
        n for n in ("BCa undefined on these data (all values alike?): percentile interval", note) if n
    )
    return entry
