"""The multi-chain driver: ``sample(key, kernel, model, *args, ...) -> Run``.

Chains are a leading axis (``jax.vmap`` of the kernel's ``init`` / ``step``), laid out across
devices when there are several (:mod:`inference.sharding`).  Warmup and sampling run through
*one* compiled program, the **chunk**: a ``lax.scan`` of ``chunk_size`` steps whose phase
(warmup with adaptation, or sampling with the tuning frozen) is a traced input, so the kernel
(e.g. the NUTS tree builder) is compiled once.  A Python loop over chunks (never over steps)
calls it, copies each chunk's draws to host memory (NumPy arrays, or ``.npy`` files with
``stream_to``) while the next chunk runs, and shows progress between chunks.  So:

- one compiled program per (model, kernel, static arguments, number of chains, warmup length,
  chunk size, number of devices), cached: running again with arrays of the same shapes, or
  resuming for any number of draws, compiles nothing new;
- device memory holds the chains' state and one chunk of draws, whatever ``num_samples`` is;
- Ctrl-C between chunks returns a :class:`Run` with the draws collected so far, which resumes;
  with ``stream_to`` a crashed run is recovered from its directory by :func:`load`;
- step ``t`` of a phase uses the key ``fold_in(phase_key, t)``: the draws do not depend on the
  chunk size, the number of devices (up to floating-point reassociation) or interruptions of
  the host loop, and the same key gives the same draws.

Array arguments of the model are inputs of the program; other arguments (Python numbers,
strings, ...) are part of its identity.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

import ppl
from ppl.errors import ModelError

from .. import sharding
from ._base import Kernel, MCMCInitError, phase_step
from .diagnostics import Summary, summary

__all__ = ["sample", "Run", "load"]

_FORMAT = "ppl.mcmc.Run/1"

#: about this many chunks per call of ``sample`` when the chunk size is chosen automatically
_CHUNKS = 20
#: at most this many steps per chunk (automatic choice)
_MAX_CHUNK = 1024
#: at most this many bytes of draws and info per chunk on the device (automatic choice)
_CHUNK_BYTES = 64 * 2**20
#: ``init`` loops over chains (``lax.map``) up to this many chains on one device, else ``vmap``
_MAP_INIT_CHAINS = 16
#: XLA options of the ``init`` program on CPU (it runs once: compile time matters, speed not)
_INIT_CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
#: XLA options of the ``chunk`` program on CPU: LLVM's -O1 compiles the NUTS chunk ~20% faster
#: (1.76 -> 1.42 s on a logistic regression) and ran as fast as -O2 on the benchmark models
_CHUNK_CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def _chunk_compiler_options() -> dict | None:
    return _CHUNK_CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None


# ---------------------------------------------------------------------------------------------
# progress (printed on the host between chunks)


def _progress_default() -> bool:
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    try:  # a Jupyter kernel
        from IPython import get_ipython  # type: ignore

        ip = get_ipython()
        if ip is not None and "IPKernelApp" in getattr(ip, "config", {}):
            return True
    except Exception:
        pass
    try:
        return sys.stderr.isatty()
    except Exception:
        return False


class _Progress:
    """``\\rwarmup: 300/1000 | 4 chains | 0 divergences`` on stderr, at most every 0.1 s."""

    def __init__(self, on: bool, phase: str, total: int, chains: int):
        self.on, self.phase, self.total, self.chains = on, phase, total, chains
        self.last = 0.0

    def __call__(self, done: int, ndiv: int) -> None:
        if not self.on:
            return
        now = time.perf_counter()
        final = done >= self.total
        if not final and now - self.last < 0.1:
            return
        self.last = now
        c = self.chains
        end = "\n" if final else ""
        sys.stderr.write(f"\r{self.phase}: {done}/{self.total} | {c} chain{'s' * (c != 1)} | {ndiv} divergences{end}")
        sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# the compiled programs


def _by_suffix(info: Mapping, name: str) -> list:
    """The entries of a kernel's info named ``name`` or ``"<block>/name"`` (combinators prefix
    their parts' info with the part's index)."""
    return [v for k, v in info.items() if k.split("/")[-1] == name]


def _is_dynamic(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


class _Program:
    """The jitted ``init`` and ``chunk`` functions of one (model, kernel, statics, ...) combination.

    ``chunk(phase_key, state, dyn, t0, n_end, warm)`` runs steps t0 .. t0 + chunk_size − 1 of a
    phase; steps with t ≥ n_end leave the state unchanged (their outputs are dropped on the host).
    ``warm`` (a traced boolean) selects adaptation (warmup) or frozen tuning (sampling).
    """

    def __init__(self, kernel: Kernel, model: ppl.Model, treedef, statics: tuple, num_chains: int, num_warmup: int, chunk_size: int | None):
        self.kernel, self.model, self.treedef = kernel, model, treedef
        self.statics = dict(statics)
        self.num_chains, self.num_warmup = num_chains, num_warmup
        self.chunk_size = chunk_size  # None: chosen at the first run (then fixed)
        # init runs once per run: on CPU, XLA's cheapest optimisation level compiles it ~25%
        # faster (0.65 -> 0.5 s on eight schools) at no cost that matters
        opts = _INIT_CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
        self.init = jax.jit(self._init, static_argnames=("strategy",), compiler_options=opts)
        self.chunk = jax.jit(self._chunk, compiler_options=_chunk_compiler_options())
        # the chains' step, traced once: ``choose_chunk_size`` reads its output shapes and the
        # chunk's scan body calls it with the same shapes (JAX's trace cache), so the kernel
        # (e.g. the vmapped NUTS tree builder, the costliest part to trace) is traced once
        self.step = jax.jit(self._step)
        self._prepared: set = set()

    def args(self, dyn: list) -> tuple[tuple, dict]:
        it = iter(dyn)
        leaves = [self.statics[i] if i in self.statics else next(it) for i in range(self.treedef.num_leaves)]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def bound(self, dyn: list):
        args, kwargs = self.args(dyn)
        return self.kernel.bind(self.model, args, kwargs, self.num_warmup)

    def _init(self, key, dyn, init_values, strategy=None):
        """(state, log densities, warmup key, sampling key) from the run's key."""
        b = self.bound(dyn)
        k_init, k_warm, k_samp = jax.random.split(key, 3)
        init = init_values if init_values is not None else strategy
        keys = sharding.constrain_batch(jax.random.split(k_init, self.num_chains))
        if self.num_chains <= _MAP_INIT_CHAINS and sharding.num_devices() == 1:
            # a loop over a few chains: tracing ``vmap`` of the init's while loops (retries, the
            # step-size heuristic) costs more than running them one chain at a time
            state = jax.lax.map(lambda k: b.init(k, init), keys)
        else:
            state = jax.vmap(lambda k: b.init(k, init))(keys)
        state = sharding.constrain_batch(state)
        return state, jax.vmap(b.log_density)(state), k_warm, k_samp

    def prepare(self, key, dyn, init_values, strategy, num_steps: int) -> None:
        """Compile ``init`` and ``chunk`` for these argument shapes the first time, overlapping
        the compilation of ``init`` (in a thread; XLA releases the GIL) with the tracing and
        lowering of the step and the chunk, and then with the chunk's compilation; later calls
        find both programs in JAX's caches (the programs are the ones ``init`` / ``chunk`` use)."""
        sig = (strategy, jax.tree.map(lambda v: (np.shape(v), str(getattr(v, "dtype", type(v).__name__))), (dyn, init_values)))
        sig = jax.tree_util.tree_flatten(sig)
        sig = (tuple(sig[0]), sig[1])
        if sig in self._prepared:
            return
        self._prepared.add(sig)
        lo_init = self.init.lower(key, dyn, init_values, strategy=strategy)
        state = lo_init.out_info[0]
        if sharding.num_devices() > 1 or (os.cpu_count() or 1) < 2:  # init's shardings, or one core: in turn
            self.choose_chunk_size(state, dyn, num_steps)
            return

        def compile_init():
            try:
                lo_init.compile()
            except Exception:  # noqa: BLE001 - init's own call compiles again and reports it
                pass

        th = threading.Thread(target=compile_init, daemon=True)
        th.start()
        try:
            self.choose_chunk_size(state, dyn, num_steps)
            try:
                self.chunk.lower(key, state, dyn, np.int32(0), np.int32(0), np.bool_(True)).compile()
            except Exception:  # noqa: BLE001 - the chunk's own call compiles again and reports it
                pass
        finally:
            th.join()

    def _step(self, keys, state, dyn, t, warm):
        """One step of every chain (``keys``: one per chain; ``t``: int32, ``warm``: bool)."""
        b = self.bound(dyn)
        return jax.vmap(lambda k, s: phase_step(b, k, s, t, warm))(keys, state)

    def _chunk(self, key, state, dyn, t0, n_end, warm):
        b = self.bound(dyn)
        chains = self.num_chains
        active = getattr(b, "active", None)

        def body(state, i):
            t = t0 + i

            def live(state):
                keys = sharding.constrain_batch(jax.random.split(jax.random.fold_in(key, t), chains))
                return self.step(keys, state, dyn, t, warm)

            def past_the_end(state):  # the state unchanged, placeholder info (dropped on the host)
                info = jax.eval_shape(live, state)[1]
                return state, jax.tree.map(lambda v: jnp.zeros(v.shape, v.dtype), info)

            # ``t < n_end`` is the same for every chain: a branch, not a select over the state
            new, info = jax.lax.cond(t < n_end, live, past_the_end, state)
            new = sharding.constrain_batch(new)
            out = {"samples": jax.vmap(b.samples)(new), "info": info}
            if active is not None:
                out["active"] = jax.vmap(active)(new)
            return new, out

        return jax.lax.scan(body, state, jnp.arange(self.chunk_size))

    def choose_chunk_size(self, state, dyn, num_steps: int) -> int:
        """``chunk_size`` when the user gave none: about ``_CHUNKS`` chunks for ``num_steps``
        steps (a divisor of the phase lengths when one is close), at most ``_MAX_CHUNK`` steps
        and ``_CHUNK_BYTES`` bytes of outputs per chunk."""
        if self.chunk_size is None:
            target = max(1, min(_MAX_CHUNK, math.ceil(num_steps / _CHUNKS)))

            # abstract (tracing the model with concrete data would run it eagerly); the step is
            # traced as the chunk will call it (same shapes), so the chunk reuses this trace
            state = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype, weak_type=getattr(v, "weak_type", False)), state)
            dyn = [jax.ShapeDtypeStruct(v.shape, v.dtype, weak_type=getattr(v, "weak_type", False)) for v in dyn]
            keys = jax.ShapeDtypeStruct((self.num_chains,), jax.random.key(0).dtype)
            # t as the chunk's body makes it: int32 start + arange index (int64 under x64)
            t = jax.eval_shape(lambda: jnp.int32(0) + jnp.arange(1)[0])
            warm = jax.ShapeDtypeStruct((), np.bool_)
            info = jax.eval_shape(self.step, keys, state, dyn, t, warm)[1]
            one = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape[1:], v.dtype), state)
            samples = jax.eval_shape(lambda dyn, s: self.bound(dyn).samples(s), dyn, one)
            per_step = sum(np.prod(v.shape) * v.dtype.itemsize for v in jax.tree.leaves(samples)) * self.num_chains
            per_step += sum(np.prod(v.shape) * v.dtype.itemsize for v in jax.tree.leaves(info))
            target = int(max(1, min(target, _CHUNK_BYTES // max(per_step, 1))))
            g = math.gcd(self.num_warmup, num_steps - self.num_warmup) or num_steps
            divisors = [d for d in range(max(1, target // 2), min(g, 2 * target) + 1) if g % d == 0]
            self.chunk_size = min(divisors, key=lambda d: abs(d - target)) if divisors else target
        return self.chunk_size


_PROGRAMS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _program(kernel, model, treedef, statics, num_chains, num_warmup, chunk_size) -> _Program:
    table = _PROGRAMS.setdefault(model, {})
    key = (kernel, treedef, statics, num_chains, num_warmup, chunk_size, sharding.num_devices())
    try:
        prog = table.get(key)
    except TypeError:
        raise ModelError(
            f"the kernel {kernel!r} or a non-array model argument is not hashable; pass arrays "
            "as jax/numpy arrays and kernel options as plain Python values."
        ) from None
    if prog is None:
        prog = table[key] = _Program(kernel, model, treedef, statics, num_chains, num_warmup, chunk_size)
    return prog


# ---------------------------------------------------------------------------------------------
# the host loop over chunks


class _Sink:
    """Host buffers shaped (chains, n, ...) for each output table, filled chunk by chunk (NumPy
    arrays, or ``.npy`` memory maps in ``directory`` when streaming to files)."""

    def __init__(self, n: int, directory: Path | None, prefix: str):
        self.n, self.directory, self.prefix = n, directory, prefix
        self.tables: dict = {}

    def _buffer(self, table: str, j: int, shape: tuple, dtype) -> np.ndarray:
        if self.directory is None or 0 in shape:  # (an empty file cannot be memory-mapped)
            return np.empty(shape, dtype)
        path = self.directory / f"{self.prefix}{table}.{j}.npy"
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def write(self, out: dict, t0: int, m: int) -> None:
        for table, d in out.items():
            bufs = self.tables.setdefault(table, {})
            for j, (name, v) in enumerate(d.items()):
                v = np.asarray(v)  # (chunk, chains, ...)
                if name not in bufs:
                    bufs[name] = self._buffer(table, j, (v.shape[1], self.n) + v.shape[2:], v.dtype)
                bufs[name][:, t0 : t0 + m] = np.swapaxes(v[:m], 0, 1)

    def result(self, done: int, template: dict) -> dict:
        """address -> array (chains, done, ...), for each table (empty tables from ``template``)."""
        res = {}
        for table, d in template.items():
            bufs = self.tables.get(table, {})
            res[table] = {}
            for j, (name, v) in enumerate(d.items()):
                if name in bufs:
                    if isinstance(bufs[name], np.memmap):
                        bufs[name].flush()
                    res[table][name] = bufs[name][:, :done]
                else:
                    shape = (v.shape[1], done) + tuple(v.shape[2:])
                    res[table][name] = self._buffer(table, j, shape, v.dtype)
        return res


def _run_phase(prog: _Program, key, state, dyn, t_start: int, n: int, warm: bool, progress: _Progress, sink: _Sink, on_chunk=None):
    """Steps ``t_start .. n − 1`` of a phase, chunk by chunk, their outputs copied into ``sink``
    (then ``on_chunk(state, steps done, last)`` is called, e.g. to write a checkpoint).

    Returns ``(state, steps done, interrupted)``; on Ctrl-C, the state after the last chunk
    whose outputs reached the host (so the draws and the state match) and ``interrupted=True``.
    """
    k = prog.chunk_size
    done_state, done, ndiv = state, t_start, 0
    warm_, n_ = np.bool_(warm), np.int32(n)
    if sharding.num_devices() > 1:  # one placement for every key (from init or the user): no recompile
        key = jax.device_put(key, NamedSharding(sharding.mesh(), PartitionSpec()))
    pending = None  # (t0, state after that chunk, its outputs): dispatched, not yet on the host
    t0 = t_start
    try:
        while True:
            nxt = None
            if t0 < n:  # dispatch the next chunk before copying the previous one to the host
                state, out = prog.chunk(key, state, dyn, np.int32(t0), n_, warm_)
                nxt = (t0, state, out)
                t0 += k
            if pending is not None:
                p0, p_state, p_out = pending
                m = min(k, n - p0)
                if warm:  # warmup draws are not kept
                    p_out = {"info": p_out["info"]}
                p_out = sharding.to_host(p_out)
                sink.write(p_out, p0 - t_start, m)
                for v in _by_suffix(p_out["info"], "diverging"):
                    ndiv += int(np.sum(v[:m]))
                done_state, done = p_state, p0 + m
                progress(done, ndiv)
                if on_chunk is not None:
                    on_chunk(done_state, done, nxt is None)
                del p_out, pending
            if nxt is None:
                break
            pending = nxt
    except KeyboardInterrupt:
        return done_state, done, True
    return done_state, done, False


def _state_arrays(state) -> tuple[dict, list]:
    """The state's leaves as NumPy arrays ``state/<i>`` (keys as their data) and their description."""
    arrays, meta = {}, []
    for i, leaf in enumerate(jax.tree_util.tree_leaves(state)):
        impl = None
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            impl = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        arrays[f"state/{i}"] = np.asarray(sharding.to_host(leaf))
        meta.append({"key_impl": impl})
    return arrays, meta


def _state_from_arrays(prog: _Program, dyn: list, arrays: dict, state_meta: list):
    template = prog.init.trace(jax.random.key(0), dyn, None).out_info[0]  # abstract: nothing runs
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(t_leaves) != len(state_meta):
        raise ModelError(
            f"mcmc.load: the saved state has {len(state_meta)} arrays, the kernel's state "
            f"{len(t_leaves)}; was it saved with another version of the kernel?"
        )
    leaves = []
    for i, (t, m) in enumerate(zip(t_leaves, state_meta)):
        a = arrays[f"state/{i}"]
        leaf = jax.random.wrap_key_data(a, impl=m["key_impl"]) if m["key_impl"] else jax.device_put(a)
        if leaf.shape != t.shape or leaf.dtype != t.dtype:
            raise ModelError(
                f"mcmc.load: state array {i} is {leaf.dtype}{list(leaf.shape)} in the file but "
                f"{t.dtype}{list(t.shape)} for this kernel (is jax_enable_x64 set as when it was saved?)."
            )
        leaves.append(leaf)
    return sharding.shard_batch(jax.tree_util.tree_unflatten(treedef, leaves))


def _meta(prog: _Program, dyn: list, state_meta: list, warmup_done: int) -> dict:
    return {
        "format": _FORMAT,
        "kernel": repr(prog.kernel),
        "model": prog.model.name,
        "num_chains": prog.num_chains,
        "num_warmup": prog.num_warmup,
        "warmup_done": warmup_done,
        "chunk_size": prog.chunk_size,
        "state": state_meta,
        "args": [[list(np.shape(a)), str(a.dtype)] for a in dyn],
    }


def _write_npz(path: str, arrays: dict, meta: dict) -> None:
    arrays = dict(arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **{k.replace("/", "."): v for k, v in arrays.items()})
    os.replace(tmp, path)  # a crash while writing leaves the previous file intact


#: seconds between two checkpoints of a streamed run (the last chunk always writes one)
_CHECKPOINT_EVERY = 2.0


class _Checkpoint:
    """``<stream_to>/checkpoint.npz``: the chains' state after the last chunk whose draws are in
    the ``.npy`` files, and how many steps of each phase are done, so that
    ``mcmc.load(stream_to, ...)`` recovers the run after a crash."""

    def __init__(self, prog: _Program, dyn: list, directory: Path, warm_sink: _Sink | None, warm_start: int, num_samples: int):
        self.prog, self.dyn, self.directory = prog, dyn, directory
        self.warm_sink, self.warm_start, self.num_samples = warm_sink, warm_start, num_samples
        self.last = time.perf_counter()

    def __call__(self, state, warmup_done: int, sample_sink: _Sink | None, sample_done: int, force: bool) -> None:
        now = time.perf_counter()
        if not force and now - self.last < _CHECKPOINT_EVERY:
            return
        self.last = now
        arrays, state_meta = _state_arrays(state)
        meta = _meta(self.prog, self.dyn, state_meta, warmup_done)
        tables = {}
        if self.warm_sink is not None:
            tables["warmup_info"] = [list(self.warm_sink.tables.get("info", {})), warmup_done - self.warm_start]
        if sample_sink is not None:
            for t in ("samples", "info", "active"):
                tables[t] = [list(sample_sink.tables.get(t, {})), sample_done]
        meta["stream"] = tables
        meta["num_samples"] = self.num_samples
        _write_npz(str(self.directory / "checkpoint.npz"), arrays, meta)


def _load_stream(directory: Path, prog: _Program, dyn: list, meta: dict, arrays: dict) -> "Run":
    tables: dict = {}
    for t, (names, done) in meta["stream"].items():
        tables[t] = {name: np.load(directory / f"{t}.{j}.npy", mmap_mode="r")[:, :done] for j, name in enumerate(names)}
    state = _state_from_arrays(prog, dyn, arrays, meta["state"])
    complete = meta["warmup_done"] >= meta["num_warmup"] and "samples" in tables and meta["stream"]["samples"][1] >= meta.get("num_samples", 0)
    samples = tables.get("samples", {})
    run = Run(prog, dyn, state, samples, tables.get("info", {}), tables.get("warmup_info"), tables.get("active"),
              meta["warmup_done"], not complete)
    return run


def _finish(prog: _Program, key, state, dyn, sink: _Sink, done: int, warm: bool) -> dict:
    """The sink's tables for ``done`` steps (with empty arrays of the right shapes when no chunk
    ran, e.g. ``num_samples=0``)."""
    if sink.tables:
        template = {t: {name: np.empty((0, b.shape[0]) + b.shape[2:], b.dtype) for name, b in d.items()} for t, d in sink.tables.items()}
    else:
        out = jax.eval_shape(prog.chunk, key, state, dyn, np.int32(0), np.int32(0), np.bool_(warm))[1]
        template = {"info": out["info"]} if warm else out
    return sink.result(done, template)


# ---------------------------------------------------------------------------------------------
# the run


class Run:
    """The result of :func:`sample`: the draws (in host memory), the sampler's statistics and
    the chains' last state.

    Attributes:
        samples: address -> draws shaped (chains, draws, ...) in the constrained space
            (latent and deterministic sites), NumPy arrays.
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

    def summary(self) -> Summary:
        """mean, sd, 5/50/95% quantiles, R̂, bulk and tail ESS per site; ``print`` it for a table.

        Sites that are inactive in some draws (see :attr:`active`) are left out: their draws
        mix placeholders with values; summarise ``samples[a][active[a]]`` yourself."""
        partial = {k for k, a in self.active.items() if not np.all(a)}
        return summary({k: np.asarray(v) for k, v in self.samples.items() if k not in partial})

    def to_arviz(self):
        """An ``arviz.InferenceData`` with the posterior draws and the sampler statistics."""
        try:
            import arviz as az
        except ImportError as e:  # pragma: no cover - arviz is a test dependency
            raise ImportError("Run.to_arviz needs arviz: pip install arviz") from e
        names = {
            "diverging": "diverging",
            "tree_depth": "tree_depth",
            "step_size": "step_size",
            "accept_prob": "acceptance_rate",
            "num_steps": "n_steps",
            "energy": "energy",
        }
        stats = {names[k]: np.asarray(v) for k, v in self.info.items() if k in names}
        return az.from_dict(posterior={k: np.asarray(v) for k, v in self.samples.items()}, sample_stats=stats)

    def resume(self, key: Any, num_samples: int | None = None, progress: bool | None = None, stream_to: Any = None) -> "Run":
        """Continue every chain from its last state for ``num_samples`` more draws (default: as
        many as this run has, at least 1), with the tuning frozen.  Compiles nothing new,
        whatever ``num_samples`` is.  A run interrupted during warmup finishes its warmup first.
        Returns a new Run holding the new draws only; the same key gives the same draws.

        Args:
            key: a JAX random key.
            num_samples: draws per chain (None: as many as this run has).
            progress: show progress (None: as the run that is resumed).
            stream_to: a directory to write the draws to as ``.npy`` files (see :func:`sample`).

        Example:
            >>> more = run.resume(jax.random.key(2), num_samples=5000)
        """
        ppl.handlers.check_key(key, "Run.resume")
        n = self.num_samples if num_samples is None else int(num_samples)
        if num_samples is None and n == 0:
            n = 1
        if n < 0:
            raise ModelError(f"Run.resume: num_samples must be >= 0, got {num_samples}.")
        prog, dyn = self._program, self._dyn
        progress = self._progress if progress is None else progress
        on = _progress_default() if progress is None else bool(progress)
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
        e.g. after a restart.  The model's arguments are not saved: give them to :func:`load`.

        Example:
            >>> run.save("eight_schools.npz")
            >>> run = mcmc.load("eight_schools.npz", mcmc.NUTS(), eight_schools, sigma, y=y)
            >>> more = run.resume(jax.random.key(2))   # exactly as if never interrupted
        """
        arrays, state_meta = _state_arrays(self.state)
        meta = _meta(self._program, self._dyn, state_meta, self.warmup_done)
        tables = {"samples": self.samples, "info": self.info, "warmup_info": self.warmup_info, "active": self.active}
        for t, d in tables.items():
            if d is None:
                meta[t] = None
                continue
            meta[t] = list(d)
            for j, k in enumerate(d):
                arrays[f"{t}/{j}"] = np.asarray(d[k])
        _write_npz(os.fspath(path), arrays, meta)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(np.shape(v))}" for k, v in self.samples.items())
        stop = "; interrupted" if self.interrupted else ""
        return f"<mcmc.Run {self.num_chains} chains x {self.num_samples} draws; {shapes}{stop}>"


def _interrupted(run: Run) -> Run:
    warnings.warn(
        f"mcmc: interrupted; returning the {run.num_samples} draws per chain made so far "
        f"(warmup {run.warmup_done}/{run._program.num_warmup}); run.resume(key) continues.",
        stacklevel=3,
    )
    return run


def _empty_samples(prog, key, state, dyn) -> dict:
    out = jax.eval_shape(prog.chunk, key, state, dyn, np.int32(0), np.int32(0), np.bool_(False))[1]
    return {k: np.empty((v.shape[1], 0) + tuple(v.shape[2:]), v.dtype) for k, v in out["samples"].items()}


def _stream_dir(who: str, stream_to: Any) -> Path | None:
    if stream_to is None:
        return None
    d = Path(os.fspath(stream_to))
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"{who}: cannot create the directory stream_to={os.fspath(stream_to)!r} ({e}).") from None
    return d


def _phases(prog: _Program, dyn: list, state, k_warm, k_samp, warm_start: int, n: int, on: bool, directory: Path | None) -> Run:
    """Finish the warmup (from step ``warm_start``), then make ``n`` draws per chain."""
    num_warmup, chains = prog.num_warmup, prog.num_chains
    warm_info, wdone, wsink = None, warm_start, None
    if warm_start < num_warmup:
        wsink = _Sink(num_warmup - warm_start, directory, "warmup_")
    ckpt = None if directory is None else _Checkpoint(prog, dyn, directory, wsink, warm_start, n)
    if wsink is not None:
        on_chunk = None if ckpt is None else (lambda st, d, last: ckpt(st, d, None, 0, last))
        state, wdone, stop = _run_phase(prog, k_warm, state, dyn, warm_start, num_warmup, True,
                                        _Progress(on, "warmup", num_warmup, chains), wsink, on_chunk)
        warm_info = _finish(prog, k_warm, state, dyn, wsink, wdone - warm_start, True)["info"]
        if stop:
            if ckpt is not None:
                ckpt(state, wdone, None, 0, True)
            run = Run(prog, dyn, state, _empty_samples(prog, k_samp, state, dyn), {}, warm_info, None, wdone, True)
            run._progress = on
            return _interrupted(run)
    sink = _Sink(n, directory, "")
    on_chunk = None if ckpt is None else (lambda st, d, last: ckpt(st, num_warmup, sink, d, last))
    state, done, stop = _run_phase(prog, k_samp, state, dyn, 0, n, False, _Progress(on, "sample", n, chains), sink, on_chunk)
    out = _finish(prog, k_samp, state, dyn, sink, done, False)
    if ckpt is not None and (stop or n == 0):
        ckpt(state, num_warmup, sink, done, True)
    run = Run(prog, dyn, state, out["samples"], out["info"], warm_info, out.get("active"), num_warmup, stop)
    run._progress = on
    return _interrupted(run) if stop else run


def _prepare(who, kernel, model, args, kwargs, num_chains, num_warmup, chunk_size) -> tuple[_Program, list]:
    """The compiled program for (kernel, model, static arguments, ...) and the array arguments."""
    if not isinstance(kernel, Kernel):
        raise ModelError(f"{who}: expected a kernel such as mcmc.NUTS(), got {type(kernel).__name__}.")
    model = ppl.as_model(model)
    if int(num_chains) < 1:
        raise ModelError(f"{who}: num_chains must be >= 1, got {num_chains}.")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ModelError(f"{who}: chunk_size must be >= 1 (or None), got {chunk_size}.")
    leaves, treedef = jax.tree_util.tree_flatten((tuple(args), dict(kwargs)))
    statics = tuple((i, v) for i, v in enumerate(leaves) if not _is_dynamic(v))
    dyn = [jnp.asarray(v) for v in leaves if _is_dynamic(v)]
    chunk = None if chunk_size is None else int(chunk_size)
    prog = _program(kernel, model, treedef, statics, int(num_chains), int(num_warmup), chunk)
    return prog, dyn


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
            are several; see :mod:`inference.sharding`).
        init: None (the kernel's default: uniform in (−2, 2) unconstrained for gradient kernels,
            a prior draw for trace kernels), a strategy ``"uniform"`` / ``"prior"`` / ``"zeros"``,
            or a dict of constrained values (the same for every chain).
        progress: show progress on stderr between chunks; default on in a terminal or
            notebook, off when ``CI`` is set or stderr is not a TTY.  It does not change the
            compiled program.
        chunk_size: steps per compiled chunk (None: about 20 chunks for this run, at most
            1024 steps and 64 MiB of draws per chunk, then fixed for the compiled program).
        stream_to: a directory: write the draws to ``.npy`` files there as they arrive
            (``samples.<i>.npy``, ``info.<i>.npy``, ...; ``run.samples`` are then memory maps of
            those files) instead of keeping them in memory, with a checkpoint of the state
            (``checkpoint.npz``) from which :func:`load` recovers the run after a crash.  Give
            each run its own directory.
        **kwargs: the model's keyword arguments.

    Returns:
        Run: the draws (NumPy arrays shaped (chains, draws, ...)), statistics and final state.

    Raises:
        MCMCInitError: when no initial point with a finite log density is found; the message
            names the site whose log density is not finite.

    Example:
        >>> run = mcmc.sample(jax.random.key(1), mcmc.NUTS(), posterior, sigma,
        ...                   num_warmup=1000, num_samples=1000, num_chains=4)
        >>> run.samples["theta"].shape       # (4, 1000, 8)
    """
    ppl.handlers.check_key(key, "mcmc.sample")
    for name, n in (("num_warmup", num_warmup), ("num_samples", num_samples)):
        if int(n) < 0:
            raise ModelError(f"mcmc.sample: {name} must be >= 0, got {n}.")
    num_samples = int(num_samples)
    prog, dyn = _prepare("mcmc.sample", kernel, model, args, kwargs, num_chains, num_warmup, chunk_size)
    model = prog.model
    on = _progress_default() if progress is None else bool(progress)
    directory = _stream_dir("mcmc.sample", stream_to)

    init_values = init if isinstance(init, Mapping) else None
    strategy = None if isinstance(init, Mapping) else init
    num_warmup = prog.num_warmup
    prog.prepare(key, dyn, init_values, strategy, num_warmup + num_samples)
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


def load(path: Any, kernel: Kernel, model: Any, *args: Any, progress: bool | None = None, **kwargs: Any) -> Run:
    """Read a run written by :meth:`Run.save`, or the ``stream_to`` directory of a run (also
    one that crashed: it holds the draws that reached the disk and a checkpoint of the state
    after them, written at most every 2 s and after the last chunk).  ``kernel``, ``model`` and
    the model's arguments are the ones the run was made with (arrays of the same shapes).  The
    returned run's :meth:`Run.resume` continues the chains exactly as the saved run's would
    have: the same key gives the same draws.  Nothing is unpickled.

    Args:
        path: an ``.npz`` file written by :meth:`Run.save`, or a ``stream_to`` directory.
        kernel: the kernel the run was made with.
        model: the model the run was made with.
        *args: the model's arguments.
        progress: the default ``progress`` of :meth:`Run.resume` on the loaded run.
        **kwargs: the model's keyword arguments.

    Returns:
        Run: its ``interrupted`` is True when a streamed run had not finished.

    Example:
        >>> run = mcmc.load("eight_schools.npz", mcmc.NUTS(), eight_schools, sigma, y=y)
        >>> more = run.resume(jax.random.key(2), num_samples=1000)
        >>> crashed = mcmc.load("draws/", mcmc.NUTS(), eight_schools, sigma, y=y)   # stream_to="draws/"
    """
    path = os.fspath(path)
    directory = None
    if not os.path.exists(path):
        raise ModelError(f"mcmc.load: {path!r} does not exist; expected a file written by Run.save or a run's stream_to directory.")
    if os.path.isdir(path):  # the stream_to directory of a run (e.g. one that crashed)
        directory = Path(path)
        path = os.path.join(path, "checkpoint.npz")
        if not os.path.exists(path):
            raise ModelError(f"mcmc.load: {os.fspath(directory)!r} holds no checkpoint.npz; was it a run's stream_to directory?")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k.replace(".", "/"): z[k] for k in z.files}
    try:
        meta = json.loads(bytes(arrays.pop("meta")).decode())
    except (KeyError, ValueError):
        raise ModelError(f"mcmc.load: {path!r} is not a file written by Run.save.") from None
    if meta.get("format") != _FORMAT:
        raise ModelError(f"mcmc.load: {path!r} has format {meta.get('format')!r}; expected {_FORMAT!r}.")
    if repr(kernel) != meta["kernel"]:
        raise ModelError(f"mcmc.load: the run was saved with kernel {meta['kernel']}, but load was given {kernel!r}.")
    prog, dyn = _prepare("mcmc.load", kernel, model, args, kwargs, meta["num_chains"], meta["num_warmup"], None)
    if prog.model.name != meta["model"]:
        raise ModelError(f"mcmc.load: the run was saved for model {meta['model']!r}, but load was given {prog.model.name!r}.")
    given = [[list(np.shape(a)), str(a.dtype)] for a in dyn]
    if given != meta["args"]:
        raise ModelError(
            f"mcmc.load: the model's array arguments have shapes/dtypes {given}, but the run was "
            f"saved with {meta['args']}; pass the same data."
        )
    if prog.chunk_size is None:
        prog.chunk_size = meta.get("chunk_size")
    if directory is not None:
        run = _load_stream(directory, prog, dyn, meta, arrays)
        run._progress = progress
        return run
    state = _state_from_arrays(prog, dyn, arrays, meta["state"])

    def table(name):
        if meta.get(name) is None:
            return None
        return {k: arrays[f"{name}/{j}"] for j, k in enumerate(meta[name])}

    run = Run(prog, dyn, state, table("samples"), table("info"), table("warmup_info"), table("active"),
              meta.get("warmup_done", meta["num_warmup"]))
    run._progress = progress
    return run
