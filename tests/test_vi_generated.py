"""Estimator laws on generated small models: discrete and continuous sites, mixed strategies.

Hypothesis draws a chain of 1–3 latent sites (Bernoulli, 3-way Categorical or Normal, each
depending on the previous one), a Gaussian observation of a linear combination of them, and a
guide of the same shape whose sites each get a gradient strategy (discrete: reinforce, enum or
mvd; Normal: reparam or reinforce).  Discrete sites never depend on a continuous parent and
Normal scales are constants, so the ELBO's integrand, and every estimator's (the value times a
score, the pathwise derivative), is a polynomial of degree ≤ 4 in each Gaussian draw: a 4-node
Gauss–Hermite rule integrates it exactly.  So the law ``unbiased_gradient`` is checked as an
equality: the *shipped* estimator runs under an interpreter that enumerates the finite draws
(``semantics``' walker) and answers each Normal draw with the Gauss–Hermite nodes, and E[ĝ] is
compared with ``jax.grad`` of the exact ELBO, summed independently from the guide's and model's
``log_density`` (no VI code).  The test is parametrised over the four strategies (one site,
chosen by hypothesis, uses the strategy; 4 examples each), so every strategy is drawn under the
derandomised ci profile.  A planted twin per strategy (reparam with the location detached, enum
weights without their gradient, MVD constants 0.9 c, a score term without gradient) fails the
same check on a fixed small case.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ppl
from inference import vi
import _vi_twins as twins
from ppl import dist
from ppl.randomness import interpreter
from semantics.enumerate import _Node, _Walker

pytestmark = [pytest.mark.exact]

Y = 0.7
GH_T, GH_W = np.polynomial.hermite.hermgauss(4)
CAT_DIR = jnp.array([1.0, -1.0, 0.5])


class GaussHermiteWalker(_Walker):
    """Enumerates finite draws; a scalar Normal draw takes the 4 Gauss–Hermite nodes."""

    def draw(self, key, d, sample_shape, name):
        if getattr(d, "has_enumerate_support", False):
            return super().draw(key, d, sample_shape, name)
        if type(d).__name__ != "Normal" or tuple(sample_shape) + tuple(d.batch_shape) != ():
            raise AssertionError(f"unexpected continuous draw {name!r}: {d}")
        depth = self.pos
        self.pos += 1
        if depth >= len(self.nodes):
            self.nodes.append(_Node(name, [(None, math.log(w / math.sqrt(math.pi)), None, t) for t, w in zip(GH_T, GH_W)]))
        node = self.nodes[depth]
        _, lp, _, t = node.alternatives[node.index]
        self.log_prob += lp
        self.prob = None
        return jnp.asarray(d.loc + d.scale * math.sqrt(2.0) * t, dtype=jnp.float64)


def expectation(fn):
    """Σ_paths P(path) fn(path) over finite draws and Gauss–Hermite nodes."""
    walker = GaussHermiteWalker()
    acc = None
    with interpreter(walker):
        while True:
            walker.start()
            v = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), fn(jax.random.key(0)))
            w = math.exp(walker.log_prob)
            acc = jax.tree_util.tree_map(lambda x: w * x, v) if acc is None else jax.tree_util.tree_map(lambda a, x: a + w * x, acc, v)
            if not walker.advance():
                return acc


def build(spec):
    """(model, guide, guide_site) for a chain spec: [(kind, a, b, c)], kind in bern/cat/normal."""

    def dep(i, prev_kind, b):
        return b if (i > 0 and not (spec[i][0] != "normal" and prev_kind == "normal")) else 0.0

    def model_site(i, prev, prev_kind):
        kind, a, b, _ = spec[i]
        b = dep(i, prev_kind, b)
        if kind == "normal":
            return dist.Normal(a + b * prev, 1.0)
        if kind == "bern":
            return dist.Bernoulli(logits=a + b * prev)
        return dist.Categorical(logits=jnp.array([a, 0.0, -a]) + b * prev * CAT_DIR)

    def guide_site(i, prev, prev_kind, p):
        kind = spec[i][0]
        ga, gb = p[f"g{i}a"], dep(i, prev_kind, 1.0) * p[f"g{i}b"]
        if kind == "normal":
            return dist.Normal(ga + gb * prev, jnp.exp(p[f"g{i}s"]))
        if kind == "bern":
            return dist.Bernoulli(logits=ga + gb * prev)
        return dist.Categorical(logits=ga + gb * prev * CAT_DIR)

    @ppl.model
    def model(y):
        prev, prev_kind, mean = 0.0, None, 0.0
        for i, (kind, _, _, c) in enumerate(spec):
            z = ppl.sample(f"z{i}", model_site(i, prev, prev_kind))
            prev, prev_kind, mean = jnp.asarray(z, jnp.float64), kind, mean + c * z
        ppl.sample("y", dist.Normal(mean, 1.0), obs=y)

    @ppl.model
    def guide(y):
        p = {}
        for i, (kind, _, _, _) in enumerate(spec):
            p[f"g{i}a"] = ppl.param(f"g{i}a", jnp.array([0.2, -0.1, 0.3]) if kind == "cat" else 0.1 * (i + 1))
            p[f"g{i}b"] = ppl.param(f"g{i}b", 0.4)
            if kind == "normal":
                p[f"g{i}s"] = ppl.param(f"g{i}s", -0.2)
        prev, prev_kind = 0.0, None
        for i, (kind, _, _, _) in enumerate(spec):
            z = ppl.sample(f"z{i}", guide_site(i, prev, prev_kind, p))
            prev, prev_kind = jnp.asarray(z, jnp.float64), kind

    return model, guide, guide_site


def exact_elbo_grad(spec, model, guide, guide_site, u):
    """∇ E_q[log p(y, z) − log q(z)]: discrete values summed, Normal sites on Gauss–Hermite nodes
    z = loc + scale·√2·t (exact: the integrand is a polynomial of degree ≤ 2 in each t)."""

    def value(u):
        g = ppl.substitute(guide, u)

        def rec(i, prev, prev_kind, zs, w):
            if i == len(spec):
                return w * (model.log_density(zs, Y) - g.log_density(zs, Y))
            d = guide_site(i, prev, prev_kind, u)
            total = 0.0
            if spec[i][0] == "normal":
                for t, wt in zip(GH_T, GH_W):
                    z = d.loc + d.scale * math.sqrt(2.0) * t
                    total = total + rec(i + 1, z, "normal", {**zs, f"z{i}": z}, w * wt / math.sqrt(math.pi))
            else:
                for v in range(2 if spec[i][0] == "bern" else 3):
                    zv = jnp.asarray(v)
                    total = total + rec(i + 1, float(v), spec[i][0], {**zs, f"z{i}": zv}, w * jnp.exp(d.log_prob(zv)))
            return total

        return rec(0, 0.0, None, {}, 1.0)

    return jax.grad(value)(u)


SMALL = st.sampled_from([-0.5, 0.3, 0.8])
SITES = st.tuples(st.sampled_from(["bern", "cat", "normal"]), SMALL, SMALL, SMALL)


FOCUS = ("reparam", "reinforce", "enum", "mvd")


@st.composite
def specs_and_strategies(draw, focus):
    """A chain and its strategies, one site (chosen by hypothesis) using the strategy `focus`:
    the test is parametrised over the strategies, so each is drawn under any profile."""
    spec = draw(st.lists(SITES, min_size=1, max_size=3))
    j = draw(st.integers(0, len(spec) - 1))
    if focus == "reparam" and spec[j][0] != "normal":
        spec[j] = ("normal",) + spec[j][1:]
    if focus in ("enum", "mvd") and spec[j][0] == "normal":
        spec[j] = (draw(st.sampled_from(["bern", "cat"])),) + spec[j][1:]
    strategies = {}
    for i, (kind, *_) in enumerate(spec):
        options = ["reparam", "reinforce"] if kind == "normal" else ["reinforce", "enum", "mvd"]
        strategies[f"z{i}"] = focus if i == j else draw(st.sampled_from(options))
    assume(_work(spec, strategies) <= MAX_WORK)
    return spec, strategies


MAX_WORK = 40  # eager runs of the program per example: keeps each example to about a second


def _work(spec, strategies):
    """Eager program runs the walker makes: (paths W) × (runs per path R), built from the last
    site back.  A drawn site branches the paths; an enum site re-runs the rest once per value
    (each run with its own draws); an MVD site re-runs the rest once per weak-derivative branch."""
    n_alt = {"normal": 4, "bern": 2, "cat": 3}
    W, R = 1, 1
    for i in reversed(range(len(spec))):
        kind, s = spec[i][0], strategies[f"z{i}"]
        n = n_alt[kind]
        if s == "enum":
            W, R = W**n, n * R
        elif s == "mvd":
            b = 2 if kind == "bern" else 3
            W, R = n * W ** (1 + b), (1 + b) * R
        else:
            W = n * W
    return W * (R + 1)  # + the grad pass


def check_generated(case):
    spec, strategies = case
    model, guide, guide_site = build(spec)
    obj = vi.elbo(model, guide, strategies=strategies)
    u = obj.init_params(jax.random.key(0), Y)
    truth = exact_elbo_grad(spec, model, guide, guide_site, u)
    mean = expectation(lambda key: obj.grad(key, u, Y)[1])
    for k in truth:
        np.testing.assert_allclose(mean[k], np.asarray(truth[k]), rtol=1e-8, atol=1e-10, err_msg=f"{k} {spec} {strategies}")


@pytest.mark.slow
@pytest.mark.parametrize("focus", FOCUS)
def test_elbo_gradient_is_unbiased_on_generated_models(focus):
    # 4 examples per strategy (16 in all): each is an exact check of about a second
    @settings(max_examples=4)
    @given(specs_and_strategies(focus))
    def run(case):
        check_generated(case)

    run()


def test_planted_bug_missing_score_term_fails_on_a_generated_model(monkeypatch):
    spec = [("normal", 0.3, 0.0, 0.8), ("bern", -0.5, 0.8, 0.3)]
    model, guide, guide_site = build(spec)
    obj = vi.elbo(model, guide, strategies={"z0": "reinforce", "z1": "reinforce"})
    u = obj.init_params(jax.random.key(0), Y)
    truth = exact_elbo_grad(spec, model, guide, guide_site, u)
    good = expectation(lambda key: obj.grad(key, u, Y)[1])
    np.testing.assert_allclose(good["g0a"], np.asarray(truth["g0a"]), rtol=1e-8)
    twins.no_score(monkeypatch)
    bad = expectation(lambda key: obj.grad(key, u, Y)[1])
    assert not all(np.allclose(bad[k], np.asarray(truth[k]), rtol=1e-6, atol=1e-8) for k in truth)


sg = jax.lax.stop_gradient


GEN_TWINS = {
    # strategy -> (a fixed case using it, the planted bug: reparam with the location detached,
    # enum weights without their gradient, MVD constants 0.9 c, a score term without gradient)
    "reparam": (([("normal", 0.3, 0.0, 0.8), ("bern", -0.5, 0.8, 0.3)], {"z0": "reparam", "z1": "enum"}), twins.loc_detached),
    "enum": (([("bern", 0.3, 0.0, 0.8), ("cat", -0.5, 0.8, 0.3)], {"z0": "enum", "z1": "reinforce"}), twins.enum_weight_detached),
    "mvd": (([("bern", 0.3, 0.0, 0.8), ("cat", -0.5, 0.8, 0.3)], {"z0": "reinforce", "z1": "mvd"}), twins.mvd_weight_off),
    "reinforce": (([("normal", 0.3, 0.0, 0.8), ("cat", -0.5, 0.8, 0.3)], {"z0": "reparam", "z1": "reinforce"}), twins.no_score),
}


@pytest.mark.parametrize("focus", FOCUS)
def test_planted_twin_of_each_strategy_fails_on_a_generated_model(focus, monkeypatch):
    case, plant = GEN_TWINS[focus]
    assert _work(*case) <= MAX_WORK
    check_generated(case)  # the case passes as it is
    plant(monkeypatch)
    with pytest.raises(AssertionError):
        check_generated(case)

