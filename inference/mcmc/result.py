""":class:`Run`, the result of :func:`inference.mcmc.sample`: the draws in host memory, the
sampler's statistics, the chains' last state (to resume), and the result protocol shared with
the other families (``draws``, ``info``, ``sample``, ``predictive``, ``to_arviz``)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

import ppl
from ppl.errors import ArgumentError, ModelError

from .._result import to_inference_data
from .._run.progress import progress_default
from ._program import _by_suffix, _Program
from .diagnostics import Summary, summary

__all__ = ["Run"]


class Run:
    """The result of :func:`sample`: the draws (in host memory), the sampler's statistics and
    the chains' last state.

    Attributes:
        samples: address -> draws shaped (chains, draws, ...) in the constrained space
            (latent and deterministic sites), NumPy arrays.  ``draws`` is the same dict.
        active: address -> booleans shaped (chains, draws) for the sites inside ``ppl.cond`` /
            ``ppl.switch`` of a trace kernel's model: whether the site existed in that draw.
            Where it is False, ``samples[address]`` holds a placeholder, not a draw; mask it
            (e.g. ``samples["a"][active["a"]]``) before summarising.  Empty for other models.
        info: the kernel's per-step info, each shaped (chains, draws).
        warmup_info: the same for the warmup steps done (None without warmup).
        state: the kernel's final state (chains leading, on the device), from which
            :meth:`resume` continues.
        interrupted: True when the run was stopped by Ctrl-C (or is a streamed run that
            :func:`load` recovered before it finished); it holds the draws made until then, and
            :meth:`resume` continues it (finishing the warmup first if needed).
        warmup_done: warmup steps done (``num_warmup`` unless interrupted during warmup).

    Example:
        >>> @ppl.model
        ... def m():
        ...     ppl.sample("x", dist.Normal(0.0, 1.0))
        >>> run = mcmc.sample(jax.random.key(0), mcmc.RWM(), m, num_warmup=10, num_samples=20, num_chains=2, progress=False)
        >>> run.draws["x"].shape, run.sample(jax.random.key(1), 5)["x"].shape
        ((2, 20), (5,))
    """

    def __init__(self, program: _Program, dyn: list, state: Any, samples: dict, info: dict, warmup_info: dict | None,
                 active: dict | None = None, warmup_done: int | None = None, interrupted: bool = False):
        self._program, self._dyn = program, dyn
        self.state, self.samples, self.info, self.warmup_info = state, samples, info, warmup_info
        self.active = dict(active or {})
        self.warmup_done = program.num_warmup if warmup_done is None else int(warmup_done)
        self.interrupted = bool(interrupted)
        self._progress: bool | None = None  # the default of resume's ``progress``

    @property
    def draws(self) -> dict:
        """address -> draws shaped (chains, draws, ...): the same dict as :attr:`samples`."""
        return self.samples

    @property
    def num_chains(self) -> int:
        return self._program.num_chains

    @property
    def num_samples(self) -> int:
        leaves = jax.tree_util.tree_leaves(self.samples)
        return int(leaves[0].shape[1]) if leaves else 0

    @property
    def diagnostics(self) -> dict:
        """Per chain: divergences (sampling and warmup), mean and max tree depth, step size,
        mean acceptance probability, mean number of leapfrog steps (when the kernel reports them)."""
        info = {k: np.asarray(v) for k, v in self.info.items()}
        d: dict = {}
        div = _by_suffix(info, "diverging")
        if div:
            d["divergences"] = np.sum([v.sum(1) for v in div], axis=0)
        wdiv = _by_suffix(self.warmup_info or {}, "diverging")
        if wdiv:
            d["warmup_divergences"] = np.sum([np.asarray(v).sum(1) for v in wdiv], axis=0)
        if self.num_samples == 0:
            return d
        depth = _by_suffix(info, "tree_depth")
        if depth:
            d["mean_tree_depth"] = depth[0].mean(1)
            d["max_tree_depth"] = depth[0].max(1)
        ss = _by_suffix(info, "step_size")
        if ss:
            d["step_size"] = ss[0][:, -1]
        acc = _by_suffix(info, "accept_prob")
        if acc:
            d["accept_prob"] = np.mean([a.mean(1) for a in acc], axis=0)
        steps = _by_suffix(info, "num_steps")
        if steps:
            d["mean_num_steps"] = np.sum([v.mean(1) for v in steps], axis=0)
        return d

    def summary(self, as_frame: bool = False) -> Summary:
        """mean, sd, 5/50/95% quantiles, R̂, bulk and tail ESS per site; ``print`` it for a table
        (or :meth:`print_summary`).  ``as_frame=True``: a ``pandas.DataFrame``, one row per scalar
        component (``theta[0]``, ...), one column per statistic (needs pandas).

        Sites that are inactive in some draws (see :attr:`active`) are left out: their draws
        mix placeholders with values; summarise ``samples[a][active[a]]`` yourself."""
        partial = {k for k, a in self.active.items() if not np.all(a)}
        from .health import summarize  # issue 18: no draws is a clear error; the health under the table

        s = summarize(self, lambda: summary({k: np.asarray(v) for k, v in self.samples.items() if k not in partial}))
        return s.to_dataframe() if as_frame else s

    def print_summary(self) -> None:
        """Print the :meth:`summary` table and the number of divergences (as NumPyro's
        ``print_summary`` does)."""
        print(self.summary())
        div = self.diagnostics.get("divergences")
        if div is not None:
            print(f"\nNumber of divergences: {int(np.sum(div))}")

    def _model_call(self) -> tuple[Any, tuple, dict]:
        args, kwargs = self._program.args(self._dyn)
        return self._program.model, tuple(args), dict(kwargs)

    def log_likelihood(self) -> dict:
        """Pointwise log-likelihood of the run's observations at each of its draws
        (:func:`ppl.log_likelihood` of the model and arguments the run was made with): observed
        address -> ``(chains, draws) + the observation's plate shape``.

        Example:
            >>> @ppl.model
            ... def m(y=None):
            ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
            ...     with ppl.plate("obs", 3):
            ...         ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
            >>> run = mcmc.sample(jax.random.key(0), mcmc.RWM(), m, y=jnp.zeros(3), num_warmup=10,
            ...                   num_samples=20, num_chains=2, progress=False)
            >>> run.log_likelihood()["y"].shape
            (2, 20, 3)
        """
        model, args, kwargs = self._model_call()
        from .._result import model_sites

        sites = model_sites(model, args, kwargs, {k: np.asarray(v)[0, 0] for k, v in self.samples.items()})
        latent = {k: v for k, v in self.samples.items() if k in sites and sites[k]["kind"] == "latent"}
        return ppl.log_likelihood(model, latent, *args, batch_ndims=2, **kwargs)

    def to_arviz(self, posterior_predictive: Any = None, prior: Any = None, coords: Any = None, dims: Any = None,
                 log_likelihood: bool = True):
        """ArviZ data of the run (``arviz.InferenceData`` with ArviZ 0.x; the ``DataTree`` of ArviZ
        1.x), built from the model and arguments the run was made with:

        * ``posterior``: the draws (chain, draw, ...); ``sample_stats``: ``diverging``,
          ``tree_depth``, ``energy``, ``step_size``, ``acceptance_rate``, ``n_steps`` and ``lp``
          (the log density) where the kernel reports them;
        * ``log_likelihood``: :meth:`log_likelihood` (for ``az.loo``, ``az.waic``,
          ``az.compare``; ``log_likelihood=False`` leaves it out); ``observed_data``: the values
          observed;
        * ``posterior_predictive`` / ``prior`` (and ``prior_predictive``) when given: dicts of
          draws, e.g. from :func:`ppl.predictive` (``(chains, draws, ...)`` or flat; a prior's
          ``(n, ...)`` becomes one chain); ``posterior_predictive=key`` (a JAX random key) draws
          the observed sites at every draw of the run;
        * dims named after the plates (``plate("school", 8)`` -> dim ``school``) and a scan's
          time axis after the scan; ``dims={var: [names]}`` overrides, ``coords={dim: labels}``
          labels them (e.g. ``coords={"school": names}``).

        Example:
            >>> @ppl.model
            ... def m(y=None):
            ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
            ...     with ppl.plate("obs", 3):
            ...         ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
            >>> run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), m, y=jnp.zeros(3), num_warmup=10,
            ...                   num_samples=20, num_chains=2, progress=False)
            >>> idata = run.to_arviz(coords={"obs": ["a", "b", "c"]})
            >>> idata.log_likelihood["y"].dims, idata.observed_data["obs"].values.tolist()
            (('chain', 'draw', 'obs'), ['a', 'b', 'c'])
        """
        from .._result import workflow_groups

        names = {
            "diverging": "diverging",
            "tree_depth": "tree_depth",
            "step_size": "step_size",
            "accept_prob": "acceptance_rate",
            "num_steps": "n_steps",
            "energy": "energy",
            "potential_energy": "lp",
        }
        stats = {names[k]: np.asarray(v) for k, v in self.info.items() if k in names}
        if "lp" in stats:
            stats["lp"] = -stats["lp"]  # the potential energy is minus the log density
        model, args, kwargs = self._model_call()
        groups, site_dims = workflow_groups("Run.to_arviz", model, args, kwargs, self.samples, chains=self.num_chains,
                                            draws=self.num_samples, log_likelihood=log_likelihood,
                                            posterior_predictive=posterior_predictive, prior=prior)
        groups["sample_stats"] = stats
        return to_inference_data(groups, {**site_dims, **dict(dims or {})}, coords)

    def sample(self, key: Any, num_samples: int) -> dict:
        """``num_samples`` draws picked uniformly, with replacement, among the run's draws of
        every chain: address -> array shaped (num_samples, ...) (the posterior as this run
        approximates it, e.g. for :func:`ppl.predictive`)."""
        key = ppl.handlers.check_key(key, "Run.sample")
        n = int(num_samples)
        total = self.num_chains * self.num_samples
        if n < 1:
            raise ArgumentError(f"Run.sample: num_samples must be >= 1, got {num_samples}.")
        if total == 0:
            raise ModelError("Run.sample: the run holds no draws to sample from.")
        idx = np.asarray(jax.random.randint(key, (n,), 0, total))
        return {k: np.asarray(v).reshape((total,) + np.shape(v)[2:])[idx] for k, v in self.samples.items()}

    def predictive(self, key: Any, model: Any, *args: Any, num_samples: int | None = None, **kwargs: Any) -> dict:
        """Posterior predictive draws of ``model(*args, **kwargs)`` (:func:`ppl.predictive`)
        given this run's draws: all of them, flattened over chains (address -> (chains · draws,
        ...)), or ``num_samples`` picked by :meth:`sample`.  Without ``args``/``kwargs`` the
        model gets the arguments the run was made with."""
        key = ppl.handlers.check_key(key, "Run.predictive")
        k_pick, k_pred = jax.random.split(key)
        if num_samples is None:
            total = self.num_chains * self.num_samples
            draws = {k: np.asarray(v).reshape((total,) + np.shape(v)[2:]) for k, v in self.samples.items()}
        else:
            draws = self.sample(k_pick, num_samples)
        if not args and not kwargs:
            args, kwargs = self._program.args(self._dyn)
        return ppl.predictive(model, draws, *args, key=k_pred, **kwargs)

    def resume(self, key: Any, num_samples: int | None = None, progress: bool | None = None, stream_to: Any = None) -> "Run":
        """Continue every chain from its last state for ``num_samples`` more draws (default: as
        many as this run has, at least 1), with the tuning frozen.  Compiles nothing new,
        whatever ``num_samples`` is.  A run interrupted during warmup finishes its warmup first.
        Returns a new Run holding the new draws only; the same key gives the same draws.

        Args:
            key: a JAX random key.
            num_samples: steps per chain, every ``thinning``-th kept as in :func:`sample` (None:
                as many draws as this run has).
            progress: show progress (None: as the run that is resumed).
            stream_to: a directory to write the draws to as ``.npy`` files (see :func:`sample`).

        Example:
            >>> @ppl.model
            ... def m():
            ...     ppl.sample("x", dist.Normal(0.0, 1.0))
            >>> run = mcmc.sample(jax.random.key(0), mcmc.RWM(), m, num_warmup=10, num_samples=20, progress=False)
            >>> run.resume(jax.random.key(2), num_samples=50).samples["x"].shape
            (1, 50)
        """
        from ._loop import _phases, _stream_dir

        ppl.handlers.check_key(key, "Run.resume")
        n = self.num_samples if num_samples is None else int(num_samples)
        if num_samples is None and n == 0:
            n = 1
        if n < 0:
            raise ArgumentError(f"Run.resume: num_samples must be >= 0, got {num_samples}.")
        prog, dyn = self._program, self._dyn
        if num_samples is not None:  # steps, as in mcmc.sample: every thinning-th is kept
            n //= prog.thinning
        progress = self._progress if progress is None else progress
        on = progress_default() if progress is None else bool(progress)
        directory = _stream_dir("Run.resume", stream_to)
        if prog.chunk_size is None:
            prog.choose_chunk_size(self.state, dyn, prog.num_warmup + n)
        k_warm = None
        if self.warmup_done < prog.num_warmup:
            k_warm, key = jax.random.split(key)
        return _phases(prog, dyn, self.state, k_warm, key, self.warmup_done, n, on, directory)

    def save(self, path: Any) -> None:
        """Write the chains' last state, the draws and the info to ``path`` (an ``.npz`` file;
        no pickle: arrays plus a JSON description), to :func:`load` and :meth:`resume` later,
        e.g. after a restart.  The model's arguments are not saved: give them to :func:`load`
        (its docstring has an example)."""
        from ._store import save

        save(self, path)

    # issue 14: the summed-out discrete sites, recovered draw by draw
    def discrete(self, key: Any, temperature: int = 1) -> dict:
        """The finite discrete latent sites that the sampler summed out (:func:`ppl.infer_discrete`),
        one per draw: with ``temperature=1`` a draw from p(z | the draw's continuous values,
        data), with ``temperature=0`` the most probable assignment (Viterbi through scans).
        Returns address -> array shaped (chains, draws, ...); the same key gives the same values.

        Example:
            >>> @ppl.model
            ... def m(y):
            ...     mu = ppl.sample("mu", dist.Normal(0.0, 3.0))
            ...     with ppl.plate("data", 2):
            ...         z = ppl.sample("z", dist.Bernoulli(probs=0.5))
            ...         ppl.sample("y", dist.Normal(mu * z, 1.0), obs=y)
            >>> run = mcmc.sample(jax.random.key(0), mcmc.RWM(), m, jnp.array([0.0, 3.0]), num_warmup=10, num_samples=20, progress=False)
            >>> run.discrete(jax.random.key(1))["z"].shape
            (1, 20, 2)
        """
        key = ppl.handlers.check_key(key, "Run.discrete")
        args, kwargs = self._program.args(self._dyn)
        model = self._program.model
        c, n = self.num_chains, self.num_samples
        flat = {k: np.asarray(v).reshape((c * n,) + np.shape(v)[2:]) for k, v in self.samples.items()}
        keys = jax.random.split(key, c * n)

        def one(k, v):
            return ppl.infer_discrete(model, v, *args, key=k, temperature=temperature, **kwargs)

        out = jax.jit(jax.vmap(one))(keys, flat)
        return {k: np.asarray(v).reshape((c, n) + np.shape(v)[1:]) for k, v in out.items()}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(np.shape(v))}" for k, v in self.samples.items())
        stop = "; interrupted" if self.interrupted else ""
        return f"<mcmc.Run {self.num_chains} chains x {self.num_samples} draws; {shapes}{stop}>"
