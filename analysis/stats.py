"""Small, seeded statistics: bootstrap CIs of a mean and of a difference of means, Welch and
permutation tests, Holm's correction. Every random draw takes an explicit ``seed`` so reruns
give identical numbers."""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats as _st

N_BOOT = 10_000
ALPHA = 0.05


def _clean(x: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    return a[np.isfinite(a)]


def bootstrap_ci(x, *, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): percentile bootstrap CI of the mean at level ``1 - alpha``.

    NaNs are dropped. n == 0 gives all-NaN, n == 1 gives the value with a NaN CI (one seed says
    nothing about spread). Identical values give a zero-width CI. Same ``seed`` -> same CI.
    """
    a = _clean(x)
    if a.size == 0:
        return math.nan, math.nan, math.nan
    m = float(a.mean())
    if a.size == 1:
        return m, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    # the quantiles of identical floats can differ from the mean in the last ulp: clamp
    return m, float(min(lo, m)), float(max(hi, m))


def diff_ci(a, b, *, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = 0) -> tuple[float, float, float]:
    """(mean(a) - mean(b), lo, hi): bootstrap CI of a difference of means, each group resampled
    independently. NaN CI when either group has fewer than two values."""
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan, math.nan
    d = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return d, math.nan, math.nan
    rng = np.random.default_rng(seed)
    dx = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    dy = y[rng.integers(0, y.size, size=(n_boot, y.size))].mean(axis=1)
    lo, hi = np.quantile(dx - dy, [alpha / 2, 1 - alpha / 2])
    return d, float(min(lo, d)), float(max(hi, d))


def welch_pvalue(a, b) -> float:
    """Two-sided Welch t-test p-value (``scipy.stats.ttest_ind(equal_var=False)``).

    NaN when either group has fewer than two values, or when both groups have zero variance
    (the t statistic is undefined; scipy says the same)."""
    x, y = _clean(a), _clean(b)
    if x.size < 2 or y.size < 2:
        return math.nan
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return math.nan
    with warnings.catch_warnings():  # "precision loss ... nearly identical": the p-value is still fine
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(_st.ttest_ind(x, y, equal_var=False).pvalue)


def permutation_pvalue(a, b, *, n_perm: int = N_BOOT, seed: int = 0) -> float:
    """Two-sided permutation test of equal means (statistic |mean(a) - mean(b)|).

    Exact (all relabellings enumerated) when there are at most ``n_perm`` of them, e.g. 3 vs 3
    seeds -> 20; otherwise ``n_perm`` seeded random relabellings with the +1 correction.
    NaN when either group is empty or both have one value."""
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0 or x.size + y.size < 3:
        return math.nan
    pooled = np.concatenate([x, y])
    n, k = pooled.size, x.size
    obs = abs(x.mean() - y.mean())
    tol = 1e-12 * max(1.0, abs(obs))
    total = pooled.sum()
    if math.comb(n, k) <= n_perm:
        hits = count = 0
        for idx in itertools.combinations(range(n), k):
            s = pooled[list(idx)].sum()
            stat = abs(s / k - (total - s) / (n - k))
            hits += stat >= obs - tol
            count += 1
        return hits / count
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, n)), axis=1)[:, :k]
    s = pooled[perms].sum(axis=1)
    stats = np.abs(s / k - (total - s) / (n - k))
    return float((np.sum(stats >= obs - tol) + 1) / (n_perm + 1))


def paired_diff_ci(a, b, *, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = 0) -> tuple[float, float, float]:
    """(mean(a - b), lo, hi) for paired values (a[i] and b[i] share a seed): percentile bootstrap
    CI of the mean of the differences (pairs resampled together). Pairs with a NaN are dropped."""
    return bootstrap_ci(_pairs(a, b), n_boot=n_boot, alpha=alpha, seed=seed)


def _pairs(a, b) -> np.ndarray:
    x, y = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    return (x - y)[np.isfinite(x) & np.isfinite(y)]


def paired_t_pvalue(a, b) -> float:
    """Two-sided paired t-test p-value (``scipy.stats.ttest_rel``, i.e. a one-sample t-test of the
    per-pair differences). NaN with fewer than two pairs or differences that are all equal."""
    d = _pairs(a, b)
    if d.size < 2 or np.ptp(d) == 0:
        return math.nan
    return float(_st.ttest_1samp(d, 0.0).pvalue)


def wilcoxon_pvalue(a, b) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the per-pair differences
    (``scipy.stats.wilcoxon``; exact for small samples without ties or zeros). NaN with fewer
    than two pairs or when every difference is zero."""
    d = _pairs(a, b)
    if d.size < 2 or np.all(d == 0):
        return math.nan
    return float(_st.wilcoxon(d).pvalue)


# The tests against the baseline: name -> (what reports call it, whether it pairs runs by seed).
TESTS = {"welch": ("Welch t-test", False), "permutation": ("permutation test", False),
         "paired": ("paired t-test", True), "wilcoxon": ("Wilcoxon signed-rank test", True)}


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaNs stay NaN and do not count as tests)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
