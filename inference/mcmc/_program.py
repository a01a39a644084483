"""The compiled programs of an MCMC run: ``init`` (the chains' first state) and ``chunk`` (a
``lax.scan`` of ``chunk_size`` steps of every chain, warmup or sampling chosen by a traced
flag), one pair per (model, kernel, static arguments, chains, warmup length, chunk size,
devices, :func:`inference._run.cache.trace_key`), cached.

The kernel is used only through the kernel seam: ``kernel.bind``, ``bound.init``,
:func:`._base.phase_step`, ``bound.samples``, ``bound.log_density`` (and ``bound.explain`` in
the driver).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.errors import ArgumentError, ArgumentTypeError
from ppl.model import Trace

from .. import sharding
from .._lapack import calls_lapack, runs_loop
from .._run import chunking
from .._run.cache import PROGRAMS
from .._run.concrete import Concrete, join, remembered, split, with_concrete_retry
from ppl.config import gc_paused

from .._run.compile import compile_alongside, compiler_options
from .._run.loop import scan_chunk
from ._base import Kernel, phase_step

#: ``init`` loops over chains (``lax.map``) up to this many chains on one device, else ``vmap``
_MAP_INIT_CHAINS = 16


def _by_suffix(info: Mapping, name: str) -> list:
    """The entries of a kernel's info named ``name`` or ``"<block>/name"`` (combinators prefix
    their parts' info with the part's index)."""
    return [v for k, v in info.items() if k.split("/")[-1] == name]


def _abstract(v):
    return jax.ShapeDtypeStruct(v.shape, v.dtype, weak_type=getattr(v, "weak_type", False))


class _Program:
    """The jitted ``init`` and ``chunk`` functions of one (model, kernel, statics, ...) combination.

    ``chunk(phase_key, state, dyn, t0, n_end, warm)`` runs steps t0 .. t0 + chunk_size − 1 of a
    phase (:func:`inference._run.loop.scan_chunk`); steps with t ≥ n_end leave the state
    unchanged (their outputs are dropped on the host).  ``warm`` (a traced boolean) selects
    adaptation (warmup) or frozen tuning (sampling).
    """

    def __init__(self, kernel: Kernel, model: ppl.Model, treedef, statics: tuple, num_chains: int, num_warmup: int,
                 chunk_size: int | None, thinning: int = 1):
        self.kernel, self.model, self.treedef = kernel, model, treedef
        self.thinning = int(thinning)  # kernel steps per recorded draw in the sampling phase
        self.statics = {i: v.value if isinstance(v, Concrete) else v for i, v in statics}
        self.num_chains, self.num_warmup = num_chains, num_warmup
        self.chunk_size = chunk_size  # None: chosen at the first run (then fixed)
        self.init = jax.jit(self._init, static_argnames=("strategy",), compiler_options=compiler_options("init"))
        self.chunk = jax.jit(self._chunk, compiler_options=compiler_options("chunk"))
        # the chains' step, traced once: ``choose_chunk_size`` reads its output shapes and the
        # chunk's scan body calls it with the same shapes (JAX's trace cache), so the kernel
        # (e.g. the vmapped NUTS tree builder, the costliest part to trace) is traced once
        self.step = jax.jit(self._step)
        self._prepared: set = set()
        # input shapes -> the kernel's unconstrained view without its inputs, or False (see bound)
        self.summed_out_views: dict = {}

    def args(self, dyn: list) -> tuple[tuple, dict]:
        return join(self.treedef, self.statics, dyn)

    def bound(self, dyn: list):
        args, kwargs = self.args(dyn)
        b = self.kernel.bind(self.model, args, kwargs, self.num_warmup)
        views = self.summed_out_views
        sig = shapes_of(dyn)
        if sig not in views:
            # the structure of the kernel's unconstrained view at these input shapes, from the
            # first bind (the trace of ``init``), for the driver's check of summed-out sites at
            # the concrete inputs (``driver._check_summed_out``): no separate bind of the kernel
            views[sig] = summed_out_structure(b)
        return b

    def _per_device(self) -> bool:
        """Whether the chains run as one independent program per device (at trace time)."""
        n = sharding.num_devices()
        return n > 1 and self.num_chains % n == 0

    def _one_at_a_time(self, fun, *chain_args) -> bool:
        """Whether this device's chains must run ``fun`` one chain at a time (``lax.map``)
        rather than as a ``vmap`` batch (decided at trace time; ``chain_args``: the arguments
        with a leading chain axis, the others closed over): when the chains run per device on
        CPU, more than one per device, and one chain's ``fun`` calls LAPACK.  jaxlib 0.10 splits
        a batched LAPACK call over the intra-op pool that every CPU device's program shares and
        waits for it from a worker of that pool, which deadlocks with as many devices as cores
        (:mod:`inference._lapack`); a batch of one runs inline.  Everywhere else the ``vmap``
        stays (and nothing extra is traced)."""
        if not self._per_device() or jax.tree.leaves(chain_args)[0].shape[0] < 2:
            return False
        if sharding.mesh().devices.flat[0].platform != "cpu":
            return False
        one = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape[1:], v.dtype), chain_args)
        return calls_lapack(fun, *one)

    def _init(self, key, dyn, init_values, strategy=None):
        """(state, log densities, warmup key, sampling key) from the run's key."""
        k_init, k_warm, k_samp = jax.random.split(key, 3)
        init = init_values if init_values is not None else strategy
        keys = jax.random.split(k_init, self.num_chains)
        shared, per_chain = self._split_init_values(key, dyn, init_values)

        def chains(keys, per_chain, dyn, shared):  # these chains (this device's, when split)
            b = self.bound(dyn)

            def one(k, pc):
                return b.init(k, {**shared, **pc} if init_values is not None else init)

            if keys.shape[0] <= _MAP_INIT_CHAINS or self._one_at_a_time(one, keys, per_chain):
                # a loop over a few chains: tracing ``vmap`` of the init's while loops (retries,
                # the step-size heuristic) costs more than running them one chain at a time;
                # and a model's LAPACK calls must not be batched on several CPU devices
                state = jax.lax.map(lambda a: one(*a), (keys, per_chain))
            else:
                state = jax.vmap(one)(keys, per_chain)
            if self._one_at_a_time(b.log_density, state):
                return state, jax.lax.map(b.log_density, state)
            return state, jax.vmap(b.log_density)(state)

        if self._per_device():  # each device inits its own chains: no loop waits for another's
            chains = sharding.per_device(chains, in_axes=(0, 0, None, None), out_axes=0)
        state, log_density = chains(keys, per_chain, dyn, shared)
        return state, log_density, k_warm, k_samp

    def _split_init_values(self, key, dyn, init_values) -> tuple[dict, dict]:
        """(values shared by every chain, values with a leading chain axis) of ``init=`` dict:
        a value shaped ``(num_chains,) + site shape`` gives each chain its own start."""
        if not init_values:
            return {}, {}
        args, kwargs = self.args(dyn)
        shapes = jax.eval_shape(lambda k: self.model.simulate(k, *args, **kwargs).choices, key)
        shared, per_chain = {}, {}
        for a, v in init_values.items():
            site = tuple(shapes[a].shape) if a in shapes else None
            if site is not None and tuple(np.shape(v)) == (self.num_chains,) + site:
                per_chain[a] = jnp.asarray(v)
            else:
                shared[a] = v
        return shared, per_chain

    def prepare(self, key, dyn, init_values, strategy, num_steps: int) -> None:
        """Compile ``init`` and ``chunk`` for these argument shapes the first time, overlapping
        the compilation of ``init`` (in a thread) with the tracing and lowering of the step and
        the chunk, and then with the chunk's compilation; later calls find both programs in
        JAX's caches (the programs are the ones ``init`` / ``chunk`` use)."""
        sig = (strategy, jax.tree.map(lambda v: (np.shape(v), str(getattr(v, "dtype", type(v).__name__))), (dyn, init_values)))
        sig = jax.tree_util.tree_flatten(sig)
        sig = (tuple(sig[0]), sig[1])
        if sig in self._prepared:
            return
        with gc_paused():  # tracing allocates many short-lived objects; see ppl.config.gc_paused
            lo_init = self.init.lower(key, dyn, init_values, strategy=strategy)
            self._prepared.add(sig)
            state = lo_init.out_info[0]
            if sharding.num_devices() > 1:  # init's shardings: in turn
                self.choose_chunk_size(state, dyn, num_steps)
                return

            def chunk_program():
                self.choose_chunk_size(state, dyn, num_steps)
                try:
                    self.chunk.lower(key, state, dyn, np.int32(0), np.int32(0), np.bool_(True)).compile()
                except Exception:  # noqa: BLE001 - the chunk's own call compiles again and reports it
                    pass

            compile_alongside(lo_init, chunk_program)

    def _step(self, keys, state, dyn, t, warm):
        """One step of every chain (``keys``: one per chain; ``t``: int32, ``warm``: bool).

        A trace in the state (trace kernels: ``Gibbs``, ``Regenerate``, ``MH``, their
        combinators) records the model's arguments as leaves, which ``vmap`` over chains turns
        into tracers; the step sees them with the static arguments put back (Python numbers,
        strings, concrete NumPy data stay concrete, as for NUTS), and the new state keeps the
        incoming leaves (so the chunk's carry keeps its types)."""
        b = self.bound(dyn)

        def one(k, s):
            new, info = phase_step(b, k, _with_args(s, self._concrete_args), t, warm)
            return _with_args(new, lambda tr: _restore_args(tr, s)), info

        if self._one_at_a_time(one, keys, state) or self._in_turn(keys, dyn):
            return jax.lax.map(lambda a: one(*a), (keys, state))
        return jax.vmap(one)(keys, state)

    def _in_turn(self, keys, dyn) -> bool:
        """Whether this device's chains take each step in turn (``lax.map``) rather than as one
        ``vmap`` batch, because the model runs a sequential loop (a ``ppl.scan``, a
        ``while_loop``; its log density and gradient then loop too) and the chains run on CPU (decided at trace time; ``keys``: one per chain of this device).

        XLA:CPU compiles a loop whose state is small into one function and runs a larger one
        operation by operation; a batch of chains multiplies the loop's state.  Measured on the
        enumerated HMM (K = 3, T = 500; ``benchmarks/RESULTS.md``, issue 14): one chain's
        gradient 55 µs, four chains' batched gradient 450 µs; NUTS on four chains 9 s batched,
        4 s in turn.  Chains in turn also build their NUTS trees independently (a batch waits for
        its longest tree).  Nothing crosses chains in a step, so each chain's draws depend on its
        key alone either way (up to rounding: a batched and an unbatched program may round
        differently).  Models without such a loop keep the batch (and their draws).  The loop is
        looked for in a trace of the model's generative run (its body, whatever the kernel)."""
        if jax.default_backend() != "cpu" or keys.shape[0] < 2:
            return False
        args, kwargs = self.args(dyn)
        try:
            return runs_loop(lambda k: self.model.simulate(k, *args, **kwargs).choices,
                             jax.ShapeDtypeStruct((), keys.dtype))
        except Exception:  # noqa: BLE001 - not traceable alone: the batch (correct either way)
            return False

    def _concrete_args(self, tr: Trace) -> Trace:
        """``tr`` with its static argument leaves replaced by this program's concrete values."""
        if not self.statics:
            return tr
        leaves, treedef = jax.tree_util.tree_flatten((tuple(tr.args), dict(tr.kwargs)))
        if treedef != self.treedef:  # arguments changed by the kernel (not a shipped one): keep
            return tr
        leaves = [self.statics.get(i, v) for i, v in enumerate(leaves)]
        args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
        return dataclasses.replace(tr, args=args, kwargs=kwargs)

    def _chunk(self, key, state, dyn, t0, n_end, warm):
        if self._per_device():
            # one program per device over its own chains (``shard_map``), not one GSPMD program
            # over all of them: the chains' while loops (NUTS trees) then stop when this
            # device's chains are done, with no cross-device all-reduce per iteration.  Nothing
            # in a step crosses chains (each chain adapts its own tuning), so no collective.
            chunk = sharding.per_device(functools.partial(self._chunk_chains, per_device=True),
                                        in_axes=(None, 0, None, None, None, None), out_axes=(0, 1))
            return chunk(key, state, dyn, t0, n_end, warm)
        return self._chunk_chains(key, state, dyn, t0, n_end, warm)

    def _chunk_chains(self, key, state, dyn, t0, n_end, warm, per_device=False):
        """The chunk of the chains in ``state`` (this device's under :func:`sharding.per_device`
        when ``per_device``)."""
        b = self.bound(dyn)
        chains = self.num_chains
        active = getattr(b, "active", None)

        def one(k, state, t):
            keys = jax.random.split(k, chains)  # every chain's key as on one device
            if per_device:  # then this device's
                keys = sharding.device_slice(keys)
            return self.step(keys, state, dyn, t, warm)

        if self.thinning == 1:
            step = one
        else:
            # a recorded draw of the sampling phase is ``thinning`` kernel steps (keys
            # fold_in(k_t, j)), a warmup step is one: the draws depend on the key and t only
            thin = self.thinning

            def step(k_t, state, t):
                info0 = jax.tree.map(lambda v: jnp.zeros(v.shape, v.dtype),
                                     jax.eval_shape(one, k_t, state, t)[1])
                n = jnp.where(warm, 1, thin)
                return jax.lax.fori_loop(
                    0, n, lambda j, c: one(jax.random.fold_in(k_t, j), c[0], t), (state, info0)
                )

        def record(new, info):
            out = {"samples": jax.vmap(b.samples)(new), "info": info}
            if active is not None:
                out["active"] = jax.vmap(active)(new)
            return new, out

        return scan_chunk(step, key, state, t0, n_end, self.chunk_size, record)

    def choose_chunk_size(self, state, dyn, num_steps: int) -> int:
        """``chunk_size`` when the user gave none (:func:`inference._run.chunking.choose_chunk_size`
        from the bytes of draws and info one step outputs)."""
        if self.chunk_size is None:
            # abstract (tracing the model with concrete data would run it eagerly); the step is
            # traced as the chunk will call it (same shapes), so the chunk reuses this trace
            state = jax.tree.map(_abstract, state)
            dyn = [_abstract(v) for v in dyn]
            keys = jax.ShapeDtypeStruct((self.num_chains,), jax.random.key(0).dtype)
            # t as the chunk's body makes it: int32 start + arange index (int64 under x64)
            t = jax.eval_shape(lambda: jnp.int32(0) + jnp.arange(1)[0])
            warm = jax.ShapeDtypeStruct((), np.bool_)
            step = self.step
            if self._per_device():  # as the chunk calls it: on this device's chains
                step = sharding.per_device(step, in_axes=(0, 0, None, None, None), out_axes=0)
            info = jax.eval_shape(step, keys, state, dyn, t, warm)[1]
            one = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape[1:], v.dtype), state)
            samples = jax.eval_shape(lambda dyn, s: self.bound(dyn).samples(s), dyn, one)
            per_step = sum(np.prod(v.shape) * v.dtype.itemsize for v in jax.tree.leaves(samples)) * self.num_chains
            per_step += sum(np.prod(v.shape) * v.dtype.itemsize for v in jax.tree.leaves(info))
            self.chunk_size = chunking.choose_chunk_size(num_steps, per_step, (self.num_warmup, num_steps - self.num_warmup))
        return self.chunk_size


def shapes_of(dyn: list) -> tuple:
    """The shapes and dtypes of a program's array inputs (arrays or tracers)."""
    return tuple((tuple(np.shape(v)), str(getattr(v, "dtype", type(v).__name__))) for v in jax.tree.leaves(dyn))


def summed_out_structure(bound: Any) -> Any:
    """The unconstrained view of a bound kernel, without its (traced) inputs, when it sums out
    finite discrete sites; False otherwise (trace kernels have no view: Gibbs handles such models
    by an exact MH correction)."""
    v = getattr(bound, "view", None)
    if v is None or not getattr(v, "discrete", ()):
        return False
    v = copy.copy(v)  # the bound kernel keeps its own view (and inputs) for the trace under way
    v.args = v.kwargs = None  # the traced inputs are not kept; only the structure is
    return v


def _is_trace(x: Any) -> bool:
    return isinstance(x, Trace)


def _with_args(state: Any, fix) -> Any:
    """``state`` with ``fix`` applied to every :class:`ppl.Trace` in it."""
    return jax.tree.map(lambda x: fix(x) if _is_trace(x) else x, state, is_leaf=_is_trace)


def _restore_args(tr: Trace, old_state: Any) -> Trace:
    """``tr`` with the argument leaves of the (single) trace of ``old_state``."""
    olds = [x for x in jax.tree.leaves(old_state, is_leaf=_is_trace) if _is_trace(x)]
    if len(olds) != 1:
        return tr
    return dataclasses.replace(tr, args=olds[0].args, kwargs=olds[0].kwargs)


def _program(kernel, model, treedef, statics, num_chains, num_warmup, chunk_size, thinning=1) -> _Program:
    """The cached program of this combination (built on first use)."""
    key = ("mcmc", kernel, treedef, statics, num_chains, num_warmup, chunk_size, sharding.num_devices(), thinning)
    try:
        return PROGRAMS.get(model, key, lambda: _Program(kernel, model, treedef, statics, num_chains, num_warmup,
                                                         chunk_size, thinning))
    except TypeError:
        raise ArgumentTypeError(
            f"the kernel {kernel!r} or a non-array model argument is not hashable; pass arrays "
            "as jax/numpy arrays and kernel options as plain Python values."
        ) from None


def _prepare(who, kernel, model, args, kwargs, num_chains, num_warmup, chunk_size,
             concrete_numpy: bool | None = None, thinning: int = 1) -> tuple[_Program, list]:
    """The compiled program for (kernel, model, static arguments, ...) and the array arguments.

    Which arguments are traced (inputs of the program) and which are concrete (part of its
    identity, seen by the model body as the user's values): the rule of every family,
    :mod:`inference._run.concrete` (Python scalars concrete, JAX arrays traced, NumPy arrays
    traced unless the model's body needs them concrete, then keyed by their contents)."""
    if concrete_numpy is None:
        concrete_numpy = _remembered_concrete(model)
    if not isinstance(kernel, Kernel):
        raise ArgumentTypeError(f"{who}: expected a kernel such as mcmc.NUTS(), got {type(kernel).__name__}.")
    model = ppl.as_model(model)
    if int(num_chains) < 1:
        raise ArgumentError(f"{who}: num_chains must be >= 1, got {num_chains}.")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ArgumentError(f"{who}: chunk_size must be >= 1 (or None), got {chunk_size}.")
    treedef, statics, dyn = split((tuple(args), dict(kwargs)), concrete_numpy)
    chunk = None if chunk_size is None else int(chunk_size)
    try:
        thinning = int(thinning)
    except (TypeError, ValueError):
        thinning = 0
    if thinning < 1:
        raise ArgumentError(f"{who}: thinning must be an int >= 1 (keep every thinning-th draw), got {thinning!r}.")
    prog = _program(kernel, model, treedef, statics, int(num_chains), int(num_warmup), chunk, thinning)
    return prog, dyn


def _remembered_concrete(model: Any) -> bool:
    return remembered(model)


def _prepared(who, kernel, model, args, kwargs, num_chains, num_warmup, chunk_size, key, init_values,
              strategy, num_steps: int, thinning: int = 1) -> tuple[_Program, list]:
    """:func:`_prepare`, then the program compiled for these arguments; when tracing fails
    because the model's body needs its NumPy arguments concrete, again with them concrete
    (:func:`inference._run.concrete.with_concrete_retry`)."""

    def attempt(concrete: bool) -> tuple[_Program, list]:
        prog, dyn = _prepare(who, kernel, model, args, kwargs, num_chains, num_warmup, chunk_size, concrete, thinning)
        prog.prepare(key, dyn, init_values, strategy, num_steps)
        return prog, dyn

    return with_concrete_retry([model], (tuple(args), dict(kwargs)), attempt)
