"""Exact enumeration of models and blocks against hand computations and independent oracles."""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import ppl
import semantics
from ppl import dist
from semantics import Choices, Measure, NotEnumerableError, oracles
from semantics import strategies as S

F = Fraction


@ppl.model
def coin():
    z = ppl.sample("z", dist.Bernoulli(probs=0.25))
    ppl.sample("y", dist.Bernoulli(probs=0.5 + 0.25 * z), obs=1)


def test_hand_computed_posterior():
    mu = semantics.enumerate(coin)
    assert mu.exact == {Choices({"z": 0, "y": 1}): F(3, 8), Choices({"z": 1, "y": 1}): F(3, 16)}
    assert mu.exact_total_mass() == F(9, 16)
    assert math.isclose(mu.total_mass(), 9 / 16, rel_tol=1e-14)
    assert mu.normalize().marginal("z").exact == {Choices({"z": 0}): F(2, 3), Choices({"z": 1}): F(1, 3)}


@ppl.model
def features(T):
    """factor, plate, scan, cond, a nested model and a Binomial, all in one."""
    a = ppl.sample("a", dist.Bernoulli(probs=1 / 3))
    with ppl.plate("p", 2):
        v = ppl.sample("v", dist.Bernoulli(probs=0.5))
    ppl.factor("f", jnp.where(jnp.sum(v) == 2, math.log(0.5), 0.0))

    def step(c, _):
        s = ppl.sample("s", dist.Bernoulli(probs=jnp.where(c == 1, 0.75, 0.25)))
        return s, s

    ppl.scan(step, a, length=T, name="chain")
    k = ppl.cond(a == 1, lambda: ppl.sample("k", dist.Binomial(2, probs=0.5)), lambda: jnp.asarray(0))
    sub(k, name="inner")


@ppl.model
def sub(k):
    ppl.sample("o", dist.Bernoulli(probs=(k + 1) / 4.0), obs=1)


def _features_oracle(T):
    out = {}
    for a in (0, 1):
        pa = F(1, 3) if a else F(2, 3)
        for v in [(0, 0), (0, 1), (1, 0), (1, 1)]:
            pv = F(1, 4) * (F(1, 2) if v == (1, 1) else 1)
            for ss in np.ndindex(*(2,) * T):
                ps, c = F(1), a
                for s in ss:
                    q = F(3, 4) if c == 1 else F(1, 4)
                    ps *= q if s else 1 - q
                    c = s
                for k in ((0, 1, 2) if a else (None,)):
                    pk = F(1) if k is None else F(math.comb(2, k), 4)
                    kk = 0 if k is None else k
                    ch = {"a": a, "v": v, "chain/s": tuple(ss), "inner/o": 1}
                    if k is not None:
                        ch["k"] = k
                    out[Choices(ch)] = pa * pv * ps * pk * F(kk + 1, 4)
    return Measure.from_weights(out)


def test_factor_plate_scan_cond_nested_binomial():
    mu = semantics.enumerate(features, 2)
    assert mu.exact is None  # the factor log(0.5) is not carried exactly
    mu.assert_equal(_features_oracle(2), tol=1e-13)


def test_addresses_depend_on_choices():
    mu = semantics.enumerate(features, 1)
    with_k = [c for c in mu.atoms if "k" in c]
    without_k = [c for c in mu.atoms if "k" not in c]
    assert all(c["a"] == 1 for c in with_k) and all(c["a"] == 0 for c in without_k)
    assert with_k and without_k


def test_condition_and_do():
    @ppl.model
    def net():
        x = ppl.sample("x", dist.Bernoulli(probs=0.25))
        y = ppl.sample("y", dist.Bernoulli(probs=jnp.where(x == 1, 0.5, 0.25)))
        ppl.sample("z", dist.Categorical(probs=jnp.where(y == 1, jnp.array([0.5, 0.5, 0.0]), jnp.array([0.25, 0.25, 0.5]))))

    cond = semantics.enumerate(ppl.condition(net, {"y": 1}))
    assert cond.exact_total_mass() == F(3, 4) * F(1, 4) + F(1, 4) * F(1, 2)
    assert all(c["y"] == 1 for c in cond.atoms)
    do = semantics.enumerate(ppl.do(net, {"y": 1}))
    assert do.exact_total_mass() == 1  # intervened sites are not scored
    assert all("y" not in c for c in do.atoms)
    assert do.marginal("z").exact == {Choices({"z": 0}): F(1, 2), Choices({"z": 1}): F(1, 2)}
    # zero-probability alternatives (z = 2 when y = 1) are pruned
    assert len(do) == 4


def test_weight_is_path_probability_times_likelihood():
    """The two readings of an atom's weight agree: exp(log_density) = P(path) · likelihood."""
    for tr, lw, prob, path in semantics.enumerate_traces(features, 2):
        assert math.isclose(lw, path.log_prob + float(tr.log_likelihood), rel_tol=1e-13, abs_tol=1e-13)
        assert path.prob is not None
        # the factor is not exact, so the exact weight is absent, but P(path) is exact
        assert math.isclose(float(path.prob), math.exp(path.log_prob), rel_tol=1e-13)


def test_hmm_matches_forward_algorithm():
    init, trans, emit = [0.5, 0.5], [[0.75, 0.25], [0.25, 0.75]], [[0.8, 0.2], [0.4, 0.6]]
    y = [0, 1, 1]
    fi, ft, fe = map(jnp.asarray, (init, trans, emit))

    @ppl.model
    def hmm(ys):
        def step(prev, y_t):
            s = ppl.sample("s", dist.Categorical(probs=jnp.where(prev < 0, fi, ft[jnp.maximum(prev, 0)])))
            ppl.sample("y", dist.Categorical(probs=fe[s]), obs=y_t)
            return s, s

        ppl.scan(step, jnp.asarray(-1), xs=ys, name="hmm")

    mu = semantics.enumerate(hmm, jnp.asarray(y))
    fw = oracles.hmm_forward(init, trans, emit, y)
    assert math.isclose(mu.log_total_mass(), fw.log_evidence, rel_tol=1e-13)
    last = mu.normalize().pushforward(lambda c: c["hmm/s"][-1])
    assert np.allclose([last.weight(0), last.weight(1)], fw.filtering[-1], atol=1e-14)


@given(S.discrete_models())
@settings(max_examples=20)
def test_enumeration_equals_brute_force_oracle(spec):
    semantics.enumerate(spec.model, *spec.args).assert_equal(spec.oracle(), exact=True)


@given(S.hmms())
@settings(max_examples=10)
def test_hmm_strategy_matches_forward(spec):
    p = spec.params
    mu = semantics.enumerate(spec.model, *spec.args)
    fw = oracles.hmm_forward(*(np.vectorize(float)(p[k]) for k in ("init", "trans", "emit")), list(p["y"]))
    assert math.isclose(mu.log_total_mass(), fw.log_evidence, rel_tol=1e-12)


def test_batched_and_sample_shape_draws():
    two = semantics.enumerate_block(lambda key: ppl.randomness.draw(key, dist.Bernoulli(probs=0.25), (2,)))
    assert two.exact == {(0, 0): F(9, 16), (0, 1): F(3, 16), (1, 0): F(3, 16), (1, 1): F(1, 16)}
    batched = semantics.enumerate_block(lambda key: ppl.randomness.draw(key, dist.Categorical(probs=jnp.array([[0.5, 0.5], [1.0, 0.0]]))))
    assert batched.exact == {(0, 0): F(1, 2), (1, 0): F(1, 2)}


def test_enumerate_block_sum_of_flips_and_paths():
    def two_flips(key):
        k1, k2 = jax.random.split(key)
        return ppl.randomness.draw(k1, dist.Bernoulli(probs=0.5)) + ppl.randomness.draw(k2, dist.DiscreteUniform(0, 2))

    m = semantics.enumerate_block(two_flips)
    assert m.exact == {0: F(1, 6), 1: F(1, 3), 2: F(1, 3), 3: F(1, 6)}
    paths = semantics.enumerate_paths(two_flips)
    assert len(paths) == 6 and sum(p.prob for p in paths) == 1


def test_non_enumerable_draw_is_named():
    @ppl.model
    def cont():
        ppl.sample("theta", dist.Normal(0.0, 1.0))

    with pytest.raises(NotEnumerableError, match="'theta'.*Normal"):
        semantics.enumerate(cont)


def test_irrational_parameters_drop_exactness_not_floats():
    @ppl.model
    def m():
        ppl.sample("x", dist.Bernoulli(probs=1 / math.pi))

    mu = semantics.enumerate(m)
    assert mu.exact is None
    assert math.isclose(mu.weight({"x": 1}), 1 / math.pi, rel_tol=1e-14)
    assert semantics.rational(1 / 3) == F(1, 3) and semantics.rational(math.pi) is None
    assert semantics.exact_prob(dist.Binomial(3, probs=0.5), 2) == F(3, 8)


# ---------------------------------------------------------------------------------------------
# guarded keys: randomness that bypasses ppl.randomness.draw is an error under the enumerator

import importlib  # noqa: E402

from ppl.randomness import RandomnessBypassError, guarded_key, is_guarded  # noqa: E402

_E = importlib.import_module("semantics.enumerate")


def _flip(key):
    return ppl.randomness.draw(key, dist.Bernoulli(probs=0.25), name="flip")


BYPASSES = {
    "jax.random.normal": lambda key: _flip(key) + jax.random.normal(key),
    "after split": lambda key: _flip(key) + jax.random.bernoulli(jax.random.split(key)[1], 0.5),
    "after fold_in, under jit": lambda key: _flip(key) + jax.jit(lambda k: jax.random.uniform(k))(jax.random.fold_in(key, 3)),
    "under vmap": lambda key: _flip(key) + jax.vmap(lambda k: jax.random.categorical(k, jnp.zeros(3)))(jax.random.split(key, 2)).sum(),
    "numpyro sample": lambda key: _flip(key) + dist.Normal(0.0, 1.0).sample(key),
    "jax.random.permutation": lambda key: _flip(key) + jax.random.permutation(key, 3)[0],
}


@pytest.mark.exact
@pytest.mark.parametrize("name", list(BYPASSES))
def test_randomness_that_bypasses_draw_raises_under_the_enumerator(name):
    block = BYPASSES[name]
    with pytest.raises(RandomnessBypassError, match=r"bypassed ppl\.randomness\.draw.*ppl\.randomness\.draw\(key"):
        semantics.enumerate_paths(block)


@pytest.mark.exact
def test_the_same_bypass_is_silent_with_a_plain_key():
    """The twin: with an ordinary key the bypassing block enumerates without complaint, its
    jax.random value a fixed number on every path (what the guard exists to prevent)."""
    block = BYPASSES["jax.random.normal"]
    walker = _E._Walker()
    with ppl.randomness.interpreter(walker):
        walker.start()
        out = block(jax.random.key(0))  # no error: the bypass is invisible
    assert np.isfinite(float(out))
    with pytest.raises(RandomnessBypassError):
        with ppl.randomness.interpreter(_E._Walker()):
            block(guarded_key(0))


@pytest.mark.exact
def test_guarded_keys_split_and_fold_like_production_keys():
    """Blocks may split and fold the key: same key data as threefry, and draws still work."""
    g, k = guarded_key(7), jax.random.key(7)
    assert is_guarded(g) and is_guarded(jax.random.split(g)[1]) and not is_guarded(k)
    for f in (lambda x: jax.random.split(x, 3), lambda x: jax.random.fold_in(x, 11), lambda x: jax.random.split(jax.random.fold_in(x, 2))[1]):
        np.testing.assert_array_equal(np.asarray(jax.random.key_data(f(g))), np.asarray(jax.random.key_data(f(k))))

    def block(key):
        k1, k2 = jax.random.split(jax.random.fold_in(key, 1))
        return _flip(k1) + 2 * ppl.randomness.draw(k2, dist.Bernoulli(probs=0.5), name="b")

    m = semantics.enumerate_block(block)
    assert m.exact == {0: F(3, 8), 1: F(1, 8), 2: F(3, 8), 3: F(1, 8)}
    # a model with latent choices enumerates as before (its draws go through draw)
    assert semantics.enumerate(coin).exact_total_mass() == F(9, 16)


# ---------------------------------------------------------------------------------------------
# the compiled-path check catches each way a compiled branch can differ from the eager one


def _branchy(compiled_bug=None):
    """A block with an eager branch and a compiled one, like select/mixture/resample."""

    def block(key, x):
        k1, k2 = jax.random.split(key)
        b = ppl.randomness.draw(k1, dist.Bernoulli(probs=0.25), name="b")
        probs = jnp.array([0.5, 0.25, 0.25])
        if ppl.randomness.requires_eager():
            if bool(b):
                c = ppl.randomness.draw(k2, dist.Categorical(probs=probs), name="c")
                return x + c.astype(x.dtype), b
            return x, b
        if compiled_bug == "probability":
            probs = jnp.array([0.25, 0.5, 0.25])
        if compiled_bug == "missing draw":
            return jnp.where(b == 1, x + 1, x), b
        def yes(x):
            c = ppl.randomness.draw(k2, dist.Categorical(probs=probs), name="c").astype(x.dtype)
            return x + (c if compiled_bug != "output" else 2 - c)

        out = jax.lax.cond(b == 1, yes, lambda x: x, x)
        if compiled_bug == "structure":
            return {"x": out}, b
        return out, b

    return block


@pytest.mark.exact
def test_compiled_path_check_passes_when_both_branches_agree():
    paths = _E.check_compiled(_branchy(), jnp.asarray(10, jnp.int32))
    assert all(isinstance(cp, _E.CompiledPath) for cp in paths)
    assert sorted((int(cp.compiled[0]), cp.path.prob) for cp in paths) == [(10, F(1, 8)), (10, F(3, 4)), (11, F(1, 16)), (12, F(1, 16))]
    m = _E.enumerate_compiled(_branchy(), jnp.asarray(10, jnp.int32), key=lambda out: int(out[0]))
    assert m.exact == {10: F(7, 8), 11: F(1, 16), 12: F(1, 16)}


@pytest.mark.exact
@pytest.mark.parametrize("bug,message", [
    ("output", "output differs"),
    ("probability", "log-probability"),
    ("missing draw", "never made the draw 'c'"),
    ("structure", "different structures"),
])
def test_compiled_path_check_catches_a_compiled_branch_that_differs(bug, message):
    with pytest.raises(_E.CompiledPathMismatch, match=message):
        _E.check_compiled(_branchy(bug), jnp.asarray(10, jnp.int32))


@pytest.mark.exact
def test_compiled_path_check_feeds_per_particle_draws_under_vmap_and_scan():
    """Each vmapped particle and each lax.scan step reads its own outcome (by its key)."""

    def block(key):
        keys = jax.random.split(key, 3)
        one = lambda k: ppl.randomness.draw(k, dist.Bernoulli(probs=0.5), name="p")  # noqa: E731
        if ppl.randomness.requires_eager():
            xs = jnp.stack([one(k) for k in keys])
            tot = 0
            for k in keys:
                tot = 2 * tot + one(jax.random.fold_in(k, 1))
        else:
            xs = jax.vmap(one)(keys)
            tot, _ = jax.lax.scan(lambda t, k: (2 * t + one(jax.random.fold_in(k, 1)), None), 0, keys)
        return xs, tot

    paths = _E.check_compiled(block)
    assert len(paths) == 64
    assert len({(tuple(np.asarray(cp.compiled[0])), int(cp.compiled[1])) for cp in paths}) == 64
