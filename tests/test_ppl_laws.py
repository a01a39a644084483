"""Laws of the generative-function interface, checked on models that hypothesis generates.

A generated model is a short program of *nodes*: continuous and discrete sample sites, plates,
observations, factors, deterministic sites, nested models called with ``name=``, ``ppl.scan``
time series and ``ppl.cond``/``ppl.switch`` branches whose sites differ (so the set of addresses
depends on the random choices).  Each node's distribution depends on an earlier node's value.
Hypothesis chooses the structure and the parameters; random keys are fixed (never chosen by
hypothesis).  Every law is an equality in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
from ppl import dist

ROOT = Path(__file__).resolve().parents[1]

K_SIM = jax.random.key(11)
K_ALT = jax.random.key(22)
K_MOVE = jax.random.key(33)
KEYS = jax.random.split(jax.random.key(44), 3)

TOL = dict(rtol=1e-10, atol=1e-10)


def close(a, b, **kw):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), **{**TOL, **kw})


# ---------------------------------------------------------------------------------------------
# generated models


@dataclass(frozen=True)
class Node:
    kind: str
    parent: int  # 0: a constant; j: the value of node j - 1
    c: float  # a coefficient
    s: float  # a scale in [0.5, 2]
    n: int  # a size (plates, time steps)
    flag: bool  # kind-specific variant
    data: tuple  # observed values, where the node observes


SIMPLE = ("normal", "gamma", "bern")
ALL_KINDS = SIMPLE + ("plate", "obs", "factor", "det", "nested", "scan", "cond", "switch")
CONTINUOUS_KINDS = ("normal", "gamma", "plate", "obs", "factor", "det", "nested", "scan")

coef = st.floats(-1.5, 1.5, allow_nan=False).map(lambda x: round(x, 3))
scale = st.floats(0.5, 2.0, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def node(draw, i: int, kinds=ALL_KINDS) -> Node:
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(1, 3))
    data = tuple(draw(st.lists(coef, min_size=n, max_size=n)))
    return Node(kind, draw(st.integers(0, i)), draw(coef), draw(scale), n, draw(st.booleans()), data)


@st.composite
def specs(draw, kinds=ALL_KINDS, min_nodes=1, max_nodes=4, root: bool = False) -> tuple:
    k = draw(st.integers(min_nodes, max_nodes))
    nodes = []
    for i in range(k):
        nd = draw(node(i, kinds if not (root and i == 0) else ("normal", "gamma")))
        if root and i == 0:
            nd = Node(nd.kind, 0, nd.c, nd.s, nd.n, nd.flag, nd.data)
        nodes.append(nd)
    return tuple(nodes)


@ppl.model
def sub(p, c):
    z = ppl.sample("z", dist.Normal(p, 1.0))
    return ppl.sample("w", dist.Normal(c * z, 1.5))


def _f(x):
    return jnp.asarray(x, jnp.float64)


def build(spec: tuple) -> ppl.Model:
    """The model that `spec` describes."""

    @ppl.model
    def generated():
        vals = [_f(0.5)]
        for i, nd in enumerate(spec):
            p = vals[nd.parent]
            nm = f"s{i}"
            if nd.kind == "normal":
                v = ppl.sample(nm, dist.Normal(nd.c * p, nd.s))
            elif nd.kind == "gamma":
                v = ppl.sample(nm, dist.Gamma(nd.s + jax.nn.sigmoid(nd.c * p), 1.5))
            elif nd.kind == "bern":
                v = ppl.sample(nm, dist.Bernoulli(probs=jax.nn.sigmoid(nd.c * p)))
            elif nd.kind == "plate":
                with ppl.plate(f"{nm}_plate", nd.n):
                    x = ppl.sample(nm, dist.Normal(nd.c * p, nd.s))
                v = jnp.mean(x)
            elif nd.kind == "obs":
                if nd.flag:
                    with ppl.plate(f"{nm}_plate", nd.n):
                        ppl.sample(nm, dist.Normal(nd.c * p, nd.s), obs=jnp.asarray(nd.data))
                else:
                    ppl.sample(nm, dist.Normal(nd.c * p, nd.s), obs=_f(nd.data[0]))
                v = _f(nd.data[0])
            elif nd.kind == "factor":
                ppl.factor(nm, -0.5 * nd.s * (p - nd.c) ** 2)
                v = p
            elif nd.kind == "det":
                v = ppl.deterministic(nm, nd.c * p + 1.0)
            elif nd.kind == "nested":
                v = sub(p, nd.c, name=nm)
            elif nd.kind == "scan":
                c, s = nd.c, nd.s

                def step(carry, y):
                    x = ppl.sample("x", dist.Normal(c * carry, s))
                    if y is not None:
                        ppl.sample("y", dist.Normal(x, 1.0), obs=y)
                    return x, x

                ys = jnp.asarray(nd.data) if nd.flag else None
                v, _ = ppl.scan(step, p, xs=ys, length=nd.n, name=nm)
            elif nd.kind == "cond":
                k = ppl.sample(f"{nm}_k", dist.Bernoulli(probs=jax.nn.sigmoid(nd.c * p)))
                s = nd.s

                def yes(q):
                    a = ppl.sample(f"{nm}_t", dist.Normal(q, s))
                    b = ppl.sample(f"{nm}_sh", dist.Normal(a, 1.0))
                    return a + b

                def no(q):
                    g = ppl.sample(f"{nm}_f", dist.Gamma(2.0, 2.0))
                    if nd.flag:
                        b = ppl.sample(f"{nm}_sh", dist.Normal(-q, 2.0))
                        return g + b
                    return g

                v = ppl.cond(k, yes, no, p)
            elif nd.kind == "switch":
                k = ppl.sample(f"{nm}_k", dist.Categorical(probs=jnp.array([0.3, 0.3, 0.4])))
                s = nd.s
                v = ppl.switch(
                    k,
                    [
                        lambda q: q,
                        lambda q: ppl.sample(f"{nm}_a", dist.Normal(q, s)),
                        lambda q: sub(q, 0.5, name=f"{nm}_sub"),
                    ],
                    p,
                )
            else:  # pragma: no cover
                raise AssertionError(nd.kind)
            vals.append(_f(v))
        return vals[-1]

    return generated


def has_branches(spec) -> bool:
    return any(nd.kind in ("cond", "switch") for nd in spec)


def lp_sum(tr: ppl.Trace, names) -> jax.Array:
    return sum((jnp.sum(tr.log_probs[a]) for a in names), jnp.zeros(()))


def active_latent(tr: ppl.Trace) -> dict:
    return {k: v for k, v in tr.active_choices().items() if k not in tr.observed}


def assert_same_choices(a: dict, b: dict, **kw):
    assert set(a) == set(b), (sorted(a), sorted(b))
    for k in a:
        close(a[k], b[k], **kw)


# ---------------------------------------------------------------------------------------------
# simulate, log_density, generate


@pytest.mark.slow
@given(specs())
def test_simulate_log_density_is_log_density_of_choices(spec):
    m = build(spec)
    tr = m.simulate(K_SIM)
    close(tr.log_density, m.log_density(tr.choices))
    close(tr.log_density, tr.log_prior + tr.log_likelihood)
    # one density entry per sample site and factor
    assert set(tr.log_probs) == set(tr.choices) | {f"s{i}" for i, nd in enumerate(spec) if nd.kind == "factor"}


@given(specs())
def test_generate_fully_constrained_weight_is_log_density(spec):
    m = build(spec)
    tr = m.simulate(K_SIM)
    new, w = m.generate(K_ALT, tr.choices)
    close(w, tr.log_density)
    assert_same_choices(new.choices, tr.choices)
    # a constrained trace does not depend on the key
    close(new.log_density, tr.log_density)


@given(specs())
def test_generate_unconstrained_weight_is_likelihood(spec):
    m = build(spec)
    tr, w = m.generate(K_SIM, {})
    # same key, no constraints: the very draw simulate makes
    assert_same_choices(tr.choices, m.simulate(K_SIM).choices)
    close(w, tr.log_likelihood)
    if not any(nd.kind in ("obs", "factor") or (nd.kind == "scan" and nd.flag) for nd in spec):
        assert float(w) == 0.0


@given(specs(), st.data())
def test_generate_partial_constraints_weight(spec, data):
    """Weight = density of the constrained and observed sites given the rest."""
    m = build(spec)
    tr = m.simulate(K_SIM)
    latent = sorted(active_latent(tr))
    chosen = data.draw(st.lists(st.sampled_from(latent), unique=True) if latent else st.just([]))
    cons = {a: tr.choices[a] for a in chosen}
    new, w = m.generate(K_ALT, cons)
    for a in chosen:  # (a constrained site in a branch not taken does not exist)
        if a in new.active_choices():
            close(new.choices[a], cons[a])
    close(w, lp_sum(new, [a for a in new.log_probs if a in cons or a in new.observed]))
    close(new.log_density, m.log_density(new.choices))


@given(specs(), st.data())
def test_condition_then_generate_is_generate_with_constraints(spec, data):
    m = build(spec)
    tr = m.simulate(K_SIM)
    latent = sorted(active_latent(tr))
    chosen = data.draw(st.lists(st.sampled_from(latent), unique=True) if latent else st.just([]))
    cons = {a: tr.choices[a] for a in chosen}
    t1, w1 = ppl.condition(m, cons).generate(K_ALT, {})
    t2, w2 = m.generate(K_ALT, cons)
    close(w1, w2)
    assert_same_choices(t1.choices, t2.choices)
    close(t1.log_density, t2.log_density)
    # the conditioned sites are observations of the conditioned model
    assert set(cons) & set(t1.choices) <= set(t1.observed)


# ---------------------------------------------------------------------------------------------
# update and regenerate


def expected_move_weight(m, old, new, constrained=(), selected=ppl.select()):
    """log p(t') - log p(t) - log q(fresh sites of t') + log q(dropped sites of t), by hand.

    Fresh: latent sites of t' that were drawn now (new addresses, or selected ones).  Dropped:
    latent sites of t that were removed or redrawn.  q is the prior density given the parents,
    which is the site's own entry in the trace's log densities.
    """
    old_lat, new_lat = active_latent(old), active_latent(new)
    fresh = [a for a in new_lat if a not in constrained and (a not in old_lat or a in selected)]
    dropped = [a for a in old_lat if a not in new_lat or (a in selected and a not in constrained)]
    return (
        m.log_density(new.active_choices())
        - m.log_density(old.active_choices())
        - lp_sum(new, fresh)
        + lp_sum(old, dropped)
    ), fresh, dropped


def pick_constraints(data, tr, other):
    """Some latent addresses of `tr`, with values taken from another draw `other`."""
    cand = sorted(set(active_latent(tr)) | set(active_latent(other)))
    cand = [a for a in cand if a in other.active_choices()]
    chosen = data.draw(st.lists(st.sampled_from(cand), unique=True) if cand else st.just([]))
    return {a: other.choices[a] for a in chosen}


@given(specs(), st.data())
@settings(max_examples=15)
def test_update_weight_is_the_density_ratio_it_claims(spec, data):
    m = build(spec)
    old = m.simulate(K_SIM)
    other = m.simulate(K_ALT)
    cons = pick_constraints(data, old, other)
    new, w, discard = m.update(K_MOVE, old, cons)
    want, fresh, dropped = expected_move_weight(m, old, new, set(cons))
    close(w, want)
    close(new.log_density, m.log_density(new.choices))
    old_lat, new_lat = active_latent(old), active_latent(new)
    for a, v in new_lat.items():
        if a in cons:
            close(v, cons[a])
        elif a in old_lat:  # kept sites keep their values
            close(v, old_lat[a])
    # discard: the old values of the constrained and of the removed addresses
    assert set(discard) == {a for a in old_lat if a in cons or a not in new_lat}
    for a in discard:
        close(discard[a], old.choices[a])


@given(specs(kinds=SIMPLE + ("cond", "switch"), min_nodes=1), st.data())
def test_update_flipping_a_branch_changes_the_address_set(spec, data):
    """Constrain every branch index to its other value: the set of addresses changes."""
    m = build(spec)
    old = m.simulate(K_SIM)
    cons = {}
    for i, nd in enumerate(spec):
        a = f"s{i}_k"
        if a in old.choices:
            k = int(old.choices[a])
            cons[a] = jnp.asarray((k + 1) % (2 if nd.kind == "cond" else 3))
    new, w, discard = m.update(K_MOVE, old, cons)
    want, fresh, dropped = expected_move_weight(m, old, new, set(cons))
    close(w, want)
    if cons:
        assert set(active_latent(new)) != set(active_latent(old)) or not (fresh or dropped)


@given(specs(), st.data())
def test_regenerate_weight_is_the_acceptance_ratio(spec, data):
    m = build(spec)
    old = m.simulate(K_SIM)
    latent = sorted(active_latent(old))
    if not latent:
        return
    chosen = data.draw(st.lists(st.sampled_from(latent), min_size=1, unique=True))
    sel = ppl.select(*chosen)
    new, w = m.regenerate(K_MOVE, old, sel)
    want, fresh, dropped = expected_move_weight(m, old, new, (), sel)
    close(w, want)
    for a, v in active_latent(new).items():
        if a not in sel and a in old.choices and a not in fresh:
            close(v, old.choices[a])


def test_regenerate_of_a_nested_model_selects_its_sub_addresses():
    @ppl.model
    def m():
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        return sub(a, 2.0, name="inner")

    old = m.simulate(K_SIM)
    new, w = m.regenerate(K_MOVE, old, ppl.select("inner"))
    assert float(new["a"]) == float(old["a"])
    assert float(new["inner/z"]) != float(old["inner/z"])
    want, _, _ = expected_move_weight(m, old, new, (), ppl.select("inner"))
    close(w, want)
    # regenerating the leaf only: its prior cancels, the weight is 0
    new, w = m.regenerate(K_MOVE, old, ppl.select("inner/w"))
    close(w, 0.0)


# ---------------------------------------------------------------------------------------------
# do: surgery, not conditioning


@given(specs(root=True, min_nodes=2), st.floats(-2, 2).map(lambda x: round(x, 3)))
def test_do_on_a_root_equals_conditioning_for_its_descendants(spec, v):
    m = build(spec)
    root = "s0"
    v = abs(v) + 0.1 if spec[0].kind == "gamma" else v
    val = _f(v)
    did = ppl.do(m, {root: val})
    conditioned = ppl.condition(m, {root: val})
    t_do = did.simulate(K_SIM)
    t_cond = conditioned.simulate(K_SIM)
    # the same draw of every other site ...
    assert root not in t_do.choices and root in t_do.deterministic
    rest = {k: v for k, v in t_cond.choices.items() if k != root}
    assert_same_choices(t_do.choices, rest)
    # ... and the same conditional density: log p_do(rest) = log p(rest, root=v) - log p(root=v)
    root_lp = dist.Normal(spec[0].c * 0.5, spec[0].s).log_prob(val) if spec[0].kind == "normal" else (
        dist.Gamma(spec[0].s + jax.nn.sigmoid(spec[0].c * 0.5), 1.5).log_prob(val)
    )
    close(did.log_density(rest), m.log_density({**rest, root: val}) - root_lp)
    close(t_do.log_density, t_cond.log_density - root_lp)
    close(t_cond.log_probs[root], root_lp)


@ppl.model
def confounded():
    z = ppl.sample("z", dist.Normal(0.0, 1.0))
    x = ppl.sample("x", dist.Normal(z, 1.0))
    return ppl.sample("y", dist.Normal(x + z, 1.0))


@given(st.floats(-2, 2).map(lambda x: round(x, 3)))
@settings(max_examples=10)
def test_do_on_a_confounded_site_differs_from_conditioning(v):
    x = _f(v)
    did, cond = ppl.do(confounded, {"x": x}), ppl.condition(confounded, {"x": x})
    z1, z2, y = _f(-1.0), _f(1.0), _f(0.3)
    # under do, z keeps its prior: the log density ratio of two values of z is the prior's
    prior_ratio = dist.Normal(0, 1).log_prob(z1) - dist.Normal(0, 1).log_prob(z2)
    close(did.log_density({"z": z1, "y": y}) - did.log_density({"z": z2, "y": y}),
          prior_ratio + dist.Normal(x + z1, 1).log_prob(y) - dist.Normal(x + z2, 1).log_prob(y))
    # conditioning on x also reweights z by p(x | z) (z | x ~ N(x/2, 1/2)): a different measure
    c_ratio = cond.log_density({"z": z1, "y": y}) - cond.log_density({"z": z2, "y": y})
    d_ratio = did.log_density({"z": z1, "y": y}) - did.log_density({"z": z2, "y": y})
    close(c_ratio - d_ratio, dist.Normal(z1, 1).log_prob(x) - dist.Normal(z2, 1).log_prob(x))
    close(c_ratio - d_ratio, -2.0 * x)  # log N(x; -1, 1) - log N(x; 1, 1)
    if abs(v) > 1e-3:
        assert abs(float(c_ratio - d_ratio)) > 1e-3
    # generate: do gives weight 0 for every draw, condition gives log p(x | z) which varies with z
    _, w_do = did.generate(K_SIM, {})
    assert float(w_do) == 0.0
    t_c, w_c = cond.generate(K_SIM, {})
    close(w_c, dist.Normal(t_c["z"], 1.0).log_prob(x))


# ---------------------------------------------------------------------------------------------
# jit and vmap


@pytest.mark.slow
@given(specs(max_nodes=3))
@settings(max_examples=5)
def test_simulate_identical_under_jit_and_vmap(spec):
    m = build(spec)
    eager = m.simulate(K_SIM)
    jitted = jax.jit(m.simulate)(K_SIM)
    assert_same_choices(jitted.active_choices(), eager.choices)
    close(jitted.log_density, eager.log_density)
    assert set(jitted.deterministic) == set(eager.deterministic) or has_branches(spec)
    batched = jax.vmap(m.simulate)(KEYS)
    for i, k in enumerate(KEYS):
        one = m.simulate(k)
        row = jax.tree_util.tree_map(lambda x: x[i], batched)
        assert_same_choices(row.active_choices(), one.choices)
        close(row.log_density, one.log_density)
        close(m.log_density(row.active_choices()), one.log_density)


@pytest.mark.slow
@given(specs(max_nodes=3), st.data())
@settings(max_examples=4)
def test_log_density_generate_update_identical_under_jit(spec, data):
    m = build(spec)
    tr = jax.jit(m.simulate)(K_SIM)
    close(jax.jit(m.log_density)(tr.choices), tr.log_density)
    new, w = jax.jit(m.generate)(K_ALT, tr.choices)
    close(w, tr.log_density)
    assert_same_choices(new.active_choices(), tr.active_choices())
    other = m.simulate(K_ALT)
    cons = pick_constraints(data, tr, other)
    new, w, _ = jax.jit(m.update)(K_MOVE, tr, cons)
    want, _, _ = expected_move_weight(m, tr, new, set(cons))
    close(w, want)
    latent = sorted(active_latent(tr))
    if latent:
        sel = ppl.select(data.draw(st.sampled_from(latent)))
        new, w = jax.jit(lambda k, t: m.regenerate(k, t, sel))(K_MOVE, tr)
        want, _, _ = expected_move_weight(m, tr, new, (), sel)
        close(w, want)


def test_cond_inside_scan_under_jit_has_per_step_active_flags():
    @ppl.model
    def m():
        def step(c, _):
            k = ppl.sample("k", dist.Bernoulli(probs=0.5))
            x = ppl.cond(k, lambda: ppl.sample("a", dist.Normal(c, 1.0)), lambda: c)
            return x, x

        return ppl.scan(step, 0.0, length=6, name="ts")

    tr = jax.jit(m.simulate)(K_SIM)
    k = np.asarray(tr["ts/k"])
    np.testing.assert_array_equal(np.asarray(tr.active["ts/a"]), k.astype(bool))
    assert 0 < k.sum() < 6  # both branches taken along the chain (fixed key)
    # inactive steps contribute nothing; the total is the sum of the active ones, by hand
    a = np.asarray(tr["ts/a"])
    c, want = 0.0, 0.0
    for t in range(6):
        want += float(dist.Bernoulli(probs=0.5).log_prob(k[t]))
        if k[t]:
            want += float(dist.Normal(c, 1.0).log_prob(a[t]))
            c = a[t]
    close(tr.log_density, want)
    with pytest.raises(ppl.ModelError, match="active at some steps only"):
        tr.active_choices()


# ---------------------------------------------------------------------------------------------
# gradients


@given(specs(kinds=CONTINUOUS_KINDS + ("cond",)))
@settings(max_examples=8)
def test_grad_log_density_matches_finite_differences(spec):
    m = build(spec)
    tr = m.simulate(K_SIM)
    ch = dict(tr.choices)
    cont = {k: v for k, v in ch.items() if k not in tr.observed and jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)}
    fixed = {k: v for k, v in ch.items() if k not in cont}

    def f(c):
        return m.log_density({**fixed, **c})

    g = jax.grad(f)(cont)
    eps = 1e-6
    for k, v in cont.items():
        v = np.asarray(v, float)
        flat = v.reshape(-1)
        for j in range(flat.size):
            e = np.zeros_like(flat)
            e[j] = eps
            up = f({**cont, k: jnp.asarray((flat + e).reshape(v.shape))})
            dn = f({**cont, k: jnp.asarray((flat - e).reshape(v.shape))})
            fd = (float(up) - float(dn)) / (2 * eps)
            np.testing.assert_allclose(np.asarray(g[k]).reshape(-1)[j], fd, rtol=1e-5, atol=1e-6)
    # and the gradient is the same under jit
    gj = jax.jit(jax.grad(f))(cont)
    for k in cont:
        close(gj[k], g[k], rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# the unconstrained view


def test_unconstrained_potential_by_hand_with_dependent_bound():
    """Uniform(0, a) with `a` latent: the bound of b's transform moves with a."""

    @ppl.model
    def m(y=None):
        a = ppl.sample("a", dist.Gamma(2.0, 1.0))
        b = ppl.sample("b", dist.Uniform(0.0, a))
        with ppl.plate("n", 3):
            ppl.sample("y", dist.Normal(b, 1.0), obs=y)

    y = jnp.array([0.1, 0.5, -0.3])
    view = ppl.unconstrained(m, y=y)
    assert view.dim == 2 and list(view.sites) == ["a", "b"]
    for x in [jnp.array([0.3, -1.2]), jnp.array([-0.7, 2.0]), view.init]:
        ua, ub = x
        a = jnp.exp(ua)
        b = a * jax.nn.sigmoid(ub)
        lp = (
            dist.Gamma(2.0, 1.0).log_prob(a)
            + dist.Uniform(0.0, a).log_prob(b)
            + jnp.sum(dist.Normal(b, 1.0).log_prob(y))
        )
        logj = ua + jnp.log(a) + jax.nn.log_sigmoid(ub) + jax.nn.log_sigmoid(-ub)
        close(view.potential(x), -(lp + logj))
        close(jax.jit(view.potential)(x), -(lp + logj))
        c = view.to_constrained(x)
        close(c["a"], a)
        close(c["b"], b)
        assert 0 < float(c["b"]) < float(c["a"])
        close(view.to_unconstrained(c), x)
        # gradient against finite differences
        g = jax.grad(view.potential)(x)
        for j in range(2):
            e = jnp.zeros(2).at[j].set(1e-6)
            fd = (view.potential(x + e) - view.potential(x - e)) / 2e-6
            np.testing.assert_allclose(g[j], fd, rtol=1e-5, atol=1e-6)


@given(st.lists(st.floats(-3, 3).map(lambda x: round(x, 3)), min_size=4, max_size=4))
@settings(max_examples=10)
def test_unconstrained_round_trip(xs):
    @ppl.model
    def m():
        ppl.sample("pos", dist.HalfNormal(1.0))
        ppl.sample("unit", dist.Beta(2.0, 3.0))
        ppl.sample("simplex", dist.Dirichlet(jnp.ones(3)))

    view = ppl.unconstrained(m)
    assert view.dim == 1 + 1 + 2
    x = jnp.asarray(xs)
    c = view.to_constrained(x)
    assert float(c["pos"]) > 0 and 0 < float(c["unit"]) < 1
    close(jnp.sum(c["simplex"]), 1.0)
    close(view.to_unconstrained(c), x, rtol=1e-8, atol=1e-8)
    # potential = -(log p + log|J|) by hand
    from numpyro.distributions.transforms import biject_to

    want = 0.0
    for name, d in [("pos", dist.HalfNormal(1.0)), ("unit", dist.Beta(2.0, 3.0)), ("simplex", dist.Dirichlet(jnp.ones(3)))]:
        t = biject_to(d.support)
        u = view.unravel(x)[name]
        want += d.log_prob(t(u)) + jnp.sum(t.log_abs_det_jacobian(u, t(u)))
    close(view.potential(x), -want)


def test_unconstrained_improper_uniform_flat_priors():
    @ppl.model
    def m(y):
        mu = ppl.sample("mu", dist.ImproperUniform(dist.constraints.real, (), ()))
        sd = ppl.sample("sd", dist.ImproperUniform(dist.constraints.positive, (), ()))
        with ppl.plate("n", y.shape[0]):
            ppl.sample("y", dist.Normal(mu, sd), obs=y)

    y = jnp.array([0.5, -1.0, 2.0])
    view = ppl.unconstrained(m, y)
    x = jnp.array([0.2, -0.4])
    mu, sd = x[0], jnp.exp(x[1])
    close(view.potential(x), -(jnp.sum(dist.Normal(mu, sd).log_prob(y)) + x[1]))
    close(m.log_density({"mu": mu, "sd": sd}, y), jnp.sum(dist.Normal(mu, sd).log_prob(y)))
    close(view.to_unconstrained(view.to_constrained(x)), x)


def test_unconstrained_masked_and_to_event_distributions():
    mask = jnp.array([True, False, True])

    @ppl.model
    def m():
        ppl.sample("v", dist.LogNormal(jnp.zeros(3), 1.0).to_event(1))
        ppl.sample("w", dist.HalfNormal(jnp.ones(3)).mask(mask))

    view = ppl.unconstrained(m)
    assert view.sites == {"v": (3,), "w": (3,)}
    x = jnp.array([0.1, -0.2, 0.3, 1.0, -1.0, 0.5])
    v, w = jnp.exp(x[:3]), jnp.exp(x[3:])
    lp = jnp.sum(dist.LogNormal(0.0, 1.0).log_prob(v)) + jnp.sum(
        jnp.where(mask, dist.HalfNormal(1.0).log_prob(w), 0.0)
    )
    close(view.potential(x), -(lp + jnp.sum(x)))
    close(m.log_density({"v": v, "w": w}), lp)


def test_unconstrained_scan_and_nested_sites():
    @ppl.model
    def m():
        s = ppl.sample("s", dist.HalfNormal(1.0))
        sub(s, 1.0, name="n")

        def step(c, _):
            x = ppl.sample("x", dist.Normal(c, s))
            return x, None

        ppl.scan(step, 0.0, length=4, name="ts")

    view = ppl.unconstrained(m)
    assert view.sites == {"s": (), "n/z": (), "n/w": (), "ts/x": (4,)}
    x = jnp.linspace(-1, 1, view.dim)
    c = view.to_constrained(x)
    close(view.log_density(x), m.log_density(c) + x[0])
    close(view.to_unconstrained(c), x)
    tr = m.simulate(K_SIM)
    close(view.to_constrained(view.to_unconstrained(tr.choices))["ts/x"], tr["ts/x"])


def test_unconstrained_rejects_discrete_latents_naming_the_site():
    # finite discrete latents are summed out (ppl.enum); an infinite support cannot be
    @ppl.model
    def m():
        ppl.sample("k", dist.Poisson(2.0))

    with pytest.raises(ppl.ModelError, match="'k' is a discrete latent site with an infinite support"):
        ppl.unconstrained(m)


# ---------------------------------------------------------------------------------------------
# predictive


@ppl.model
def schools(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta = ppl.sample("theta", dist.Normal(mu, tau))
        ppl.deterministic("theta2", 2 * theta)
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


@pytest.mark.slow
def test_predictive_prior_and_posterior_shapes():
    sigma = jnp.ones(8)
    prior = ppl.predictive(schools, None, sigma, key=K_SIM, num_samples=5)
    assert prior["mu"].shape == (5,) and prior["theta"].shape == (5, 8) and prior["y"].shape == (5, 8)
    close(prior["theta2"], 2 * prior["theta"])
    post = {"mu": jnp.zeros((2, 3)), "tau": jnp.ones((2, 3)), "theta": jnp.arange(48.0).reshape(2, 3, 8)}
    y_cond = ppl.condition(schools, {"y": jnp.zeros(8)})
    pp = ppl.predictive(y_cond, post, sigma, key=K_SIM, batch_ndims=2)
    assert set(pp) == {"y", "theta2"}
    assert pp["y"].shape == (2, 3, 8)
    close(pp["theta2"], 2 * post["theta"])
    # y ~ Normal(theta, 1) per draw: far from 0 for the large thetas (the observation is dropped)
    assert float(jnp.abs(pp["y"] - post["theta"]).max()) < 6.0
    only = ppl.predictive(schools, {"mu": jnp.zeros(4)}, sigma, key=K_SIM, return_sites=["y"])
    assert set(only) == {"y"} and only["y"].shape == (4, 8)


@ppl.model
def branchy():
    k = ppl.sample("k", dist.Bernoulli(probs=0.3))
    return ppl.cond(
        k,
        lambda: ppl.sample("t", dist.Normal(1.0, 2.0)),
        lambda: ppl.sample("f", dist.Gamma(2.0, 2.0)),
    )


@pytest.mark.parametrize("jit", [False, True])
def test_update_constraint_on_an_address_the_move_removes(jit):
    """Constraining k and a site of the branch k turns off: that site is dropped, not scored."""
    old = branchy.generate(K_SIM, {"k": jnp.asarray(1)})[0]
    if jit:
        old = jax.jit(lambda k: branchy.generate(k, {"k": jnp.asarray(1)})[0])(K_SIM)
    update = jax.jit(branchy.update) if jit else branchy.update
    new, w, discard = update(K_MOVE, old, {"k": jnp.asarray(0), "t": _f(5.0)})
    assert set(active_latent(new)) == {"k", "f"}
    want, fresh, dropped = expected_move_weight(branchy, old, new, {"k", "t"})
    assert fresh == ["f"] and dropped == ["t"]
    close(w, want)
    # by hand: p(k=0)/p(k=1); the new f is fresh and the old t dropped, so they cancel
    close(w, jnp.log(0.7) - jnp.log(0.3))
    assert set(discard) == {"k", "t"}
