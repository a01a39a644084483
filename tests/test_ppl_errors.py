"""Every bad input of issue 2 gets our error, at trace time, naming the site and saying what was
expected and what was given (also under ``jax.jit`` where the input is known at trace time)."""

from __future__ import annotations

import re
import traceback

import jax
import jax.numpy as jnp
import pytest

import ppl
from ppl import dist

KEY = jax.random.key(0)


def raises(exc, *patterns):
    """pytest.raises(exc) whose message contains every pattern (regular expressions)."""

    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(exc)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *a):
            out = self.cm.__exit__(*a)
            if not out:  # another exception type: let it propagate
                return out
            msg = str(self.info.value)
            for p in patterns:
                assert re.search(p, msg), f"{p!r} not in message: {msg}"
            # our own error, raised by the library (not re-raised from deep inside JAX)
            assert isinstance(self.info.value, ppl.PPLError)
            return out

    return _Ctx()


@ppl.model
def schools(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta = ppl.sample("theta", dist.Normal(mu, tau))
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


SIGMA = jnp.ones(4)


@ppl.model
def mvn():
    ppl.sample("mu", dist.MultivariateNormal(jnp.zeros(3), jnp.eye(3)))
CHOICES = {"mu": 0.0, "tau": 1.0, "theta": jnp.zeros(4)}


# ---------------------------------------------------------------------------------------------
# the same address twice


@ppl.model
def twice():
    ppl.sample("x", dist.Normal(0.0, 1.0))
    ppl.sample("x", dist.Normal(0.0, 1.0))


@ppl.model
def inner():
    return ppl.sample("z", dist.Normal(0.0, 1.0))


@ppl.model
def nested_twice():
    inner(name="a")
    inner(name="a")


@pytest.mark.parametrize("jit", [False, True])
def test_same_address_twice(jit):
    sim = jax.jit(twice.simulate) if jit else twice.simulate
    with raises(ppl.AddressError, "'x'", "used twice", "own address"):
        sim(KEY)
    with raises(ppl.AddressError, "'a/z'", "used twice"):
        nested_twice.simulate(KEY)
    with raises(ppl.AddressError, "'x'", "used twice"):
        twice.log_density({"x": 0.0})


def test_same_address_twice_in_a_scan_step_and_across_factor_and_sample():
    @ppl.model
    def m():
        def step(c, _):
            ppl.sample("x", dist.Normal(c, 1.0))
            ppl.sample("x", dist.Normal(c, 1.0))
            return c, None

        ppl.scan(step, 0.0, length=3, name="ts")

    with raises(ppl.AddressError, "'ts/x'", "used twice"):
        m.simulate(KEY)

    @ppl.model
    def m2():
        ppl.sample("w", dist.Normal(0.0, 1.0))
        ppl.factor("w", -1.0)

    with raises(ppl.AddressError, "'w'", "used twice"):
        m2.simulate(KEY)

    @ppl.model
    def m3():  # the scan's stacked address collides with a site outside it
        ppl.sample("ts/x", dist.Normal(0.0, 1.0))

        def step(c, _):
            return ppl.sample("x", dist.Normal(c, 1.0)), None

        ppl.scan(step, 0.0, length=2, name="ts")

    with raises(ppl.AddressError, "'ts/x'", "used twice"):
        m3.simulate(KEY)


# ---------------------------------------------------------------------------------------------
# unknown addresses, with the nearest name


@pytest.mark.parametrize("jit", [False, True])
def test_condition_on_unknown_address(jit):
    bad = ppl.condition(schools, {"thetaa": jnp.zeros(4)})
    sim = jax.jit(bad.simulate) if jit else bad.simulate
    with raises(ppl.AddressError, "ppl.condition", "'thetaa'", "does not have", "did you mean 'theta'"):
        sim(KEY, SIGMA)


def test_intervention_substitute_constraint_on_unknown_address():
    with raises(ppl.AddressError, "ppl.do", "'tua'", "did you mean 'tau'"):
        ppl.do(schools, {"tua": 1.0}).simulate(KEY, SIGMA)
    with raises(ppl.AddressError, "ppl.substitute", "'m'", "did you mean 'mu'"):
        ppl.substitute(schools, {"m": 1.0}).simulate(KEY, SIGMA)
    with raises(ppl.AddressError, "generate", "'Mu'", "did you mean 'mu'"):
        schools.generate(KEY, {"Mu": 1.0}, SIGMA)
    with raises(ppl.AddressError, "generate", "'Mu'", "did you mean 'mu'"):
        jax.jit(lambda k: schools.generate(k, {"Mu": 1.0}, SIGMA))(KEY)
    tr = schools.simulate(KEY, SIGMA)
    with raises(ppl.AddressError, "update", "'tau2'", "did you mean 'tau'"):
        schools.update(KEY, tr, {"tau2": 1.0})
    with raises(ppl.AddressError, "regenerate", "'thta'", "did you mean 'theta'"):
        schools.regenerate(KEY, tr, ppl.select("thta"))
    with raises(ppl.AddressError, "log_density", "'sigma'", "does not have"):
        schools.log_density({**CHOICES, "sigma": 1.0}, SIGMA, y=jnp.zeros(4))
    with raises(ppl.AddressError, "'theat'", "did you mean 'theta'"):
        tr["theat"]


def test_unknown_address_with_no_close_name_lists_the_addresses():
    with raises(ppl.AddressError, "'zzz'", "'mu'", "'tau'", "'theta'"):
        ppl.condition(schools, {"zzz": 1.0}).simulate(KEY, SIGMA)


def test_unknown_address_inside_scan_and_nested_model():
    @ppl.model
    def m():
        inner(name="layer1")

        def step(c, _):
            return ppl.sample("x", dist.Normal(c, 1.0)), None

        ppl.scan(step, 0.0, length=3, name="ts")

    with raises(ppl.AddressError, "'layer1/y'", "did you mean 'layer1/z'"):
        ppl.condition(m, {"layer1/y": 0.0}).simulate(KEY)
    with raises(ppl.AddressError, "'ts/y'", "did you mean 'ts/x'"):
        ppl.do(m, {"ts/y": jnp.zeros(3)}).simulate(KEY)


def test_condition_on_a_deterministic_site():
    @ppl.model
    def m():
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.deterministic("b", 2 * a)

    with raises(ppl.ModelError, "'b'", "deterministic", "cannot be observed"):
        ppl.condition(m, {"b": 1.0}).simulate(KEY)


# ---------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("jit", [False, True])
def test_observation_shape_does_not_broadcast(jit):
    @ppl.model
    def m(y):
        ppl.sample("y", dist.Normal(jnp.zeros(3), 1.0), obs=y)

    sim = jax.jit(m.simulate) if jit else m.simulate
    with raises(ppl.ModelError, "site 'y'", r"shape \(4,\)", r"batch shape \(3,\)", r"expected .*\(3,\)"):
        sim(KEY, jnp.zeros(4))


def test_observation_event_shape_mismatch():
    @ppl.model
    def m(y):
        ppl.sample("y", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)), obs=y)

    with raises(ppl.ModelError, "site 'y'", r"shape \(3,\)", r"event shape \(2,\)"):
        m.simulate(KEY, jnp.zeros(3))
    with raises(ppl.ModelError, "site 'y'", r"shape \(5, 3\)", r"event shape \(2,\)"):
        m.simulate(KEY, jnp.zeros((5, 3)))
    with raises(ppl.ModelError, "site 'y'", r"shape \(2, 1\)", r"event shape \(2,\)"):
        m.simulate(KEY, jnp.zeros((2, 1)))  # would broadcast the event, not just the batch
    m.simulate(KEY, jnp.zeros(2))  # right


def test_condition_and_constraint_values_of_the_wrong_shape():
    with raises(ppl.ModelError, "'theta'", r"shape \(3,\)", "'school'", "size 4"):
        schools.generate(KEY, {"theta": jnp.zeros(3)}, SIGMA)
    with raises(ppl.ModelError, "'mu'", r"shape \(2,\)", r"event shape \(3,\)"):
        ppl.condition(mvn, {"mu": jnp.zeros(2)}).simulate(KEY)
    with raises(ppl.ModelError, "'theta'", r"\(7,\)", "'school'", "size 4"):
        ppl.condition(schools, {"theta": jnp.zeros(7)}).simulate(KEY, SIGMA)
    with raises(ppl.ModelError, "ppl.do", "'theta'", r"\(7,\)", r"\(4,\)"):
        ppl.do(schools, {"theta": jnp.zeros(7)}).simulate(KEY, SIGMA)


@pytest.mark.parametrize("jit", [False, True])
def test_plate_size_disagrees_with_data(jit):
    sim = jax.jit(schools.simulate) if jit else schools.simulate
    with raises(ppl.ModelError, "plate 'school'", "size 4", "site 'y'", r"\(6,\)"):
        sim(KEY, SIGMA, y=jnp.zeros(6))


def test_plate_size_disagrees_with_distribution_batch():
    @ppl.model
    def m():
        with ppl.plate("i", 3):
            ppl.sample("x", dist.Normal(jnp.zeros(5), 1.0))

    with raises(ppl.ModelError, "site 'x'", "plate 'i'", "size 3", r"\(5,\)"):
        m.simulate(KEY)


def test_plate_arguments():
    with raises(ppl.ModelError, "plate 'p'", "at least 1", "0"):
        ppl.plate("p", 0)
    with raises(ppl.ModelError, "plate 'p'", "subsample_size", "between 1 and size=3", "5"):
        ppl.plate("p", 3, subsample_size=5)
    with raises(ppl.ModelError, "plate 'p'", "dim must be negative", "1"):
        ppl.plate("p", 3, dim=1)

    @ppl.model
    def m():
        with ppl.plate("a", 2, dim=-1), ppl.plate("b", 3, dim=-1):
            ppl.sample("x", dist.Normal(0.0, 1.0))

    with raises(ppl.ModelError, "plate 'b'", "dim -1", "plate 'a'"):
        m.simulate(KEY)


def test_scan_length_and_stacked_data_shape():
    @ppl.model
    def m(ys):
        def step(c, y):
            x = ppl.sample("x", dist.Normal(c, 1.0))
            ppl.sample("y", dist.Normal(x, 1.0), obs=y)
            return x, None

        ppl.scan(step, 0.0, xs=ys, length=3, name="ts")

    with raises(ppl.ModelError, "scan 'ts'", "length=3", "4 steps"):
        m.simulate(KEY, jnp.zeros(4))
    with raises(ppl.ModelError, "'ts/x'", r"\(5,\)", "3 steps", "leading axis must be 3"):
        ppl.condition(m, {"ts/x": jnp.zeros(5)}).simulate(KEY, jnp.zeros(3))


# ---------------------------------------------------------------------------------------------
# outside a model, keys


def test_primitive_outside_a_model():
    with raises(ppl.OutsideModelError, r"ppl.sample\('x'", "outside a model", "simulate"):
        ppl.sample("x", dist.Normal(0.0, 1.0))
    with raises(ppl.OutsideModelError, r"ppl.param\('w'", "outside a model"):
        ppl.param("w", 1.0)
    with raises(ppl.OutsideModelError, r"ppl.factor\('f'", "outside a model"):
        ppl.factor("f", 0.0)
    with raises(ppl.OutsideModelError, r"ppl.deterministic\('d'", "outside a model"):
        ppl.deterministic("d", 0.0)
    with raises(ppl.OutsideModelError, "model 'schools'", "outside a model", "simulate"):
        schools(SIGMA)
    with raises(ppl.OutsideModelError, "ppl.scan", "outside a model"):
        ppl.scan(lambda c, x: (c, x), 0.0, length=2, name="s")
    with raises(ppl.OutsideModelError, "ppl.switch", "outside a model"):
        ppl.cond(True, lambda: 1.0, lambda: 0.0)


def test_primitive_inside_a_bare_plate_is_outside_a_model():
    with raises(ppl.OutsideModelError, r"ppl.sample\('x'", "outside a model"):
        with ppl.plate("i", 3):
            ppl.sample("x", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize("bad", [None, 0, 1.5, "key", jnp.zeros(3)])
def test_missing_or_malformed_key(bad):
    want = "None" if bad is None else "expected a JAX random key"
    with raises(ppl.ModelError, "schools.simulate", want):
        schools.simulate(bad, SIGMA)
    with raises(ppl.ModelError, "schools.generate", want):
        schools.generate(bad, {}, SIGMA)
    with raises(ppl.ModelError, "ppl.seed", want):
        ppl.seed(schools, bad)
    with raises(ppl.ModelError, "ppl.predictive", want):
        ppl.predictive(schools, None, SIGMA, key=bad, num_samples=2)


def test_model_run_without_a_key_names_the_site():
    with raises(ppl.ModelError, "site 'mu'", "needs a random key"):
        ppl.substitute(schools, {"tau": 1.0})(SIGMA)
    old_key_style = jax.random.PRNGKey(0)  # raw uint32 keys are accepted too
    schools.simulate(old_key_style, SIGMA)


# ---------------------------------------------------------------------------------------------
# support


@ppl.model
def expo():
    with ppl.plate("i", 2):
        ppl.sample("x", dist.Exponential(1.0))


@pytest.mark.parametrize("jit", [False, True])
def test_value_outside_support(jit):
    gen = (lambda c: jax.jit(lambda k: schools.generate(k, c, SIGMA))(KEY)) if jit else (
        lambda c: schools.generate(KEY, c, SIGMA)
    )
    with raises(ppl.SupportError, "'tau'", "outside the support", "HalfCauchy", "-1"):
        gen({"tau": -1.0})
    with raises(ppl.SupportError, "'tau'", "outside the support", "HalfCauchy", "-1"):
        gen({"tau": jnp.asarray(-1.0)})  # a concrete array, checked under jit too
    bad = jnp.array([1.0, -2.0])
    with raises(ppl.SupportError, "'x'", "Exponential", "-2"):
        jax.jit(lambda k: ppl.condition(expo, {"x": bad}).simulate(k))(KEY)


@pytest.mark.filterwarnings("ignore:Out-of-support values provided to log prob")
def test_value_outside_support_observed_conditioned_and_in_log_density():
    @ppl.model
    def coin(flips=None):
        p = ppl.sample("p", dist.Beta(2.0, 2.0))
        with ppl.plate("n", 3):
            ppl.sample("x", dist.Bernoulli(probs=p), obs=flips)

    with raises(ppl.SupportError, "'x'", "Bernoulli", r"2"):
        coin.simulate(KEY, jnp.array([0, 1, 2]))
    with raises(ppl.SupportError, "'p'", "Beta", "1.5"):
        ppl.condition(coin, {"p": 1.5}).simulate(KEY)
    with raises(ppl.SupportError, "'p'", "Beta", "1.5"):
        coin.log_density({"p": 1.5}, jnp.array([0, 1, 1]))
    with raises(ppl.SupportError, "'tau'", "HalfCauchy"):
        schools.log_density({**CHOICES, "tau": -2.0}, SIGMA, y=jnp.zeros(4))
    # masked-out entries are not checked (NumPyro warns about them; we do not raise)
    @ppl.model
    def masked(y):
        with ppl.mask(mask=jnp.array([True, False])):
            ppl.sample("y", dist.Exponential(jnp.ones(2)), obs=y)

    masked.simulate(KEY, jnp.array([1.0, -1.0]))
    with raises(ppl.SupportError, "'y'"):
        masked.simulate(KEY, jnp.array([-1.0, 1.0]))

    @ppl.model
    def masked_dist(y):
        ppl.sample("y", dist.Exponential(jnp.ones(2)).mask(jnp.array([True, False])), obs=y)

    masked_dist.simulate(KEY, jnp.array([1.0, -1.0]))
    with raises(ppl.SupportError, "'y'", "Exponential"):
        masked_dist.simulate(KEY, jnp.array([-1.0, 1.0]))


# ---------------------------------------------------------------------------------------------
# log_density


@pytest.mark.parametrize("jit", [False, True])
def test_latent_missing_from_log_density(jit):
    f = jax.jit(lambda c: schools.log_density(c, SIGMA)) if jit else (lambda c: schools.log_density(c, SIGMA))
    with raises(ppl.AddressError, "log_density", "latent site 'theta'", "no value", r"given: \['mu', 'tau'\]"):
        f({"mu": 0.0, "tau": 1.0})


def test_nan_log_density_names_the_first_site():
    @ppl.model
    def m():
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.sample("b", dist.HalfNormal(1.0))
        ppl.factor("f", jnp.log(a))  # NaN when a < 0
        ppl.factor("g", jnp.sqrt(a))  # NaN too, later
        ppl.sample("c", dist.Normal(0.0, 1.0))

    m.log_density({"a": 1.0, "b": 1.0, "c": 0.0})
    with raises(ppl.NaNLogDensityError, "m.log_density is NaN", "first appears at site 'f'"):
        m.log_density({"a": -1.0, "b": 1.0, "c": 0.0})
    # a NaN value is outside every support (reals included): named as such
    with raises(ppl.SupportError, "site 'c'", "Normal", "nan"):
        m.log_density({"a": 1.0, "b": 1.0, "c": jnp.nan})
    # under jit the value is not known at trace time: a NaN is returned, not raised
    assert jnp.isnan(jax.jit(m.log_density)({"a": -1.0, "b": 1.0, "c": 0.0}))


def test_foreign_error_inside_a_model_says_where():
    """NumPyro's own parameter validation cannot name the site; we name it (issue 18: the site
    being built, 'b', not the previous one) with a ppl.ParameterError (still a ValueError)."""

    @ppl.model
    def m():
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.sample("b", dist.Normal(0.0, a - 10.0))  # invalid (negative) scale

    with pytest.raises(ValueError, match="scale") as info:
        m.simulate(KEY)
    assert isinstance(info.value, ppl.ParameterError)
    assert "site 'b' of model 'm'" in str(info.value) and "after site" not in str(info.value)


def test_nan_inside_scan_names_the_stacked_site():
    @ppl.model
    def m():
        s = ppl.sample("s", dist.Normal(0.0, 1.0))

        def step(c, _):
            return ppl.sample("x", dist.Normal(c, s)), None

        ppl.scan(step, 0.0, length=3, name="ts")

    with raises(ppl.NaNLogDensityError, "'ts/x'"):
        m.log_density({"s": 1.0, "ts/x": jnp.array([0.0, jnp.nan, 0.0])})


# ---------------------------------------------------------------------------------------------
# other malformed input


def test_malformed_primitives_and_handlers():
    @ppl.model
    def not_a_dist():
        ppl.sample("x", 3.0)

    with raises(ppl.ModelError, "site 'x'", "expects a distribution", "float"):
        not_a_dist.simulate(KEY)

    @ppl.model
    def not_a_name():
        ppl.sample(3, dist.Normal(0.0, 1.0))

    with raises(ppl.ModelError, "string address", "3"):
        not_a_name.simulate(KEY)
    with raises(ppl.ModelError, "ppl.mask", "boolean", "float"):
        ppl.mask(schools, jnp.array([1.0, 0.0]))
    with raises(ppl.ModelError, "ppl.scale", "positive", "-1"):
        ppl.scale(schools, -1.0)
    with raises(ppl.ModelError, "non-empty string without '/'", "'a/b'"):
        ppl.scope(schools, "a/b")
    with raises(ppl.ModelError, "ppl.condition", "mapping", "list"):
        ppl.condition(schools, [1.0])
    with raises(ppl.ModelError, "ppl.model expects a function", "int"):
        ppl.model(3)
    with raises(ppl.ModelError, "log_density", "mapping", "list"):
        schools.log_density([0.0], SIGMA)


def test_malformed_combinator_use():
    @ppl.model
    def param_in_scan():
        def step(c, _):
            ppl.param("w", 1.0)
            return c, None

        ppl.scan(step, 0.0, length=2, name="ts")

    with raises(ppl.ModelError, "param 'ts/w'", "inside ppl.scan"):
        param_in_scan.simulate(KEY)

    @ppl.model
    def no_name():
        ppl.scan(lambda c, x: (c, None), 0.0, length=2)

    with raises(ppl.ModelError, "ppl.scan needs name="):
        no_name.simulate(KEY)

    @ppl.model
    def out_of_range():
        ppl.switch(3, [lambda: 0.0, lambda: 1.0])

    with raises(ppl.ModelError, "ppl.switch", "index 3", "2 branches"):
        out_of_range.simulate(KEY)

    @ppl.model
    def shapes_differ():
        k = ppl.sample("k", dist.Bernoulli(probs=0.5))
        ppl.cond(
            k,
            lambda: ppl.sample("a", dist.Normal(0.0, 1.0)),
            lambda: ppl.sample("a", dist.Normal(jnp.zeros(2), 1.0)).sum(),
        )

    with raises(ppl.ModelError, "ppl.switch", "site 'a'", r"\(\)", r"\(2,\)"):
        jax.jit(shapes_differ.simulate)(KEY)


def test_predictive_bad_input():
    with raises(ppl.ModelError, "ppl.predictive", "num_samples"):
        ppl.predictive(schools, None, SIGMA, key=KEY)
    with raises(ppl.ModelError, "ppl.predictive", "'tau'", r"\(3,\)", r"\(2,\)"):
        ppl.predictive(schools, {"mu": jnp.zeros(2), "tau": jnp.ones(3)}, SIGMA, key=KEY)
    with raises(ppl.AddressError, "return_sites", "'yy'", "did you mean 'y'"):
        ppl.predictive(schools, None, SIGMA, key=KEY, num_samples=2, return_sites=["yy"])
    with raises(ppl.AddressError, "ppl.predictive", "'tauu'", "did you mean 'tau'"):
        ppl.predictive(schools, {"tauu": jnp.ones(2)}, SIGMA, key=KEY)


def test_unconstrained_view_bad_input():
    view = ppl.unconstrained(ppl.condition(schools, {"y": jnp.zeros(4)}), SIGMA)
    with raises(ppl.ModelError, "vector of length 6", r"shape \(5,\)"):
        view.potential(jnp.zeros(5))
    with raises(ppl.AddressError, "to_unconstrained", "'theta'"):
        view.to_unconstrained({"mu": 0.0, "tau": 1.0})
    with raises(ppl.ModelError, "init_point", "'nope'"):
        view.init_point(strategy="nope")


def test_errors_are_short_and_ours():
    """The error comes from the library, not from a JAX traceback deep inside a primitive."""
    try:
        jax.jit(schools.simulate)(KEY, SIGMA, y=jnp.zeros(6))
    except ppl.ModelError as e:
        tb = traceback.extract_tb(e.__traceback__)
        assert tb[-1].filename.endswith(("ppl/core.py", "ppl\\core.py"))
        assert len(str(e)) < 400
    else:  # pragma: no cover
        raise AssertionError("no error")


def test_python_branch_on_a_traced_value_names_the_model():
    @ppl.model
    def m():
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        if a > 0:
            ppl.sample("b", dist.Normal(0.0, 1.0))

    m.simulate(KEY)  # eager: fine
    with raises(ppl.ModelError, "model 'm'", "after site 'a'", "ppl.cond"):
        jax.jit(m.simulate)(KEY)
    with raises(ppl.ModelError, "model 'm'", "after site 'a'"):
        jax.jit(ppl.substitute(m, {}).simulate)(KEY)
