"""The run layer (``inference._run``) every family drives its compiled loops with: the masked,
chunked scan (results independent of the chunk size, also when it does not divide the number of
steps), the host loop (Ctrl-C between chunks returns the partial result of MCMC and VI), the one
progress display (shown in terminal mode, silent when off), and the program cache (hit on a
second call, miss when a value read at trace time -- ``PPL_SHARDING`` -- changes)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from inference import mcmc, vi
from inference._run import cache as run_cache
from inference._run import chunking, loop, progress
from ppl import dist

from _compiles import CompileCounter


@ppl.model
def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("data", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


@ppl.model
def normal_mean_predict(n):
    """normal_mean's sites with the n observations drawn (for posterior predictions)."""
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("data", n):
        ppl.sample("y", dist.Normal(mu, 1.0))


@ppl.model
def mean_guide(y):
    loc = ppl.param("loc", 0.0)
    scale = ppl.param("scale", 1.0, constraint=dist.constraints.positive)
    ppl.sample("mu", dist.Normal(loc, scale))


Y = jnp.array([0.8, 1.9, 0.4, 1.3])


def _random_walk(chunk: int, n: int, start: int = 0):
    """A Gaussian random walk of n steps run through scan_chunk + host_loop in chunks."""
    key = jax.random.key(3)

    @jax.jit
    def run_chunk(x, t0):
        return loop.scan_chunk(lambda k, x, t: (x + jax.random.normal(k, dtype=x.dtype), x), key, x, t0, jnp.int32(n), chunk)

    outs = []
    state, done, interrupted = loop.host_loop(lambda x, t0: run_chunk(x, jnp.int32(t0)), jnp.float32(0.0), start, n, chunk,
                                              lambda out, t0, m: outs.append(np.asarray(out)[:m]))
    return np.asarray(state), np.concatenate(outs), done, interrupted


# -- the masked chunked scan -------------------------------------------------------------------


def test_a_chunk_size_not_dividing_the_steps_gives_the_one_chunk_result():
    one = _random_walk(23, 23)
    for chunk in (1, 5, 7, 40):  # 40 > 23: a single chunk that runs past the end
        state, outs, done, interrupted = _random_walk(chunk, 23)
        assert done == 23 and not interrupted and outs.shape == (23,)
        np.testing.assert_array_equal(state, one[0])
        np.testing.assert_array_equal(outs, one[1])


def test_steps_past_the_end_keep_the_carry_and_output_zeros():
    c, outs = loop.scan_chunk(lambda k, c, t: (c + t.astype(c.dtype), (t + 1).astype(jnp.int32)), jax.random.key(0), jnp.int32(0), jnp.int32(4), jnp.int32(6), 5)
    assert int(c) == 4 + 5 and outs.tolist() == [5, 6, 0, 0, 0]


def test_vi_fit_is_the_same_for_any_chunk_size():
    obj = vi.elbo(normal_mean, mean_guide)
    kw = dict(num_steps=37, data=Y, num_samples=2, progress=False)
    a = vi.fit(jax.random.key(5), obj, optax.adam(0.05), chunk_size=37, **kw)
    for chunk in (5, 8, 100):
        b = vi.fit(jax.random.key(5), obj, optax.adam(0.05), chunk_size=chunk, **kw)
        np.testing.assert_array_equal(a.history, b.history)
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k])


def test_mcmc_draws_are_the_same_for_any_chunk_size():
    kw = dict(num_warmup=13, num_samples=17, num_chains=2, progress=False)
    a = mcmc.sample(jax.random.key(2), mcmc.RWM(), normal_mean, Y, chunk_size=30, **kw)
    b = mcmc.sample(jax.random.key(2), mcmc.RWM(), normal_mean, Y, chunk_size=4, **kw)
    np.testing.assert_array_equal(a.samples["mu"], b.samples["mu"])
    np.testing.assert_array_equal(a.warmup_info["accepted"], b.warmup_info["accepted"])


def test_automatic_chunk_sizes_divide_the_phases_when_they_can():
    assert chunking.choose_chunk_size(2000, phases=(1000, 1000)) == 100
    assert 1000 % chunking.choose_chunk_size(1000, phases=(1000,)) == 0
    assert chunking.choose_chunk_size(10**7 + 1) == chunking.MAX_CHUNK  # no divisor near it
    assert chunking.choose_chunk_size(10**6, bytes_per_step=chunking.CHUNK_BYTES // 10) == 10


# -- Ctrl-C between chunks -----------------------------------------------------------------------


def _ctrl_c_at(monkeypatch, call: int):
    """Make the progress display raise KeyboardInterrupt at its ``call``-th update."""
    real = progress.Progress.__call__
    calls = {"n": 0}

    def interrupting(self, done, *fields):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(self, done, *fields)

    monkeypatch.setattr(progress.Progress, "__call__", interrupting)


def test_host_loop_returns_the_state_of_the_last_collected_chunk_on_ctrl_c():
    def after(state, done, last):
        if done == 6:
            raise KeyboardInterrupt

    state, done, interrupted = loop.host_loop(lambda s, t0: (s + 3, None), 0, 0, 12, 3, lambda *a: None, after)
    assert (state, done, interrupted) == (6, 6, True)


def test_ctrl_c_returns_the_partial_mcmc_run(monkeypatch):
    _ctrl_c_at(monkeypatch, 4)  # two warmup chunks, two sampling chunks (after their draws are kept)
    with pytest.warns(UserWarning, match="interrupted"):
        run = mcmc.sample(jax.random.key(0), mcmc.RWM(), normal_mean, Y, num_warmup=20, num_samples=50, num_chains=2,
                          chunk_size=10, progress=True)
    monkeypatch.undo()
    full = mcmc.sample(jax.random.key(0), mcmc.RWM(), normal_mean, Y, num_warmup=20, num_samples=50, num_chains=2,
                       chunk_size=10, progress=False)
    assert run.interrupted and run.warmup_done == 20 and run.samples["mu"].shape == (2, 20)
    np.testing.assert_array_equal(run.samples["mu"], full.samples["mu"][:, :20])


def test_ctrl_c_returns_the_partial_vi_result(monkeypatch):
    obj = vi.elbo(normal_mean, mean_guide)
    _ctrl_c_at(monkeypatch, 3)  # after the third chunk
    with pytest.warns(UserWarning, match="interrupted"):
        res = vi.fit(jax.random.key(1), obj, optax.adam(0.05), num_steps=50, data=Y, chunk_size=10, progress=True)
    monkeypatch.undo()
    assert res.interrupted and res.num_steps == 30 and res.history.shape == (30,)
    # the params so far are those of a run of 30 steps (the same keys, step by step)
    short = vi.fit(jax.random.key(1), obj, optax.adam(0.05), num_steps=30, data=Y, chunk_size=10, progress=False)
    assert not short.interrupted
    np.testing.assert_array_equal(res.history, short.history)
    for k in short.params:
        np.testing.assert_array_equal(res.params[k], short.params[k])


# -- progress ------------------------------------------------------------------------------------


def test_progress_appears_in_terminal_mode_and_not_when_off(capsys):
    mcmc.sample(jax.random.key(0), mcmc.RWM(), normal_mean, Y, num_warmup=10, num_samples=30, num_chains=2, progress=True)
    vi.fit(jax.random.key(0), vi.elbo(normal_mean, mean_guide), optax.adam(0.05), num_steps=30, data=Y, progress=True)
    err = capsys.readouterr().err
    assert "warmup: 10/10 | 2 chains" in err and "sample: 30/30 | 2 chains" in err
    assert "vi.fit: 30/30 | objective" in err and err.endswith("\n")
    mcmc.sample(jax.random.key(0), mcmc.RWM(), normal_mean, Y, num_warmup=10, num_samples=30, num_chains=2, progress=False)
    vi.fit(jax.random.key(0), vi.elbo(normal_mean, mean_guide), optax.adam(0.05), num_steps=30, data=Y, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_is_off_by_default_under_ci_and_when_piped(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert progress.progress_default() is False
    monkeypatch.delenv("CI")
    monkeypatch.setattr(progress, "in_notebook", lambda: False)
    # under pytest stderr is captured, not a terminal
    assert progress.progress_default() is False
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    assert progress.progress_default() is True


def test_in_a_notebook_progress_is_a_tqdm_bar(monkeypatch, capsys):
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    p = progress.Progress(True, "sample", 10)
    assert p._bar is not None  # tqdm.auto (the plain bar outside a real kernel)
    p(4, "0 divergences")
    p(10, "1 divergences")
    assert p._bar is None  # closed at the end
    err = capsys.readouterr().err
    assert "sample" in err and "10/10" in err and "1 divergences" in err


# -- the program cache -----------------------------------------------------------------------------


def test_vi_program_cache_hits_on_a_second_call_and_misses_when_ppl_sharding_changes(monkeypatch):
    traces = []

    @vi.objective
    def counted(y):
        traces.append(1)  # a Python call of the program: a trace
        tr = vi.sample(mean_guide, y)
        return normal_mean.log_density(tr.choices, y) - tr.log_density

    opt = optax.adam(0.05)
    monkeypatch.setenv("PPL_SHARDING", "1")
    vi.fit(jax.random.key(0), counted, opt, num_steps=20, data=Y, chunk_size=10, progress=False)
    first = len(traces)
    assert first > 0
    y2, key = jax.block_until_ready((Y + 1.0, jax.random.key(1)))
    with CompileCounter() as c:
        vi.fit(key, counted, opt, num_steps=40, data=y2, chunk_size=10, progress=False)
    assert c.n == 0 and len(traces) == first, "a second fit (new key, data, num_steps) traced or compiled again"
    monkeypatch.setenv("PPL_SHARDING", "0")  # read at trace time: a new program
    misses = run_cache.PROGRAMS.misses
    vi.fit(jax.random.key(1), counted, opt, num_steps=20, data=Y, chunk_size=10, progress=False)
    assert len(traces) > first and run_cache.PROGRAMS.misses > misses


def test_mcmc_program_cache_hits_on_a_second_call_and_misses_when_ppl_sharding_changes(monkeypatch):
    @ppl.model
    def fresh(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("data", y.shape[0]):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    kw = dict(num_warmup=10, num_samples=10, num_chains=2, progress=False)
    monkeypatch.setenv("PPL_SHARDING", "1")
    a = mcmc.sample(jax.random.key(0), mcmc.RWM(), fresh, Y, **kw)
    hits, misses = run_cache.PROGRAMS.hits, run_cache.PROGRAMS.misses
    y2, key = jax.block_until_ready((Y + 1.0, jax.random.key(1)))
    with CompileCounter() as c:
        mcmc.sample(key, mcmc.RWM(), fresh, y2, **kw)
    assert c.n == 0 and run_cache.PROGRAMS.hits == hits + 1 and run_cache.PROGRAMS.misses == misses
    monkeypatch.setenv("PPL_SHARDING", "0")
    b = mcmc.sample(jax.random.key(0), mcmc.RWM(), fresh, Y, **kw)
    assert run_cache.PROGRAMS.misses == misses + 1 and b._program is not a._program
    np.testing.assert_array_equal(a.samples["mu"], b.samples["mu"])  # one device: the same draws


def test_program_cache_holds_programs_weakly_by_owner():
    class Owner:
        pass

    cache, owner = run_cache.ProgramCache(), Owner()
    built = []
    p = cache.get(owner, ("k", 1), lambda: built.append(1) or object())
    assert cache.get(owner, ("k", 1), lambda: built.append(1) or object()) is p and built == [1]
    with pytest.raises(TypeError):
        cache.get(owner, ({},), object)
    del owner
    import gc

    gc.collect()
    assert len(cache._weak) == 0


# -- the result protocol and the calling convention ----------------------------------------------------


def test_mcmc_run_has_the_result_protocol():
    run = mcmc.sample(jax.random.key(0), mcmc.RWM(), normal_mean, Y, num_warmup=20, num_samples=30, num_chains=2, progress=False)
    assert run.draws is run.samples and "accepted" in run.info
    s = run.sample(jax.random.key(1), 7)
    assert s["mu"].shape == (7,)
    assert set(np.asarray(s["mu"]).tolist()) <= set(np.asarray(run.samples["mu"]).ravel().tolist())
    pred = run.predictive(jax.random.key(2), normal_mean_predict, 4)  # every draw of every chain
    assert pred["y"].shape == (60, 4) and float(np.std(pred["y"])) > 0.5
    assert run.predictive(jax.random.key(2), normal_mean_predict, 4, num_samples=5)["y"].shape == (5, 4)
    # no arguments: the run's own, which observe y; refused by name, never the data handed back
    with pytest.raises(ppl.ModelError, match="'y' is observed"):
        run.predictive(jax.random.key(2), normal_mean, num_samples=5)
    assert run.to_arviz().posterior["mu"].shape == (2, 30)


def test_vi_result_has_the_result_protocol():
    res = vi.fit(jax.random.key(0), vi.elbo(normal_mean, mean_guide), optax.adam(0.05), num_steps=30, data=Y, progress=False)
    assert res.draws == {} and res.info["objective"] is res.history and res.info["num_steps"] == 30
    d = res.sample(jax.random.key(1), 11, guide=mean_guide)
    np.testing.assert_array_equal(d["mu"], res.sample_posterior(jax.random.key(1), mean_guide, Y, num_samples=11)["mu"])
    assert res.predictive(jax.random.key(2), normal_mean_predict, 4, num_samples=9, guide=mean_guide)["y"].shape == (9, 4)
    with pytest.raises(ppl.ModelError, match="'y' is observed"):
        res.predictive(jax.random.key(2), normal_mean, num_samples=9, guide=mean_guide)
    idata = res.to_arviz(guide=mean_guide, num_samples=12)
    assert idata.posterior["mu"].shape == (1, 12) and idata.sample_stats["objective"].shape == (1, 30)


def test_vi_result_sample_without_a_guide_says_how_to_pass_one():
    @vi.objective
    def plain(y):
        tr = vi.sample(mean_guide, y)
        return normal_mean.log_density(tr.choices, y) - tr.log_density

    res = vi.fit(jax.random.key(0), plain, optax.adam(0.05), num_steps=5, data=Y, progress=False)
    with pytest.raises(ppl.ArgumentError, match="guide="):
        res.sample(jax.random.key(1), 3)


def test_a_driver_option_set_for_a_model_with_a_parameter_of_that_name_is_refused():
    @ppl.model
    def clash(y, num_chains=1, data=None, init=None):
        ppl.sample("mu", dist.Normal(0.0, 1.0))

    # ambiguous: the user set num_chains, and the model has a parameter num_chains
    with pytest.raises(ppl.ArgumentError, match="'num_chains'"):
        mcmc.sample(jax.random.key(0), mcmc.RWM(), clash, Y, num_samples=3, num_chains=2, progress=False)
    # options left at their defaults are not ambiguous: such a model runs
    run = mcmc.sample(jax.random.key(0), mcmc.RWM(), clash, Y, num_warmup=2, num_samples=3, progress=False)
    assert run.draws["mu"].shape == (1, 3)

    # vi.fit: a model whose data argument is called `data` is the common case, and fit's own
    # data= supplies the objective's arguments; only options the user set are checked
    @ppl.model
    def model(data):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("n", data.shape[0]):
            ppl.sample("x", dist.Normal(mu, 1.0), obs=data)

    @ppl.model
    def guide(data, num_samples=None):
        ppl.sample("mu", dist.Normal(ppl.param("m", 0.0), 1.0))

    res = vi.fit(jax.random.key(0), vi.elbo(model, guide), optax.adam(0.1), num_steps=3, data=(Y,), progress=False)
    assert res.sample(jax.random.key(1), 4)["mu"].shape == (4,)
    with pytest.raises(ppl.ArgumentError, match="'num_samples'"):
        vi.fit(jax.random.key(0), vi.elbo(model, guide), optax.adam(0.1), num_steps=3, data=(Y,), num_samples=2, progress=False)


def test_bad_driver_arguments_raise_argument_errors_naming_them():
    with pytest.raises(ppl.ArgumentTypeError, match="expected a kernel"):
        mcmc.sample(jax.random.key(0), "NUTS", normal_mean, Y)
    with pytest.raises(ppl.ArgumentError, match="num_chains must be >= 1, got 0"):
        mcmc.sample(jax.random.key(0), mcmc.RWM(), normal_mean, Y, num_chains=0)
    with pytest.raises(ppl.ArgumentError, match="chunk_size"):
        mcmc.sample(jax.random.key(0), mcmc.RWM(), normal_mean, Y, chunk_size=0)
    with pytest.raises(ppl.ArgumentError, match="num_samples must be >= 0, got -1"):
        mcmc.sample(jax.random.key(0), mcmc.RWM(), normal_mean, Y, num_samples=-1)

    @ppl.model
    def tagged(y, tags):
        ppl.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ppl.ArgumentTypeError, match="not hashable"):
        mcmc.sample(jax.random.key(0), mcmc.RWM(), tagged, Y, {"a"}, num_samples=2, progress=False)
    with pytest.raises(ppl.ArgumentError, match="chunk_size"):
        vi.fit(jax.random.key(0), vi.elbo(normal_mean, mean_guide), optax.adam(0.1), Y, num_steps=5, chunk_size=0)


def test_particle_filter_is_one_cached_program_per_step_and_shapes():
    # it compiled its scan on every call (a PMMH outside jit, a notebook cell run again)
    import numpyro.distributions as dist

    from inference import smc

    def step(x, y):
        x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
        ppl.sample("y", dist.Normal(x, 0.5), obs=y)
        return x, None

    ys = jnp.array([0.1, -0.3, 0.4])
    first = smc.particle_filter(jax.random.key(0), step, 0.0, ys, 16).log_evidence
    hits, misses = run_cache.PROGRAMS.hits, run_cache.PROGRAMS.misses
    again = smc.particle_filter(jax.random.key(0), step, 0.0, ys + 1.0, 16).log_evidence
    assert (run_cache.PROGRAMS.hits, run_cache.PROGRAMS.misses) == (hits + 1, misses)
    same = smc.particle_filter(jax.random.key(0), step, 0.0, ys, 16).log_evidence
    assert float(same) == float(first) and float(again) != float(first)  # same key, same result
    smc.particle_filter(jax.random.key(0), step, 0.0, ys, 32)  # another N: another program
    assert run_cache.PROGRAMS.misses == misses + 1
