"""Issue 14: gradient samplers on the marginalised model (``ppl.unconstrained`` sums finite
discrete latent sites out), its errors, and the scan-HMM against the hand-written forward
algorithm on posteriordb's ``hmm_example`` data."""

from __future__ import annotations

import json
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from inference import mcmc
from ppl import dist

from _data import data_path


@ppl.model
def mix(y):
    w = ppl.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = ppl.sample("mu", dist.Normal(0, 10).expand([3]).to_event(1))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Categorical(w), infer={"enumerate": "parallel"})
        ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y)


@ppl.model
def mix_by_hand(y):
    w = ppl.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = ppl.sample("mu", dist.Normal(0, 10).expand([3]).to_event(1))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(mu, 1.0)), obs=y)


Y = jnp.array([-4.1, -5.2, 0.3, 0.1, 4.8, 5.5, 5.1, -0.4])


@pytest.mark.slow  # 16 s at load 10
def test_unconstrained_view_of_a_mixture_is_the_hand_marginalised_view():
    v, h = ppl.unconstrained(mix, Y), ppl.unconstrained(mix_by_hand, Y)
    assert v.discrete == ("z",) and v.sites == h.sites
    assert ppl.enum.enumerable_sites(mix, {"w": jnp.ones(3) / 3, "mu": jnp.zeros(3)}, Y) == ["z"]
    fv, fh = jax.jit(jax.value_and_grad(v.log_density)), jax.jit(jax.value_and_grad(h.log_density))
    for i in range(2):
        x = jax.random.normal(jax.random.key(i), (v.dim,))
        (lv, gv), (lh, gh) = fv(x), fh(x)
        assert abs(float(lv) - float(lh)) < 1e-10
        assert float(jnp.max(jnp.abs(gv - gh))) < 1e-9
    assert set(v.to_constrained(x)) == {"w", "mu"}


@pytest.mark.slow  # 17 s at load 10
def test_nuts_runs_the_mixture_as_written_and_recovers_z():
    run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), mix, Y, num_warmup=100, num_samples=60, progress=False)
    assert set(run.samples) == {"w", "mu"}
    z = run.discrete(jax.random.key(1))["z"]
    assert z.shape == (1, 60, 8)
    # points in the same cluster share their label in (almost) every draw: a label-switching-free check
    same = (z[..., 0] == z[..., 1]).mean()
    diff = (z[..., 0] == z[..., 4]).mean()
    assert same > 0.9 and diff < 0.1
    zmap = run.discrete(jax.random.key(1), temperature=0)["z"]
    assert zmap.shape == (1, 60, 8)


def test_infinite_support_discrete_latent_is_refused_naming_the_site_and_the_remedies():
    @ppl.model
    def m():
        n = ppl.sample("n", dist.Poisson(3.0))
        ppl.sample("y", dist.Normal(n, 1.0), obs=2.0)

    with pytest.raises(ppl.ModelError, match=r"'n'.*infinite support.*truncate.*Gibbs.*by hand"):
        ppl.unconstrained(m)
    with pytest.raises(ppl.ModelError, match="'n'"):
        mcmc.sample(jax.random.key(0), mcmc.NUTS(), m, num_warmup=2, num_samples=2, progress=False)


@pytest.mark.slow  # 18 s at load 10
def test_memory_guard_names_the_sites_and_the_size_before_allocating():
    @ppl.model
    def joint():
        zs = [ppl.sample(f"z{i}", dist.Categorical(probs=jnp.ones(10) / 10)) for i in range(6)]
        ppl.sample("y", dist.Normal(sum(zs), 1.0), obs=3.0)

    with pytest.raises(ppl.ModelError, match=r"z0.*z5.*1,000,000 elements"):
        ppl.marginal_log_density(joint, {}, max_elements=10**5)


def test_bad_infer_key_and_unplated_batch_are_refused():
    @ppl.model
    def a():
        ppl.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "flat"})

    @ppl.model
    def b():
        ppl.sample("z", dist.Bernoulli(0.5).expand([3]))

    with pytest.raises(ppl.ModelError, match="'z'.*'flat'"):
        ppl.marginal_log_density(a, {})
    with pytest.raises(ppl.ModelError, match="'z'.*not a plate"):
        ppl.marginal_log_density(b, {})


# ---------------------------------------------------------------------------------------------
# posteriordb hmm_example: written with a discrete state per step in ppl.scan


def _hmm_data():
    d = json.loads(data_path("posteriordb", "hmm_example-hmm_example", "data.json").read_text())
    return int(d["K"]), jnp.asarray(d["y"])


@ppl.model
def hmm_scan(K, y):
    theta = ppl.sample("theta", dist.Dirichlet(jnp.ones(K)).expand([K]).to_event(1))
    mu = ppl.sample("mu", dist.Normal(jnp.array([3.0, 10.0]), 1.0).to_event(1))

    def step(z_prev, y_t):
        z = ppl.sample("z", dist.Categorical(probs=theta[z_prev]))
        ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y_t)
        return z, None

    # Stan's hmm_example starts from a uniform state: a first transition from state 0 is not it,
    # so draw z_0 ~ uniform outside the scan and scan over the rest
    z0 = ppl.sample("z0", dist.Categorical(probs=jnp.ones(K) / K))
    ppl.sample("y0", dist.Normal(mu[z0], 1.0), obs=y[0])
    ppl.scan(step, z0, xs=y[1:], name="hmm")


@ppl.model
def hmm_forward(K, y):
    theta = ppl.sample("theta", dist.Dirichlet(jnp.ones(K)).expand([K]).to_event(1))
    mu = ppl.sample("mu", dist.Normal(jnp.array([3.0, 10.0]), 1.0).to_event(1))
    emit = dist.Normal(mu, 1.0).log_prob(y[:, None])  # (N, K)

    def fwd(la, e):
        la = jax.nn.logsumexp(la[:, None] + jnp.log(theta), axis=0) + e
        return la, None

    la, _ = jax.lax.scan(fwd, -jnp.log(K) + emit[0], emit[1:])
    ppl.factor("lik", jax.nn.logsumexp(la))


@pytest.mark.slow  # 31 s at load 10
def test_scan_hmm_marginal_equals_the_hand_written_forward_algorithm_on_hmm_example():
    K, y = _hmm_data()
    v, h = ppl.unconstrained(hmm_scan, K, y), ppl.unconstrained(hmm_forward, K, y)
    assert set(v.discrete) == {"z0", "hmm/z"} and v.sites == h.sites
    lv, lh = jax.jit(v.log_density), jax.jit(h.log_density)
    for i in range(2):
        x = jax.random.normal(jax.random.key(i), (v.dim,))
        assert abs(float(lv(x)) - float(lh(x))) < 1e-8 * abs(float(lh(x)))
    g = jax.jit(jax.grad(v.log_density))(x)
    assert float(jnp.max(jnp.abs(g - jax.grad(h.log_density)(x)))) < 1e-6


def test_scan_hmm_states_by_viterbi_follow_the_data():
    K, y = _hmm_data()
    values = {"theta": jnp.array([[0.9, 0.1], [0.1, 0.9]]), "mu": jnp.array([3.0, 9.0])}
    zs = jax.jit(lambda v: ppl.infer_discrete(hmm_scan, v, K, y, temperature=0))(values)
    z = np.concatenate([np.asarray(zs["z0"])[None], np.asarray(zs["hmm/z"])])
    assert z.shape == (100,)
    # with well separated means the mode labels each point by its nearest mean
    assert (z == (np.asarray(y) > 6.0)).mean() > 0.95


@ppl.model
def per_point(y):
    w = ppl.sample("w", dist.Beta(2.0, 2.0))
    with ppl.plate("data", y.shape[0]):
        u = ppl.sample("u", dist.Normal(0.0, 1.0))
        z = ppl.sample("z", dist.Bernoulli(w))
        ppl.sample("y", dist.Normal(u + 2.0 * z, 0.5), obs=y)


def test_the_summed_out_check_follows_the_data_shape_of_each_run():
    # one compiled program serves both sizes (traced again per shape); the driver's check of
    # the summed-out sites must use the view of each size (it kept the first size's: the
    # second run's check unravelled a point of the first size's dimension)
    kw = dict(num_warmup=3, num_samples=3, num_chains=1, progress=False)
    for n in (4, 6):
        run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), per_point, jnp.linspace(-1.0, 2.0, n), **kw)
        assert run.samples["u"].shape == (1, 3, n)
