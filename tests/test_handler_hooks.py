import jax, ppl, pytest
import jax.numpy as jnp
from ppl import dist
from ppl.errors import ModelError

def test_substitute_fn_provides_values_at_sites():
    @ppl.model
    def m():
        x = ppl.sample("x", dist.Normal(0.0, 1.0))
        y = ppl.sample("y", dist.Normal(x, 1.0))
        return x + y
    seen = []
    def f(site):
        assert isinstance(site, ppl.Site)
        seen.append((site.name, site.type, type(site.distribution).__name__))
        return 2.0 if site.name == "x" else None
    tr = ppl.substitute(m, substitute_fn=f).simulate(jax.random.key(0))
    assert float(tr["x"]) == 2.0
    assert seen[0] == ("x", "sample", "Normal")
    assert {n for n, *_ in seen} == {"x", "y"}
    # data takes precedence; fn is asked only for the rest
    tr2 = ppl.substitute(m, {"y": 1.0}, substitute_fn=lambda s: 3.0).simulate(jax.random.key(0))
    assert float(tr2["x"]) == 3.0 and float(tr2["y"]) == 1.0
    # the measure is the model's density at the substituted values
    assert abs(float(tr2.log_density) - float(dist.Normal(0, 1).log_prob(3.0) + dist.Normal(3.0, 1).log_prob(1.0))) < 1e-5

def test_substitute_fn_must_be_callable():
    @ppl.model
    def m():
        return ppl.sample("x", dist.Normal(0.0, 1.0))
    with pytest.raises(ModelError, match="substitute_fn"):
        ppl.substitute(m, substitute_fn=3.0)


def test_driver_option_clash_is_refused_by_name():
    from inference._calling import check_option_clash

    @ppl.model
    def m(x, num_samples=3):
        return ppl.sample("x", dist.Normal(0.0, 1.0))

    check_option_clash("mcmc.sample", m, ["num_warmup", "num_chains"])
    with pytest.raises(ppl.ArgumentError, match="'num_samples'"):
        check_option_clash("mcmc.sample", m, ["num_samples"])
    assert issubclass(ppl.ArgumentError, ValueError) and issubclass(ppl.ArgumentTypeError, TypeError)
    assert issubclass(ppl.ArgumentTypeError, ppl.PPLError)


def test_predictive_refuses_a_site_observed_in_the_call_instead_of_returning_the_data():
    @ppl.model
    def m(y=None):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("obs", 3):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = jnp.full(3, 5.0)
    draws = {"mu": jnp.zeros(4)}
    with pytest.raises(ModelError, match="'y' is observed in this call"):
        ppl.predictive(m, draws, y=y, key=jax.random.key(0))
    with pytest.raises(ModelError, match="'y' is observed"):
        ppl.predictive(m, draws, y=y, key=jax.random.key(0), return_sites=["y"])
    pred = ppl.predictive(m, draws, key=jax.random.key(0))["y"]  # y=None: drawn
    assert pred.shape == (4, 3) and not bool(jnp.any(pred == 5.0))
