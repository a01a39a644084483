"""Chains across devices and long runs: the driver's results with 8 (forced host) devices equal
those with sharding off for the same key, and a run of 10⁶ draws keeps device memory bounded
(the draws go to host memory chunk by chunk)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from scipy import stats as st

import ppl
from _budget import BUDGET
from inference import mcmc
from ppl import dist
from tests._multidevice import run_on_devices


@pytest.mark.slow
def test_nuts_chains_sharded_over_eight_devices_equal_unsharded():
    out = run_on_devices(
        """
        import numpy as np, jax, jax.numpy as jnp
        import ppl
        from ppl import dist
        from inference import mcmc, sharding

        @ppl.model
        def normal_mean(y):
            mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
            s = ppl.sample("s", dist.HalfNormal(1.0))
            with ppl.plate("data", y.shape[0]):
                ppl.sample("y", dist.Normal(mu, s), obs=y)

        y = jnp.array([0.8, 1.9, 0.4, 1.3])
        kw = dict(num_warmup=40, num_samples=30, num_chains=16, chunk_size=20, progress=False)
        assert sharding.num_devices() == 8
        a = mcmc.sample(jax.random.key(3), mcmc.NUTS(), normal_mean, y, **kw)
        assert len(a.state.x.sharding.device_set) == 8, a.state.x.sharding   # chains split over devices
        compiles = []
        listener = lambda event, d, **kw: compiles.append(event) if event == "/jax/core/compile/backend_compile_duration" else None
        jax.monitoring.register_event_duration_secs_listener(listener)
        more_a = a.resume(jax.random.key(4), num_samples=10)   # sharded state in, nothing new to compile
        jax.monitoring.unregister_event_duration_listener(listener)
        assert not compiles, compiles
        os.environ["PPL_SHARDING"] = "0"
        b = mcmc.sample(jax.random.key(3), mcmc.NUTS(), normal_mean, y, **kw)
        assert len(b.state.x.sharding.device_set) == 1
        more_b = b.resume(jax.random.key(4), num_samples=10)
        # the same numbers up to rounding: XLA fuses the per-chain arithmetic of the sharded program
        # differently (≈1e-16 per operation), and 70 NUTS transitions amplify that to ≈1e-7;
        # the discrete choices (tree depths) are identical
        for k in a.samples:
            assert isinstance(a.samples[k], np.ndarray) and a.samples[k].shape == (16, 30)
            np.testing.assert_allclose(a.samples[k], b.samples[k], rtol=1e-5, atol=1e-8)
            np.testing.assert_allclose(more_a.samples[k], more_b.samples[k], rtol=1e-5, atol=1e-8)
        np.testing.assert_array_equal(a.info["tree_depth"], b.info["tree_depth"])
        print("ok")
        """
    )
    assert out.strip().endswith("ok")


@pytest.mark.slow  # a subprocess with 2 devices compiling NUTS twice: 30 s at load 8
def test_nuts_chains_on_two_devices_run_as_separate_loops_with_the_unsharded_draws():
    """Each device runs its own chains' NUTS trees (``sharding.per_device``): the compiled init
    and chunk hold no cross-device collective (under GSPMD every leapfrog iteration all-reduced
    the vmapped tree loop's predicate), and the draws are the unsharded ones."""
    out = run_on_devices(
        """
        import numpy as np, jax, jax.numpy as jnp
        import ppl
        from ppl import dist
        from inference import mcmc, sharding

        @ppl.model
        def normal_mean(y):
            mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
            s = ppl.sample("s", dist.HalfNormal(1.0))
            with ppl.plate("data", y.shape[0]):
                ppl.sample("y", dist.Normal(mu, s), obs=y)

        y = jnp.array([0.8, 1.9, 0.4, 1.3])
        kw = dict(num_warmup=30, num_samples=20, num_chains=4, chunk_size=25, progress=False)
        a = mcmc.sample(jax.random.key(5), mcmc.NUTS(), normal_mean, y, **kw)
        assert len(a.state.x.sharding.device_set) == 2, a.state.x.sharding
        prog, dyn, key = a._program, a._dyn, jax.random.key(0)
        chunk = prog.chunk.lower(key, a.state, dyn, np.int32(0), np.int32(0), np.bool_(True)).compile().as_text()
        init = prog.init.lower(key, dyn, None, strategy=None).compile().as_text()
        for hlo in (chunk, init):
            assert "while" in hlo
            for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute"):
                assert op not in hlo, op
        os.environ["PPL_SHARDING"] = "0"
        b = mcmc.sample(jax.random.key(5), mcmc.NUTS(), normal_mean, y, **kw)
        assert len(b.state.x.sharding.device_set) == 1
        for k in a.samples:
            np.testing.assert_allclose(a.samples[k], b.samples[k], rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(a.info["tree_depth"], b.info["tree_depth"])
        print("ok")
        """,
        n=2,
    )
    assert out.strip().endswith("ok")


def test_low_rank_and_dense_adaptation_finish_on_two_devices():
    """Issue 15: ``NUTS(adapt_mass_matrix="low_rank")`` (and ``"dense"``) never returned with 2 CPU
    devices on a 2-core machine: a batch of LAPACK calls (``eigh`` / Cholesky of a device's chains)
    in each device's program, which jaxlib 0.10 spreads over XLA's intra-op pool and waits for
    from a worker of that pool, deadlocked it (:mod:`inference._lapack`).  Before the fix both runs
    hung (the subprocess's timeout turns that into a failure); the estimates now call LAPACK one
    chain at a time, which the lowered chunk shows whatever the machine's cores (no
    ``num_batch_dims`` other than 0 on a LAPACK call), and the draws stay the unsharded ones.  d = 40 (low_rank)
    and 64 (dense) are above jaxlib's 2·10⁵-flop threshold for two matrices; 30 / 40 warmup steps
    reach an estimate."""
    out = run_on_devices(
        """
        import re
        import numpy as np, jax, jax.numpy as jnp
        import ppl
        from ppl import dist
        from inference import mcmc

        for kind, d, warmup in (("low_rank", 40, 30), ("dense", 64, 40)):
            @ppl.model
            def gauss():
                ppl.sample("x", dist.Normal(jnp.zeros(d), 1.0).to_event(1))

            run = mcmc.sample(jax.random.key(0), mcmc.NUTS(adapt_mass_matrix=kind), gauss, num_warmup=warmup,
                              num_samples=5, num_chains=4, progress=False)
            assert len(run.state.x.sharding.device_set) == 2
            assert np.all(np.isfinite(run.samples["x"]))
            prog, key = run._program, jax.random.key(0)
            hlo = prog.chunk.lower(key, run.state, run._dyn, np.int32(0), np.int32(0), np.bool_(True)).as_text()
            calls = [l for l in hlo.splitlines() if re.search(r"custom_call @lapack_", l)]
            assert calls, kind
            batched = [l for l in calls if 'num_batch_dims = "0"' not in l]
            assert not batched, (kind, batched[:2])
            if kind == "low_rank":  # the draws are the unsharded run's (up to rounding, as above)
                os.environ["PPL_SHARDING"] = "0"
                b = mcmc.sample(jax.random.key(0), mcmc.NUTS(adapt_mass_matrix=kind), gauss, num_warmup=warmup,
                                num_samples=5, num_chains=4, progress=False)
                del os.environ["PPL_SHARDING"]
                assert len(b.state.x.sharding.device_set) == 1
                np.testing.assert_allclose(run.samples["x"], b.samples["x"], rtol=1e-6, atol=1e-9)
                np.testing.assert_array_equal(run.info["tree_depth"], b.info["tree_depth"])
        print("ok")
        """,
        n=2,
        timeout=180,
    )
    assert out.strip().endswith("ok")


def test_a_models_own_lapack_calls_finish_on_two_devices():
    """Issue 15, the model's side: a GP whose ``MultivariateNormal`` covariance (60×60) depends on
    a sampled length scale calls a Cholesky and triangular solves per chain in its log density;
    batched over a device's chains, jaxlib 0.10 spreads them over the intra-op pool and waits
    from a worker of it, which hung default NUTS with 4 chains on 2 CPU devices of a 2-core
    machine (this test timed out before the fix; d = 50 did not hang, 60 did).  The device's
    chains now step one at a time (``_Program._one_at_a_time``): no LAPACK call in the lowered
    chunk is batched, and the draws are the unsharded run's."""
    out = run_on_devices(
        """
        import re
        import numpy as np, jax, jax.numpy as jnp
        import ppl
        from ppl import dist
        from inference import mcmc

        x = jnp.linspace(0.0, 1.0, 60)

        @ppl.model
        def gp(x, y):
            ls = ppl.sample("ls", dist.LogNormal(0.0, 1.0))
            k = jnp.exp(-0.5 * ((x[:, None] - x[None, :]) / ls) ** 2) + 0.1 * jnp.eye(x.shape[0])
            ppl.sample("y", dist.MultivariateNormal(jnp.zeros(x.shape[0]), k), obs=y)

        kw = dict(num_warmup=10, num_samples=5, num_chains=4, progress=False)
        run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), gp, x, jnp.sin(6 * x), **kw)
        assert len(run.state.x.sharding.device_set) == 2
        prog, key = run._program, jax.random.key(0)
        hlo = prog.chunk.lower(key, run.state, run._dyn, np.int32(0), np.int32(0), np.bool_(True)).as_text()
        calls = [l for l in hlo.splitlines() if re.search(r"custom_call @lapack_", l)]
        assert calls and not [l for l in calls if 'num_batch_dims = "0"' not in l], calls[:2]
        os.environ["PPL_SHARDING"] = "0"
        b = mcmc.sample(jax.random.key(0), mcmc.NUTS(), gp, x, jnp.sin(6 * x), **kw)
        del os.environ["PPL_SHARDING"]
        assert len(b.state.x.sharding.device_set) == 1
        np.testing.assert_allclose(run.samples["ls"], b.samples["ls"], rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(run.info["tree_depth"], b.info["tree_depth"])
        print("ok")
        """,
        n=2,
        timeout=120,
    )
    assert out.strip().endswith("ok")


def test_calls_lapack_sees_a_models_cholesky_and_not_one_at_a_time():
    """The detection behind the above: a model's Cholesky (inside ``MultivariateNormal``'s log
    density, under ``jit`` / ``cond``, and in its gradient) is found in one chain's unbatched
    jaxpr; a model without LAPACK and LAPACK under :func:`inference._lapack.one_at_a_time` (the
    samplers' own, already unbatched) are not."""
    import jax.numpy as jnp

    from inference._lapack import calls_lapack, one_at_a_time

    v = jax.ShapeDtypeStruct((), jnp.float32)
    m = jax.ShapeDtypeStruct((4, 4), jnp.float32)

    def mvn(ls):
        k = jnp.exp(-0.5 * (jnp.arange(4.0)[:, None] - jnp.arange(4.0)[None, :]) ** 2 / ls**2) + 0.1 * jnp.eye(4)
        return dist.MultivariateNormal(jnp.zeros(4), k).log_prob(jnp.ones(4))

    def normal(ls):
        return dist.Normal(0.0, ls).log_prob(1.0)

    assert calls_lapack(mvn, v)
    assert calls_lapack(jax.grad(mvn), v)
    f32 = lambda f: (lambda ls: f(ls).astype(jnp.float32))  # noqa: E731 - the branches' common type
    assert calls_lapack(lambda ls: jax.lax.cond(ls > 0, f32(jax.jit(mvn)), f32(normal), ls), v)
    assert calls_lapack(lambda a, b: jnp.linalg.solve(a, b), m, jax.ShapeDtypeStruct((4,), jnp.float32))
    assert not calls_lapack(normal, v)
    assert not calls_lapack(jax.value_and_grad(normal), v)
    assert not calls_lapack(one_at_a_time(lambda a: jnp.linalg.eigh(a)[0]), m)


@ppl.model
def standard_normal():
    ppl.sample("x", dist.Normal(0.0, 1.0))


@pytest.mark.slow
@pytest.mark.statistical
def test_a_million_draws_keep_device_memory_bounded(monkeypatch):
    from inference.mcmc import driver

    n = 1_000_000
    live = []
    write = driver._Sink.write

    def watching(self, out, t0, m):  # between chunks: what the device holds
        live.append(sum(a.nbytes for a in jax.live_arrays()))
        return write(self, out, t0, m)

    monkeypatch.setattr(driver._Sink, "write", watching)
    before = sum(a.nbytes for a in jax.live_arrays())
    run = mcmc.sample(jax.random.key(0), mcmc.RWM(step_size=2.0), standard_normal, num_warmup=0, num_samples=n, num_chains=2, progress=False)
    after = sum(a.nbytes for a in jax.live_arrays())
    draws = run.samples["x"]
    assert isinstance(draws, np.ndarray) and draws.shape == (2, n)
    # the draws are 8–16 MB; the device holds the state and at most two chunks of outputs
    chunk = run._program.chunk_size
    assert chunk is not None and chunk <= driver._MAX_CHUNK
    bound = 2 * chunk * 2 * 64 + 2**16  # two chunks x chains x (draw + info) bytes, plus the state
    assert max(live) - before < bound, (max(live) - before, bound)
    assert after - before < 2**16, after - before
    assert draws.nbytes > 40 * bound  # so keeping the draws on the device would fail the check
    # and they are draws of N(0, 1): the mean and sd of every 10th draw, with standard errors
    # from their ESS, at the declared level
    thin = draws[:, ::10]
    ess = float(mcmc.ess_bulk(thin[..., None])[0])
    z_crit = st.norm.isf(BUDGET.level("mcmc/sharding_draws") / 2)
    assert abs(thin.mean()) < z_crit / np.sqrt(ess), (thin.mean(), ess)
    assert abs(thin.std() - 1.0) < z_crit * np.sqrt(1 / (2 * ess)), (thin.std(), ess)
