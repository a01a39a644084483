"""Closed-form oracles: conjugate posteriors and evidences, the Kalman filter, the HMM forward pass.

All in NumPy/SciPy float64, independent of ``ppl`` — they are the ground truth the semantics and
the inference blocks are compared with.  Evidences are returned as log Z (the log marginal
likelihood of the observations).

Example:
    >>> post = normal_normal(mu0=0.0, sigma0=1.0, sigma=1.0, y=[1.0])
    >>> post.mean, post.var
    (0.5, 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import special

__all__ = [
    "Conjugate",
    "normal_normal",
    "beta_bernoulli",
    "gamma_poisson",
    "dirichlet_categorical",
    "KalmanResult",
    "kalman_filter",
    "dense_gaussian_lgssm",
    "HMMResult",
    "hmm_forward",
]


@dataclass
class Conjugate:
    """A conjugate posterior: its parameters, mean, variance and the log evidence log p(y)."""

    params: dict
    mean: Any
    var: Any
    log_evidence: float


def normal_normal(mu0: float, sigma0: float, sigma: float, y: Sequence[float]) -> Conjugate:
    """μ ~ N(mu0, sigma0²), y_i | μ ~ N(μ, sigma²) (known variance).

    Posterior N(m, v) with v = 1 / (1/sigma0² + n/sigma²), m = v (mu0/sigma0² + Σy/sigma²);
    evidence: y ~ N(mu0 1, sigma² I + sigma0² 11ᵀ).

    Example:
        >>> normal_normal(0.0, 1.0, 1.0, [1.0]).log_evidence  # log N(1; 0, 2)
        -1.5155121234846454
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    n = y.size
    v = 1.0 / (1.0 / sigma0**2 + n / sigma**2)
    m = v * (mu0 / sigma0**2 + y.sum() / sigma**2)
    cov = sigma**2 * np.eye(n) + sigma0**2 * np.ones((n, n))
    return Conjugate({"mu": m, "sigma": math.sqrt(v)}, float(m), float(v), _mvn_logpdf(y, np.full(n, mu0), cov))


def beta_bernoulli(a: float, b: float, y: Sequence[int]) -> Conjugate:
    """p ~ Beta(a, b), y_i | p ~ Bernoulli(p): posterior Beta(a + k, b + n − k), Z = B(a+k, b+n−k)/B(a, b).

    Example:
        >>> round(math.exp(beta_bernoulli(1, 1, [1, 0, 1]).log_evidence), 12)  # 1/12
        0.083333333333
    """
    y = np.asarray(y).ravel()
    k, n = int(y.sum()), y.size
    a2, b2 = a + k, b + n - k
    lz = special.betaln(a2, b2) - special.betaln(a, b)
    mean = a2 / (a2 + b2)
    var = a2 * b2 / ((a2 + b2) ** 2 * (a2 + b2 + 1))
    return Conjugate({"a": a2, "b": b2}, mean, var, float(lz))


def gamma_poisson(shape: float, rate: float, y: Sequence[int]) -> Conjugate:
    """λ ~ Gamma(shape, rate), y_i | λ ~ Poisson(λ): posterior Gamma(shape + Σy, rate + n).

    log Z = shape log rate − lgamma(shape) + lgamma(shape + Σy) − (shape + Σy) log(rate + n) − Σ lgamma(y_i + 1).
    """
    y = np.asarray(y).ravel()
    s, n = float(y.sum()), y.size
    a2, b2 = shape + s, rate + n
    lz = shape * math.log(rate) - special.gammaln(shape) + special.gammaln(a2) - a2 * math.log(b2) - special.gammaln(y + 1).sum()
    return Conjugate({"shape": a2, "rate": b2}, a2 / b2, a2 / b2**2, float(lz))


def dirichlet_categorical(alpha: Sequence[float], y: Sequence[int]) -> Conjugate:
    """p ~ Dirichlet(α), y_i | p ~ Categorical(p): posterior Dirichlet(α + counts).

    log Z = lgamma(Σα) − lgamma(Σα + n) + Σ_k [lgamma(α_k + c_k) − lgamma(α_k)].
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    c = np.bincount(np.asarray(y, dtype=np.int64).ravel(), minlength=alpha.size).astype(np.float64)
    a2 = alpha + c
    lz = special.gammaln(alpha.sum()) - special.gammaln(a2.sum()) + np.sum(special.gammaln(a2) - special.gammaln(alpha))
    s = a2.sum()
    return Conjugate({"alpha": a2}, a2 / s, a2 * (s - a2) / (s**2 * (s + 1)), float(lz))


def _mvn_logpdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    d = x - mean
    L = np.linalg.cholesky(cov)
    z = np.linalg.solve(L, d)
    return float(-0.5 * z @ z - np.log(np.diag(L)).sum() - 0.5 * x.size * math.log(2 * math.pi))


# ---------------------------------------------------------------------------------------------
# linear Gaussian state-space models


@dataclass
class KalmanResult:
    """Filtering means/covariances of x_t | y_{1:t}, predictive means/covs, and log p(y_{1:T})."""

    means: np.ndarray  # (T, d)
    covs: np.ndarray  # (T, d, d)
    log_evidence: float
    log_evidence_terms: np.ndarray  # (T,) log p(y_t | y_{1:t-1})

    @property
    def variances(self) -> np.ndarray:
        """(T, d) marginal filtering variances."""
        return np.diagonal(self.covs, axis1=1, axis2=2)


def _mat(x: Any, d: int) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a.reshape(d, d) if a.size == d * d else np.eye(d) * a


def _lgssm_args(y, A, Q, H, R, m0, P0):
    """Observations as (T, p) and every parameter as a float64 matrix of the model's sizes."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    p = y.shape[1]
    m0 = np.atleast_1d(np.asarray(m0, dtype=np.float64))
    d = m0.size
    A, Q, P0 = _mat(A, d), _mat(Q, d), _mat(P0, d)
    H = np.asarray(H, dtype=np.float64).reshape(p, d) if np.size(H) == p * d else np.eye(p, d) * H
    return y, A, Q, H, _mat(R, p), m0, P0


def kalman_filter(y: Any, A: Any, Q: Any, H: Any, R: Any, m0: Any, P0: Any) -> KalmanResult:
    """The Kalman filter (filtering moments and log evidence) for the linear Gaussian model

        x_0 ~ N(m0, P0) (not observed), x_t = A x_{t-1} + N(0, Q), y_t = H x_t + N(0, R), t = 1..T.

    Scalars are accepted for 1-d states/observations.  Returns filtering moments of x_t | y_{1:t}
    and log p(y_{1:T}).

    Example:
        >>> r = kalman_filter([0.3, -0.1], A=0.9, Q=1.0, H=1.0, R=0.25, m0=0.0, P0=0.0)
        >>> r.means.shape
        (2, 1)
    """
    y, A, Q, H, R, m, P = _lgssm_args(y, A, Q, H, R, m0, P0)
    T, p = y.shape
    d = m.size
    means, covs, terms = [], [], []
    for t in range(T):
        m = A @ m
        P = A @ P @ A.T + Q
        S = H @ P @ H.T + R
        terms.append(_mvn_logpdf(y[t], H @ m, S))
        K = np.linalg.solve(S, H @ P).T
        m = m + K @ (y[t] - H @ m)
        P = P - K @ S @ K.T
        P = 0.5 * (P + P.T)
        means.append(m.copy())
        covs.append(P.copy())
    terms = np.array(terms)
    return KalmanResult(np.array(means), np.array(covs), float(terms.sum()), terms)


def dense_gaussian_lgssm(y: Any, A: Any, Q: Any, H: Any, R: Any, m0: Any, P0: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """The same model as :func:`kalman_filter` as one joint Gaussian over (x_{1:T}, y_{1:T}).

    Returns ``(smoothing means (T, d), smoothing covariances (T, d, d), log p(y_{1:T}))`` by
    dense linear algebra — an independent check of the filter (the last filtering moment equals
    the last smoothing moment; the evidence equals the filter's).
    """
    y, A, Q, H, R, m0, P0 = _lgssm_args(y, A, Q, H, R, m0, P0)
    T, p = y.shape
    d = m0.size
    # x = M (x0, w_1..w_T) with x_t = A^t x0 + Σ_{s≤t} A^{t-s} w_s
    n = d * T
    mx = np.zeros(n)
    Cx = np.zeros((n, n))
    Apow = [np.linalg.matrix_power(A, k) for k in range(T + 1)]
    for t in range(T):
        mx[t * d:(t + 1) * d] = Apow[t + 1] @ m0
        for u in range(T):
            c = Apow[t + 1] @ P0 @ Apow[u + 1].T
            for s in range(min(t, u) + 1):
                c = c + Apow[t - s] @ Q @ Apow[u - s].T
            Cx[t * d:(t + 1) * d, u * d:(u + 1) * d] = c
    Hb = np.kron(np.eye(T), H)
    my = Hb @ mx
    Cy = Hb @ Cx @ Hb.T + np.kron(np.eye(T), R)
    Cxy = Cx @ Hb.T
    G = np.linalg.solve(Cy, Cxy.T).T
    yf = y.ravel()
    mpost = mx + G @ (yf - my)
    Cpost = Cx - G @ Cxy.T
    means = mpost.reshape(T, d)
    covs = np.array([Cpost[t * d:(t + 1) * d, t * d:(t + 1) * d] for t in range(T)])
    return means, covs, _mvn_logpdf(yf, my, Cy)


# ---------------------------------------------------------------------------------------------
# hidden Markov models


@dataclass
class HMMResult:
    """Filtering distributions p(s_t | y_{1:t}) (T, K), and log p(y_{1:T})."""

    filtering: np.ndarray
    log_evidence: float


def hmm_forward(init: Any, trans: Any, emit: Any, y: Sequence[int]) -> HMMResult:
    """The forward algorithm for s_1 ~ init, s_t | s_{t-1} ~ trans[s_{t-1}], y_t | s_t ~ emit[s_t].

    `emit` is a (K, M) matrix of emission probabilities over M symbols.

    Example:
        >>> r = hmm_forward([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], [[0.8, 0.2], [0.2, 0.8]], [0, 0])
        >>> r.filtering.shape
        (2, 2)
    """
    init = np.asarray(init, dtype=np.float64)
    trans = np.asarray(trans, dtype=np.float64)
    emit = np.asarray(emit, dtype=np.float64)
    alpha = init * emit[:, y[0]]
    lz = math.log(alpha.sum())
    alpha = alpha / alpha.sum()
    out = [alpha]
    for t in range(1, len(y)):
        alpha = (alpha @ trans) * emit[:, y[t]]
        s = alpha.sum()
        lz += math.log(s)
        alpha = alpha / s
        out.append(alpha)
    return HMMResult(np.array(out), lz)
