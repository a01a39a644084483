"""Issue 18: bad inputs, as a new user would give them, each answered by a ``ppl.PPLError`` that
names the argument, site or file at fault (never a deep NumPy/NumPyro/JAX error, never a wrong
answer).  Observations against plates are checked with hypothesis (random plate structures,
random observation shapes) against an oracle written from NumPy's broadcasting rules, and the
accepted ones against scipy's log density.

The cases tried and handled are counted in ``docs/design/errors.md``.
"""

from __future__ import annotations

import contextlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import ppl
from inference import mcmc, smc, vi
from ppl import dist
from ppl.checks import validate, whole_number

KEY = jax.random.key(0)


@ppl.model
def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


def _step(x, y):
    x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
    ppl.sample("y", dist.Normal(x, 1.0), obs=y)
    return x, None


@ppl.model
def _guide(y):
    ppl.sample("mu", dist.Normal(ppl.param("loc", 0.0), 0.7))


Y = jnp.array([0.1, -0.4])
OPT = optax.adam(0.1)

# ---------------------------------------------------------------------------------------------
# counts and sizes: one helper at every entry point

COUNTS = [
    ("mcmc.sample", "num_chains", 2.5, lambda v: mcmc.sample(KEY, mcmc.RWM(), normal_mean, Y, num_chains=v)),
    ("mcmc.sample", "num_chains", "2", lambda v: mcmc.sample(KEY, mcmc.RWM(), normal_mean, Y, num_chains=v)),
    ("mcmc.sample", "num_samples", -1, lambda v: mcmc.sample(KEY, mcmc.RWM(), normal_mean, Y, num_samples=v)),
    ("mcmc.sample", "num_warmup", 1.5, lambda v: mcmc.sample(KEY, mcmc.RWM(), normal_mean, Y, num_warmup=v)),
    ("mcmc.sample", "chunk_size", 0, lambda v: mcmc.sample(KEY, mcmc.RWM(), normal_mean, Y, chunk_size=v)),
    ("smc.tempered_smc", "num_particles", 10.5, lambda v: smc.tempered_smc(KEY, normal_mean, Y, num_particles=v)),
    ("smc.tempered_smc", "num_particles", 1, lambda v: smc.tempered_smc(KEY, normal_mean, Y, num_particles=v)),
    ("smc.tempered_smc", "max_steps", 0, lambda v: smc.tempered_smc(KEY, normal_mean, Y, max_steps=v)),
    ("smc.particle_filter", "num_particles", 3.5, lambda v: smc.particle_filter(KEY, _step, 0.0, Y, v)),
    ("resample_move", "num_particles", 2.5, lambda v: smc.resample_move(KEY, normal_mean, [Y], v)),
    ("vi.fit", "num_steps", 2.5, lambda v: vi.fit(KEY, vi.elbo(normal_mean, _guide), OPT, num_steps=v, data=Y)),
    ("vi.fit", "num_samples", 0, lambda v: vi.fit(KEY, vi.elbo(normal_mean, _guide), OPT, num_samples=v, data=Y)),
    ("plate 'p'", "size", 2.5, lambda v: ppl.seed(lambda: ppl.plate("p", v).__enter__(), KEY)()),
    ("plate 'p'", "size", True, lambda v: ppl.plate("p", v)),
]


@pytest.mark.parametrize("who,name,value,call", COUNTS, ids=[f"{w}-{n}={v!r}" for w, n, v, _ in COUNTS])
def test_a_bad_count_is_refused_naming_the_entry_point_and_argument(who, name, value, call):
    with pytest.raises(ppl.ArgumentError) as info:
        call(value)
    msg = str(info.value)
    assert msg.startswith(f"{who}: {name} must be >=") and repr(value) in msg


def test_whole_numbers_of_any_integer_type_are_accepted():
    for v in (3, np.int32(3), np.int64(3), 3.0, jnp.asarray(3)):
        assert whole_number("f", "n", v, 1) == 3
    validate("f", num_chains=(None, 1))  # None: an option left at its default


BAD_KEYS = [
    ("mcmc.sample", lambda k: mcmc.sample(k, mcmc.RWM(), normal_mean, Y)),
    ("smc.tempered_smc", lambda k: smc.tempered_smc(k, normal_mean, Y)),
    ("smc.particle_filter", lambda k: smc.particle_filter(k, _step, 0.0, Y, 10)),
    ("resample_move", lambda k: smc.resample_move(k, normal_mean, [Y], 10)),
    ("vi.fit", lambda k: vi.fit(k, vi.elbo(normal_mean, _guide), OPT, data=Y)),
]


@pytest.mark.parametrize("who,call", BAD_KEYS, ids=[w for w, _ in BAD_KEYS])
@pytest.mark.parametrize("key", [0, None, jnp.zeros(3)], ids=["int", "None", "floats"])
def test_a_bad_key_is_refused_naming_the_entry_point(who, call, key):
    with pytest.raises(ppl.PPLError, match=rf"^{who}: .*(random key|key such as)"):
        call(key)


def test_plain_list_data_name_the_argument():
    with pytest.raises(ppl.ArgumentTypeError, match=r"argument 'y' is a plain Python list.*jnp.asarray\(y\)"):
        normal_mean.simulate(KEY, [1.0, 2.0])
    with pytest.raises(ppl.ArgumentTypeError, match=r"argument 'y' is a plain Python list"):
        mcmc.sample(KEY, mcmc.NUTS(), normal_mean, [1.0, 2.0], num_warmup=5, num_samples=5, progress=False)


# ---------------------------------------------------------------------------------------------
# NumPyro's parameter validation names the site being built


def test_invalid_parameter_names_the_site_on_the_same_line():
    @ppl.model
    def m():
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.sample("b", dist.Normal(a, -1.0))

    with pytest.raises(ppl.ParameterError, match=r"^site 'b' of model 'm': the Normal distribution got an invalid scale"):
        m.simulate(KEY)


def test_invalid_parameter_built_on_an_earlier_line_names_the_next_site_and_the_line():
    @ppl.model
    def m():
        ppl.sample("a", dist.Normal(0.0, 1.0))
        d = dist.Gamma(-1.0, 1.0)
        ppl.sample("b", d)

    with pytest.raises(ppl.ParameterError, match=r"the site after 'a'.*Gamma.*concentration.*d = dist.Gamma\(-1.0, 1.0\)"):
        m.simulate(KEY)


# ---------------------------------------------------------------------------------------------
# a damaged mcmc.load file


@ppl.model
def _one():
    ppl.sample("x", dist.Normal(0.0, 1.0))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    run = mcmc.sample(KEY, mcmc.RWM(), _one, num_warmup=5, num_samples=6, progress=False)
    path = tmp_path_factory.mktemp("runs") / "run.npz"
    run.save(path)
    return path


def _damage(path, how):
    raw = path.read_bytes()
    out = path.parent / f"{how}.npz"
    if how == "truncated":
        out.write_bytes(raw[: len(raw) // 2])
    elif how == "pickle":
        out.write_bytes(b"\x80\x04K\x01.")  # a pickle: NumPy would say "allow_pickle=True"
    elif how == "empty":
        out.write_bytes(b"")
    elif how == "missing":
        z = dict(np.load(path))
        del z[next(k for k in z if k.startswith("samples"))]
        np.savez(out, **z)
    elif how == "npy":
        out = path.parent / "one.npy"
        np.save(out, np.zeros(3))
    return out


@pytest.mark.parametrize("how,what", [("truncated", "not a complete .npz"), ("pickle", "pickled Python objects"),
                                      ("empty", "not a complete .npz"), ("missing", "'samples/0' is missing"),
                                      ("npy", "single .npy array")])
def test_a_damaged_file_is_named_with_what_is_wrong_and_no_pickle_advice(saved, how, what):
    bad = _damage(saved, how)
    with pytest.raises(ppl.ModelError) as info:
        mcmc.load(bad, mcmc.RWM(), _one)
    msg = str(info.value)
    assert repr(os.fspath(bad)) in msg and what in msg and "allow_pickle" not in msg
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


def test_summary_of_a_run_without_draws_is_a_clear_error():
    run = mcmc.sample(KEY, mcmc.RWM(), _one, num_warmup=5, num_samples=0, progress=False)
    with pytest.raises(ppl.ModelError, match=r"Run.summary: the run holds no draws \(num_samples=0"):
        run.summary()


def test_inference_warnings_and_failures_are_ppl_errors():
    assert issubclass(ppl.InferenceWarning, ppl.PPLError) and issubclass(ppl.InferenceWarning, UserWarning)
    assert issubclass(ppl.InferenceFailure, ppl.PPLError) and issubclass(ppl.ParameterError, ppl.ModelError)


# ---------------------------------------------------------------------------------------------
# observations against random plate structures (hypothesis)


def _plated(sizes, prefix):
    loc = jnp.full(tuple(prefix) + (1,) * len(sizes), 0.25)  # batch dims of the distribution's own

    @ppl.model
    def m(y):
        with contextlib.ExitStack() as stack:
            for i, n in enumerate(sizes):
                stack.enter_context(ppl.plate(f"p{i}", n))
            ppl.sample("y", dist.Normal(loc, 1.5), obs=y)

    return m


@st.composite
def plates_and_shapes(draw):
    sizes = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    prefix = draw(st.sampled_from([(), (1,), (2,)]))
    site = tuple(prefix) + tuple(reversed(sizes))  # the first plate takes dim -1, the next -2, ...
    dims = st.sampled_from(sorted({1, 2, 3, 4} | set(sizes)))
    shape = tuple(draw(st.lists(dims, min_size=0, max_size=len(site) + 1)))
    return sizes, prefix, site, shape


@given(plates_and_shapes())
def test_observations_against_random_plate_structures(case):
    """Oracle: inside plates an observation is accepted exactly when it broadcasts to the site's
    shape without enlarging it (outside plates NumPyro's broadcasting is kept), and an accepted
    one scores scipy's log density of the broadcast data."""
    sizes, prefix, site, shape = case
    y = np.linspace(-1.0, 2.0, int(np.prod(shape, dtype=int))).reshape(shape)
    m = _plated(sizes, prefix)
    try:
        full = np.broadcast_shapes(shape, site)
    except ValueError:
        full = None
    if full is not None and (full == site or not sizes):  # accepted: the exact log density
        lp = float(m.log_density({}, jnp.asarray(y)))
        ref = stats.norm.logpdf(np.broadcast_to(y, full), 0.25, 1.5).sum()
        assert lp == pytest.approx(ref, rel=1e-12, abs=1e-12)
        return
    with pytest.raises(ppl.ModelError) as info:  # refused, naming the site (and the shapes)
        m.log_density({}, jnp.asarray(y))
    msg = str(info.value)
    assert "site 'y'" in msg and str(shape) in msg
    if full is not None and " but the value at site " in msg:  # a plate whose size differs from the data's: named
        assert any(f"plate 'p{i}' has size {n} " in msg for i, n in enumerate(sizes))
    elif full is not None:  # broadcastable, but it would enlarge the likelihood: plates and both shapes named
        assert str(site) in msg and str(full) in msg and all(f"'p{i}' (size {n}" in msg for i, n in enumerate(sizes))


def test_an_observation_broadcasting_a_batch_dim_of_the_distribution_inside_a_plate_is_refused():
    """The same-rank case the per-plate size check cannot see: batch (1, 8) in a plate of 8,
    data (3, 8) would count the likelihood three times."""
    with pytest.raises(ppl.ModelError, match=r"site 'y' has shape \(3, 8\).*'p0' \(size 8, dim -1\).*\(1, 8\).*\(3, 8\)"):
        _plated([8], (1,)).log_density({}, jnp.zeros((3, 8)))


def test_resample_move_with_a_gradient_kernel_says_which_kernels_move_traces():
    # used to fail deep inside with "'TraceState' object has no attribute 'params'"
    with pytest.raises(ppl.errors.ArgumentError, match=r"kernel=RWM\(\.\.\.\) is a gradient kernel.*mcmc\.Regenerate"):
        smc.resample_move(KEY, normal_mean, [Y[:2], Y[2:]], 20, kernel=mcmc.RWM())
    with pytest.raises(ppl.errors.ArgumentError, match=r"kernel=NUTS"):
        smc.resample_move(KEY, mcmc.NUTS(), normal_mean, [Y[:2], Y[2:]], 20)


def test_a_model_called_without_its_data_names_the_signature_not_a_python_traceback():
    # NumPyro's `AutoNormal(model)` habit: ours builds the guide from the sites the model makes
    # with its data; the bare TypeError "missing 1 required positional argument" came from deep inside
    with pytest.raises(ppl.ArgumentError, match=r"model 'normal_mean' takes \(y\) but was called with 0 positional: "
                                               r"missing a required argument: 'y'.*vi.auto_normal\(normal_mean, \*args\)"):
        vi.auto_normal(normal_mean)
    with pytest.raises(ppl.ArgumentError, match=r"takes \(y\) but was called with 2 positional: too many"):
        mcmc.sample(KEY, mcmc.NUTS(), normal_mean, Y, Y, num_warmup=5, num_samples=5, progress=False)

    @ppl.model
    def body_error(y):
        return len(3)  # a TypeError inside the body is the model's own, not a calling error

    with pytest.raises(TypeError, match="has no len") as info:
        body_error.simulate(KEY, Y)
    assert not isinstance(info.value, ppl.ArgumentError)
