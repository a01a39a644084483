"""Statistical checks for what cannot be enumerated: fixed seeds, a false-alarm budget, SBC.

Rules (DESIGN.md §4, tier 3):

* every statistical test uses a **fixed seed** (hypothesis never chooses seeds);
* the whole suite shares a **false-alarm budget** of ``SUITE_FALSE_ALARM = 1e-6``: every
  statistical decision (a budgeted test, or a fixed threshold at its real level) is declared in
  one registry, a :class:`Budget`, with how many times it is taken, and the union bound over
  all of them must stay under the budget (the suite's registry is ``tests/_budget.py``; it
  prints its total at the end of every run);
* sample sizes come from a **power calculation** (:func:`sample_size`) for the smallest effect
  the test must detect;
* each statistical test has a **planted-bug twin** that must fail.

Helpers: :func:`z_test` (a mean against its expected value), :func:`chi2_test` (counts against
probabilities), :func:`check_mean` / :func:`check_frequencies` (draw with a fixed seed, then
test), and :func:`sbc` (simulation-based calibration: ranks of the truth among posterior draws,
χ² on the ranks).

Example:
    >>> res = z_test(np.random.default_rng(0).normal(size=10_000), expected=0.0)
    >>> res.ok
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import numpy as np
from scipy import stats as _st

from ppl.errors import ArgumentError, ArgumentKeyError, CheckFailed

__all__ = [
    "SUITE_FALSE_ALARM",
    "Budget",
    "Decision",
    "BUDGET",
    "alpha_per_test",
    "sample_size",
    "StatResult",
    "z_test",
    "chi2_test",
    "check_mean",
    "check_frequencies",
    "sbc",
    "sbc_many",
    "SBCResult",
]

#: The probability that the whole suite raises at least one false alarm.
SUITE_FALSE_ALARM = 1e-6

#: Planned number of statistical tests in the suite (an upper bound; Bonferroni divides by it).
SUITE_PLANNED_TESTS = 200


@dataclass(frozen=True)
class Decision:
    """One kind of statistical decision in the suite: its name, per-decision level and count.

    ``alpha`` is the probability that one such decision rejects when the code is right;
    ``count`` how many such decisions the test makes (e.g. one per parameter checked), so the
    decision contributes ``count * alpha`` to the suite's false-alarm probability.  A fixed
    threshold (``|z| < 4``) is declared by its threshold, and its level is what the threshold
    means under the test's null distribution.
    """

    name: str
    alpha: float
    count: int = 1
    kind: str = "budgeted"
    note: str = ""

    @property
    def total(self) -> float:
        """The decision's share of the suite's false-alarm probability (Bonferroni)."""
        return self.alpha * self.count


class Budget:
    """A suite-wide false-alarm budget: a registry of every statistical decision and its level.

    Every statistical decision a test suite makes is *declared* once (:meth:`declare`) with how
    many times it is taken; a test reads its level back with :meth:`level` (an undeclared name
    is an error, so no decision escapes the registry).  :meth:`total` is the union bound on the
    probability that at least one declared decision raises a false alarm; it must stay under
    ``total_budget``.  A budgeted decision's default level is ``total_budget / planned``;
    decisions made against a fixed threshold are declared with ``z=`` (normal two-sided tail)
    or ``alpha=`` and count at their real level.

    ``register(name)`` (the older form) declares a budgeted decision taken once, idempotently,
    and returns its level.

    Example:
        >>> b = Budget(total=1e-6, planned=100)
        >>> b.alpha
        1e-08
        >>> b.declare("nuts/eight_schools_means", count=10).level("nuts/eight_schools_means")
        1e-08
        >>> round(b.declare("posteriordb/means", count=21, z=4.0).total() / 1e-3, 2)
        1.33
        >>> b.ok()
        False
    """

    def __init__(self, total: float = SUITE_FALSE_ALARM, planned: int = SUITE_PLANNED_TESTS):
        self.total_budget = float(total)
        self.planned = int(planned)
        self.decisions: dict[str, Decision] = {}

    # -- declaring -------------------------------------------------------------------------
    def declare(
        self,
        name: str,
        count: int = 1,
        *,
        alpha: float | None = None,
        z: float | None = None,
        two_sided: bool = True,
        note: str = "",
    ) -> "Budget":
        """Declare a decision taken `count` times, at level `alpha` (default: the budgeted
        share) or at the fixed normal threshold ``|z|`` (level ``2·P(Z > z)`` two-sided).
        Returns the budget, so declarations chain."""
        if alpha is not None and z is not None:
            raise ArgumentError(f"Budget.declare({name!r}): give alpha or z, not both (got alpha={alpha!r}, z={z!r})")
        if int(count) < 1:
            raise ArgumentError(f"Budget.declare({name!r}): count must be ≥ 1, got {count!r}")
        if z is not None:
            level, kind = float(_st.norm.sf(float(z)) * (2 if two_sided else 1)), "threshold"
        elif alpha is not None:
            level, kind = float(alpha), "fixed"
        else:
            level, kind = self.alpha, "budgeted"
        if not (0.0 <= level < 1.0):
            raise ArgumentError(f"Budget.declare({name!r}): level must be in [0, 1), got {level!r}")
        d = Decision(name, level, int(count), kind, note)
        old = self.decisions.get(name)
        if old is not None and old != d:
            raise ArgumentError(f"Budget.declare: {name!r} is already declared as {old}, now as {d}")
        self.decisions[name] = d
        return self

    def register(self, name: str) -> float:
        """Declare a budgeted decision taken once (idempotent); return its level."""
        if name not in self.decisions:
            self.declare(name)
        return self.decisions[name].alpha

    # -- reading ---------------------------------------------------------------------------
    def level(self, name: str) -> float:
        """The per-decision level of a declared decision (an undeclared name is an error)."""
        try:
            return self.decisions[name].alpha
        except KeyError:
            raise ArgumentKeyError(
                f"statistical decision {name!r} is not declared in the suite's budget; declare it "
                f"(with its count and level) before using it. Declared: {sorted(self.decisions)[:8]}..."
            ) from None

    @property
    def alpha(self) -> float:
        """The default per-decision level of a budgeted decision: ``total / planned``."""
        return self.total_budget / max(self.planned, 1)

    def total(self) -> float:
        """The union bound on the probability of at least one false alarm among all decisions."""
        return math.fsum(d.total for d in self.decisions.values())

    def ok(self) -> bool:
        """Whether the declared decisions fit the budget."""
        return self.total() <= self.total_budget * (1 + 1e-12)

    def report(self, top: int = 10) -> str:
        """A short table: the total against the budget and the largest shares."""
        ds = sorted(self.decisions.values(), key=lambda d: -d.total)
        n = sum(d.count for d in ds)
        lines = [
            f"false-alarm budget: {self.total():.3g} of {self.total_budget:.3g} "
            f"({len(ds)} declared decisions, {n} tests of them in all)"
        ]
        for d in ds[:top]:
            lines.append(f"  {d.total:.2e}  {d.name} ({d.count} × {d.alpha:.2e}, {d.kind})")
        return "\n".join(lines)


#: A budget for ad-hoc use (the test suite declares its own, complete registry).
BUDGET = Budget()


def alpha_per_test(n_tests: int | None = None, total: float = SUITE_FALSE_ALARM) -> float:
    """Bonferroni: the level of each of `n_tests` tests so that all together false-alarm ≤ `total`.

    Without `n_tests`, the shared :data:`BUDGET`'s level.

    Example:
        >>> alpha_per_test(100)
        1e-08
    """
    if n_tests is None:
        return BUDGET.alpha
    return total / max(int(n_tests), 1)


def sample_size(effect: float, sd: float = 1.0, alpha: float | None = None, power: float = 0.999, two_sided: bool = True) -> int:
    """Samples needed for a z-test of a mean to detect a shift of `effect` (standard deviation `sd`).

    n = ((z_{1−α/2} + z_{power}) · sd / effect)², rounded up: with n draws a bug that moves the
    mean by `effect` is caught with probability ≥ `power` at false-alarm level `alpha`.

    Example:
        >>> sample_size(0.1, sd=1.0, alpha=1e-8, power=0.999)
        7781
    """
    alpha = alpha_per_test() if alpha is None else alpha
    za = _st.norm.isf(alpha / 2 if two_sided else alpha)
    zb = _st.norm.isf(1 - power)
    return int(math.ceil(((za + zb) * sd / effect) ** 2))


@dataclass
class StatResult:
    """A statistical test's outcome: ``ok`` (not rejected), the statistic, p-value and level."""

    test: str
    ok: bool
    statistic: float
    pvalue: float
    alpha: float
    message: str
    details: dict = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return self.ok

    def assert_(self) -> "StatResult":
        """Raise :class:`ppl.errors.CheckFailed` (an AssertionError) with the message when the
        test rejects."""
        if not self.ok:
            raise CheckFailed(f"{self.test}: {self.message}")
        return self


def z_test(samples: Any, expected: float, alpha: float | None = None, sd: float | None = None) -> StatResult:
    """Two-sided test that the mean of i.i.d. `samples` is `expected`.

    With a known standard deviation `sd` this is the z-test (normal quantiles); without, the
    sample's sd is used and the statistic is referred to Student's t with n − 1 degrees of
    freedom (the one-sample t-test).  Rejects when p < alpha.

    Example:
        >>> z_test(np.ones(10) * 3.0 + np.arange(10) % 2, expected=3.5).ok
        True
    """
    alpha = alpha_per_test() if alpha is None else alpha
    x = np.asarray(samples, dtype=np.float64).ravel()
    n = x.size
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        return StatResult("z_test", False, math.inf, 0.0, alpha, f"{bad} of {n} samples are not finite")
    with np.errstate(over="ignore", invalid="ignore"):
        s = float(np.std(x, ddof=1)) if sd is None else float(sd)
        mean = float(np.mean(x))
    if not (math.isfinite(s) and math.isfinite(mean)):
        # the mean or variance overflows: the samples cannot be summarised, so they do not pass
        return StatResult("z_test", False, math.inf, 0.0, alpha, f"the sample mean or variance overflows (n = {n})")
    se = s / math.sqrt(n)
    diff = mean - float(expected)
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.inf)
    # with the sd estimated from the sample the statistic is Student-t with n − 1 degrees of
    # freedom (exact for normal samples; normal quantiles would be too liberal at small n)
    p = float(2 * (_st.norm.sf(abs(z)) if sd is not None else _st.t.sf(abs(z), df=max(n - 1, 1))))
    ok = p >= alpha
    msg = f"mean {np.mean(x):.6g} vs expected {expected:.6g} (z = {z:.3g}, p = {p:.3g}, alpha = {alpha:.3g}, n = {n})"
    return StatResult("z_test", ok, z, p, alpha, msg)


def chi2_test(counts: Sequence[int], probs: Sequence[float], alpha: float | None = None) -> StatResult:
    """Pearson χ² goodness-of-fit of `counts` to `probs` (bins with zero probability must be empty).

    Example:
        >>> chi2_test([50, 50], [0.5, 0.5]).ok
        True
    """
    alpha = alpha_per_test() if alpha is None else alpha
    c = np.asarray(counts, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum()
    n = c.sum()
    zero = p == 0
    if np.any(c[zero] > 0):
        return StatResult("chi2_test", False, math.inf, 0.0, alpha, "counts in a bin of probability zero")
    e = n * p[~zero]
    stat = float(np.sum((c[~zero] - e) ** 2 / e))
    df = int((~zero).sum()) - 1
    pv = float(_st.chi2.sf(stat, df))
    ok = pv >= alpha
    return StatResult("chi2_test", ok, stat, pv, alpha, f"χ² = {stat:.4g} on {df} df, p = {pv:.3g}, alpha = {alpha:.3g}, n = {int(n)}")


def check_mean(sampler: Callable[[Any, int], Any], expected: float, n: int, seed: int = 0, alpha: float | None = None, sd: float | None = None) -> StatResult:
    """Draw ``sampler(jax.random.key(seed), n)`` (n scalar draws) and z-test their mean."""
    x = np.asarray(sampler(jax.random.key(seed), n))
    return z_test(x, expected, alpha, sd)


def check_frequencies(sampler: Callable[[Any, int], Any], probs: Sequence[float], n: int, seed: int = 0, alpha: float | None = None) -> StatResult:
    """Draw n integer outcomes with ``sampler(jax.random.key(seed), n)`` and χ²-test them against `probs`."""
    x = np.asarray(sampler(jax.random.key(seed), n)).astype(np.int64).ravel()
    counts = np.bincount(x, minlength=len(probs))
    if counts.size > len(probs):
        return StatResult("chi2_test", False, math.inf, 0.0, alpha or alpha_per_test(), f"outcome {counts.size - 1} outside 0..{len(probs) - 1}")
    return chi2_test(counts, probs, alpha)


# ---------------------------------------------------------------------------------------------
# simulation-based calibration


@dataclass
class SBCResult(StatResult):
    """SBC outcome; ``details["ranks"]`` holds the ranks (0..L) and ``details["counts"]`` the bins."""


def sbc(
    prior_predictive: Callable[[Any], tuple[Any, Any]],
    posterior_draws: Callable[[Any, Any, int], Any],
    num_simulations: int = 1000,
    num_draws: int = 19,
    seed: int = 0,
    alpha: float | None = None,
    bins: int | None = None,
    vectorized: bool = True,
) -> SBCResult:
    """Simulation-based calibration (Talts et al. 2018) of a posterior sampler for a scalar quantity.

    For i = 1..num_simulations: (θ*, y) = prior_predictive(key_i); L = `num_draws` posterior draws
    θ_1..θ_L = posterior_draws(key_i', y, L); rank_i = #{l : θ_l < θ*}.  When the sampler is
    exact the ranks are uniform on {0, .., L}; a χ² test on the rank histogram (in `bins` equal
    groups, default L + 1) rejects at level `alpha`.  With ``vectorized=True`` both functions are
    ``jax.vmap``-ed over keys (they must be pure JAX functions); otherwise they are looped over.
    (For multi-dimensional parameters run one SBC per scalar summary.)

    Example:
        >>> prior = lambda k: (lambda th: (th, th + jax.random.normal(k)))(jax.random.normal(jax.random.fold_in(k, 1)))
        >>> post = lambda k, y, L: y / 2 + jnp.sqrt(0.5) * jax.random.normal(k, (L,))
        >>> sbc(prior, post, num_simulations=500, seed=0).ok
        True
    """
    return _sbc(prior_predictive, posterior_draws, num_simulations, num_draws, seed, alpha, bins, vectorized, scalar=True)[0]


def sbc_many(
    prior_predictive: Callable[[Any], tuple[Any, Any]],
    posterior_draws: Callable[[Any, Any, int], Any],
    num_simulations: int = 1000,
    num_draws: int = 19,
    seed: int = 0,
    alpha: float | None = None,
    bins: int | None = None,
    vectorized: bool = True,
) -> tuple[SBCResult, ...]:
    """:func:`sbc` of each scalar of a vector quantity, from one run of the sampler.

    ``prior_predictive(key)`` returns (θ*, y) with θ* of shape (P,), and ``posterior_draws(key,
    y, L)`` draws of shape (L, P).  The result's entry p is the :func:`sbc` of component p, with
    the same keys (so equal to ``sbc`` run on ``θ*[p]`` and ``draws[:, p]``), each a decision at
    level ``alpha``; the sampler runs once instead of once per component.

    Example:
        >>> def prior(k):
        ...     th = jax.random.normal(jax.random.fold_in(k, 1), (2,))
        ...     return th, th + jax.random.normal(k, (2,))
        >>> post = lambda k, y, L: y / 2 + jnp.sqrt(0.5) * jax.random.normal(k, (L, 2))
        >>> [r.ok for r in sbc_many(prior, post, num_simulations=500, seed=0)]
        [True, True]
    """
    return _sbc(prior_predictive, posterior_draws, num_simulations, num_draws, seed, alpha, bins, vectorized, scalar=False)


def _sbc(prior_predictive, posterior_draws, num_simulations, num_draws, seed, alpha, bins, vectorized, scalar):
    """:func:`sbc` (``scalar``) and :func:`sbc_many`: the same keys, one run of the sampler."""
    alpha = alpha_per_test() if alpha is None else alpha
    key = jax.random.key(seed)
    k1, k2 = jax.random.split(key)
    ks1 = jax.random.split(k1, num_simulations)
    ks2 = jax.random.split(k2, num_simulations)
    L = int(num_draws)
    if vectorized:
        theta_all, y = jax.vmap(prior_predictive)(ks1)
        draws_all = jax.vmap(lambda k, yy: posterior_draws(k, yy, L))(ks2, y)
        theta_all = np.asarray(theta_all, dtype=np.float64).reshape(num_simulations, -1)
        draws_all = np.asarray(draws_all, dtype=np.float64).reshape(num_simulations, L, -1)
    else:
        th_l, dr_l = [], []
        for i in range(num_simulations):
            th, yy = prior_predictive(ks1[i])
            th_l.append(np.asarray(th, dtype=np.float64).reshape(-1))
            dr_l.append(np.asarray(posterior_draws(ks2[i], yy, L), dtype=np.float64).reshape(L, -1))
        theta_all, draws_all = np.stack(th_l), np.stack(dr_l)
    if scalar and theta_all.shape[1] != 1:
        raise ArgumentError(f"sbc: the quantity must be a scalar (got {theta_all.shape[1]} values per simulation); "
                            "use sbc_many for a vector")
    if draws_all.shape[2] != theta_all.shape[1]:
        raise ArgumentError(f"sbc_many: posterior_draws gives {draws_all.shape[2]} values per draw, "
                            f"prior_predictive {theta_all.shape[1]}")
    nb = bins or (L + 1)
    if (L + 1) % nb:
        raise ArgumentError(f"sbc: bins={nb} must divide num_draws + 1 = {L + 1}")
    out = []
    for p in range(theta_all.shape[1]):
        theta, draws = theta_all[:, p], draws_all[:, :, p]
        ranks = np.sum(draws < theta[:, None], axis=1)
        counts = np.bincount(ranks * nb // (L + 1), minlength=nb)
        r = chi2_test(counts, np.full(nb, 1.0 / nb), alpha)
        out.append(SBCResult("sbc", r.ok, r.statistic, r.pvalue, alpha, "ranks: " + r.message, {"ranks": ranks, "counts": counts}))
    return tuple(out)
