"""Our NUTS trajectory (:func:`inference.mcmc.nuts.nuts_trajectory`) has the law of NumPyro's
``hmc_util.build_tree``, and our window adapter makes NumPyro's ``warmup_adapter`` updates.

NUTS from a *fixed* point and momentum is a finite random choice: the doubling directions and
the multinomial picks select one of finitely many leapfrog points, at some tree depth.  So the
two implementations, run M times each from the same (x, r), give two samples of a discrete law
(outcome = depth, number of steps, the point chosen) that must be equal: a χ² test of
homogeneity, at the suite's per-test false-alarm level (``semantics.stats``), for several
starting points, a diagonal and a dense mass matrix, and a divergent case.  Planted bugs (no
U-turn checks on sub-trees; uniform instead of biased progressive sampling between doublings;
a checkpoint range off by one) must fail the same test with the same seeds.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import hmc_util
from numpyro.infer.hmc_util import IntegratorState, euclidean_kinetic_energy
from scipy import stats as st

from inference.mcmc import nuts
from inference.mcmc.adaptation import WindowAdapter
from scipy import stats as _st

from _budget import BUDGET

M = 20_000
#: the level of each of the four law tests (declared in tests/_budget.py); the twins use the same
ALPHA = BUDGET.level("mcmc/nuts_law")

SDS = jnp.array([1.0, 0.15, 0.5])


def potential(x):
    """A 3-d Gaussian with scales 1, 0.15, 0.5 and one correlation (U-turns at several depths)."""
    z = x / SDS
    return 0.5 * jnp.sum(z**2) + 0.6 * z[0] * z[2]


def wall(x):
    """The Gaussian with a steep exponential wall at x[0] > 0: trajectories running into it
    diverge, the others do not."""
    return potential(x) + jnp.exp(6.0 * x[0])


vg = jax.value_and_grad(potential)

CASES = {
    # name: (x0, r0, inverse mass matrix, step size, max_delta_energy)
    "diag": ([0.3, 0.05, -0.2], [1.0, 0.5, -0.8], [1.0, 1.0, 1.0], 0.09, 1000.0),
    "diag-2": ([-1.2, 0.1, 0.4], [-0.3, 2.0, 0.6], [1.0, 0.02, 0.3], 0.4, 1000.0),
    "dense": ([0.3, 0.05, -0.2], [0.4, -0.5, 1.1], [[1.0, 0.0, 0.3], [0.0, 0.03, 0.0], [0.3, 0.0, 0.3]], 0.3, 1000.0),
    "divergent": ([-0.6, 0.05, -0.2], [2.0, 0.5, -0.8], [1.0, 1.0, 1.0], 0.15, 0.1),
}


#: the cases' potentials (default: ``potential``)
CASE_POTENTIAL = {"divergent": wall}


def ours(x0, r0, imm, eps, max_de, keys, U=potential):
    vg = jax.value_and_grad(U)
    x0, r0, imm = jnp.asarray(x0), jnp.asarray(r0), jnp.asarray(imm)
    pe, g = vg(x0)

    def one(k):
        t = nuts.nuts_trajectory(vg, x0, pe, g, r0, imm, eps, k, max_tree_depth=10, max_delta_energy=max_de)
        return t.x, t.depth, t.num_steps, t.diverging

    return jax.jit(jax.vmap(one))(keys)


def numpyro_(x0, r0, imm, eps, max_de, keys, U=potential):
    x0, r0, imm = jnp.asarray(x0), jnp.asarray(r0), jnp.asarray(imm)
    pe, g = jax.value_and_grad(U)(x0)
    _, update = hmc_util.velocity_verlet(U, euclidean_kinetic_energy)

    def one(k):
        t = hmc_util.build_tree(update, euclidean_kinetic_energy, IntegratorState(x0, r0, pe, g), imm, eps, k,
                                max_delta_energy=max_de, max_tree_depth=10)
        return t.z_proposal, t.depth, t.num_proposals, t.diverging

    return jax.jit(jax.vmap(one))(keys)


def outcomes(out) -> list[tuple]:
    x, depth, steps, div = (np.asarray(a) for a in out)
    pts = np.round(x, 3)
    return [(int(d), int(s), bool(v)) + tuple(p) for d, s, v, p in zip(depth, steps, div, pts)]


def homogeneity_pvalue(a: list, b: list) -> tuple[float, int]:
    """χ² test that two samples come from one discrete law (categories seen fewer than 10 times
    in both samples together are pooled)."""
    cats = {}
    for o in a + b:
        cats[o] = cats.get(o, 0) + 1
    keep = {c for c, n in cats.items() if n >= 10}
    idx = {c: i for i, c in enumerate(sorted(keep, key=repr))}
    other = len(idx)
    table = np.zeros((2, other + 1))
    for row, sample in enumerate((a, b)):
        for o in sample:
            table[row, idx.get(o, other)] += 1
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:
        return 1.0, table.shape[1]
    return float(st.chi2_contingency(table)[1]), table.shape[1]


@functools.cache
def numpyro_outcomes(name: str) -> tuple:
    """NumPyro's M outcomes for case ``name`` (key 7's second half): computed once per process and
    shared by the case's law test and the planted bugs run on it (a twin patches our NUTS only,
    so NumPyro's sample is the same draw in each; 5 of the file's 9 NumPyro runs were repeats)."""
    x0, r0, imm, eps, max_de = CASES[name]
    _, k2 = jax.random.split(jax.random.key(7))
    U = CASE_POTENTIAL.get(name, potential)
    return tuple(outcomes(numpyro_(x0, r0, imm, eps, max_de, jax.random.split(k2, M), U)))


def law_pvalue(name: str) -> tuple[float, int]:
    x0, r0, imm, eps, max_de = CASES[name]
    k1, _ = jax.random.split(jax.random.key(7))
    U = CASE_POTENTIAL.get(name, potential)
    a = outcomes(ours(x0, r0, imm, eps, max_de, jax.random.split(k1, M), U))
    return homogeneity_pvalue(a, list(numpyro_outcomes(name)))


@pytest.mark.statistical
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_nuts_trajectory_has_numpyros_law(name):
    p, ncat = law_pvalue(name)
    assert ncat >= 4, f"{name}: the case is too easy ({ncat} outcomes)"
    assert p > ALPHA, f"{name}: our NUTS and NumPyro's build_tree differ in law (p = {p:.2e}, {ncat} outcomes)"


@pytest.mark.exact
def test_checkpoint_range_is_the_subtrees_ending_at_each_leaf():
    """For leaf n of a doubling, the sub-trees ending at n are those of sizes 2, 4, ... 2^t where
    2^t divides n + 1; their first leaves are checkpoints popcount(n >> 1) − t + 1 .. popcount(n >> 1)
    (checkpoint j stores the momentum at the first leaf of the j-th pending sub-tree).  Brute force
    over the leaves of a depth-6 doubling, independent of the bit tricks."""
    for n in range(64):
        lo, hi = (int(v) for v in nuts._checkpoint_range(jnp.asarray(n, jnp.int32)))
        sizes = [2**k for k in range(1, 7) if (n + 1) % 2**k == 0]
        # the checkpoint of a sub-tree starting at leaf m is the number of stored leaves before
        # m among the even leaves still pending: popcount(m >> 1) (m even)
        ck = sorted(bin((n + 1 - size) >> 1).count("1") for size in sizes)
        if sizes:
            assert (lo, hi) == (min(ck), max(ck)), (n, lo, hi, ck)
        else:
            assert lo > hi, (n, lo, hi)


@pytest.mark.statistical
def test_divergent_case_diverges_sometimes():
    x0, r0, imm, eps, max_de = CASES["divergent"]
    div = np.asarray(ours(x0, r0, imm, eps, max_de, jax.random.split(jax.random.key(1), 2000), wall)[3])
    # the case is informative: neither never nor always divergent.  (Its rate is about 0.81;
    # Hoeffding bounds a false alarm by exp(-2 n 0.14^2) = 1e-34, within the declared level.)
    assert np.exp(-2 * 2000 * 0.14**2) <= BUDGET.level("mcmc/nuts_divergent_sanity")
    assert 0.05 < div.mean() < 0.95, div.mean()


# -- planted bugs ----------------------------------------------------------------------------------


def _no_subtree_checks(n):
    return jnp.ones_like(n), jnp.zeros_like(n)  # an empty range [1, 0]


def _uniform_merge(w_new, w_old):
    return jax.nn.sigmoid(w_new - w_old)


def _heavy_merge(w_new, w_old):
    """min(1, 1.5 W_new / W_old): biased progressive sampling with a wrong weight (not valid)."""
    return jnp.minimum(1.0, 1.5 * jnp.exp(w_new - w_old))


def _range_short_by_one(n):
    """The checkpoint range missing its last sub-tree (the largest one ending at the leaf)."""
    lo, hi = _orig_range(n)
    return lo, hi - 1


_orig_range = nuts._checkpoint_range


def _range_off_by_one(n):
    lo, hi = _orig_range(n)
    return lo + 1, hi

TWINS = {
    "no sub-tree U-turn checks": ("_checkpoint_range", _no_subtree_checks, "diag"),
    "uniform merge": ("_merge_probability", _uniform_merge, "diag"),
    "checkpoint range off by one": ("_checkpoint_range", _range_off_by_one, "diag"),
    "checkpoint range short by one": ("_checkpoint_range", _range_short_by_one, "diag"),
    "merge weight times 1.5": ("_merge_probability", _heavy_merge, "divergent"),  # (rarely < 1 in "diag")
}


@pytest.mark.statistical
@pytest.mark.slow
@pytest.mark.parametrize("bug", list(TWINS))
def test_planted_bug_changes_the_law(bug, monkeypatch):
    attr, fake, case = TWINS[bug]
    monkeypatch.setattr(nuts, attr, fake)
    p, _ = law_pvalue(case)
    assert p < ALPHA, f"planted bug {bug!r} not detected (p = {p:.2e})"


# -- the window adapter ------------------------------------------------------------------------------


@pytest.mark.exact
@pytest.mark.parametrize("dense", [False, True])
def test_window_adapter_makes_numpyros_updates(dense):
    """Same inputs, same keys: our adapter's states equal NumPyro's at every step of a 200-step
    warmup (Stan's windows 75 + 25 + 50 + ... + 50), step-size search at window ends included."""
    n = 200
    find = lambda *a: hmc_util.find_reasonable_step_size(  # noqa: E731
        potential, euclidean_kinetic_energy, lambda z, mm_sqrt, k: (mm_sqrt * jax.random.normal(k, z.shape) if mm_sqrt.ndim == 1 else mm_sqrt @ jax.random.normal(k, z.shape)), *a)
    kw = dict(find_reasonable_step_size=find, dense_mass=dense, target_accept_prob=0.8)
    init_np, update_np = hmc_util.warmup_adapter(n, **kw)
    ours_adapter = WindowAdapter(n, **kw)
    init_us, update_us = ours_adapter.init, ours_adapter.update
    x0 = jnp.array([0.3, 0.05, -0.2])
    z0 = IntegratorState(x0, None, *vg(x0))
    s_np = init_np(z0, jax.random.key(3), 1.0, mass_matrix_size=3)
    s_us = init_us(z0, jax.random.key(3), 1.0, mass_matrix_size=3)
    xs = jax.random.normal(jax.random.key(4), (n, 3)) * SDS
    accs = jax.random.uniform(jax.random.key(5), (n,))

    def run(update, s):
        def body(s, inp):
            t, x, a = inp
            s = update(t, a, IntegratorState(x, None, *vg(x)), s)
            return s, (s.step_size, s.inverse_mass_matrix)

        return jax.lax.scan(body, s, (jnp.arange(n), xs, accs))[1]

    ss_np, imm_np = jax.jit(lambda s: run(update_np, s))(s_np)
    ss_us, imm_us = jax.jit(lambda s: run(update_us, s))(s_us)
    np.testing.assert_allclose(ss_us, ss_np, rtol=1e-5)
    np.testing.assert_allclose(imm_us, imm_np, rtol=1e-5)
    assert len(np.unique(np.asarray(ss_us))) > 50  # the step size did adapt
    assert not np.allclose(imm_us[-1], imm_us[0])  # the mass matrix did adapt


# -- the step-size search ------------------------------------------------------------------------------


def reference_search(U, step_size, A, x, momenta):
    """Hoffman & Gelman (2014) Algorithm 4 as Stan runs it, in NumPy (float64): a fresh momentum
    r ~ N(0, A⁻¹) per trial; double while the one-step acceptance exp(−ΔH) exceeds 0.8, halve
    while it does not, stop at the first change of direction; the last step size tried."""
    A = np.asarray(A, float)
    grad = jax.grad(lambda z: U(z))
    x = np.asarray(x, float)
    eps, last, direction, i = float(step_size), 0, 0, 0
    while last == 0 or direction == last:
        eps = eps * 2.0 if direction == 1 else eps * 0.5 if direction == -1 else eps
        r = momenta[i % len(momenta)]
        g = np.asarray(grad(jnp.asarray(x)), float)
        r_half = r - 0.5 * eps * g
        x1 = x + eps * (A @ r_half if A.ndim == 2 else A * r_half)
        r1 = r_half - 0.5 * eps * np.asarray(grad(jnp.asarray(x1)), float)
        kin = (lambda r: 0.5 * r @ (A @ r)) if A.ndim == 2 else (lambda r: 0.5 * np.sum(A * r * r))
        delta = (float(U(jnp.asarray(x1))) + kin(r1)) - (float(U(jnp.asarray(x))) + kin(r))
        last, direction, i = direction, (1 if np.log(0.8) < -delta else -1), i + 1
    return eps


@pytest.mark.exact
@pytest.mark.parametrize("A,start", [([1.0, 1.0, 1.0], 1.0), ([2.0, 0.01, 0.3], 0.001), ([[1.0, 0.0, 0.3], [0.0, 0.03, 0.0], [0.3, 0.0, 0.3]], 1.0)])
def test_step_size_search_is_algorithm_4(A, start):
    from inference.mcmc.adaptation import _search_with_momenta

    A = jnp.asarray(A)
    x = jnp.array([0.3, 0.05, -0.2])
    xi = jax.random.normal(jax.random.key(9), (16, 3))
    # r ~ N(0, A⁻¹): ξ / sqrt(A) (diagonal) or L⁻ᵀ ξ with A = L Lᵀ
    if A.ndim == 1:
        momenta = np.asarray(xi) / np.sqrt(np.asarray(A))
    else:
        L = np.linalg.cholesky(np.asarray(A, float))
        momenta = np.linalg.solve(L.T, np.asarray(xi, float).T).T
    ours_eps = float(_search_with_momenta(vg, start, A, (x, None, *vg(x)), xi))
    ref = reference_search(potential, start, A, x, momenta)
    assert ours_eps == pytest.approx(ref, rel=1e-6)
    assert ours_eps != start  # the search moved





@pytest.mark.exact
def test_average_restart_restarts_dual_averaging_at_its_average():
    """``restart="average"`` (the kernels' default): at each middle window's end the step size
    becomes the dual-averaging average (of the update at that step) and dual averaging restarts
    there (its prox centre mu = log(10 ε)); the mass matrix is the same as with a search."""
    n = 200
    avg, srch = WindowAdapter(n, restart="average"), WindowAdapter(n, restart="search")
    x0 = jnp.array([0.3, 0.05, -0.2])
    z0 = IntegratorState(x0, None, *vg(x0))
    xs = jax.random.normal(jax.random.key(4), (n, 3)) * SDS
    accs = 0.6 + 0.4 * jax.random.uniform(jax.random.key(5), (n,))  # around the 0.8 target
    _, da_update = hmc_util.dual_averaging()

    def run(a, s):
        def body(s, inp):
            t, x, acc = inp
            s2 = a.update(t, acc, IntegratorState(x, None, *vg(x)), s)
            da_avg = jnp.exp(da_update(0.8 - acc, s.ss_state)[1])  # the average after step t's update
            return s2, (da_avg, s2.step_size, s2.ss_state[4], s2.inverse_mass_matrix)

        return jax.lax.scan(body, s, (jnp.arange(n), xs, accs))[1]

    da_avg, ss, mu, imm = jax.jit(lambda s: run(avg, s))(avg.init(z0, jax.random.key(3), 0.5, mass_matrix_size=3, search=False))
    ends = [w.end for w in hmc_util.build_adaptation_schedule(n)][1:-1]
    assert len(ends) >= 2
    for e in ends:
        assert float(ss[e]) == pytest.approx(float(da_avg[e]), rel=1e-5)
        assert float(mu[e]) == pytest.approx(float(np.log(10.0 * ss[e])), rel=1e-5)
        assert abs(float(np.log(ss[e] / ss[e - 1]))) > 1e-3  # a restart happened
    imm_s = jax.jit(lambda s: run(srch, s))(srch.init(z0, jax.random.key(3), 0.5, mass_matrix_size=3, search=False))[3]
    np.testing.assert_allclose(imm, imm_s, rtol=1e-6)


@pytest.mark.parametrize("kernel,arg", [
    ("NUTS(max_tree_depth=0)", "max_tree_depth"), ("NUTS(max_tree_depth=2.5)", "max_tree_depth"),
    ("NUTS(max_delta_energy=-1.0)", "max_delta_energy"), ("NUTS(step_size=0.0)", "step_size"),
    ("NUTS(target_accept_prob=1.2)", "target_accept_prob"), ("NUTS(step_size_restart='stan')", "step_size_restart"),
    ("HMC(num_steps=0)", "num_steps"), ("MALA(step_size=float('nan'))", "step_size"),
])
def test_bad_kernel_options_name_the_option(kernel, arg):
    from inference import mcmc

    with pytest.raises(ValueError, match=f"{kernel.split('(')[0]}: {arg} must be .*, got"):
        eval(kernel, {"NUTS": mcmc.NUTS, "HMC": mcmc.HMC, "MALA": mcmc.MALA})


@pytest.mark.statistical
@pytest.mark.slow
def test_stan_restart_runs_end_to_end():
    """``step_size_restart="search"`` (Stan's window-end search) samples a conjugate model right:
    the posterior mean of a Normal mean within 5 Monte Carlo standard errors."""
    import ppl
    from inference import mcmc
    from ppl import dist

    y = jnp.array([0.8, 1.9, 0.4, 1.3, 0.2, 1.1])

    @ppl.model
    def normal_mean(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("data", y.shape[0]):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    run = mcmc.sample(jax.random.key(0), mcmc.NUTS(step_size_restart="search"), normal_mean, y,
                      num_warmup=300, num_samples=1000, num_chains=2, progress=False)
    mu = np.asarray(run.samples["mu"])
    post_var = 1.0 / (1.0 + len(y))
    ess = float(np.min(mcmc.ess_bulk(mu[..., None])))
    z = (mu.mean() - post_var * float(y.sum())) / np.sqrt(post_var / ess)
    # a z-score with the sd from an ESS estimate: budgeted level, normal quantile
    assert abs(z) < _st.norm.isf(BUDGET.level("mcmc/nuts_stan_restart") / 2), z
