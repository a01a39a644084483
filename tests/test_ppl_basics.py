"""Unit tests of each primitive and handler, plates, nested models, scan and the Trace."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist

KEY = jax.random.key(0)
K2 = jax.random.key(1)


def close(a, b, **kw):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), **{"rtol": 1e-12, "atol": 1e-12, **kw})


def N(loc, scale=1.0):
    return dist.Normal(loc, scale)


@ppl.model
def two():
    a = ppl.sample("a", N(0.0))
    b = ppl.sample("b", N(a, 2.0))
    return a + b


# ---------------------------------------------------------------------------------------------
# primitives


def test_sample_draws_from_the_distribution_with_the_seed_key():
    tr = two.simulate(KEY)
    assert set(tr.choices) == {"a", "b"}
    close(tr.retval, tr["a"] + tr["b"])
    close(tr.log_density, N(0.0).log_prob(tr["a"]) + N(tr["a"], 2.0).log_prob(tr["b"]))
    # same key, same draw; another key, another draw
    close(two.simulate(KEY)["a"], tr["a"])
    assert float(two.simulate(K2)["a"]) != float(tr["a"])
    # the draw is randomness.draw of the site's distribution with a key split from the seed
    seen = []

    class Rec:
        eager = False

        def draw(self, key, d, shape, name):
            seen.append(name)
            return jnp.asarray(0.25)

    with ppl.randomness.interpreter(Rec()):
        t = two.simulate(KEY)
    assert seen == ["a", "b"] and float(t["a"]) == 0.25


def test_observed_sample_returns_the_observation_and_is_likelihood():
    @ppl.model
    def m(y):
        mu = ppl.sample("mu", N(0.0))
        return ppl.sample("y", N(mu), obs=y)

    tr = m.simulate(KEY, 1.5)
    assert float(tr.retval) == 1.5 and float(tr["y"]) == 1.5
    assert tr.observed == ("y",)
    assert set(tr.latent) == {"mu"}
    close(tr.log_likelihood, N(tr["mu"]).log_prob(1.5))
    close(tr.log_prior, N(0.0).log_prob(tr["mu"]))


def test_param_sites():
    @ppl.model
    def m():
        w = ppl.param("w", jnp.ones(2))
        s = ppl.param("s", 2.0, constraint=dist.constraints.positive)
        r = ppl.param("r", lambda key: jax.random.normal(key, (3,)))
        ppl.sample("x", N(jnp.sum(w) * s + jnp.sum(r)))

    tr = m.simulate(KEY)
    assert set(tr.params) == {"w", "s", "r"} and "w" not in tr.choices
    close(tr["w"], jnp.ones(2))
    assert tr.params["r"].shape == (3,)
    close(m.simulate(KEY).params["r"], tr.params["r"])  # drawn from the seed, reproducibly
    # a param has no density; substitute sets it
    close(tr.log_density, N(4.0 + jnp.sum(tr["r"])).log_prob(tr["x"]))
    tr2 = ppl.substitute(m, {"w": jnp.zeros(2)}).simulate(KEY)
    close(tr2["w"], jnp.zeros(2))
    # log_density takes param values from the choices, else the initial value
    close(m.log_density({"x": 0.0, "r": jnp.zeros(3)}), N(4.0).log_prob(0.0))
    close(m.log_density({"x": 0.0, "r": jnp.zeros(3), "s": 1.0}), N(2.0).log_prob(0.0))


def test_factor_and_deterministic():
    @ppl.model
    def m():
        a = ppl.sample("a", N(0.0))
        ppl.factor("soft", -0.5 * a**2)
        return ppl.deterministic("d", 3 * a)

    tr = m.simulate(KEY)
    close(tr["d"], 3 * tr["a"])
    assert "d" in tr.deterministic and "d" not in tr.log_probs
    close(tr.log_probs["soft"], -0.5 * tr["a"] ** 2)
    close(tr.log_likelihood, -0.5 * tr["a"] ** 2)  # factors are part of the likelihood
    close(tr.log_density, N(0.0).log_prob(tr["a"]) - 0.5 * tr["a"] ** 2)
    close(m.log_density({"a": 1.0}), N(0.0).log_prob(1.0) - 0.5)


# ---------------------------------------------------------------------------------------------
# plates


def test_plate_broadcasts_and_nests():
    @ppl.model
    def m():
        with ppl.plate("i", 3) as idx:
            a = ppl.sample("a", N(0.0))
            with ppl.plate("j", 2):
                b = ppl.sample("b", N(0.0))
        with ppl.plate("k", 4, dim=-2):
            c = ppl.sample("c", N(jnp.zeros(5)))
        return idx, a, b, c

    tr = m.simulate(KEY)
    idx, a, b, c = tr.retval
    close(idx, jnp.arange(3))
    assert a.shape == (3,) and b.shape == (2, 3) and c.shape == (4, 5)
    close(tr.log_density, N(0.0).log_prob(a).sum() + N(0.0).log_prob(b).sum() + N(0.0).log_prob(c).sum())


@pytest.mark.parametrize("jit", [False, True])
def test_plate_subsample_scales_the_log_density(jit):
    data = jnp.arange(10.0)

    @ppl.model
    def m():
        mu = ppl.sample("mu", N(0.0))
        with ppl.plate("data", 10, subsample_size=4) as idx:
            ppl.sample("y", N(mu), obs=data[idx])
        return idx

    sim = jax.jit(m.simulate) if jit else m.simulate
    tr = sim(KEY)
    idx = np.asarray(tr.retval)
    assert idx.shape == (4,) and len(set(idx.tolist())) == 4 and idx.min() >= 0 and idx.max() < 10
    close(tr["y"], data[idx])
    mu = tr["mu"]
    close(tr.log_likelihood, 10 / 4 * N(mu).log_prob(data[idx]).sum())
    close(tr.log_density, N(0.0).log_prob(mu) + 10 / 4 * N(mu).log_prob(data[idx]).sum())
    # another key, other indices
    assert not np.array_equal(np.asarray(sim(K2).retval), idx)


# ---------------------------------------------------------------------------------------------
# handlers


def test_seed_handler_and_model_as_a_plain_function_in_jax_code():
    v = ppl.seed(two, KEY)()
    close(v, two.simulate(KEY).retval)
    f = jax.jit(lambda k: ppl.seed(two, k)())
    close(f(KEY), v)
    keys = jax.random.split(KEY, 4)
    vs = jax.vmap(lambda k: ppl.seed(two, k)())(keys)
    for i in range(4):
        close(vs[i], two.simulate(keys[i]).retval)
    # as a context manager
    with ppl.seed(key=KEY):
        close(two(), v)
    g = jax.grad(lambda x: ppl.seed(ppl.substitute(two, {"a": x}), KEY)())(1.0)
    close(g, 2.0)  # b = a + 2 eps is reparameterised: d(a + b)/da = 2


def test_trace_handler_records_sites_in_order():
    sites = ppl.trace(ppl.seed(two, KEY)).get_trace()
    assert list(sites) == ["a", "b"]
    assert sites["a"]["type"] == "sample" and not sites["a"]["is_observed"]
    close(sites["b"]["log_prob"], N(sites["a"]["value"], 2.0).log_prob(sites["b"]["value"]))
    with ppl.trace() as recorded, ppl.seed(key=KEY):
        two()
    assert list(recorded) == ["a", "b"]


def test_condition_observes():
    c = ppl.condition(two, {"a": 1.0})
    tr = c.simulate(KEY)
    assert float(tr["a"]) == 1.0 and tr.observed == ("a",)
    close(tr.log_likelihood, N(0.0).log_prob(1.0))
    close(tr.log_density, two.log_density({"a": 1.0, "b": tr["b"]}))
    # the same as passing the observation through obs=
    @ppl.model
    def obs_version(a_obs):
        a = ppl.sample("a", N(0.0), obs=a_obs)
        b = ppl.sample("b", N(a, 2.0))
        return a + b

    t2 = obs_version.simulate(KEY, 1.0)
    close(t2["b"], tr["b"])
    close(t2.log_density, tr.log_density)


def test_substitute_and_replay_keep_sites_latent():
    s = ppl.substitute(two, {"a": 1.0}).simulate(KEY)
    assert float(s["a"]) == 1.0 and s.observed == ()
    close(s.log_prior, s.log_density)
    old = two.simulate(K2)
    r = ppl.replay(two, old).simulate(KEY)
    close(r["a"], old["a"])
    close(r["b"], old["b"])
    close(r.log_density, old.log_density)
    # replay is not strict: a trace with extra addresses is fine
    r2 = ppl.replay(two, {**old.choices, "other": 0.0}).simulate(KEY)
    close(r2["a"], old["a"])


def test_do_is_surgery():
    d = ppl.do(two, {"a": 3.0})
    tr = d.simulate(KEY)
    assert "a" not in tr.choices and float(tr.deterministic["a"]) == 3.0 and float(tr["a"]) == 3.0
    close(tr.log_density, N(3.0, 2.0).log_prob(tr["b"]))  # a is not scored
    close(d.log_density({"b": 0.5}), N(3.0, 2.0).log_prob(0.5))

    @ppl.model
    def with_det():
        a = ppl.sample("a", N(0.0))
        d = ppl.deterministic("d", 2 * a)
        return ppl.sample("c", N(d))

    t = ppl.do(with_det, {"d": 10.0}).simulate(KEY)
    assert float(t["d"]) == 10.0
    close(t.log_density, N(0.0).log_prob(t["a"]) + N(10.0).log_prob(t["c"]))
    # do wins over condition whichever is outside
    for m in (ppl.do(ppl.condition(two, {"a": 1.0}), {"a": 2.0}), ppl.condition(ppl.do(two, {"a": 2.0}), {"a": 1.0})):
        t = m.simulate(KEY)
        assert float(t["a"]) == 2.0 and "a" not in t.choices


def test_block_hides_sites():
    tr = ppl.block(two, hide=["a"]).simulate(KEY)
    assert set(tr.choices) == {"b"}
    close(tr["b"], two.simulate(KEY)["b"])  # a still ran, with the same key
    assert set(ppl.block(two, expose=["a"]).simulate(KEY).choices) == {"a"}
    assert set(ppl.block(two).simulate(KEY).choices) == set()
    assert set(ppl.block(two, hide_fn=lambda msg: msg["name"] == "b").simulate(KEY).choices) == {"a"}


def test_scale_and_mask():
    base = two.simulate(KEY)
    s = ppl.scale(two, 3.0).simulate(KEY)
    close(s.log_density, 3.0 * base.log_density)
    close(ppl.scale(ppl.scale(two, 2.0), 0.5).simulate(KEY).log_density, base.log_density)

    @ppl.model
    def m():
        with ppl.plate("i", 3):
            return ppl.sample("x", N(0.0))

    keep = jnp.array([True, False, True])
    t = ppl.mask(m, keep).simulate(KEY)
    close(t.log_density, jnp.sum(jnp.where(keep, N(0.0).log_prob(t["x"]), 0.0)))
    t0 = ppl.mask(m, jnp.asarray(False)).simulate(KEY)
    close(t0.log_density, 0.0)
    close(t0["x"], t["x"])  # masking changes densities, not draws


def test_scope_nested_models_and_call():
    @ppl.model
    def layer(x):
        z = ppl.sample("z", N(x))
        with ppl.plate("units", 2):
            return ppl.sample("h", N(z))

    @ppl.model
    def net():
        h1 = layer(0.0, name="layer1")
        h2 = ppl.call(layer, jnp.sum(h1), name="layer2")
        return layer(jnp.sum(h2))  # no name: the sub-model's addresses are its own

    tr = net.simulate(KEY)
    assert list(tr.choices) == ["layer1/z", "layer1/h", "layer2/z", "layer2/h", "z", "h"]
    assert tr["layer1/h"].shape == (2,)
    s = ppl.scope(two, "outer").simulate(KEY)
    assert set(s.choices) == {"outer/a", "outer/b"}

    @ppl.model
    def deeper():
        return net(name="n")

    assert "n/layer1/z" in deeper.simulate(KEY)
    # log_density and condition address nested sites
    close(net.log_density(tr.choices), tr.log_density)
    c = ppl.condition(net, {"layer1/z": 0.5}).simulate(KEY)
    assert float(c["layer1/z"]) == 0.5 and "layer1/z" in c.observed


def test_handlers_compose_and_run_under_jit_vmap_grad():
    m = ppl.scale(ppl.condition(ppl.substitute(two, {"a": 0.3}), {"b": 1.0}), 2.0)
    want = 2.0 * (N(0.0).log_prob(0.3) + N(0.3, 2.0).log_prob(1.0))
    close(m.simulate(KEY).log_density, want)
    close(jax.jit(m.simulate)(KEY).log_density, want)
    lds = jax.vmap(lambda k: m.simulate(k).log_density)(jax.random.split(KEY, 3))
    close(lds, jnp.full(3, want))
    g = jax.grad(lambda a: ppl.condition(two, {"b": 1.0}).log_density({"a": a}))(0.3)
    close(g, -0.3 + (1.0 - 0.3) / 4.0)


# ---------------------------------------------------------------------------------------------
# scan


@ppl.model
def ar1(T, y=None):
    rho = ppl.sample("rho", dist.Uniform(-1.0, 1.0))

    def step(x_prev, y_t):
        x = ppl.sample("x", N(rho * x_prev))
        ppl.sample("y", N(x, 0.5), obs=y_t)
        return x, 2 * x

    return ppl.scan(step, 0.0, xs=y, length=T, name="ts")


def _ar1_by_hand(rho, xs, ys):
    lp = dist.Uniform(-1.0, 1.0).log_prob(rho)
    prev = 0.0
    for x, y in zip(xs, ys):
        lp += N(rho * prev).log_prob(x) + N(x, 0.5).log_prob(y)
        prev = x
    return lp


def test_scan_stacks_addresses_and_keeps_per_step_densities():
    tr = ar1.simulate(KEY, 5)
    assert tr["ts/x"].shape == (5,) and tr["ts/y"].shape == (5,)
    assert tr.log_probs["ts/x"].shape == (5,)
    carry, ys = tr.retval
    close(carry, tr["ts/x"][-1])
    close(ys, 2 * tr["ts/x"])
    close(tr.log_density, _ar1_by_hand(tr["rho"], tr["ts/x"], tr["ts/y"]))
    close(ar1.log_density(tr.choices, 5), tr.log_density)


def test_scan_conditioning_on_stacked_addresses():
    y = jnp.array([0.5, -0.2, 0.1, 0.9])
    by_arg = ar1.simulate(KEY, 4, y)
    by_cond = ppl.condition(ar1, {"ts/y": y}).simulate(KEY, 4)
    close(by_cond["ts/y"], y)
    close(by_cond["ts/x"], by_arg["ts/x"])
    close(by_cond.log_density, by_arg.log_density)
    assert "ts/y" in by_cond.observed
    close(by_cond.log_likelihood, sum(N(by_cond["ts/x"][t], 0.5).log_prob(y[t]) for t in range(4)))
    # substitute / do / generate on the stacked latent address
    xs = jnp.array([0.1, 0.2, 0.3, 0.4])
    t, w = ar1.generate(KEY, {"ts/x": xs, "rho": 0.5}, 4, y)
    close(t["ts/x"], xs)
    close(w, _ar1_by_hand(0.5, xs, y))
    d = ppl.do(ar1, {"ts/x": xs}).simulate(KEY, 4)
    assert "ts/x" in d.deterministic and "ts/x" not in d.choices
    close(d.log_density, dist.Uniform(-1, 1).log_prob(d["rho"]) + N(xs, 0.5).log_prob(d["ts/y"]).sum())
    # jit gives the same
    tj = jax.jit(lambda k: ppl.condition(ar1, {"ts/y": y}).simulate(k, 4))(KEY)
    close(tj["ts/x"], by_cond["ts/x"])
    close(tj.log_density, by_cond.log_density)


def test_scan_nested_inside_a_named_model_and_plates_inside_steps():
    @ppl.model
    def inner(T):
        def step(c, _):
            with ppl.plate("p", 3):
                x = ppl.sample("x", N(c))
            return jnp.mean(x), None

        return ppl.scan(step, 0.0, length=T, name="loop")

    @ppl.model
    def outer():
        return inner(4, name="sub")

    tr = outer.simulate(KEY)
    assert tr["sub/loop/x"].shape == (4, 3)
    close(outer.log_density(tr.choices), tr.log_density)
    c = ppl.condition(outer, {"sub/loop/x": jnp.ones((4, 3))}).simulate(KEY)
    close(c.log_density, N(0.0).log_prob(jnp.ones(3)).sum() + 3 * N(1.0).log_prob(jnp.ones(3)).sum())


# ---------------------------------------------------------------------------------------------
# branches


@ppl.model
def branch():
    k = ppl.sample("k", dist.Bernoulli(probs=0.5))
    return ppl.cond(k, lambda: ppl.sample("t", N(5.0)), lambda: ppl.sample("f", dist.Gamma(2.0, 1.0)))


def test_cond_eager_has_only_the_taken_branch_and_jit_the_union_with_flags():
    sim = jax.jit(branch.simulate)
    taken = set()
    for key in jax.random.split(KEY, 5):
        tr = branch.simulate(key)
        k = int(tr["k"])
        taken.add(k)
        assert set(tr.choices) == {"k", "t" if k else "f"}
        tj = sim(key)
        assert set(tj.choices) == {"k", "t", "f"}
        assert bool(tj.is_active("t")) == bool(k) and bool(tj.is_active("f")) == (not k)
        assert tj.is_active("k") is True and tj.is_active("nope") is False
        close(tj.log_density, tr.log_density)
        close(tj.active_choices()["t" if k else "f"], tr["t" if k else "f"])
        close(branch.log_density(tr.choices), tr.log_density)
    assert taken == {0, 1}  # both branches seen with these fixed keys
    # switch with a concrete index
    @ppl.model
    def sw(i):
        return ppl.switch(i, [lambda: 0.0, lambda: ppl.sample("a", N(0.0)), lambda: ppl.sample("b", N(1.0))])

    assert set(sw.simulate(KEY, 2).choices) == {"b"}
    assert set(sw.simulate(KEY, 0).choices) == set()


# ---------------------------------------------------------------------------------------------
# Trace


def test_trace_is_a_pytree_with_indexing_and_repr():
    tr = jax.jit(ar1.simulate, static_argnums=1)(KEY, 3)
    assert isinstance(tr, ppl.Trace)
    assert "rho" in tr and "nope" not in tr
    leaves = jax.tree_util.tree_leaves(tr)
    assert all(isinstance(x, jax.Array) for x in leaves)
    stacked = jax.vmap(lambda k: ar1.simulate(k, 3))(jax.random.split(KEY, 2))
    assert stacked["ts/x"].shape == (2, 3)
    r = repr(two.simulate(KEY))
    assert "Trace(choices=" in r and "'a'" in r and "log_density=" in r
    assert tr.nan_sites() == []


def test_simulate_generate_update_regenerate_basics():
    tr = two.simulate(KEY)
    new, w, discard = two.update(K2, tr, {"a": 0.5})
    close(new["b"], tr["b"])
    close(w, two.log_density({"a": 0.5, "b": tr["b"]}) - tr.log_density)
    close(discard["a"], tr["a"])
    # new arguments
    new2, w2, _ = ar1.update(K2, ar1.simulate(KEY, 3), {}, args=(3, jnp.zeros(3)))
    assert "ts/y" in new2.observed
    r, wr = two.regenerate(K2, tr, "b")
    close(r["a"], tr["a"])
    close(wr, 0.0)  # redrawing a leaf from its prior: the MH ratio is 1
    r, wr = two.regenerate(K2, tr, ["a"])
    close(wr, N(r["a"], 2.0).log_prob(tr["b"]) - N(tr["a"], 2.0).log_prob(tr["b"]))


def test_update_counts_a_site_that_becomes_observed_as_dropped():
    # data arriving at a latent site (SMC data addition): the old sampled value is dropped, so
    # the weight is the observation's density, not p(t') / p(t)
    @ppl.model
    def m(k):
        ppl.sample("x", dist.Bernoulli(0.3), obs=None if k == 0 else jnp.asarray(1))

    total = 0.0
    for x in (0, 1):
        tr, _ = m.generate(jax.random.key(0), {"x": jnp.asarray(x)}, 0)
        new, w, discard = m.update(jax.random.key(1), tr, {}, args=(1,))
        assert "x" in new.observed and set(discard) == {"x"}
        assert float(w) == pytest.approx(np.log(0.3))
        total += float(jnp.exp(tr.log_density + w))
    # properly weighted: Σ_x p(x) · w(x) = p(x = 1) = 0.3
    assert total == pytest.approx(0.3)
