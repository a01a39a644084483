"""Mass-matrix adaptation from draws *and scores*: the Fisher-divergence estimates of nutpie.

Seyboldt, Carlson & Carpenter (2026) choose the (inverse) mass matrix A that minimises the
Fisher divergence between the target and a Gaussian, estimated from warmup draws x and their
scores ∇log p(x); unlike Stan's estimate (the draws' covariance) it uses the gradients the sampler
computes anyway, and it is exact for a Gaussian target once there are more than d draws.

- ``"fisher_diag"``: A = diag(sqrt(var(x) / var(∇log p))), coordinate by coordinate.
- ``"low_rank"``: A = diag(σ) (I + U (Λ − I) Uᵀ) diag(σ) (a
  :class:`~inference.mcmc.metric.LowRankMetric`): σ = (var(x) / var(∇log p))^{1/4}; the draws
  and scores scaled by σ⁻¹ and σ; the span Q of the top ``max_rank`` right singular vectors of
  each; in that span, Σ = (Cx + γI) # (Cg + γI)⁻¹ (the SPD geometric mean; Cx, Cg the sums of the
  projected outer products); its eigenvalues λ outside [1/c, c] and their vectors U = Q V are
  kept (the others set to λ = 1, so shapes stay static), at most ``max_rank`` of them, furthest
  from 1 first.  (Algorithm 1 of the paper, nutpie's defaults γ = 1e-5, c = 2, k = 10.)  From
  n ≤ d draws γ is raised to ``RANK_DEFICIENT_GAMMA`` × eps × the Gram matrices' mean eigenvalue
  (below float64 their null space's rounding noise exceeds 1e-5).

Both estimators take only the draws that moved (a rejected proposal repeats its position), as
nutpie.  ``NUTS(adapt_mass_matrix="low_rank")`` sets its own defaults on top of this object's
(:meth:`~inference.mcmc.gradient.NUTS.fisher_options`: every direction up to 100, updates every
max(1, round(d/10)) draws, directions from the first window, nutpie's step-size schedule).

Schedule (nutpie's, as measured by its authors and by ``benchmarks/bench_adaptation.py``): the
metric starts at A₀ = diag(1/|∇U(x₀)|) (clipped to [1e-10, 1e10]); the first 30 % of warmup are
windows of 10 draws, then windows of 80 draws growing by 1.5× until the last 15 % of warmup,
which tune the step size only (a window that would leave too small a successor absorbs the rest,
nutpie's ``is_late`` rule).  At the end of each window the metric is re-estimated from the draws
of that window and the one before it (nutpie's foreground/background estimators; the low-rank
directions only once those are more than d draws, the diagonal part σ before) and dual
averaging restarts from its averaged step size (Blackjax); the last warmup step sets the averaged
step size.  Every branch depends on the step ``t`` alone, so under ``vmap`` over chains the
window-end estimate stays a branch.  The adaptation only chooses which (valid) kernel runs: with
the metric fixed, each gradient kernel leaves its target invariant for any positive-definite A.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import hmc_util

from ppl.errors import ArgumentError

from .._lapack import one_at_a_time
from .adaptation import _SEARCH_MOMENTA, GradParams, StepSizeSearch, search_step_size
from .metric import LowRankMetric

__all__ = ["FisherAdaptation", "FisherState", "fisher_schedule", "fisher_diagonal", "low_rank_metric"]

KINDS = ("fisher_diag", "low_rank")
#: γ's floor, in float eps × the Gram matrix's mean eigenvalue, for an estimate from n ≤ d draws
RANK_DEFICIENT_GAMMA = 1000.0


def fisher_schedule(num_warmup: int, early_window: float = 0.3, step_size_window: float = 0.15,
                    early_size: int = 10, window_size: int = 80, growth: float = 1.5) -> list[tuple[int, int]]:
    """The mass-matrix windows ``[(start, end), ...]`` (``end`` exclusive) of a warmup of
    ``num_warmup`` steps: windows of ``early_size`` over the first ``early_window`` of warmup,
    then of ``window_size`` growing by ``growth``, none in the last ``step_size_window``.  Fewer
    than 20 warmup steps: no window (step size only).

    Example:
        >>> from inference.mcmc.adaptation_fisher import fisher_schedule
        >>> w = fisher_schedule(1000)
        >>> w[0], w[29], w[30], w[-1]
        ((0, 10), (290, 300), (300, 380), (500, 850))
    """
    n = int(num_warmup)
    if n < 20:
        return []
    final_start = n - max(int(round(step_size_window * n)), 1)
    early_end = min(max(int(round(early_window * n)), 1), final_start)
    windows, pos = [], 0
    while pos < early_end:
        size = min(early_size, early_end - pos)
        windows.append((pos, pos + size))
        pos += size
    size = window_size
    while pos < final_start:
        nxt = max(size + 1, int(round(size * growth)))
        if pos + size + nxt > final_start:  # nutpie's is_late: this window absorbs the rest
            windows.append((pos, final_start))
            break
        windows.append((pos, pos + size))
        pos += size
        size = nxt
    return windows


def fisher_diagonal(var_x: jax.Array, var_g: jax.Array) -> jax.Array:
    """The Fisher-divergence diagonal inverse mass matrix sqrt(var(x) / var(∇log p)), clipped
    to [1e-20, 1e20] (nutpie).

    Example:
        >>> from inference.mcmc.adaptation_fisher import fisher_diagonal
        >>> fisher_diagonal(jnp.array([4.0]), jnp.array([0.25])).tolist()   # N(0, 4): exact
        [4.0]
    """
    return jnp.clip(jnp.sqrt(var_x / var_g), 1e-20, 1e20)


def _pd_floor(vals):
    return jnp.finfo(vals.dtype).eps * jnp.maximum(jnp.max(jnp.abs(vals)), jnp.finfo(vals.dtype).tiny)


def _spd_mean_inv(a, b):
    """a # b⁻¹ = b^{-1/2} (b^{1/2} a b^{1/2})^{1/2} b^{-1/2}, the SPD geometric mean of a and
    b⁻¹, from two eigendecompositions (b's eigenvalues floored at eps × their largest, which
    caps its condition number at 1/eps as a floor on b⁻¹'s would).  Before the fourth pass of
    issue 15 this was an explicit b⁻¹ and a # b⁻¹ from three: one eigendecomposition of a d×d
    matrix fewer per estimate, the same value up to rounding."""
    vb, wb = jnp.linalg.eigh(b)
    vb = jnp.maximum(vb, _pd_floor(vb))
    sb = jnp.sqrt(vb)
    m = (wb.T @ a @ wb) * sb[:, None] * sb[None, :]  # b^{1/2} a b^{1/2} in b's eigenbasis
    vm, wm = jnp.linalg.eigh(m)
    vm = jnp.maximum(vm, _pd_floor(vm))
    w = wb @ (wm / sb[:, None])  # b^{-1/2} (in b's basis) times m's eigenvectors
    return (w * jnp.sqrt(vm)[None, :]) @ w.T


def _top_right_singular(X, k):
    """The top-k right singular vectors of X (B×d) as columns, from the eigendecomposition of the
    smaller Gram matrix (on CPU, 15-60× faster than ``jnp.linalg.svd``, measured at 120×100)."""
    B, d = X.shape
    if d <= B:
        _, v = jnp.linalg.eigh(X.T @ X)  # ascending
        return v[:, ::-1][:, :k]
    w, u = jnp.linalg.eigh(X @ X.T)
    w, u = w[::-1][:k], u[:, ::-1][:, :k]
    v = X.T @ u
    return v / jnp.maximum(jnp.linalg.norm(v, axis=0), jnp.finfo(X.dtype).tiny)


def low_rank_metric(draws: jax.Array, grads: jax.Array, weights: jax.Array, max_rank: int = 10,
                    gamma: float = 1e-5, cutoff: float = 2.0) -> LowRankMetric:
    """The low-rank-plus-diagonal Fisher estimate (module docstring) from the rows of ``draws``
    and ``grads`` (n×d; scores or potential gradients: the sign does not matter) whose
    ``weights`` are 1 (0: ignored; the buffer has a static shape).

    Example:
        >>> from inference.mcmc.adaptation_fisher import low_rank_metric
        >>> C = jnp.array([[1.0, 0.95], [0.95, 1.0]])            # a correlated Gaussian
        >>> x = jax.random.normal(jax.random.key(0), (200, 2)) @ jnp.linalg.cholesky(C).T
        >>> A = low_rank_metric(x, x @ jnp.linalg.inv(C), jnp.ones(200), max_rank=2, cutoff=1.0)
        >>> bool(jnp.allclose(A.dense(), C, atol=1e-3))           # exact for a Gaussian
        True
    """
    dtype = draws.dtype
    B, d = draws.shape
    w = weights.astype(dtype)
    n = jnp.maximum(jnp.sum(w), 2.0)
    mx, mg = w @ draws / n, w @ grads / n
    dx, dg = w[:, None] * (draws - mx), w[:, None] * (grads - mg)
    var_x, var_g = jnp.sum(dx**2, 0) / n, jnp.sum(dg**2, 0) / n
    sigma = jnp.clip(jnp.sqrt(jnp.sqrt(var_x / var_g)), 1e-20, 1e20)
    X, G = dx / sigma, dg * sigma
    k = min(int(max_rank), d, B)
    if k >= d:  # the whole space: outside the span of the draws and scores Σ = I, cut off anyway
        Q = jnp.eye(d, dtype=dtype)
    else:
        Q, _ = jnp.linalg.qr(jnp.concatenate([_top_right_singular(X, k), _top_right_singular(G, k)], axis=1))
    q = Q.shape[1]
    px, pg = X @ Q, G @ Q
    eye = jnp.eye(q, dtype=dtype)
    gx, gg = px.T @ px, pg.T @ pg
    # With n ≤ d draws the Gram matrices are singular and, below float64, the rounding noise in
    # their null space (~eps × their scale) is above nutpie's γ: the directions no draw spans got
    # random eigenvalues (a 100-d Gaussian from 20 draws: the whitened condition number 1.1e5 in
    # float32 against 3.5e3 in float64; a 3-d one from 3 draws: 249 against 33).  There γ is
    # raised to RANK_DEFICIENT_GAMMA × eps × the mean eigenvalue (measured: both as float64); with
    # more draws than dimensions γ stays nutpie's (a −0.9999 correlation is a real tiny eigenvalue).
    deficient = n <= d
    floor = lambda m: jnp.where(deficient, jnp.maximum(gamma, RANK_DEFICIENT_GAMMA * jnp.finfo(dtype).eps * jnp.trace(m) / q), gamma)  # noqa: E731
    cx, cg = gx + floor(gx) * eye, gg + floor(gg) * eye
    # Cg⁻¹ through its eigendecomposition: ``jnp.linalg.inv`` of the nearly singular Cg + γI (few
    # draws, float32) gave the directions the draws do not span random eigenvalues instead of 1
    # (measured on diamonds: warmup 152 -> 16 leapfrog steps a draw).  A floor on γ at float32's
    # resolution helped diamonds further (9.3) but cost kilpisjarvi 3.6x (its −0.9999 correlation
    # is a real tiny eigenvalue), so γ stays nutpie's.
    S = _spd_mean_inv(cx, cg)
    vals, vecs = jnp.linalg.eigh((S + S.T) / 2)
    vals = jnp.maximum(vals, _pd_floor(vals))
    r = min(int(max_rank), q)  # (a buffer of B < k rows spans fewer directions)
    order = jnp.argsort(-jnp.abs(jnp.log(vals)))[:r]
    lam, U = vals[order], (Q @ vecs)[:, order]
    keep = (lam < 1.0 / cutoff) | (lam > cutoff)
    lam = jnp.where(keep, lam, 1.0)
    U = jnp.where(keep[None, :], U, 0.0)
    if r < max_rank:  # pad to the static rank
        U = jnp.concatenate([U, jnp.zeros((d, max_rank - r), dtype)], axis=1)
        lam = jnp.concatenate([lam, jnp.ones(max_rank - r, dtype)])
    return LowRankMetric(sigma, U, lam)


class FisherState(eqx.Module):
    """The state of :class:`FisherAdaptation`: step size, NumPyro's dual-averaging state, the
    current inverse mass matrix, the estimators' accumulators (``fisher_diag``: Welford states
    of x and ∇U for the current and the previous window; ``low_rank``: a buffer of draws and
    gradients with each row's step, −1 if empty), the warmup length (static) and, with
    ``step_size_search_first``, the key of that search (else None)."""

    step_size: jax.Array
    ss_state: Any
    inverse_mass_matrix: Any
    acc: Any
    num_warmup: int = eqx.field(static=True)
    key: Any = None
    #: the next step's cap on NUTS's tree depth (``early_max_tree_depth``), or None
    depth_cap: Any = None


def _combine(a, b):
    """Chan's parallel combination of two Welford states (mean, m2, n)."""
    (ma, sa, na), (mb, sb, nb) = a, b
    n = na + nb
    nf = jnp.maximum(n, 1).astype(ma.dtype)
    delta = mb - ma
    return ma + delta * nb / nf, sa + sb + delta**2 * na * nb / nf, n


class FisherAdaptation:
    """Mass-matrix adaptation by Fisher divergence (module docstring): ``kind="fisher_diag"``
    or ``"low_rank"``, as an adaptation object (:mod:`inference.mcmc.protocol`) of the gradient
    kernels: chosen by ``NUTS(adapt_mass_matrix="fisher_diag")`` (or ``"low_rank"``).

    ``value_and_grad`` is the kernel's x ↦ (U(x), ∇U(x)) (for the initial step-size search),
    ``dim`` the length of the flat position.  ``max_rank``, ``gamma``, ``cutoff``: the low-rank
    estimate's (nutpie's defaults).  ``gradient_init``: start from diag(1/|∇U(x₀)|) (else I).
    ``low_rank_min_draws`` (default d + 1): a window estimate from fewer draws keeps only the
    diagonal part σ (measured: with 20 draws of a 51-d or 100-d posterior the directions are
    noise and warmup costs up to 2× more leapfrog steps; a 3-d posterior gains from them at once).
    ``update_every`` (default None: window ends only): re-estimate the metric every that many
    draws of a window from the previous window and the current one so far (nutpie: every draw).
    ``step_size_restart`` (default True): restart dual averaging from its average at window ends
    (Blackjax); False runs one dual averaging through warmup (nutpie).
    ``step_size_search_first`` (default False): at the first metric estimate (the first window
    step with at least 3 draws to estimate from; a static step, so under ``vmap`` it stays a
    branch) search the step size again from ``step_size`` with the new metric at the current
    point (Hoffman & Gelman's doubling/halving to acceptance 0.8, :func:`search_step_size`) and
    restart dual averaging from it: nutpie's ``StepSizeStrategy::init`` at its first metric change.
    ``moved_only`` (default True): the estimators take only the draws that moved (a draw equal to
    the position before it, a rejected proposal, is left out), as nutpie.
    ``estimate_min_rows`` (``low_rank`` only; default 0: nutpie's previous window): each estimate
    takes the rows from the start of the latest earlier window that begins at least that many
    steps before the current window (from step 0 if none does).  ``NUTS`` sets d + 1, so that an
    estimate has more draws than dimensions as soon as warmup has them: with windows of 10 draws
    a 100-d target's estimates were from ≤ 20 draws for the first 300 steps, each draw costing
    150–270 leapfrog steps (measured: 286k → 125k gradients for the same ESS).  The buffer's
    capacity is the largest span an estimate takes.
    ``early_max_tree_depth`` (``low_rank`` only; default None: no cap): NUTS's tree depth is
    capped at this until the step after the first estimate from more than d draws (at most 30 %
    of warmup): before it the metric cannot whiten the target and each draw's tree runs to
    150–270 leapfrog steps on a 100-d Gaussian, while the estimate needs the draws and their
    gradients, not long trajectories between them.  ``NUTS`` sets 4 for ``low_rank`` (measured
    on the 100-d Gaussian: 125k → 68k gradients for the same ESS).  Warmup only: the sampling
    phase runs the kernel's own ``max_tree_depth``.

    Example:
        >>> from inference.mcmc.adaptation_fisher import FisherAdaptation
        >>> U = lambda x: 0.5 * jnp.sum(x**2 / jnp.array([1.0, 100.0]))
        >>> fa = FisherAdaptation(jax.value_and_grad(U), 2, kind="fisher_diag")
        >>> x = jnp.ones(2); s = mcmc.GradState(x, *jax.value_and_grad(U)(x))
        >>> a = fa.init(jax.random.key(0), s, 100)
        >>> fa.params(a).inverse_mass_matrix.tolist()          # 1 / |∇U(x₀)|
        [1.0, 100.0]
    """

    def __init__(self, value_and_grad: Any, dim: int, *, kind: str = "fisher_diag", step_size: float = 1.0,
                 adapt_step_size: bool = True, target_accept_prob: float = 0.8, find_heuristic_step_size: bool = True,
                 max_rank: int = 10, gamma: float = 1e-5, cutoff: float = 2.0, gradient_init: bool = True,
                 low_rank_min_draws: int | None = None, update_every: int | None = None,
                 step_size_restart: bool = True, step_size_search_first: bool = False, moved_only: bool = True,
                 estimate_min_rows: int = 0, early_max_tree_depth: int | None = None):
        if kind not in KINDS:
            raise ArgumentError(f"FisherAdaptation: kind must be one of {KINDS}, got {kind!r}.")
        if not (isinstance(max_rank, (int, np.integer)) and not isinstance(max_rank, bool) and max_rank >= 1):
            raise ArgumentError(f"FisherAdaptation: max_rank must be a positive integer, got {max_rank!r}.")
        if not (isinstance(cutoff, (int, float)) and cutoff >= 1):
            raise ArgumentError(f"FisherAdaptation: cutoff must be a number >= 1, got {cutoff!r}.")
        if not (isinstance(gamma, (int, float)) and gamma > 0):
            raise ArgumentError(f"FisherAdaptation: gamma must be a positive number, got {gamma!r}.")
        self.value_and_grad, self.dim, self.kind = value_and_grad, int(dim), kind
        self.step_size, self.adapt_step_size = step_size, bool(adapt_step_size)
        self.target_accept_prob = target_accept_prob
        self.find_heuristic_step_size = bool(find_heuristic_step_size)
        self.max_rank, self.gamma, self.cutoff = int(max_rank), float(gamma), float(cutoff)
        self.gradient_init = bool(gradient_init)
        self.low_rank_min_draws = self.dim + 1 if low_rank_min_draws is None else int(low_rank_min_draws)
        if update_every is not None and not (isinstance(update_every, (int, np.integer))
                                             and not isinstance(update_every, bool) and update_every >= 1):
            raise ArgumentError(f"FisherAdaptation: update_every must be None or a positive integer, got {update_every!r}.")
        self.update_every = None if update_every is None else int(update_every)
        self.step_size_restart = bool(step_size_restart)
        self.step_size_search_first = bool(step_size_search_first) and self.adapt_step_size
        self.moved_only = bool(moved_only)
        if not (isinstance(estimate_min_rows, (int, np.integer)) and not isinstance(estimate_min_rows, bool)
                and estimate_min_rows >= 0):
            raise ArgumentError(f"FisherAdaptation: estimate_min_rows must be a non-negative integer, got {estimate_min_rows!r}.")
        self.estimate_min_rows = int(estimate_min_rows)
        if early_max_tree_depth is not None and not (isinstance(early_max_tree_depth, (int, np.integer))
                                                     and not isinstance(early_max_tree_depth, bool) and early_max_tree_depth >= 1):
            raise ArgumentError(f"FisherAdaptation: early_max_tree_depth must be None or a positive integer, got {early_max_tree_depth!r}.")
        self.early_max_tree_depth = None if early_max_tree_depth is None or kind != "low_rank" else int(early_max_tree_depth)
        # with k ≥ d/2 directions the metric also carries A as a dense matrix: the leapfrog's
        # velocity is then one d×d product instead of two d×k ones (LowRankMetric.with_matrix)
        self.dense_velocity = kind == "low_rank" and 2 * self.max_rank >= self.dim
        self.ss_init, self.ss_update = hmc_util.dual_averaging()
        self.w_init, self.w_update, _ = hmc_util.welford_covariance(diagonal=True)

    # -- the static schedule -----------------------------------------------------------------------

    @functools.lru_cache(maxsize=None)  # noqa: B019  (a few warmup lengths per adaptation)
    def _plan(self, num_warmup: int):
        """Per step t: in a window, ends one, re-estimates the metric, start of the estimate's
        rows (the previous window's start: nutpie's foreground); buffer capacity."""
        n = max(int(num_warmup), 1)
        windows = fisher_schedule(n)
        in_window, is_end, est_start = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, np.int32)
        estimate = np.zeros(n, bool)
        for i, (a, b) in enumerate(windows):
            in_window[a:b] = True
            is_end[b - 1] = True
            # the estimate's rows start at the latest earlier window that leaves at least
            # ``estimate_min_rows`` steps before this one (0: the previous window, nutpie's)
            starts = [s for s, _ in windows[:i] if a - s >= self.estimate_min_rows]
            est_start[a:b] = (starts[-1] if starts else 0) if i > 0 else a
            if self.update_every is not None:  # nutpie's mass_matrix_update_freq
                estimate[a:b] = (np.arange(a, b) - a + 1) % self.update_every == 0
        estimate |= is_end
        cap = max([b - est_start[b - 1] for _, b in windows] or [1])
        return in_window, is_end, estimate, est_start, int(cap)

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def _first_change(self, num_warmup: int) -> int:
        """The step of the first metric estimate from at least 3 draws (-1: none): where
        ``step_size_search_first`` searches the step size again."""
        in_window, _, estimate, est_start, _ = self._plan(num_warmup)
        steps = np.arange(len(estimate))
        first = np.flatnonzero(in_window & estimate & (steps - est_start + 1 >= 3))
        return int(first[0]) if first.size else -1

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def _depth_lift(self, num_warmup: int) -> int:
        """The first step whose tree depth is not capped by ``early_max_tree_depth``: the step
        after the first estimate from more than d rows, and at most the end of the early windows
        (30 % of warmup: a high-dimensional target is not left capped through warmup)."""
        in_window, _, estimate, est_start, _ = self._plan(num_warmup)
        steps = np.arange(len(estimate))
        first = np.flatnonzero(in_window & estimate & (steps - est_start + 1 > self.dim))
        lift = int(first[0]) + 1 if first.size else int(num_warmup)
        return min(lift, int(round(0.3 * int(num_warmup))))

    def _next_depth_cap(self, t, warm, n):
        """The tree-depth cap of the step after step ``t`` (no cap outside warmup: 30, the
        largest ``max_tree_depth``)."""
        if self.early_max_tree_depth is None:
            return None
        early = warm & (jnp.asarray(t, jnp.int32) + 1 < self._depth_lift(n))
        return jnp.where(early, self.early_max_tree_depth, 30).astype(jnp.int32)

    # -- protocol ----------------------------------------------------------------------------------

    def _initial_metric(self, g, dtype):
        d = self.dim
        if self.gradient_init:
            a = jnp.where(jnp.abs(g) > 0, 1.0 / jnp.abs(g), 1.0)
            a = jnp.clip(jnp.where(jnp.isfinite(a), a, 1.0), 1e-10, 1e10).astype(dtype)
        else:
            a = jnp.ones(d, dtype)
        if self.kind == "fisher_diag":
            return a
        m = LowRankMetric.identity(d, self.max_rank, dtype)
        m = LowRankMetric(jnp.sqrt(a), m.vectors, m.values)
        return m.with_matrix() if self.dense_velocity else m

    def init(self, key: Any, state: Any, num_warmup: int, step_size: Any = None) -> FisherState:
        """The adaptation state at the chain's first state (a ``GradState``); ``step_size``:
        the result of :meth:`initial_search` run by the caller (then not searched again)."""
        x, dtype = state.x, state.x.dtype
        n = max(int(num_warmup), 1)
        A = self._initial_metric(state.grad, dtype)
        searched = step_size is not None
        step_size = jnp.asarray(self.step_size if step_size is None else step_size, dtype)
        key_first = None
        if self.step_size_search_first:  # (only then: the default's init search keeps its key)
            key, key_first = jax.random.split(key)
        if self.find_heuristic_step_size and self.adapt_step_size and not searched:
            step_size = search_step_size(self.value_and_grad, step_size, A, (x, None, state.potential_energy, state.grad), key)
        ss_state = self.ss_init(jnp.log(10.0 * step_size))
        d = self.dim
        if self.kind == "fisher_diag":
            w0 = self.w_init(d)
            acc = (w0, w0, w0, w0, x)  # x current, g current, x previous, g previous; the last position
        else:
            cap = self._plan(n)[4]
            acc = (jnp.zeros((cap, d), dtype), jnp.zeros((cap, d), dtype), jnp.full((cap,), -1, jnp.int32), x)
        acc = jax.tree.map(lambda v: jnp.asarray(v, dtype) if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating) else v, acc)
        cap = None
        if self.early_max_tree_depth is not None:
            cap = jnp.asarray(self.early_max_tree_depth if int(num_warmup) > 0 and self._depth_lift(n) > 0 else 30, jnp.int32)
        return FisherState(step_size, ss_state, A, acc, n, key_first, cap)

    def initial_search(self, key: Any, like: Any) -> "StepSizeSearch | None":
        """The step-size search :meth:`init` (with ``key``) makes at a position shaped like
        ``like``, as a :class:`~inference.mcmc.adaptation.StepSizeSearch` for a caller to run
        (``BoundGradient.init_searching``), or None when there is none; its metric is the
        initial one, a function of the initial gradient."""
        if not (self.find_heuristic_step_size and self.adapt_step_size):
            return None
        if self.step_size_search_first:
            key, _ = jax.random.split(key)
        dtype = like.dtype
        xi = jax.random.normal(key, (_SEARCH_MOMENTA,) + tuple(like.shape), dtype)
        return StepSizeSearch(jnp.asarray(self.step_size, dtype), lambda g: self._initial_metric(g, dtype), xi)

    def params(self, adapt_state: FisherState) -> GradParams:
        """The step size and inverse mass matrix the next step uses."""
        p = GradParams.make(adapt_state.step_size, adapt_state.inverse_mass_matrix)
        if adapt_state.depth_cap is not None:
            p = GradParams(p.step_size, p.inverse_mass_matrix, p.mass_matrix_sqrt, p.mass_matrix_sqrt_inv, adapt_state.depth_cap)
        return p

    def _accumulate(self, acc, t, x, g, write=True):
        """Add the draw ``x`` (gradient ``g``) of step ``t`` to the estimators, if it moved
        (nutpie's filter, unless ``moved_only=False``): a rejected proposal repeats the last
        position, and repeats shrink var(x) towards 0 (measured on kilpisjarvi: the first
        estimate from 3 draws, two of them equal, gave eigenvalues of 3e3 and the step size fell
        to 1e-5 within 10 steps)."""
        moved = jnp.any(x != acc[-1]) | (not self.moved_only)
        if self.kind == "fisher_diag":
            wx, wg, px, pg, _ = acc
            wx, wg = jax.lax.cond(moved, lambda: (self.w_update(x, wx), self.w_update(g, wg)), lambda: (wx, wg))
            return wx, wg, px, pg, x
        # ``write`` (the step is in a window) is decided here, not by a ``cond`` around this:
        # XLA copies a buffer passed through a ``conditional`` (both branches' outputs), i.e.
        # the whole cap × d draws and gradients of every chain at every step; one row written
        # in place (a dynamic_update_slice, the old row where nothing is due) copies nothing.
        X, G, rows, last = acc
        i = t % X.shape[0]
        put = moved & write
        rows = rows.at[i].set(jnp.where(put, t.astype(jnp.int32), rows[i]))
        return (X.at[i].set(jnp.where(put, x, X[i])), G.at[i].set(jnp.where(put, g, G[i])), rows,
                jnp.where(write, x, last))

    def _estimate(self, A, acc, start):
        """The metric estimated from the draws of the previous window and the current one so far
        (A kept where the estimate is not valid)."""
        if self.kind == "fisher_diag":
            wx, wg, px, pg, _ = acc
            mx, sx, nx = _combine(px, wx)
            _, sg, _ = _combine(pg, wg)
            nf = jnp.maximum(nx, 1).astype(sx.dtype)
            new = fisher_diagonal(sx / nf, sg / nf)
            ok = jnp.isfinite(new) & (sx > 0) & (sg > 0) & (nx >= 3)
            return jnp.where(ok, new, A)
        X, G, rows, _ = acc
        weights = (rows >= start).astype(X.dtype)
        # one chain at a time under ``vmap`` over chains: a batch of eighs is the jaxlib 0.10
        # LAPACK deadlock with several CPU devices (:mod:`inference._lapack`; issue 15)
        estimate = one_at_a_time(functools.partial(low_rank_metric, max_rank=self.max_rank, gamma=self.gamma,
                                                   cutoff=self.cutoff))
        new = estimate(X, G, weights)
        if self.low_rank_min_draws > 0:  # fewer draws than dimensions: the diagonal part alone
            few = jnp.sum(weights) < self.low_rank_min_draws
            new = LowRankMetric(new.scale, jnp.where(few, 0.0, new.vectors), jnp.where(few, 1.0, new.values))
        if self.dense_velocity:
            new = new.with_matrix()
        ok = jnp.all(jnp.isfinite(new.scale)) & jnp.all(jnp.isfinite(new.vectors)) & jnp.all(jnp.isfinite(new.values))
        ok = ok & jnp.all(_var_positive(X, weights)) & jnp.all(_var_positive(G, weights)) & (jnp.sum(weights) >= 3)
        return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, A)

    def _switch(self, acc):
        """The accumulators at a window end: the window becomes the previous one (``low_rank``:
        the buffer's rows are selected by step, nothing to do)."""
        if self.kind == "fisher_diag":
            wx, wg, _, _, last = acc
            w0 = self.w_init(self.dim)
            w0 = jax.tree.map(lambda v, o: jnp.asarray(v, jnp.asarray(o).dtype), w0, wx)
            return (w0, w0, wx, wg, last)
        return acc

    def phase_update(self, adapt_state: FisherState, t: Any, state: Any, info: dict, warm: Any) -> FisherState:
        """:meth:`update` where ``warm`` (traced) is true, else ``adapt_state`` unchanged: what
        :meth:`~inference.mcmc.protocol.Adapted.phase_step` calls instead of a ``cond`` around
        :meth:`update`.  ``low_rank``'s buffers are written outside any ``cond`` (a row written
        in place only where due) and only the small part of the state goes through the ``cond``:
        XLA copies every buffer that passes through a ``conditional``, so a ``cond`` around the
        whole update copied the cap × d draws and gradients of every chain at every step.  The
        same values as ``cond(warm, update, identity)``."""
        a = adapt_state
        if self.kind != "low_rank":
            def upd(_):
                b = self.update(a, t, state, info)
                return jax.tree.map(lambda v, o: jnp.asarray(v, o.dtype), b, a)
            return jax.lax.cond(warm, upd, lambda _: a, None)
        cap = self._next_depth_cap(t, warm, a.num_warmup)
        n = a.num_warmup
        t32 = jnp.asarray(t, jnp.int32)
        tt = jnp.minimum(t32, n - 1)
        acc = self._accumulate(a.acc, t32, state.x, state.grad, warm & jnp.asarray(self._plan(n)[0])[tt])
        small = (a.step_size, a.ss_state, a.inverse_mass_matrix, a.key)

        def upd(_):
            b = self.update(FisherState(a.step_size, a.ss_state, a.inverse_mass_matrix, acc, n, a.key), t, state, info,
                            _accumulated=True)
            return jax.tree.map(lambda v, o: jnp.asarray(v, o.dtype), (b.step_size, b.ss_state, b.inverse_mass_matrix, b.key), small)

        step_size, ss_state, A, key = jax.lax.cond(warm, upd, lambda _: small, None)
        return FisherState(step_size, ss_state, A, acc, n, key, cap)

    def update(self, adapt_state: FisherState, t: Any, state: Any, info: dict, *, _accumulated: bool = False) -> FisherState:
        """The adaptation state after warmup step ``t`` (0-based) that reached ``state``
        (``_accumulated``: the draw is already in ``low_rank``'s buffer, see :meth:`phase_update`)."""
        a = adapt_state
        n = a.num_warmup
        cap = self._next_depth_cap(t, True, n) if a.depth_cap is not None else None
        in_window, is_end, estimate, est_start, _ = self._plan(n)
        t = jnp.asarray(t, jnp.int32)
        ss_state, step_size = a.ss_state, a.step_size
        if self.adapt_step_size:
            ss_state = self.ss_update(self.target_accept_prob - info["accept_prob"], ss_state)
            log_eps, log_eps_avg, *_ = ss_state
            step_size = jnp.where(t == n - 1, jnp.exp(log_eps_avg), jnp.exp(log_eps))
            finfo = jnp.finfo(jnp.result_type(step_size))
            step_size = jnp.clip(step_size, finfo.tiny, finfo.max).astype(a.step_size.dtype)
        tt = jnp.minimum(t, n - 1)
        if _accumulated:
            acc = a.acc
        elif self.kind == "low_rank":  # no cond around the buffers (see _accumulate)
            acc = self._accumulate(a.acc, t, state.x, state.grad, jnp.asarray(in_window)[tt])
        else:
            acc = jax.lax.cond(jnp.asarray(in_window)[tt], lambda: self._accumulate(a.acc, t, state.x, state.grad), lambda: a.acc)
        a = FisherState(step_size, ss_state, a.inverse_mass_matrix, acc, n, a.key)

        def reestimate(a):
            A = self._estimate(a.inverse_mass_matrix, a.acc, jnp.asarray(est_start)[tt])
            return FisherState(a.step_size, a.ss_state, A, a.acc, n, a.key)

        def window_end(a):
            step_size, ss_state = a.step_size, a.ss_state
            if self.adapt_step_size and self.step_size_restart:
                step_size = jnp.exp(a.ss_state[1]).astype(a.step_size.dtype)  # restart from the average
                ss_state = self.ss_init(jnp.log(10.0 * step_size))
                ss_state = jax.tree.map(lambda v, o: jnp.asarray(v, jnp.asarray(o).dtype), ss_state, a.ss_state)
            return FisherState(step_size, ss_state, a.inverse_mass_matrix, self._switch(a.acc), n, a.key)

        def search_first(a):  # nutpie: a new step-size search at the first metric change
            z = (state.x, None, state.potential_energy, state.grad)
            step_size = search_step_size(self.value_and_grad, jnp.asarray(self.step_size, a.step_size.dtype),
                                         a.inverse_mass_matrix, z, a.key).astype(a.step_size.dtype)
            ss_state = self.ss_init(jnp.log(10.0 * step_size))
            ss_state = jax.tree.map(lambda v, o: jnp.asarray(v, jnp.asarray(o).dtype), ss_state, a.ss_state)
            return FisherState(step_size, ss_state, a.inverse_mass_matrix, a.acc, n, a.key)

        live = t < n
        a = jax.lax.cond(jnp.asarray(estimate)[tt] & live, reestimate, lambda a: a, a)
        if self.step_size_search_first and self._first_change(n) >= 0:
            a = jax.lax.cond(t == self._first_change(n), search_first, lambda a: a, a)
        a = jax.lax.cond(jnp.asarray(is_end)[tt] & live, window_end, lambda a: a, a)
        return a if cap is None else FisherState(a.step_size, a.ss_state, a.inverse_mass_matrix, a.acc, n, a.key, cap)


def _var_positive(X, weights):
    """Whether each column of the weighted rows of X has a positive spread (a chain that moved)."""
    n = jnp.maximum(jnp.sum(weights), 1.0)
    m = weights @ X / n
    return jnp.sum(weights[:, None] * (X - m) ** 2, 0) > 0
