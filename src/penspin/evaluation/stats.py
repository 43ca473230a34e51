"""Means and rates with 95% intervals, shared by the simulated and the robot evaluation."""

from __future__ import annotations

import math

import numpy as np


def mean_ci(values: np.ndarray) -> dict:
    """Mean and normal-approximation 95% interval."""
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    half = 1.96 * float(np.std(values, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def rate_ci(successes: int, n: int) -> dict:
    """Wilson 95% interval of a rate (sensible near 0 and 1, unlike the normal one)."""
    if n == 0:
        return {"mean": math.nan, "ci95": [math.nan, math.nan]}
    z, p = 1.96, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"mean": p, "ci95": [max(centre - half, 0.0), min(centre + half, 1.0)]}
