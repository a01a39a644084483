"""jaxlib 0.10's batched-LAPACK deadlock on several CPU devices (``inference._lapack``), outside
MCMC (whose chains are covered in ``test_mcmc_sharding.py``): SMC particles and VI particles.

A GP whose ``MultivariateNormal`` covariance (60×60) depends on a sampled length scale calls a
Cholesky and triangular solves per particle; ``vmap``-ed over a device's particles on 2 CPU
devices of a 2-core machine, ``smc.tempered_smc`` and ``vi.fit`` (an ELBO of 8 particles) never
returned (no CPU use) before ``inference._lapack.map_batch`` looped over each device's share.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from tests._multidevice import run_on_devices


def test_smc_and_vi_particles_with_a_models_lapack_finish_on_two_devices():
    """Both used to hang (the subprocess was killed at the timeout); now both finish, and give
    the unsharded run's numbers for the same key."""
    out = run_on_devices(
        """
        import numpy as np, jax, jax.numpy as jnp, optax
        import ppl
        from ppl import dist
        from inference import smc, vi

        x = jnp.linspace(0.0, 1.0, 60)
        y = jnp.sin(6 * x)

        @ppl.model
        def gp(x, y):
            ls = ppl.sample("ls", dist.LogNormal(0.0, 1.0))
            k = jnp.exp(-0.5 * ((x[:, None] - x[None, :]) / ls) ** 2) + 0.1 * jnp.eye(x.shape[0])
            ppl.sample("y", dist.MultivariateNormal(jnp.zeros(x.shape[0]), k), obs=y)

        def both():
            t = smc.tempered_smc(jax.random.key(0), gp, x, y, num_particles=8, betas=jnp.linspace(0.0, 1.0, 3),
                                 num_mcmc_steps=1)
            print("tempered_smc finished", flush=True)
            f = vi.fit(jax.random.key(0), vi.elbo(gp, vi.auto_normal(gp, x, y), num_particles=8), optax.adam(1e-2),
                       x, y, num_steps=3, progress=False)
            print("vi.fit finished", flush=True)
            return np.asarray(t.samples["ls"]), float(t.log_evidence), jax.tree.map(np.asarray, f.params)

        sharded = both()
        os.environ["PPL_SHARDING"] = "0"
        plain = both()
        np.testing.assert_allclose(sharded[0], plain[0], rtol=1e-6)
        np.testing.assert_allclose(sharded[1], plain[1], rtol=1e-8)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9), sharded[2], plain[2])
        print("ok")
        """,
        n=2,
        timeout=150,
    )
    assert out.strip().endswith("ok")


_M = jax.ShapeDtypeStruct((4, 4), jnp.float32)
_L = jax.lax.linalg
_JSL = jax.scipy.linalg
#: what a model might call, and whether jax 0.10.2 lowers it to a ``lapack_*`` custom call on CPU
LINALG = {
    "lax.linalg.cholesky": (lambda a: _L.cholesky(a), True),
    "lax.linalg.eigh": (lambda a: _L.eigh(a)[1], True),
    "lax.linalg.eig": (lambda a: _L.eig(a)[0], True),
    "lax.linalg.lu": (lambda a: _L.lu(a)[0], True),
    "lax.linalg.qr": (lambda a: _L.qr(a)[0], True),
    "lax.linalg.householder_product": (lambda a: _L.householder_product(a, a[0]), True),
    "lax.linalg.svd": (lambda a: _L.svd(a)[1], True),
    "lax.linalg.schur": (lambda a: _L.schur(a)[0], True),
    "lax.linalg.hessenberg": (lambda a: _L.hessenberg(a)[0], True),
    "lax.linalg.triangular_solve": (lambda a: _L.triangular_solve(a, a, left_side=True, lower=True), True),
    "lax.linalg.tridiagonal": (lambda a: _L.tridiagonal(a)[0], True),
    "lax.linalg.tridiagonal_solve": (lambda a: _L.tridiagonal_solve(a[0], a[1], a[2], a[:, :1]), True),
    "lax.linalg.qdwh": (lambda a: _L.qdwh(a)[0], True),
    "lax.linalg.cholesky_update": (lambda a: _L.cholesky_update(a, a[0]), False),  # plain jax in 0.10.2
    "lax.linalg.symmetric_product": (lambda a: _L.symmetric_product(a, a), False),
    "lax.linalg.lu_pivots_to_permutation": (lambda a: _L.lu_pivots_to_permutation(a[0].astype(jnp.int32), 4), False),
    "jnp.linalg.det": (jnp.linalg.det, True),
    "jnp.linalg.slogdet": (lambda a: jnp.linalg.slogdet(a)[1], True),
    "jnp.linalg.inv": (jnp.linalg.inv, True),
    "jnp.linalg.solve": (lambda a: jnp.linalg.solve(a, a[0]), True),
    "jnp.linalg.pinv": (jnp.linalg.pinv, True),
    "jnp.linalg.lstsq": (lambda a: jnp.linalg.lstsq(a, a[0])[0], True),
    "jnp.linalg.eigvalsh": (jnp.linalg.eigvalsh, True),
    "jnp.linalg.eigvals": (jnp.linalg.eigvals, True),
    "jnp.linalg.norm(ord=2)": (lambda a: jnp.linalg.norm(a, 2), True),
    "jnp.linalg.cond": (jnp.linalg.cond, True),
    "jnp.linalg.matrix_rank": (jnp.linalg.matrix_rank, True),
    "jnp.linalg.matrix_power": (lambda a: jnp.linalg.matrix_power(a, 3), False),
    "scipy.linalg.expm": (_JSL.expm, True),
    "scipy.linalg.sqrtm": (_JSL.sqrtm, True),
    "scipy.linalg.solve_triangular": (lambda a: _JSL.solve_triangular(a, a[0], lower=True), True),
    "scipy.linalg.cho_solve": (lambda a: _JSL.cho_solve((a, True), a[0]), True),
    "scipy.linalg.lu_factor": (lambda a: _JSL.lu_factor(a)[0], True),
    "scipy.linalg.polar": (lambda a: _JSL.polar(a)[0], True),
    "scipy.linalg.eigh_tridiagonal": (lambda a: _JSL.eigh_tridiagonal(a[0], a[1, :3], eigvals_only=True), False),
}


@pytest.mark.parametrize("known", [True, False], ids=["with-the-list", "lowering-only"])
def test_calls_lapack_agrees_with_the_cpu_lowering_for_each_linalg_function(known, monkeypatch):
    """For each function of jax 0.10.2's linear algebra, the detector says LAPACK exactly when
    its CPU lowering holds a ``lapack_*`` custom call (and the table says so too); without the
    list of known primitives, the lowering of each primitive alone still finds every one."""
    from inference import _lapack

    if not known:
        monkeypatch.setattr(_lapack, "LAPACK_PRIMITIVES", frozenset())
        monkeypatch.setattr(_lapack, "_LOWERED", {})
    wrong = {}
    for name, (f, lapack) in LINALG.items():
        hlo = jax.jit(f).trace(_M).lower(lowering_platforms=("cpu",)).as_text()
        seen = _lapack.calls_lapack(f, _M)
        if not (seen == ("lapack_" in hlo) == lapack):
            wrong[name] = (seen, "lapack_" in hlo, lapack)
    assert not wrong, wrong
