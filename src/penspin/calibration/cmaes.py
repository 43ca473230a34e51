"""A small CMA-ES (Hansen's tutorial form) that asks for a whole population at once.

The calibration objective is a batch of simulations, so candidates are evaluated together; the
search space is a handful of dimensions, where full-covariance CMA-ES needs no tuning beyond the
start point and step size.
"""

from __future__ import annotations

import math

import numpy as np


class CMAES:
    """Minimise over R^d: ``ask()`` a population [lambda, d], ``tell(x, f)`` their losses."""

    def __init__(self, x0: np.ndarray, sigma: float, popsize: int = 0, seed: int = 0):
        self.mean = np.asarray(x0, dtype=np.float64).copy()
        d = self.dim = len(self.mean)
        self.sigma = float(sigma)
        self.lam = popsize or 4 + int(3 * math.log(d))
        self.mu = self.lam // 2
        w = math.log(self.mu + 0.5) - np.log(np.arange(1, self.mu + 1))
        self.weights = w / w.sum()
        self.mueff = 1.0 / (self.weights**2).sum()
        self.cc = (4 + self.mueff / d) / (d + 4 + 2 * self.mueff / d)
        self.cs = (self.mueff + 2) / (d + self.mueff + 5)
        self.c1 = 2 / ((d + 1.3) ** 2 + self.mueff)
        self.cmu = min(1 - self.c1,
                       2 * (self.mueff - 2 + 1 / self.mueff) / ((d + 2) ** 2 + self.mueff))
        self.damps = 1 + 2 * max(0.0, math.sqrt((self.mueff - 1) / (d + 1)) - 1) + self.cs
        self.chi_n = math.sqrt(d) * (1 - 1 / (4 * d) + 1 / (21 * d * d))
        self.pc = np.zeros(d)
        self.ps = np.zeros(d)
        self.cov = np.eye(d)
        self.generation = 0
        self.rng = np.random.default_rng(seed)
        self.best_x, self.best_f = self.mean.copy(), math.inf

    def ask(self) -> np.ndarray:
        vals, vecs = np.linalg.eigh(self.cov)
        self._b, self._d = vecs, np.sqrt(np.maximum(vals, 1e-20))
        z = self.rng.standard_normal((self.lam, self.dim))
        return self.mean + self.sigma * (z * self._d) @ self._b.T

    def tell(self, x: np.ndarray, f: np.ndarray) -> None:
        order = np.argsort(f)
        if f[order[0]] < self.best_f:
            self.best_f, self.best_x = float(f[order[0]]), x[order[0]].copy()
        old = self.mean
        y = (x[order[: self.mu]] - old) / self.sigma
        self.mean = old + self.sigma * self.weights @ y
        step = self.weights @ y
        inv_sqrt = self._b @ np.diag(1 / self._d) @ self._b.T
        self.ps = (1 - self.cs) * self.ps + math.sqrt(
            self.cs * (2 - self.cs) * self.mueff) * inv_sqrt @ step
        self.generation += 1
        hsig = (np.linalg.norm(self.ps) / math.sqrt(1 - (1 - self.cs) ** (2 * self.generation))
                < (1.4 + 2 / (self.dim + 1)) * self.chi_n)
        self.pc = (1 - self.cc) * self.pc + hsig * math.sqrt(
            self.cc * (2 - self.cc) * self.mueff) * step
        rank_mu = (self.weights[:, None] * y).T @ y
        self.cov = ((1 - self.c1 - self.cmu) * self.cov
                    + self.c1 * (np.outer(self.pc, self.pc)
                                 + (1 - hsig) * self.cc * (2 - self.cc) * self.cov)
                    + self.cmu * rank_mu)
        self.sigma *= math.exp((self.cs / self.damps) * (np.linalg.norm(self.ps) / self.chi_n - 1))
