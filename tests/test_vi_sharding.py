"""VI objectives' particles split across devices (issue 8): same numbers as on one device."""

from __future__ import annotations

import pytest

from tests._multidevice import run_on_devices


@pytest.mark.slow
def test_particles_shard_over_eight_devices_and_keep_the_numbers():
    out = run_on_devices(
        """
        import numpy as np, jax, jax.numpy as jnp
        import ppl
        from ppl import dist
        from inference import sharding, vi

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

        x = jnp.array([0.3, 1.2, 0.7])
        obj = vi.vimco(model, guide, num_particles=16)    # reparam mu, reinforce c, LOO baselines
        u = obj.init_params(jax.random.key(0), x)

        def run():
            c = jax.jit(lambda k, u: obj.grad(k, u, x)).lower(jax.random.key(1), u).compile()
            return c(jax.random.key(1), u), c.as_text()

        assert sharding.num_devices() == 8
        (v8, g8), hlo8 = run()
        os.environ["PPL_SHARDING"] = "0"
        (v1, g1), hlo1 = run()
        assert "all-reduce" in hlo8 or "all-gather" in hlo8, "the particles were not split"
        assert "all-reduce" not in hlo1 and "all-gather" not in hlo1
        np.testing.assert_allclose(v8, v1, rtol=1e-10)
        for k in g1:
            np.testing.assert_allclose(g8[k], g1[k], rtol=1e-10, atol=1e-12)
        print("ok")
        """
    )
    assert out.strip().endswith("ok")
