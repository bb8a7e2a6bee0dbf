"""Confidence intervals over seeds for `analysis.claims`: Welch's t for a difference of two
means, Student's t for one mean, and the seeds a still-open interval would need.

Student's t distribution is computed here, from the regularised incomplete
beta (Numerical Recipes 6.4).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

LEVEL = 0.95
MAX_SEEDS = 1000  # seeds_needed gives up above this (reported as ">1000")


# ------------------------------------------------------------------ t distribution
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (Numerical Recipes 6.4)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
            if aa == 0:
                break
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df (> 0, fractional allowed) degrees of freedom."""
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2))
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on t_cdf; p in (0.5, 1))."""
    lo, hi = 0.0, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


# ------------------------------------------------------------------ intervals
def welch(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its two-sided `level` CI (Welch). Needs 2+ values on each side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's interval needs at least 2 values per variant")
    d = a.mean() - b.mean()
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile(0.5 + level / 2, df) * se
    return d, d - half, d + half


def one_sample(a: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """mean(a) and its two-sided `level` CI (Student's t, n - 1 degrees of freedom)."""
    a = np.asarray(a, float)
    if len(a) < 2:
        raise ValueError("a confidence interval needs at least 2 values")
    se = a.std(ddof=1) / math.sqrt(len(a))
    half = 0 if se == 0 else t_quantile(0.5 + level / 2, len(a) - 1) * se
    return a.mean(), a.mean() - half, a.mean() + half


def seeds_needed(distance: float, var_a: float, var_b: float | None = None, level: float = LEVEL) -> int | None:
    """Seeds per variant for the CI half-width to drop below `distance` (the gap between the
    estimate and the boundary it must clear), if the sample variances stayed as observed.
    var_b None: one sample. None when the distance is 0 (the estimate sits on the boundary)."""
    if not distance > 0:
        return None
    two = var_b is not None
    total = var_a + (var_b or 0.0)
    if total == 0:
        return 2
    for n in range(2, MAX_SEEDS + 2):
        if two:  # Welch-Satterthwaite df for n values on each side
            df = total ** 2 * (n - 1) / (var_a ** 2 + var_b ** 2) if var_a ** 2 + var_b ** 2 > 0 else math.inf
        else:
            df = n - 1
        if t_quantile(0.5 + level / 2, df) * math.sqrt(total / n) < distance:
            return n
    return MAX_SEEDS + 1
