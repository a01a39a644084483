"""The fast paths of the estimator compute exactly what the exactly-checked path computes.

The exact tests (``test_vi_exact``, ``test_vi_hierarchical``, ``test_vi_generated``) run the
estimator under the enumerator, where particles run as a Python loop and every evaluation takes
two passes (draw, then differentiate).  Under ``jit`` the estimator takes faster paths: particles
vectorised with ``vmap``, and one pass when the program has no enum / MVD site.  For a fixed
key these give the same draws, so value and gradient must be *equal* (to rounding) to the
two-pass, looped estimator: that transfers the exact checks to the shipped fast paths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from inference import vi
from inference.vi import estimator as vi_estimator
from inference.vi import program as vi_program
from ppl import dist

pytestmark = [pytest.mark.exact]

X = jnp.array([0.3, 1.2, 0.7])


@ppl.model
def model(x):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    c = ppl.sample("c", dist.Bernoulli(probs=0.4))
    with ppl.plate("d", x.shape[0]):
        ppl.sample("x", dist.Normal(mu + c, 1.0), obs=x)


@ppl.model
def guide(x):
    ppl.sample("mu", dist.Normal(ppl.param("m", 0.1), ppl.param("s", 0.9, constraint=dist.constraints.positive)))
    ppl.sample("c", dist.Bernoulli(logits=ppl.param("l", 0.2)))


@ppl.model
def hier_guide(x):
    lam = ppl.sample("lam", dist.Normal(0.0, 1.0))
    ppl.sample("mu", dist.Normal(ppl.param("m", 0.1) + ppl.param("w", 0.3) * lam, 0.7))
    ppl.sample("c", dist.Bernoulli(logits=ppl.param("l", 0.2)))


@ppl.model
def reverse(z, x):
    ppl.sample("lam", dist.Normal(ppl.param("a", 0.4) * z["mu"], 0.9))


def _nested_vimco(x):
    """VIMCO over a vi.marginal: particles (with baselines) inside particles, reinforce inside."""
    q = vi.marginal(hier_guide, ["lam"], reverse, 3)
    lw = vi.particles(4, lambda: vi.log_weight(model, vi.sample(q, x), x), baseline=vi.vimco_baselines)
    return jax.nn.logsumexp(lw) - jnp.log(4.0)


CASES = {
    "elbo2": (lambda: vi.elbo(model, guide, 2), {}),
    "vimco4": (lambda: vi.vimco(model, guide, 4), {}),
    "iwae3-mu-reinforce": (lambda: vi.iwae(model, guide, 3, strategies={"mu": "reinforce"}), {}),
    "rws3": (lambda: vi.rws(model, guide, 3), {}),
    "iwhvi3": (lambda: vi.iwhvi(model, hier_guide, ["lam"], reverse, 3), {}),
    "elbo-loo": (lambda: vi.elbo(model, guide), {"num_samples": 3, "baseline": "loo"}),
    "nested-vimco-marginal": (lambda: vi.Objective(_nested_vimco, {"lam": "reinforce"}), {}),
}


def _run(obj, kw):
    u = obj.init_params(jax.random.key(0), X)
    return jax.jit(lambda k: obj.grad(k, u, X, **kw))(jax.random.key(7))


def _no_vmap(*a, **k):
    raise vi_program._NeedsLoop("test")


def _no_one_pass(*a, **k):
    raise vi_program._NeedsTwoPasses("test")


SLOW = {"elbo2", "vimco4", "iwae3-mu-reinforce", "rws3", "iwhvi3", "nested-vimco-marginal"}  # > 5 s alone


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def test_fast_paths_equal_the_looped_two_pass_estimator(name, monkeypatch):
    make, kw = CASES[name]
    fast_v, fast_g = _run(make(), kw)
    monkeypatch.setattr(vi_program, "_particles_vmapped", _no_vmap)
    monkeypatch.setattr(vi_estimator.Objective, "_one_pass", _no_one_pass)
    ref_v, ref_g = _run(make(), kw)
    np.testing.assert_allclose(fast_v, ref_v, rtol=1e-12)
    assert set(fast_g) == set(ref_g)
    for k in ref_g:
        np.testing.assert_allclose(fast_g[k], ref_g[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_planted_bug_fast_path_with_other_draws_is_caught(monkeypatch):
    """A vmapped block that split its keys differently from the loop would break the transfer."""
    make, kw = CASES["vimco4"]
    orig = vi_program._particles_vmapped

    def shifted(ctx, num, fn):
        ctx.key = jax.random.fold_in(ctx.key, 1)
        return orig(ctx, num, fn)

    monkeypatch.setattr(vi_program, "_particles_vmapped", shifted)
    fast_v, _ = _run(make(), kw)
    monkeypatch.setattr(vi_program, "_particles_vmapped", _no_vmap)
    ref_v, _ = _run(make(), kw)
    assert not np.allclose(fast_v, ref_v, rtol=1e-12)
