"""The multi-chain driver: ``sample(key, kernel, model, *args, ...) -> Run``.

Chains are a leading axis (``jax.vmap`` of the kernel's ``init`` / ``step``), laid out across
devices when there are several (:mod:`inference.sharding`).  Warmup and sampling run through
*one* compiled program, the **chunk** (:mod:`._program`): a ``lax.scan`` of ``chunk_size`` steps
whose phase (warmup with adaptation, or sampling with the tuning frozen) is a traced input, so
the kernel (e.g. the NUTS tree builder) is compiled once.  A host loop over chunks (never over
steps; :mod:`._loop` on :mod:`inference._run`) calls it, copies each chunk's draws to host
memory (NumPy arrays, or ``.npy`` files with ``stream_to``) while the next chunk runs, and shows
progress between chunks.  So:

- one compiled program per (model, kernel, static arguments, number of chains, warmup length,
  chunk size, number of devices, trace-time configuration), cached: running again with arrays
  of the same shapes, or resuming for any number of draws, compiles nothing new;
- device memory holds the chains' state and one chunk of draws, whatever ``num_samples`` is;
- Ctrl-C between chunks returns a :class:`Run` with the draws collected so far, which resumes;
  with ``stream_to`` a crashed run is recovered from its directory by :func:`load`
  (:mod:`._store`);
- step ``t`` of a phase uses the key ``fold_in(phase_key, t)``: the draws do not depend on the
  chunk size, the number of devices (up to floating-point reassociation) or interruptions of
  the host loop, and the same key gives the same draws.

JAX and NumPy array arguments of the model are inputs of the program; other arguments (Python
numbers, strings, ...) are part of its identity, and the model body sees them concrete, with
every kernel (a plate size ``n`` stays an int).  NumPy arguments that the model's body needs
concrete (``len(np.unique(dept))``, ``int(np.max(x))``) are kept concrete for that model, keyed by
their contents (see :func:`._program._prepare` for the rule).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

import ppl
from ppl.checks import validate
from ppl.errors import ArgumentError
from ppl.initialization import as_strategy

from .. import sharding
from .._calling import check_option_clash, given_options, model_keywords
from .._run.chunking import MAX_CHUNK as _MAX_CHUNK  # noqa: F401 - read by tests
from .._run.progress import progress_default
from .._run.sink import Sink as _Sink  # noqa: F401 - patched by tests (the class is shared)
from ._base import Kernel, MCMCInitError
from ._loop import _phases, _stream_dir
from ._program import _prepared
from ._store import load
from .result import Run

__all__ = ["sample", "Run", "load"]

#: the driver's keyword-only options (a model parameter with one of these names is refused)


def sample(
    key: Any,
    kernel: Kernel,
    model: Any,
    *args: Any,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 1,
    init: Any = None,
    progress: bool | None = None,
    chunk_size: int | None = None,
    stream_to: Any = None,
    thinning: int = 1,
    model_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Run:
    """Run ``num_chains`` chains of ``kernel`` targeting ``model(*args, **kwargs)``'s posterior.

    Warmup and sampling run through one compiled program, a chunk of ``chunk_size`` steps,
    called from a host loop over chunks (see the module docstring).  The draws are the same
    whatever ``chunk_size``, ``progress`` or the number of devices is: they depend on ``key``
    only.  Ctrl-C between chunks returns a :class:`Run` with the draws made so far
    (``run.interrupted`` is True) that :meth:`Run.resume` continues.

    Args:
        key: a JAX random key.
        kernel: an MCMC kernel configuration (``NUTS()``, ``Regenerate("z")``, ``cycle(...)``, ...).
        model: a ``ppl.Model`` (observations given as arguments or through ``ppl.condition``).
        *args: the model's arguments (arrays are inputs of the compiled program; other values
            are part of its identity).
        num_warmup: adaptation (gradient kernels) or burn-in steps, not recorded as draws.
        num_samples: draws recorded per chain.
        num_chains: chains, run vectorised as a leading axis (split across devices when there
            are several; see :mod:`inference.sharding`); on CPU, a model with a sequential loop
            (``ppl.scan``) has its chains take each step in turn instead (faster there: see the
            devices guide), with the same draws up to rounding.
        init: None (the kernel's default: uniform in (−2, 2) unconstrained for gradient kernels,
            a prior draw for trace kernels); a strategy ``"uniform"`` / ``"prior"`` / ``"zeros"``
            / ``"median"`` / ``"mean"``, ``ppl.init_to_uniform(radius=...)`` and the others of
            :mod:`ppl.initialization` (NumPyro's ``init_to_*`` are read as these); or a dict of
            constrained values for some sites (the others by the kernel's default strategy),
            each shaped like its site (the same for every chain) or with a leading chain axis
            ``(num_chains,) + site shape`` (one start per chain).
        progress: show progress between chunks (a line on stderr, a bar in a notebook); default
            on in a terminal or notebook, off when ``CI`` is set or stderr is not a TTY.  It
            does not change the compiled program.
        chunk_size: steps per compiled chunk (None: about 20 chunks for this run, at most
            1024 steps and 64 MiB of draws per chunk, then fixed for the compiled program).
        stream_to: a directory: write the draws to ``.npy`` files there as they arrive
            (``samples.<i>.npy``, ``info.<i>.npy``, ...; ``run.samples`` are then memory maps of
            those files) instead of keeping them in memory, with a checkpoint of the state
            (``checkpoint.npz``) from which :func:`load` recovers the run after a crash.  Give
            each run its own directory.
        thinning: keep every ``thinning``-th draw of the ``num_samples`` post-warmup steps
            (``num_samples // thinning`` draws per chain, as NumPyro; the warmup is not thinned).
            The kept draws, their info and diagnostics are those of the kept steps; the draws
            depend on ``key`` only (not on chunking or resuming), like unthinned ones.
        model_kwargs: the model's keyword arguments as a dict, whatever their names (the
            unambiguous way in for one named like an option above, e.g. ``init``).
        **kwargs: the model's keyword arguments: each must be a parameter of the model (a
            model with ``**kwargs`` takes any name not close to an option's); anything else is
            an error with "did you mean" (see :mod:`inference._calling`).

    Returns:
        Run: the draws (NumPy arrays shaped (chains, draws, ...)), statistics and final state.

    Raises:
        MCMCInitError: when no initial point with a finite log density is found; the message
            names the site whose log density is not finite.
        ppl.errors.ArgumentError: for an unknown keyword (e.g. ``progress_bar=``: did you
            mean ``progress``?), or an option set whose name is also a model parameter (pass the
            model's value in ``model_kwargs``).

    Example:
        >>> @ppl.model
        ... def normal_mean(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     with ppl.plate("data", y.shape[0]):
        ...         ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> run = mcmc.sample(jax.random.key(1), mcmc.NUTS(), normal_mean, jnp.array([0.3, 1.2]),
        ...                   num_warmup=50, num_samples=30, num_chains=2, progress=False)
        >>> run.samples["mu"].shape
        (2, 30)
    """
    validate("mcmc.sample", key, num_warmup=(num_warmup, 0), num_samples=(num_samples, 0), num_chains=(num_chains, 1),
             chunk_size=(chunk_size, 1))  # issue 18: one check of counts and key at the entry point
    check_option_clash("mcmc.sample", model, set(given_options(sample, dict(
        num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains, init=init, progress=progress,
        chunk_size=chunk_size, stream_to=stream_to, thinning=thinning))) - set(model_kwargs or ()))
    kwargs = model_keywords("mcmc.sample", sample, model, kwargs, model_kwargs)
    if isinstance(thinning, bool) or not isinstance(thinning, (int, np.integer)) or thinning < 1:
        raise ArgumentError(f"mcmc.sample: thinning must be an int >= 1 (keep every thinning-th draw), got {thinning!r}.")
    num_samples = int(num_samples) // int(thinning)
    on = progress_default() if progress is None else bool(progress)
    directory = _stream_dir("mcmc.sample", stream_to)

    checked = as_strategy(init, "mcmc.sample")  # NumPyro's init_to_* read as ours
    init = checked.kind if isinstance(init, str) else checked
    init_values = init if isinstance(init, Mapping) else None
    strategy = None if isinstance(init, Mapping) else init
    prog, dyn = _prepared("mcmc.sample", kernel, model, args, kwargs, num_chains, num_warmup, chunk_size, key,
                          init_values, strategy, int(num_warmup) + num_samples, int(thinning))
    _check_summed_out(prog, dyn)
    model = prog.model
    num_warmup = prog.num_warmup
    state, log_dens, k_warm, k_samp = prog.init(key, dyn, init_values, strategy=strategy)
    ok = np.isfinite(sharding.to_host(log_dens))
    if not ok.all():
        c = int(np.argmin(ok))
        state_c = jax.tree.map(lambda v: v[c], state)
        try:
            reason = prog.bound(dyn).explain(state_c)
        except ppl.PPLError as e:  # evaluated eagerly, the language names the site itself
            reason = str(e)
        tries = "at the given values" if init_values is not None else "after 100 tries"
        raise MCMCInitError(
            f"mcmc.sample: no initial point with a finite log density for chain {c} of model "
            f"{model.name!r} ({tries}): {reason}. Check the data and the supports, or pass "
            "init={...} with valid values."
        )
    return _phases(prog, dyn, state, k_warm, k_samp, 0, num_samples, on, directory)


def _check_summed_out(prog, dyn: list) -> None:
    """Refuse a model whose summed-out discrete sites are used other than element by element
    (:meth:`ppl.UnconstrainedView.check_elementwise`), at the run's concrete inputs: the
    programs bind their view to traced inputs, where the check is skipped.  The view's structure
    comes from the program's first bind at these input shapes (tracing ``init``; else an
    abstract bind); the check itself runs once per (model, inputs).  Kernels without an
    unconstrained view (trace kernels: Gibbs handles such models by an exact MH correction) are
    not checked."""
    from ._program import shapes_of

    views = prog.summed_out_views
    if shapes_of(dyn) not in views:
        jax.eval_shape(lambda d: (prog.bound(d), jax.numpy.zeros(()))[1], dyn)  # records it
    view = views[shapes_of(dyn)]
    if view is not False:
        view.check_elementwise(*prog.args(dyn))
