"""Issue 17 (part A): what a NumPyro user expects of ``ppl`` on the first day.

One section per item of the issue (items 5, reparameterisation, and the corpus are engineer
17b's); every test here failed on the tree before the issue's commits:

1. NumPyro's primitives inside a ppl model and NumPyro's handlers around or inside one are
   refused by name (``ppl.MixedLibraryError``) instead of being ignored;
2. unknown driver keywords are an error with "did you mean", in every family, and
   ``model_kwargs=`` is the unambiguous way in (``inference/_calling.py``);
3. a Python int model argument (a plate size) stays concrete under the trace kernels;
4. NumPy data the model body needs concrete (``np.unique``) is concrete, and new data of the same
   shape compiles nothing where it need not be;
6. ``sample_shape=``: the site is ``d`` expanded to ``sample_shape + batch``, its sample dims left
   of every plate dim, its log density summed over every copy (checked exactly with
   :func:`semantics.enumerate` against the same model written with a plate);
7. init strategies (median, mean, uniform(radius), values for some sites, one start per chain)
   and ``thinning=`` (its law checked exactly against the kernel's transition matrix).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from inference import mcmc
from ppl import dist

# ---------------------------------------------------------------------------------------------
# sample_shape


def test_sample_shape_value_shape_and_log_density_sum():
    @ppl.model
    def m():
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0), sample_shape=(2,))
        with ppl.plate("p", 4):
            x = ppl.sample("x", dist.Normal(0.0, 2.0), sample_shape=(3,))
        ppl.sample("v", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)), sample_shape=5)
        return mu, x

    tr = jax.jit(m.simulate)(jax.random.key(0))  # one compilation, not one per eager op
    # sample dims first, then the plate's dim, then the event
    assert tr.choices["mu"].shape == (2,)
    assert tr.choices["x"].shape == (3, 4)
    assert tr.choices["v"].shape == (5, 2)
    assert not np.allclose(tr.choices["x"][0], tr.choices["x"][1])  # independent copies
    c = {k: np.asarray(v) for k, v in tr.choices.items()}
    want = (
        dist.Normal(0.0, 1.0).log_prob(c["mu"]).sum()
        + dist.Normal(0.0, 2.0).log_prob(c["x"]).sum()
        + dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)).log_prob(c["v"]).sum()
    )
    np.testing.assert_allclose(jax.jit(m.log_density)(c), want, rtol=1e-12)
    np.testing.assert_allclose(tr.log_density, want, rtol=1e-12)


def test_sample_shape_law_equals_a_plate_exactly():
    """The measure of a site with sample_shape=(2,) is that of two independent copies."""

    @ppl.model
    def shaped():
        p = ppl.sample("p", dist.Bernoulli(probs=0.3))
        ppl.sample("x", dist.Bernoulli(probs=0.2 + 0.5 * p), sample_shape=(2,))

    @ppl.model
    def plated():
        p = ppl.sample("p", dist.Bernoulli(probs=0.3))
        with ppl.plate("copies", 2):
            ppl.sample("x", dist.Bernoulli(probs=0.2 + 0.5 * p))

    a, b = semantics.enumerate(shaped), semantics.enumerate(plated)
    assert len(a) == 8
    assert sorted(a.atoms) == sorted(b.atoms)
    for atom in a.atoms:
        assert a.log_weight(atom) == pytest.approx(b.log_weight(atom), abs=1e-12)
    assert a.log_total_mass() == pytest.approx(0.0, abs=1e-12)


def test_sample_shape_observed_and_bad_shape():
    @ppl.model
    def m(y=None):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y, sample_shape=(3,))

    y = np.array([0.1, -0.4, 2.0])
    np.testing.assert_allclose(
        m.log_density({"mu": 0.5}, y=y),
        dist.Normal(0.0, 1.0).log_prob(0.5) + dist.Normal(0.5, 1.0).log_prob(y).sum(),
        rtol=1e-12,
    )
    with pytest.raises(ppl.errors.ModelError, match="'y'.*sample_shape"):
        ppl.model(lambda: ppl.sample("y", dist.Normal(0.0, 1.0), sample_shape="3")).simulate(jax.random.key(0))
    with pytest.raises(ppl.errors.ModelError, match="'y'"):  # data of the wrong shape is named
        m.log_density({"mu": 0.5}, y=np.zeros(4))


def test_sample_shape_under_predictive_and_nuts():
    @ppl.model
    def m(y=None):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0), sample_shape=(2,))
        with ppl.plate("obs", 3):
            ppl.sample("y", dist.Normal(mu.sum(), 1.0), obs=y, sample_shape=(2,))

    pred = ppl.predictive(m, None, key=jax.random.key(0), num_samples=7)
    assert pred["mu"].shape == (7, 2) and pred["y"].shape == (7, 2, 3)
    y = np.full((2, 3), 1.0)
    run = mcmc.sample(jax.random.key(1), mcmc.NUTS(max_tree_depth=3), m, y, num_warmup=100, num_samples=100,
                      progress=False)
    assert run.samples["mu"].shape == (1, 100, 2)
    # NUTS targets the same density (checked exactly above); its draws move and stay finite
    assert np.isfinite(run.samples["mu"]).all() and np.unique(run.samples["mu"][0, :, 0]).size > 50


# ---------------------------------------------------------------------------------------------
# NumPyro's primitives and handlers with a ppl model: refused by name, never ignored

import numpyro  # noqa: E402


@ppl.model
def _normal_mean(y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("d", 3):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


def _run_numpyro_in(body):
    return ppl.model(body).simulate(jax.random.key(0))


@pytest.mark.parametrize(
    "body, prim, equivalent",
    [
        (lambda: numpyro.sample("a", dist.Normal(0.0, 1.0)), "sample", "ppl.sample"),
        (lambda: numpyro.param("w", 1.0), "param", "ppl.param"),
        (lambda: numpyro.plate("p", 3), "plate", "ppl.plate"),
        (lambda: numpyro.deterministic("a", 1.0), "deterministic", "ppl.deterministic"),
        (lambda: numpyro.factor("a", -1.0), "factor", "ppl.factor"),
    ],
)
def test_numpyro_primitive_inside_a_ppl_model_is_refused_by_name(body, prim, equivalent):
    name = "p" if prim == "plate" else ("w" if prim == "param" else "a")
    with pytest.raises(ppl.MixedLibraryError, match=rf"numpyro\.{prim}\('{name}'.*{equivalent}"):
        _run_numpyro_in(body)
    assert numpyro.primitives._PYRO_STACK == []  # nothing left behind on NumPyro's stack


@pytest.mark.parametrize(
    "wrap, kind, equivalent",
    [
        (lambda m: numpyro.handlers.condition(m, {"mu": 1.0}), "condition", "ppl.condition"),
        (lambda m: numpyro.handlers.scale(m, scale=2.0), "scale", "ppl.scale"),
        (lambda m: numpyro.handlers.substitute(m, {"mu": 1.0}), "substitute", "ppl.substitute"),
        (lambda m: numpyro.handlers.block(m), "block", "ppl.block"),
        (lambda m: numpyro.handlers.seed(m, rng_seed=0), "seed", "ppl.seed"),
        (
            lambda m: numpyro.handlers.reparam(
                m, {"mu": numpyro.infer.reparam.LocScaleReparam(0.0)}
            ),
            "reparam",
            "ppl.reparam",
        ),
    ],
)
def test_numpyro_handler_around_a_ppl_model_is_refused_by_name(wrap, kind, equivalent):
    with pytest.raises(ppl.MixedLibraryError, match=rf"'mu'.*handlers\.{kind}.*{equivalent}"):
        ppl.as_model(wrap(_normal_mean)).simulate(jax.random.key(0))
    # as the driver's model too (where the handler used to be silently ignored)
    with pytest.raises(ppl.MixedLibraryError, match=rf"handlers\.{kind}"):
        mcmc.sample(jax.random.key(0), mcmc.NUTS(), wrap(_normal_mean), np.zeros(3),
                    num_warmup=2, num_samples=2, progress=False)
    assert numpyro.primitives._PYRO_STACK == []


def test_numpyro_handler_inside_or_outside_a_ppl_model_is_refused():
    @ppl.model
    def scaled_inside(y=None):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.handlers.scale(scale=10.0):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(ppl.MixedLibraryError, match="'y'.*handlers.scale"):
        scaled_inside.log_density({"mu": 0.0}, y=1.0)
    with numpyro.handlers.seed(rng_seed=0):
        with pytest.raises(ppl.MixedLibraryError, match="'mu'.*handlers.seed"):
            _normal_mean.simulate(jax.random.key(0))
    assert numpyro.primitives._PYRO_STACK == []
    # NumPyro on its own is untouched by ppl (no guard left on its stack)
    def np_model():
        return numpyro.sample("z", dist.Normal(0.0, 1.0))

    tr = numpyro.handlers.trace(numpyro.handlers.seed(np_model, 0)).get_trace()
    assert tr["z"]["type"] == "sample"


# ---------------------------------------------------------------------------------------------
# sampler options vs model keywords (inference/_calling.py), the same rule in every family

import optax  # noqa: E402

from inference import smc, vi  # noqa: E402


@ppl.model
def _kw_model(y, scale=1.0):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    ppl.sample("y", dist.Normal(mu, scale), obs=y)


@ppl.model
def _open_model(y, **extra):
    mu = ppl.sample("mu", dist.Normal(0.0, extra.get("prior_sd", 1.0)))
    ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


_MCMC = dict(num_warmup=3, num_samples=3, progress=False)


def _mcmc(model, *args, **kw):
    return mcmc.sample(jax.random.key(0), mcmc.RWM(), model, *args, **{**_MCMC, **kw})


def _smc(model, *args, **kw):
    return smc.tempered_smc(jax.random.key(0), model, *args, num_particles=8, betas=jnp.array([0.5, 1.0]),
                            num_mcmc_steps=1, **kw)


def _vi(model, *args, **kw):
    guide = ppl.model(lambda *a, **k: ppl.sample("mu", dist.Normal(ppl.param("m", 0.0), 1.0)))
    return vi.fit(jax.random.key(0), vi.elbo(model, guide), optax.adam(0.1), *args, num_steps=2,
                  progress=False, **kw)


@pytest.mark.parametrize("run, typo, option", [
    (_mcmc, "progress_bar", "progress"), (_mcmc, "num_sample", "num_samples"),
    (_smc, "num_particle", "num_particles"), (_vi, "num_step", "num_steps"),
])
@pytest.mark.parametrize("model", [_kw_model, _open_model], ids=["named", "var_kw"])
def test_misspelt_option_is_an_error_with_did_you_mean(run, typo, option, model):
    """Before: the typo went to the model (a TypeError from inside it), or was silently accepted
    by a model with **kwargs."""
    with pytest.raises(ppl.ArgumentError, match=rf"'{typo}'.*'{option}'"):
        run(model, 0.3, **{typo: 5})


@pytest.mark.parametrize("run", [_mcmc, _smc, _vi])
def test_model_keywords_reach_the_model(run):
    seen = []

    @ppl.model
    def m(y, scale=1.0):
        seen.append(scale)
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.sample("y", dist.Normal(mu, scale), obs=y)

    run(m, 0.3, scale=2.0)          # a parameter of the model
    assert set(seen) == {2.0}
    with pytest.raises(ppl.ArgumentError, match="'scael'.*did you mean 'scale'"):
        run(m, 0.3, scael=2.0)


def test_the_keyword_rule_itself():
    """inference._calling.model_keywords, the one rule every driver calls (no compilation)."""
    from inference._calling import model_keywords

    drv = mcmc.sample
    assert model_keywords("f", drv, _kw_model, {"scale": 2.0}) == {"scale": 2.0}
    assert model_keywords("f", drv, _open_model, {"prior_sd": 2.0}) == {"prior_sd": 2.0}
    assert model_keywords("f", drv, _kw_model, {}, {"scale": 2.0}) == {"scale": 2.0}
    assert model_keywords("f", drv, _open_model, {}, {"num_sample": 3}) == {"num_sample": 3}
    assert model_keywords("f", drv, ppl.condition(_kw_model, {"mu": 0.0}), {"scale": 1.0}) == {"scale": 1.0}
    with pytest.raises(ppl.ArgumentError, match="'thining'.*did you mean 'thinning'"):
        model_keywords("f", drv, _kw_model, {"thining": 2})
    with pytest.raises(ppl.ArgumentError, match="misspelt option 'progress'.*model_kwargs"):
        model_keywords("f", drv, _open_model, {"progress_bar": False})
    with pytest.raises(ppl.ArgumentError, match="model_kwargs has 'scael'"):
        model_keywords("f", drv, _kw_model, {}, {"scael": 2.0})
    with pytest.raises(ppl.ArgumentError, match="'scale' was given twice"):
        model_keywords("f", drv, _kw_model, {"scale": 1.0}, {"scale": 2.0})
    with pytest.raises(ppl.ArgumentTypeError, match="model_kwargs must be a dict"):
        model_keywords("f", drv, _kw_model, {}, [("scale", 1.0)])
    # vi.fit: the model and the guide both receive every keyword, so both must take it
    guide = ppl.model(lambda y: ppl.sample("mu", dist.Normal(0.0, 1.0)))
    with pytest.raises(ppl.ArgumentError, match="'scale'.*parameter of model"):
        model_keywords("vi.fit", vi.fit, [_kw_model, guide], {"scale": 2.0})


def test_a_model_keyword_named_like_an_option_goes_in_through_model_kwargs():
    seen = []

    @ppl.model
    def m(y, init=0.0):
        seen.append(init)
        mu = ppl.sample("mu", dist.Normal(init, 1.0))
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(ppl.ArgumentError, match="'init'.*model_kwargs"):
        _mcmc(m, 0.3, init="prior")
    run = _mcmc(m, 0.3, init={"mu": 0.25}, model_kwargs={"init": 7.0})
    assert 7.0 in seen and run.samples["mu"].shape == (1, 3)
    assert set(seen) == {7.0}  # the model only ever saw its own init; the sampler got the dict


# ---------------------------------------------------------------------------------------------
# concrete arguments: Python scalars and NumPy data the model needs concrete, for every kernel

from _compiles import CompileCounter  # noqa: E402


@ppl.model
def _sized(n, y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    z = ppl.sample("z", dist.Bernoulli(probs=0.5))
    with ppl.plate("data", n):
        ppl.sample("y", dist.Normal(mu + z, 1.0), obs=y)


@ppl.model
def _mu_proposal(tr, *args, **kwargs):
    ppl.sample("mu", dist.Normal(tr["mu"], 0.5))


def test_python_int_plate_size_stays_concrete_under_trace_kernels():
    """Before: ``plate 'data': size must be a Python int, got VmapTracer`` with every trace kernel
    (one cycle runs Gibbs, Regenerate and MH, each of which failed alone)."""
    kernel = mcmc.cycle(mcmc.Gibbs("z"), mcmc.Regenerate("mu"), mcmc.MH(_mu_proposal))
    y = jnp.array([0.1, 0.5, 1.2])
    run = mcmc.sample(jax.random.key(0), kernel, _sized, 3, y, num_warmup=2, num_samples=3,
                      num_chains=2, progress=False)
    assert run.samples["mu"].shape == (2, 3)
    y2 = y + 1.0
    with CompileCounter() as c:  # new data of the same shape compiles nothing
        again = mcmc.sample(jax.random.key(0), kernel, _sized, 3, y2, num_warmup=2, num_samples=3,
                            num_chains=2, progress=False)
    assert c.n == 0
    assert not np.array_equal(again.samples["mu"], run.samples["mu"])


@ppl.model
def _by_dept(dept, y=None):
    n_dept = len(np.unique(dept))          # ordinary NumPy on data, as in NumPyro
    n_obs = int(np.max(np.arange(dept.shape[0]))) + 1
    with ppl.plate("dept", n_dept):
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
    with ppl.plate("obs", n_obs):
        ppl.sample("y", dist.Normal(a[dept], 1.0), obs=y)


@pytest.mark.parametrize("kernel", [mcmc.RWM(), mcmc.Regenerate("a")], ids=["RWM", "Regenerate"])
def test_numpy_data_is_concrete_where_the_model_needs_it(kernel):
    """Before: ``TracerArrayConversionError`` from ``np.unique`` on a traced argument."""
    dept = np.array([0, 1, 1, 2, 0])
    y = np.array([0.1, 0.5, 1.2, -0.3, 0.2])
    run = mcmc.sample(jax.random.key(0), kernel, _by_dept, dept, y=y, num_warmup=2, num_samples=3,
                      num_chains=2, progress=False)
    assert run.samples["a"].shape == (2, 3, 3)
    # the same data again compiles nothing (the concrete data is part of the program's key)
    with CompileCounter() as c:
        mcmc.sample(jax.random.key(1), kernel, _by_dept, dept.copy(), y=y.copy(), num_warmup=2,
                    num_samples=3, num_chains=2, progress=False)
    assert c.n == 0


def test_numpy_data_stays_traced_when_the_model_does_not_need_it_concrete():
    @ppl.model
    def m(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("obs", y.shape[0]):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = np.array([0.1, 0.5, 1.2])
    mcmc.sample(jax.random.key(0), mcmc.Regenerate("mu"), m, y, num_warmup=2, num_samples=2, progress=False)
    with CompileCounter() as c:
        mcmc.sample(jax.random.key(0), mcmc.Regenerate("mu"), m, y + 1.0, num_warmup=2, num_samples=2,
                    progress=False)
    assert c.n == 0


# ---------------------------------------------------------------------------------------------
# thinning


@ppl.model
def _two_state():
    z = ppl.sample("z", dist.Bernoulli(probs=0.3))
    ppl.sample("y", dist.Bernoulli(probs=jnp.where(z == 1, 0.9, 0.2)), obs=1)


def _regenerate_z_matrix() -> np.ndarray:
    """The exact transition matrix of Regenerate('z') on _two_state (prior proposal, MH accept)."""
    prior, lik = np.array([0.7, 0.3]), np.array([0.2, 0.9])
    T = np.zeros((2, 2))
    for a in range(2):
        for b in range(2):
            if a != b:
                T[a, b] = prior[b] * min(1.0, lik[b] / lik[a])
        T[a, a] = 1.0 - T[a].sum()
    return T


def _thinned_p1(thinning: int, steps: int) -> float:
    run = mcmc.sample(jax.random.key(5), mcmc.Regenerate("z"), _two_state, num_warmup=0, num_samples=steps,
                      num_chains=4000, init={"z": 0}, thinning=thinning, progress=False)
    assert run.samples["z"].shape == (4000, steps // thinning)
    assert run.info["accepted"].shape == (4000, steps // thinning)
    return float(np.mean(np.asarray(run.samples["z"])[:, 0]))


@pytest.mark.statistical
def test_thinning_keeps_every_kth_step_exactly_in_law():
    """4000 chains from z = 0: the first kept draw with thinning=3 is the state after 3 kernel
    steps, distributed as e0 T^3 (exact binomial test at the declared level).  Twin: an
    off-by-one thinning (the state after 2 steps, e0 T^2) is rejected."""
    from scipy import stats

    from _budget import BUDGET

    alpha = BUDGET.level("17a/thinning_law")
    T = _regenerate_z_matrix()
    e0 = np.array([1.0, 0.0])
    want = (e0 @ np.linalg.matrix_power(T, 3))[1]
    p = _thinned_p1(3, 6)
    assert stats.binomtest(round(p * 4000), 4000, want).pvalue > alpha
    twin = (e0 @ np.linalg.matrix_power(T, 2))[1]
    assert stats.binomtest(round(p * 4000), 4000, twin).pvalue < alpha


def test_thinning_draws_do_not_depend_on_chunking_and_resume_counts_steps():
    # the law test's program (same kernel, model, chains, thinning: compiled once)
    kw = dict(num_warmup=0, num_samples=12, num_chains=4000, init={"z": 0}, thinning=3, progress=False)
    a = mcmc.sample(jax.random.key(0), mcmc.Regenerate("z"), _two_state, **kw)
    b = mcmc.sample(jax.random.key(0), mcmc.Regenerate("z"), _two_state, chunk_size=3, **kw)
    assert a.samples["z"].shape == (4000, 4)
    np.testing.assert_array_equal(a.samples["z"], b.samples["z"])
    np.testing.assert_array_equal(a.info["accept_prob"], b.info["accept_prob"])
    assert a.summary() is not None  # diagnostics read the thinned draws
    r1 = a.resume(jax.random.key(1), num_samples=6)
    r2 = b.resume(jax.random.key(1), num_samples=6)
    assert r1.samples["z"].shape == (4000, 2)
    np.testing.assert_array_equal(r1.samples["z"], r2.samples["z"])
    with pytest.raises(ppl.ArgumentError, match="thinning"):
        mcmc.sample(jax.random.key(0), mcmc.Regenerate("z"), _two_state, num_samples=4, thinning=0, progress=False)


# ---------------------------------------------------------------------------------------------
# init strategies: median, mean, uniform(radius), values for some sites, one start per chain


@ppl.model
def _three_sites(y):
    mu = ppl.sample("mu", dist.Normal(3.0, 1.0))
    ppl.sample("tau", dist.HalfCauchy(1.0))
    s = ppl.sample("s", dist.LogNormal(0.0, 0.5))
    ppl.sample("y", dist.Normal(mu, s), obs=y)


def _start(init, num_chains=3, kernel=None):
    run = mcmc.sample(jax.random.key(0), kernel or mcmc.RWM(), _three_sites, 0.5, num_warmup=0, num_samples=0,
                      num_chains=num_chains, init=init, progress=False)
    if hasattr(run.state, "trace"):
        return {k: np.asarray(v) for k, v in run.state.trace.latent.items()}
    view = ppl.unconstrained(_three_sites, 0.5)
    return {k: np.asarray(v) for k, v in jax.vmap(view.to_constrained)(run.state.x).items()}


def _point(strategy, key=0, **kw):
    view = ppl.unconstrained(_three_sites, 0.5)
    return {k: np.asarray(v) for k, v in view.to_constrained(view.init_point(jax.random.key(key), strategy, **kw)).items()}


def test_init_mean_and_median_are_the_sites_centres():
    mean = _point("mean")
    np.testing.assert_allclose(mean["mu"], 3.0, rtol=1e-6)                      # Normal's mean
    np.testing.assert_allclose(mean["s"], np.exp(0.125), rtol=1e-5)             # LogNormal's mean
    assert np.isfinite(mean["tau"]) and mean["tau"] < 20                        # Cauchy: median instead
    meds = [_point(numpyro.infer.init_to_median(num_samples=15), key=k) for k in range(3)]  # NumPyro's
    assert all(abs(m["mu"] - 3.0) < 1.0 and abs(np.log(m["s"])) < 0.5 for m in meds)
    assert len({float(m["mu"]) for m in meds}) == 3                             # its own draws per key
    u = _point(ppl.init_to_uniform(radius=0.01))
    assert abs(u["mu"]) < 0.01 and abs(np.log(u["s"])) < 0.01
    some = _point("zeros", values={"tau": 7.0})
    np.testing.assert_allclose([some["mu"], some["tau"], some["s"]], [0.0, 7.0, 1.0], rtol=1e-5)


@pytest.mark.slow  # 23 s at load 9, compile-bound
def test_init_through_the_driver_values_for_some_sites_and_one_start_per_chain():
    med = _start("median")
    assert np.all(np.abs(med["mu"] - 3.0) < 1.0) and len(np.unique(med["mu"])) == 3
    per_chain = _start({"mu": np.array([1.0, 2.0, 3.0]), "tau": 7.0})
    np.testing.assert_allclose(per_chain["mu"], [1.0, 2.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(per_chain["tau"], 7.0, rtol=1e-5)
    # the rest by the kernel's default (uniform in (-2, 2) unconstrained), chain by chain
    assert np.all(np.abs(np.log(per_chain["s"])) < 2.0) and len(np.unique(per_chain["s"])) == 3
    traces = _start({"mu": np.array([1.0, 2.0, 3.0])}, kernel=mcmc.Regenerate("mu"))
    np.testing.assert_allclose(traces["mu"], [1.0, 2.0, 3.0])
    with pytest.raises(ppl.ArgumentError, match="'medain'.*did you mean 'median'"):
        _start("medain")
    with pytest.raises(ppl.errors.AddressError, match="'sigma'"):
        ppl.unconstrained(_three_sites, 0.5).init_point(jax.random.key(0), values={"sigma": 1.0})


def test_init_strategy_names_and_numpyro_equivalents():
    from ppl.initialization import as_strategy

    assert ppl.init_to_median(7) == ppl.InitStrategy("median", num_samples=7)
    assert ppl.init_to_mean() == as_strategy("mean") == as_strategy(numpyro.infer.init_to_mean)
    assert ppl.init_to_sample() == as_strategy("prior") == as_strategy(numpyro.infer.init_to_sample)
    assert as_strategy(numpyro.infer.init_to_uniform(radius=0.5)) == ppl.init_to_uniform(0.5)
    assert as_strategy(numpyro.infer.init_to_value(values={"mu": 1.0})) == {"mu": 1.0}
    assert ppl.initialization.as_strategy(None) is None
    with pytest.raises(ppl.ArgumentError, match="radius"):
        ppl.init_to_uniform(radius=0.0)
    with pytest.raises(ppl.ArgumentError, match="init must be"):
        as_strategy(3.0)


def test_smc_drivers_without_model_keywords_name_a_misspelt_option():
    def step(x, y):
        x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
        ppl.sample("y", dist.Normal(x, 0.5), obs=y)
        return x, None

    with pytest.raises(ppl.ArgumentError, match="'ess_treshold'.*did you mean 'ess_threshold'"):
        smc.particle_filter(jax.random.key(0), step, 0.0, jnp.zeros(3), 10, ess_treshold=0.5)
    with pytest.raises(ppl.ArgumentError, match="'num_mcmc_step'.*did you mean 'num_mcmc_steps'"):
        smc.resample_move(jax.random.key(0), _kw_model, [jnp.zeros(2)], 10, num_mcmc_step=2)


# ---------------------------------------------------------------------------------------------
# issue 17 follow-up (engineer f17): NumPy data the model needs concrete, in vi.fit, the SMC
# drivers and mcmc.load (one rule, inference/_run/concrete.py)


@ppl.model
def _dept_guide(dept, y=None):
    n = len(np.unique(dept))                 # the guide, too, reads the data concretely
    with ppl.plate("dept", n):
        ppl.sample("a", dist.Normal(ppl.param("a_loc", jnp.zeros(n)), 0.5))


@pytest.mark.slow  # 31 s at load 9, compile-bound
def test_vi_fit_keeps_numpy_data_concrete_where_the_model_needs_it():
    """Before: ``ModelError: model 'by_dept' uses a traced value in Python control flow``."""
    dept = np.array([0, 1, 1, 2, 0])
    y = np.array([0.1, 0.5, 1.2, -0.3, 0.2])
    obj, opt = vi.elbo(_by_dept, _dept_guide), optax.adam(0.1)
    fit = lambda k, d, yy: vi.fit(jax.random.key(k), obj, opt,  # noqa: E731
                                  d, y=yy, num_steps=60, chunk_size=60, progress=False)
    res = fit(0, dept, y)
    assert res.params["a_loc"].shape == (3,) and np.all(np.isfinite(res.history))
    # the posterior means (conjugate: a_j | y ~ N(sum y_j / (n_j + 1), .)) are approached
    want = np.array([(0.1 + 0.2) / 3, (0.5 + 1.2) / 3, -0.3 / 2])
    assert np.all(np.abs(np.asarray(res.params["a_loc"]) - want) < 0.25)
    with CompileCounter() as c:  # the same data again (a new copy, a new key) compiles nothing
        again = fit(1, dept.copy(), y.copy())
    assert c.n == 0 and not np.array_equal(again.history, res.history)
    # new concrete data of the same shape is a new program that sees the new values
    moved = fit(0, dept, y + 2.0)
    n_j = np.array([2, 2, 1])
    assert np.all(np.abs(np.asarray(moved.params["a_loc"]) - (want + 2.0 * n_j / (n_j + 1))) < 0.25)
    # an automatic guide built from the same NumPy data (the guide does not need it concrete)
    auto = vi.fit(jax.random.key(0), vi.elbo(_by_dept, vi.auto_normal(_by_dept, dept, y=y)), optax.adam(0.1),
                  dept, y=y, num_steps=20, progress=False)
    assert np.all(np.isfinite(auto.history))


def test_vi_fit_new_numpy_data_of_the_same_shape_compiles_nothing_when_not_needed_concrete():
    @ppl.model
    def m(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("obs", y.shape[0]):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    @ppl.model
    def g(y):
        ppl.sample("mu", dist.Normal(ppl.param("loc", 0.0), 0.5))

    obj, opt = vi.elbo(m, g), optax.adam(0.1)  # the same objective and optimizer: the cached program
    y = np.array([0.1, 0.5, 1.2])
    vi.fit(jax.random.key(0), obj, opt, y, num_steps=10, chunk_size=10, progress=False)
    with CompileCounter() as c:
        r = vi.fit(jax.random.key(0), obj, opt, y + 1.0, num_steps=10, chunk_size=10, progress=False)
    assert c.n == 0 and np.all(np.isfinite(r.history))


@pytest.mark.slow  # 53 s at load 9, compile-bound
def test_smc_drivers_run_models_that_need_numpy_data_concrete():
    dept = np.array([0, 1, 1, 2, 0])
    y = np.array([0.1, 0.5, 1.2, -0.3, 0.2])
    res = smc.tempered_smc(jax.random.key(0), _by_dept, dept, y=y, num_particles=32, betas=[0.5, 1.0])
    assert res.samples["a"].shape == (32, 3) and bool(jnp.isfinite(res.log_evidence))
    with CompileCounter() as c:  # one compiled program: the same data again compiles nothing
        again = smc.tempered_smc(jax.random.key(0), _by_dept, dept.copy(), y=y.copy(), num_particles=32,
                                 betas=[0.5, 1.0])
    assert c.n == 0
    np.testing.assert_array_equal(again.samples["a"], res.samples["a"])  # same key, same result

    @ppl.model
    def staged(dept, y):                       # resample_move: the data so far is the last argument
        n_dept = len(np.unique(dept))
        n_obs = int(np.max(np.arange(y.shape[0]))) + 1
        with ppl.plate("dept", n_dept):
            a = ppl.sample("a", dist.Normal(0.0, 1.0))
        with ppl.plate("obs", n_obs):
            ppl.sample("y", dist.Normal(a[dept[:n_obs]], 1.0), obs=y)

    rm = smc.resample_move(jax.random.key(0), staged, [y[:3], y[3:]], 32, args=(dept,))
    assert rm.sample(jax.random.key(2), 4)["a"].shape == (4, 3) and bool(jnp.isfinite(rm.log_evidence))
    with CompileCounter() as c:  # new data of the same shapes compiles nothing
        smc.resample_move(jax.random.key(1), staged, [y[:3] + 1.0, y[3:] - 1.0], 32, args=(dept,))
    assert c.n == 0

    @ppl.model
    def start(dept):                           # particle_filter: an init model on NumPy data
        n = len(np.unique(dept))
        return ppl.sample("x0", dist.Normal(jnp.zeros(n), 1.0).to_event(1))

    def step(x, obs):
        x = ppl.sample("x", dist.Normal(0.9 * x, 1.0).to_event(1))
        ppl.sample("y", dist.Normal(x.sum(), 0.5), obs=obs)
        return x, None

    pf = smc.particle_filter(jax.random.key(0), step, start, jnp.asarray(y), 16, init_args=(dept,))
    assert pf.filter_means.shape == (5, 3) and bool(jnp.isfinite(pf.log_evidence))


def test_tempered_smc_new_data_of_the_same_shape_compiles_nothing():
    """Before: the driver traced the model again at every call (a new closure over the data)."""
    @ppl.model
    def m(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("obs", y.shape[0]):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = np.array([0.1, 0.5, 1.2])
    first = smc.tempered_smc(jax.random.key(0), m, y, num_particles=16, betas=[0.5, 1.0])
    with CompileCounter() as c:
        res = smc.tempered_smc(jax.random.key(0), m, y + 3.0, num_particles=16, betas=[0.5, 1.0])
    assert c.n == 0
    assert float(res.samples["mu"].mean()) > float(first.samples["mu"].mean()) + 1.0  # the new data was used


def test_mcmc_load_of_a_run_whose_model_needed_numpy_data_concrete(tmp_path):
    """A fresh process does not remember that the model needs its NumPy data concrete (here:
    forgotten by hand); before, load compared the traced NumPy arguments with the saved ones and
    refused the same data ("pass the same data")."""
    from inference._run import concrete

    dept = np.array([0, 1, 1, 2, 0])
    y = np.array([0.1, 0.5, 1.2, -0.3, 0.2])
    run = mcmc.sample(jax.random.key(0), mcmc.RWM(), _by_dept, dept, y=y, num_warmup=3, num_samples=4,
                      progress=False)
    path = tmp_path / "run.npz"
    run.save(path)
    concrete._NEEDS_CONCRETE.clear()
    loaded = mcmc.load(path, mcmc.RWM(), _by_dept, dept, y=y)
    np.testing.assert_array_equal(loaded.samples["a"], run.samples["a"])
    a = loaded.resume(jax.random.key(5), num_samples=3, progress=False)
    b = run.resume(jax.random.key(5), num_samples=3, progress=False)
    np.testing.assert_array_equal(a.samples["a"], b.samples["a"])
    # concrete data is part of the program, not of the file's traced arguments: data giving
    # other shapes (four departments) is refused by the saved state's shapes, by name
    with pytest.raises(ppl.ModelError, match="state array 0 is .*\\[1, 3\\] in the file"):
        mcmc.load(path, mcmc.RWM(), _by_dept, np.array([0, 1, 4, 3, 0]), y=y)
