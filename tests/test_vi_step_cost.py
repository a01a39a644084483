"""Issue 19, third pass: what a VI step costs, and that the cheaper step computes the same thing.

* **Full chunks run without a per-step branch.** ``scan_chunk(..., full=True)`` has no ``cond``
  in its program (the branch blocked XLA's fusion across the step); ``vi.fit`` calls that program
  for every chunk but a partial last one, and gets the same parameters and history as one chunk
  of exactly ``num_steps`` (so no step past the end runs: the chunk length is chosen so that an
  off-by-one in the "is this chunk full" test on the host would run one); a fit whose length is
  not a multiple of the chunk compiles the masked program once, and later fits of any length
  with the same chunk size compile nothing; the second chunk does not compile again (the
  initial parameters are strongly typed, as the chunk returns them).
* **Joint Gaussian guides draw once.** The full-rank guide's trace has one auxiliary draw (u) and
  point masses at the model's sites; its trace log density equals the density of the latent
  values computed independently (the MVN density of u minus log|det J| of each site's
  transform); the exactness of its gradient law is ``tests/test_vi_guide_laws.py``'s.
* **No silent wrong gradient.** ``"reinforce"`` on a point-mass site is refused, naming the site.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro.distributions.transforms import biject_to

import ppl
from inference import vi
from inference._run import loop
from ppl import dist

from _compiles import CompileCounter


@ppl.model
def two_sites(y):
    x = ppl.sample("x", dist.Normal(0.3, 1.2))
    s = ppl.sample("s", dist.LogNormal(0.0, 0.5))
    ppl.sample("y", dist.Normal(x, s), obs=y)


Y = 0.8


@ppl.model
def guide(y):
    ppl.sample("x", dist.Normal(ppl.param("loc", 0.0), 0.5))
    ppl.sample("s", dist.LogNormal(ppl.param("log_s", 0.0), 0.3))


def _primitives(jaxpr, out=None):
    out = set() if out is None else out
    for e in jaxpr.eqns:
        out.add(e.primitive.name)
        for p in e.params.values():
            for sub in p if isinstance(p, (list, tuple)) else [p]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    _primitives(inner, out)
    return out


def test_a_full_chunk_has_no_branch_and_a_masked_one_has():
    step = lambda k, c, t: (c + jax.random.normal(k, dtype=c.dtype), t)  # noqa: E731
    args = (jax.random.key(0), jnp.float32(0.0), jnp.int32(0), jnp.int32(10), 4)
    full = _primitives(jax.make_jaxpr(lambda *a: loop.scan_chunk(step, *a, full=True), static_argnums=(4,))(*args).jaxpr)
    masked = _primitives(jax.make_jaxpr(lambda *a: loop.scan_chunk(step, *a), static_argnums=(4,))(*args).jaxpr)
    assert "cond" in masked and "cond" not in full
    c_full, o_full = loop.scan_chunk(step, *args, full=True)
    c_mask, o_mask = loop.scan_chunk(step, *args)
    np.testing.assert_array_equal(c_full, c_mask)
    np.testing.assert_array_equal(o_full, o_mask)


def test_fit_with_a_partial_last_chunk_is_the_one_chunk_fit_and_compiles_the_masked_chunk_once():
    obj = vi.elbo(two_sites, guide)
    kw = dict(data=Y, progress=False, average=0)  # the steps alone (no check iterations of "auto" after them)
    one = vi.fit(jax.random.key(4), obj, optax.adam(0.05), num_steps=7, chunk_size=7, **kw)
    with CompileCounter() as c:  # two full chunks: the second's carry has the first's types
        vi.fit(jax.random.key(4), obj, optax.adam(0.05), num_steps=8, chunk_size=4, **kw)
    assert c.n == 1, f"the full chunk program should compile once, {c.n} compilations"
    with CompileCounter() as c:  # 4 + 3: the last chunk is one step short of full
        parts = vi.fit(jax.random.key(4), obj, optax.adam(0.05), num_steps=7, chunk_size=4, **kw)
    assert c.n == 1, f"the masked chunk program should compile once, {c.n} compilations"
    np.testing.assert_array_equal(parts.history, one.history)
    for k in one.params:
        np.testing.assert_array_equal(parts.params[k], one.params[k])
    with CompileCounter() as c:  # another length, same chunk size: both programs exist
        r = vi.fit(jax.random.key(5), obj, optax.adam(0.05), num_steps=10, chunk_size=4, **kw)
    assert c.n == 0 and r.history.shape == (10,)


def test_the_full_rank_guide_draws_u_once_and_scores_its_latent_values():
    guide = vi.auto_multivariate_normal(two_sites, Y, init="zeros")
    loc = jnp.array([0.2, -0.3])
    L = jnp.array([[0.7, 0.0], [0.4, 0.5]])
    tr = ppl.substitute(guide, {"auto/loc": loc, "auto/scale_tril": L}).simulate(jax.random.key(3), Y)
    aux = [k for k in tr.choices if k.startswith("_aux/")]
    assert aux == ["_aux/auto/latent"] and {"x", "s"} <= set(tr.choices)
    u = jnp.array([tr["x"], jnp.log(tr["s"])])  # the sites' unconstrained values, by hand
    np.testing.assert_allclose(tr.choices["_aux/auto/latent"], u, rtol=1e-6)
    d = u - loc
    z = jax.scipy.linalg.solve_triangular(L, d, lower=True)
    log_mvn = -0.5 * z @ z - jnp.sum(jnp.log(jnp.diag(L))) - jnp.log(2 * jnp.pi)
    expected = log_mvn - jnp.log(tr["s"])  # log|d exp(u)/du| = u_s
    np.testing.assert_allclose(tr.log_density - tr.log_likelihood, expected, rtol=1e-6)
    assert float(biject_to(dist.constraints.positive).inv(tr["s"])) == pytest.approx(float(u[1]))


def test_reinforce_on_a_point_mass_site_is_refused_naming_it():
    obj = vi.elbo(two_sites, vi.auto_multivariate_normal(two_sites, Y), strategies={"s": "reinforce"})
    with pytest.raises(vi.VIError, match="site 's'.*point mass.*'_aux/'"):
        obj.grad(jax.random.key(0), obj.init_params(jax.random.key(0), Y), Y)
    mvd = vi.elbo(two_sites, vi.auto_multivariate_normal(two_sites, Y), strategies={"s": "mvd"})
    with pytest.raises(vi.VIError, match="point mass.*'_aux/"):  # not 'use reinforce', refused just above
        mvd.grad(jax.random.key(0), mvd.init_params(jax.random.key(0), Y), Y)
    ok = vi.elbo(two_sites, vi.auto_multivariate_normal(two_sites, Y), strategies={"_aux/auto/latent": "reinforce"})
    value, g = jax.jit(lambda u: ok.grad(jax.random.key(0), u, Y))(ok.init_params(jax.random.key(0), Y))
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(v)) for v in g.values())
