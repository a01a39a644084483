"""The multi-chain driver: ``sample(key, kernel, model, *args, ...) -> Run``.

Chains are a leading axis (``jax.vmap`` of the kernel's ``init`` / ``step``); warmup and
sampling are ``lax.scan`` loops.  One compiled program per (model, kernel, static arguments,
number of chains, warmup length, progress); it is cached, so running again with arrays of the
same shapes, or resuming a run, compiles nothing new.  Array arguments of the model are inputs
of the program; other arguments (Python numbers, strings, ...) are part of its identity.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import weakref
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.errors import ModelError

from ._base import Kernel, MCMCInitError
from .diagnostics import Summary, summary

__all__ = ["sample", "Run", "load"]

_FORMAT = "ppl.mcmc.Run/1"


# ---------------------------------------------------------------------------------------------
# progress


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


#: progress updates per phase (warmup, sampling)
_REPORTS = 10


def _report(phase: str, total: int, chains: int, i: Any, ndiv: Any) -> None:
    i, ndiv = int(i), int(ndiv)
    end = "\n" if i >= total else ""
    sys.stderr.write(f"\r{phase}: {i}/{total} | {chains} chain{'s' * (chains != 1)} | {ndiv} divergences{end}")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# compiled programs


def _by_suffix(info: Mapping, name: str) -> list:
    """The entries of a kernel's info named ``name`` or ``"<block>/name"`` (combinators prefix
    their parts' info with the part's index)."""
    return [v for k, v in info.items() if k.split("/")[-1] == name]


def _is_dynamic(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


class _Program:
    """The jitted init / warmup / sample functions of one (model, kernel, statics) combination."""

    def __init__(self, kernel: Kernel, model: ppl.Model, treedef, statics: tuple, num_chains: int, num_warmup: int, progress: bool):
        self.kernel, self.model, self.treedef = kernel, model, treedef
        self.statics = dict(statics)
        self.num_chains, self.num_warmup, self.progress = num_chains, num_warmup, progress
        self.init = jax.jit(self._init, static_argnames=("strategy",))
        self.warmup = jax.jit(self._warmup, static_argnames=("num_steps",))
        self.sample = jax.jit(self._sample, static_argnames=("num_steps",))

    def args(self, dyn: list) -> tuple[tuple, dict]:
        it = iter(dyn)
        leaves = [self.statics[i] if i in self.statics else next(it) for i in range(self.treedef.num_leaves)]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def bound(self, dyn: list):
        args, kwargs = self.args(dyn)
        return self.kernel.bind(self.model, args, kwargs, self.num_warmup)

    def _init(self, key, dyn, init_values, strategy=None):
        b = self.bound(dyn)
        init = init_values if init_values is not None else strategy
        keys = jax.random.split(key, self.num_chains)
        state = jax.vmap(lambda k: b.init(k, init))(keys)
        return state, jax.vmap(b.log_density)(state)

    def _loop(self, key, state, dyn, num_steps: int, warmup: bool):
        b = self.bound(dyn)
        chains = self.num_chains
        cb = functools.partial(_report, "warmup" if warmup else "sample", num_steps, chains)

        def body(carry, xs):
            state, ndiv = carry
            t, k = xs
            keys = jax.random.split(k, chains)
            if warmup:
                state, info = jax.vmap(b.warmup_step, in_axes=(0, 0, None))(keys, state, t)
            else:
                state, info = jax.vmap(b.step)(keys, state)
            for v in _by_suffix(info, "diverging"):
                ndiv = ndiv + jnp.sum(v)
            out = (info,) if warmup else (jax.vmap(b.samples)(state), info)
            return (state, ndiv), out

        xs = (jnp.arange(num_steps), jax.random.split(key, num_steps))
        carry = (state, jnp.zeros((), int))
        if self.progress:
            carry, out = _chunked_scan(body, carry, xs, num_steps, lambda c, t: jax.debug.callback(cb, t, c[1]))
        else:
            carry, out = jax.lax.scan(body, carry, xs)
        out = jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), out)  # (chains, draws, ...)
        return carry[0], out

    def _warmup(self, key, state, dyn, num_steps):
        state, (info,) = self._loop(key, state, dyn, num_steps, True)
        return state, info

    def _sample(self, key, state, dyn, num_steps):
        state, (samples, info) = self._loop(key, state, dyn, num_steps, False)
        return state, samples, info


def _chunk_size(num_steps: int) -> int:
    """A divisor of num_steps giving about _REPORTS chunks (0 when none is close enough)."""
    best = 0
    for d in range(1, num_steps + 1):
        if num_steps % d == 0 and _REPORTS // 2 <= num_steps // d <= 4 * _REPORTS:
            if best == 0 or abs(num_steps // d - _REPORTS) < abs(num_steps // best - _REPORTS):
                best = d
    return best


def _chunked_scan(body, carry, xs, num_steps: int, report):
    """``lax.scan(body, carry, xs)`` as an outer scan over chunks of steps, calling
    ``report(carry, steps_done)`` on the host between chunks.

    The callback sits outside the inner loop (no ``lax.cond`` in the step), which is what keeps
    the progress display cheap; the draws are the same as the plain scan's.
    """
    if num_steps <= _REPORTS:
        every, n_chunks, rem = 1, num_steps, 0
    else:
        every = _chunk_size(num_steps)
        if every:
            n_chunks, rem = num_steps // every, 0
        else:  # an awkward length: equal chunks and one remainder loop
            every = num_steps // _REPORTS
            n_chunks, rem = divmod(num_steps, every)

    def chunk(c, x):
        c, out = jax.lax.scan(body, c, x)
        report(c, x[0][-1] + 1)
        return c, out

    m = n_chunks * every
    head = jax.tree.map(lambda v: v[:m].reshape((n_chunks, every) + v.shape[1:]), xs)
    carry, out = jax.lax.scan(chunk, carry, head)
    out = jax.tree.map(lambda v: v.reshape((m,) + v.shape[2:]), out)
    if rem:
        tail = jax.tree.map(lambda v: v[m:], xs)
        carry, out2 = jax.lax.scan(body, carry, tail)
        report(carry, num_steps)
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, out2)
    return carry, out


_PROGRAMS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _program(kernel, model, treedef, statics, num_chains, num_warmup, progress) -> _Program:
    table = _PROGRAMS.setdefault(model, {})
    key = (kernel, treedef, statics, num_chains, num_warmup, progress)
    try:
        prog = table.get(key)
    except TypeError:
        raise ModelError(
            f"the kernel {kernel!r} or a non-array model argument is not hashable; pass arrays "
            "as jax/numpy arrays and kernel options as plain Python values."
        ) from None
    if prog is None:
        prog = table[key] = _Program(kernel, model, treedef, statics, num_chains, num_warmup, progress)
    return prog


# ---------------------------------------------------------------------------------------------
# the run


class Run:
    """The result of :func:`sample`.

    Attributes:
        samples: address -> draws shaped (chains, draws, ...) in the constrained space
            (latent and deterministic sites).
        info: the kernel's per-step info, each shaped (chains, draws).
        warmup_info: the same for the warmup phase (None without warmup).
        state: the kernel's final state (chains leading), from which :meth:`resume` continues.
    """

    def __init__(self, program: _Program, dyn: list, state: Any, samples: dict, info: dict, warmup_info: dict | None):
        self._program, self._dyn = program, dyn
        self.state, self.samples, self.info, self.warmup_info = state, samples, info, warmup_info

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
        """mean, sd, 5/50/95% quantiles, R̂, bulk and tail ESS per site; ``print`` it for a table."""
        return summary({k: np.asarray(v) for k, v in self.samples.items()})

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

    def resume(self, key: Any, num_samples: int | None = None) -> "Run":
        """Continue every chain from its last state for ``num_samples`` more draws (default: as
        many as this run has), with the tuning frozen: no warmup, and no new compilation when
        ``num_samples`` equals this run's.  Returns a new Run holding the new draws only."""
        n = self.num_samples if num_samples is None else int(num_samples)
        state, samples, info = self._program.sample(key, self.state, self._dyn, num_steps=n)
        return Run(self._program, self._dyn, state, samples, info, None)

    def save(self, path: Any) -> None:
        """Write the chains' last state, the draws and the info to ``path`` (an ``.npz`` file;
        no pickle: arrays plus a JSON description), to :func:`load` and :meth:`resume` later,
        e.g. after a restart.  The model's arguments are not saved: give them to :func:`load`.

        Example:
            >>> run.save("eight_schools.npz")
            >>> run = mcmc.load("eight_schools.npz", mcmc.NUTS(), eight_schools, sigma, y=y)
            >>> more = run.resume(jax.random.key(2))   # exactly as if never interrupted
        """
        prog = self._program
        arrays: dict = {}
        state_meta = []
        for i, leaf in enumerate(jax.tree_util.tree_leaves(self.state)):
            impl = None
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                impl = str(jax.random.key_impl(leaf))
                leaf = jax.random.key_data(leaf)
            arrays[f"state/{i}"] = np.asarray(leaf)
            state_meta.append({"key_impl": impl})
        tables = {"samples": self.samples, "info": self.info, "warmup_info": self.warmup_info}
        names: dict = {}
        for t, d in tables.items():
            if d is None:
                names[t] = None
                continue
            names[t] = list(d)
            for j, k in enumerate(d):
                arrays[f"{t}/{j}"] = np.asarray(d[k])
        meta = {
            "format": _FORMAT,
            "kernel": repr(prog.kernel),
            "model": prog.model.name,
            "num_chains": prog.num_chains,
            "num_warmup": prog.num_warmup,
            "state": state_meta,
            "args": [[list(np.shape(a)), str(a.dtype)] for a in self._dyn],
            **names,
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path = os.fspath(path)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **{k.replace("/", "."): v for k, v in arrays.items()})
        os.replace(tmp, path)  # a crash while saving leaves the previous file intact

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(np.shape(v))}" for k, v in self.samples.items())
        return f"<mcmc.Run {self.num_chains} chains x {self.num_samples} draws; {shapes}>"


def _prepare(who, kernel, model, args, kwargs, num_chains, num_warmup, progress) -> tuple[_Program, list]:
    """The compiled program for (kernel, model, static arguments, ...) and the array arguments."""
    if not isinstance(kernel, Kernel):
        raise ModelError(f"{who}: expected a kernel such as mcmc.NUTS(), got {type(kernel).__name__}.")
    model = ppl.as_model(model)
    if int(num_chains) < 1:
        raise ModelError(f"{who}: num_chains must be >= 1, got {num_chains}.")
    progress = _progress_default() if progress is None else bool(progress)
    leaves, treedef = jax.tree_util.tree_flatten((tuple(args), dict(kwargs)))
    statics = tuple((i, v) for i, v in enumerate(leaves) if not _is_dynamic(v))
    dyn = [jnp.asarray(v) for v in leaves if _is_dynamic(v)]
    prog = _program(kernel, model, treedef, statics, int(num_chains), int(num_warmup), progress)
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
    **kwargs: Any,
) -> Run:
    """Run ``num_chains`` chains of ``kernel`` targeting ``model(*args, **kwargs)``'s posterior.

    Args:
        key: a JAX random key.
        kernel: an MCMC kernel configuration (``NUTS()``, ``Regenerate("z")``, ``cycle(...)``, ...).
        model: a ``ppl.Model`` (observations given as arguments or through ``ppl.condition``).
        num_warmup: adaptation (gradient kernels) or burn-in steps, not recorded as draws.
        num_samples: draws recorded per chain.
        num_chains: chains, run vectorised as a leading axis.
        init: None (the kernel's default: uniform in (−2, 2) unconstrained for gradient kernels,
            a prior draw for trace kernels), a strategy ``"uniform"`` / ``"prior"`` / ``"zeros"``,
            or a dict of constrained values (the same for every chain).
        progress: show progress reported from the device every few steps; default on in a
            terminal or notebook, off when ``CI`` is set or output is not a TTY.

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
    prog, dyn = _prepare("mcmc.sample", kernel, model, args, kwargs, num_chains, num_warmup, progress)
    model = prog.model

    k_init, k_warm, k_samp = jax.random.split(key, 3)
    init_values = init if isinstance(init, Mapping) else None
    strategy = None if isinstance(init, Mapping) else init
    num_warmup = prog.num_warmup
    state, log_dens = prog.init(k_init, dyn, init_values, strategy=strategy)
    ok = np.isfinite(np.asarray(log_dens))
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
    warm_info = None
    if num_warmup > 0:
        state, warm_info = prog.warmup(k_warm, state, dyn, num_steps=num_warmup)
    state, samples, info = prog.sample(k_samp, state, dyn, num_steps=num_samples)
    return Run(prog, dyn, state, samples, info, warm_info)


def load(path: Any, kernel: Kernel, model: Any, *args: Any, progress: bool | None = None, **kwargs: Any) -> Run:
    """Read a run written by :meth:`Run.save`; ``kernel``, ``model`` and the model's arguments
    are the ones the run was made with (arrays of the same shapes).  The returned run's
    :meth:`Run.resume` continues the chains exactly as the saved run's would have: the same key
    gives the same draws.  Nothing is unpickled.

    Example:
        >>> run = mcmc.load("eight_schools.npz", mcmc.NUTS(), eight_schools, sigma, y=y)
        >>> more = run.resume(jax.random.key(2), num_samples=1000)
    """
    path = os.fspath(path)
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
    prog, dyn = _prepare("mcmc.load", kernel, model, args, kwargs, meta["num_chains"], meta["num_warmup"], progress)
    if prog.model.name != meta["model"]:
        raise ModelError(f"mcmc.load: the run was saved for model {meta['model']!r}, but load was given {prog.model.name!r}.")
    given = [[list(np.shape(a)), str(a.dtype)] for a in dyn]
    if given != meta["args"]:
        raise ModelError(
            f"mcmc.load: the model's array arguments have shapes/dtypes {given}, but the run was "
            f"saved with {meta['args']}; pass the same data."
        )
    template = jax.eval_shape(lambda k: prog.init(k, dyn, None)[0], jax.random.key(0))
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(t_leaves) != len(meta["state"]):
        raise ModelError(
            f"mcmc.load: the saved state has {len(meta['state'])} arrays, the kernel's state "
            f"{len(t_leaves)}; was it saved with another version of the kernel?"
        )
    leaves = []
    for i, (t, m) in enumerate(zip(t_leaves, meta["state"])):
        a = arrays[f"state/{i}"]
        leaf = jax.random.wrap_key_data(a, impl=m["key_impl"]) if m["key_impl"] else jax.device_put(a)
        if leaf.shape != t.shape or leaf.dtype != t.dtype:
            raise ModelError(
                f"mcmc.load: state array {i} is {leaf.dtype}{list(leaf.shape)} in the file but "
                f"{t.dtype}{list(t.shape)} for this kernel (is jax_enable_x64 set as when it was saved?)."
            )
        leaves.append(leaf)
    state = jax.tree_util.tree_unflatten(treedef, leaves)

    def table(name):
        if meta[name] is None:
            return None
        return {k: jax.device_put(arrays[f"{name}/{j}"]) for j, k in enumerate(meta[name])}

    return Run(prog, dyn, state, table("samples"), table("info"), table("warmup_info"))
