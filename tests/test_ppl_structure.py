"""The structure of the language's core: public stack queries, the message type, the import graph."""

import jax
import jax.numpy as jnp

import ppl
from ppl import dist


def test_active_handlers_and_inside_combinator_see_where_a_site_is_made():
    seen = []

    @ppl.model
    def m():
        seen.append(("top", ppl.core.inside_combinator(), len(ppl.core.active_handlers(ppl.handlers.seed))))
        ppl.sample("a", dist.Normal(0.0, 1.0))

        def step(c, _):
            seen.append(("scan", ppl.core.inside_combinator(), None))
            return c + ppl.sample("x", dist.Normal(c, 1.0)), None

        ppl.scan(step, 0.0, length=3, name="ts")
        ppl.cond(True, lambda: seen.append(("cond-eager", ppl.core.inside_combinator(), None)), lambda: None)

    assert ppl.core.active_handlers() == () and not ppl.core.inside_combinator()
    m.simulate(jax.random.key(0))
    assert seen[0] == ("top", False, 1)
    assert ("scan", True, None) in seen
    # a concrete branch index runs the taken branch in place: not a combinator body
    assert ("cond-eager", False, None) in seen
    # the snapshot is a tuple: changing it leaves the stack alone
    with ppl.seed(key=jax.random.key(0)):
        hs = ppl.core.active_handlers()
        assert isinstance(hs, tuple) and len(hs) == 1
    assert ppl.core.active_handlers() == ()


def test_inside_combinator_under_a_traced_branch():
    flags = []

    @ppl.model
    def m():
        k = ppl.sample("k", dist.Bernoulli(0.5))

        def yes():
            flags.append(ppl.core.inside_combinator())
            return ppl.sample("y", dist.Normal(0.0, 1.0))

        return ppl.cond(k > 0, yes, lambda: jnp.zeros(()))

    jax.jit(lambda key: m.simulate(key).retval)(jax.random.key(0))
    assert flags and all(flags)
