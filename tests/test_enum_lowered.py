"""Issue 14 (h14): the enumeration's own log densities of ``Categorical`` sites, read without
broadcast-then-gather (``ppl.enum._observed_log_prob``, ``ppl.enum._support_log_prob``).

Laws (float64):
- site level: each lowered log density is numpyro's ``log_prob`` **bit for bit** (value) and its
  gradient is numpyro's (1e-12), on observed ``Categorical(probs=)`` / ``Categorical(logits=)``
  sites whose logits vary along one or two enumeration dims, along plates or not, through a
  plate's ``ExpandedDistribution``, with −inf logits and out-of-support data (−inf, as numpyro);
  anything the lowering does not cover is handed back to numpyro (None);
- model level: the marginal of models whose observed and latent ``Categorical`` sites take the
  lowered path is the log of ``semantics.enumerate``'s total mass (1e-10) and the same number
  as with the lowering switched off.
Planted bugs (tests/mutants/mutants_enum.py): the plate index of logits that vary along a plate
not used (element 0 read for every element); ``Categorical(logits=)`` not normalised.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import semantics
from ppl import dist
from ppl import enum as E


def _rand(key, shape):
    return jax.random.normal(jax.random.key(key), shape)


def _probs(key, shape):
    return jax.nn.softmax(2.0 * _rand(key, shape), -1)


# (logits batch shape with enumeration dims, the enumeration dims, the data's shape)
CASES = [
    ((4, 1, 7), (-3,), (45, 7)),         # Dawid–Skene: class (enum) x item (1) x position
    ((4, 1, 1), (-3,), (5, 3)),          # logits not varying along the plates
    ((3, 2, 1, 6), (-4, -3), (6,)),      # two enumeration dims; data of a lower rank
    ((3, 1, 5), (-3,), (4, 1)),          # the data broadcast along a plate the logits vary along
]


def _param(kind, key, shape, K):
    if kind == "probs":  # with a class of probability exactly 0 (log-probability -inf)
        p = _probs(key, shape + (K,)).at[..., 1].set(0.0)
        return p / p.sum(-1, keepdims=True)
    # a class ruled out (chosen by some data below); numpyro refuses -inf logits given
    # concretely, so the sites are built inside jit (as in a model under NUTS)
    return (3.0 * _rand(key, shape + (K,))).at[..., 1].set(-jnp.inf)


def _cat(kind, p, **kw):
    return dist.Categorical(probs=p, **kw) if kind == "probs" else dist.Categorical(logits=p, **kw)


def test_observed_site_log_density_is_numpyros_bit_for_bit():
    K = 4
    ys = [jax.random.randint(jax.random.key(1), yshape, 0, K) for _, _, yshape in CASES]
    ws = [_rand(2, jnp.broadcast_shapes(shape, yshape)) for shape, _, yshape in CASES]
    params = {kind: [_param(kind, i, shape, K) for i, (shape, _, _) in enumerate(CASES)] for kind in ("probs", "logits")}

    def grad(kind, p, y, dims, w, lowered):  # a weighted sum of the finite entries
        def f(p):
            d = _cat(kind, p)
            lp = E._observed_log_prob(d, y, set(dims)) if lowered else d.log_prob(y)
            return jnp.sum(jnp.where(jnp.isfinite(lp), lp, 0.0) * w)
        return jax.grad(f)(p)

    @jax.jit  # every case in one program: one compilation
    def all_cases(params):
        out = []
        for kind in ("probs", "logits"):  # (a dict's keys come back sorted from jit)
            for p, (shape, dims, yshape), y, w in zip(params[kind], CASES, ys, ws):
                d = _cat(kind, p)
                de = d.expand(jnp.broadcast_shapes(shape, yshape))  # the wrapper a plate adds
                out.append((d.log_prob(y), E._observed_log_prob(d, y, set(dims)),
                            de.log_prob(y), E._observed_log_prob(de, y, set(dims)),
                            grad(kind, p, y, dims, w, False), grad(kind, p, y, dims, w, True)))
        return out

    for i, (want, got, want_e, got_e, g0, g1) in enumerate(all_cases(params)):
        kind, case = ("probs", "logits")[i // len(CASES)], CASES[i % len(CASES)]
        assert got.shape == want.shape and got.dtype == want.dtype, (kind, case)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=f"{kind} {case}")
        np.testing.assert_array_equal(np.asarray(got_e), np.asarray(want_e), err_msg=f"{kind} {case}")
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-12, atol=1e-12, err_msg=f"{kind} {case}")
        assert np.isneginf(np.asarray(got)).any()  # the ruled-out class is chosen somewhere


def test_out_of_support_data_get_minus_infinity_as_in_numpyro():
    d = dist.Categorical(probs=_probs(3, (3, 1, 5, 4)))
    y = jnp.array([0, 4, -1, 3, 2])  # 4 and -1 are not classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpyro's "Out-of-support values" warning
        want, got = d.log_prob(y), E._observed_log_prob(d, y, {-3})
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert np.isneginf(np.asarray(got)[:, :, 1:3]).all()


def test_what_the_lowering_does_not_cover_is_left_to_numpyro():
    p = _probs(4, (3, 1, 5, 4))
    y = jnp.arange(5) % 4
    assert E._observed_log_prob(dist.Categorical(probs=p), y, {-4}) is None  # no enumeration dim varies
    assert E._observed_log_prob(dist.Categorical(probs=p), y.astype(float), {-3}) is None  # not integers
    assert E._observed_log_prob(dist.Categorical(probs=p, validate_args=False), y, {-3}) is None
    assert E._observed_log_prob(dist.Categorical(probs=p), jnp.zeros((3, 1, 5), int), {-3}) is None  # data vary along it
    assert E._observed_log_prob(dist.Bernoulli(probs=p[..., 0]), y % 2, {-3}) is None  # another family
    assert E._observed_log_prob(dist.Categorical(probs=p), jnp.zeros((4, 3), int), {-3}) is None  # shapes do not broadcast
    assert E._support_log_prob(dist.Bernoulli(probs=0.3), jnp.arange(2), -1) is None


@pytest.mark.parametrize("kind", ["probs", "logits"])
def test_enumerated_site_log_density_at_its_support_is_numpyros_bit_for_bit(kind):
    # a latent site laid along dim -3, its logits varying along an outer enumeration dim (-4) and a plate
    value = jnp.arange(3).reshape(3, 1, 1)

    @jax.jit
    def both(p):
        d, de = _cat(kind, p), _cat(kind, p).expand((2, 1, 1, 6))
        return d.log_prob(value), E._support_log_prob(d, value, -3), de.log_prob(value), E._support_log_prob(de, value, -3)

    want, got, want_e, got_e = both(_param(kind, 5, (2, 1, 1, 6), 3))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(got_e), np.asarray(want_e))
    # logits that vary along the site's own dim are not its values' density: left to numpyro
    assert E._support_log_prob(_cat("probs", _probs(5, (3, 1, 1, 3))), value, -3) is None


P_OBS = jnp.asarray(np.random.default_rng(0).dirichlet(np.ones(4), size=(2, 3, 3)))  # [g, a, position]
L_OBS = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4))).at[2, 0].set(-30.0)
Y = jnp.array([[0, 3, 1], [2, 2, 0]])  # (item, position)


@ppl.model
def two_sites():
    """An observed Categorical whose probabilities vary along two enumeration dims (a global g,
    a plated a) and a plate; a Categorical(logits=) with a ruled-out class; latent sites given
    by probs and by logits."""
    g = ppl.sample("g", dist.Categorical(probs=jnp.array([0.3, 0.7])))
    with ppl.plate("item", 2, dim=-2):
        a = ppl.sample("a", dist.Categorical(logits=jnp.array([0.2, -0.4, 1.0]) + g))
        with ppl.plate("position", 3):
            ppl.sample("y", dist.Categorical(probs=P_OBS[g, a, jnp.arange(3)]), obs=Y)
            ppl.sample("w", dist.Categorical(logits=L_OBS[a]), obs=jnp.array([[1, 3, 2], [0, 1, 1]]))


def test_marginal_with_lowered_sites_is_the_enumerated_mass(monkeypatch):
    seen = []
    real = E._observed_log_prob
    monkeypatch.setattr(E, "_observed_log_prob", lambda *a: seen.append(r := real(*a)) or r)
    mld = lambda: float(jax.jit(lambda: ppl.marginal_log_density(two_sites, {}))())  # noqa: E731
    got = mld()
    assert sum(r is not None for r in seen) >= 2  # both observed sites took the lowered path
    want = semantics.enumerate(two_sites).log_total_mass()
    assert np.isfinite(want) and abs(got - want) < 1e-10 * max(1.0, abs(want))
    monkeypatch.setattr(E, "_observed_log_prob", lambda *a: None)
    monkeypatch.setattr(E, "_support_log_prob", lambda *a: None)
    assert mld() == got
