"""Exact enumeration of models and of inference blocks.

Every random draw of the language and of the inference blocks goes through
:func:`ppl.randomness.draw`.  The enumerator installs an *eager interpreter* there and re-runs
the program depth-first, once per complete path of finite random choices (monad-bayes'
``Enumerator``, Pyro's ``poutine.queue``): it replays the choices of the path so far, takes the
first alternative at the first new draw, and backtracks after each run.  Under an eager
interpreter ``ppl.scan`` runs as a Python loop and ``ppl.cond``/``ppl.switch`` run only the taken
branch, so the set of addresses may depend on earlier choices.

A draw's alternatives are its distribution's ``enumerate_support`` (Bernoulli, Categorical,
Binomial, DiscreteUniform, ... and their ``expand``-ed versions).  A batched draw (non-empty batch
or sample shape) enumerates the product of its elements' supports.  Alternatives of probability
zero are pruned (probabilities are taken from the exact parameters where they are rational,
as NumPyro's ``log_prob`` clamps probabilities 0 and 1 to about 1e-16 away).  A draw from a distribution without finite support raises
:class:`NotEnumerableError` naming the draw.

Probabilities.  A path's probability is the product of its draws' probabilities, in float64
(``exp`` of the summed ``log_prob``) and, when every probability involved is *rational*, exactly
as a :class:`fractions.Fraction`.  A float parameter ``p`` counts as rational when
``q = Fraction(p).limit_denominator(10**6)`` satisfies ``float(q) == p`` (so ``1/3`` computed in
float64 is read as exactly 1/3); otherwise exact weights are not carried (``measure.exact`` is
None).  Exact probabilities are known for Bernoulli, Categorical, Binomial and DiscreteUniform.

The meaning of a model.  :func:`enumerate` gives the measure μ = Σ_paths w δ_trace with atom
``Choices(trace.active_choices())`` (latent *and* observed values; intervened sites are not
choices) and weight ``exp(trace.log_density)``: the prior of every latent, the likelihood of the
observations and the factors.  Equivalently w = (path probability) × exp(trace.log_likelihood)
for a model whose latents are all drawn (tests check both agree).

Keys.  The block receives a *guarded* key (:func:`ppl.randomness.guarded_key`): it splits and
folds like a production key, but ``jax.random`` sampling from it raises
:class:`ppl.randomness.RandomnessBypassError`, so randomness that bypasses
``ppl.randomness.draw`` (and would be one fixed value on every path) is an error, not a silent
pass.

The compiled program.  Under the enumerator blocks take their eager branches (Python ``if``,
loops over particles and candidates); under ``jit`` they take ``jnp.where``, ``lax.switch``,
``lax.cond``, ``vmap``, ``lax.scan``.  :func:`compiled_paths` runs ``jax.jit`` of the block on
every outcome vector of the eager enumeration (each draw fed its value by name and key) and
checks that it makes the same draws with the same probabilities; :func:`check_compiled`
compares the outputs too, :func:`enumerate_compiled` gives the law of the compiled program, and
inside :func:`compiled_programs` every law of ``semantics.laws`` runs on the compiled program.

Example:
    >>> @ppl.model
    ... def coin():
    ...     z = ppl.sample("z", dist.Bernoulli(probs=0.25))
    ...     ppl.sample("y", dist.Bernoulli(probs=0.5 + 0.25 * z), obs=1)
    >>> mu = semantics.enumerate(coin)
    >>> mu.exact_total_mass()                    # 3/4·1/2 + 1/4·3/4
    Fraction(9, 16)
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import core as _core
from ppl.randomness import guarded_key, interpreter

from .measure import Choices, Measure, freeze

__all__ = [
    "enumerate",
    "enumerate_block",
    "enumerate_paths",
    "compiled_paths",
    "compiled_programs",
    "compiled_paths_each",
    "check_compiled",
    "check_compiled_each",
    "enumerate_compiled",
    "CompiledPath",
    "CompiledPathMismatch",
    "enumerate_traces",
    "trace_key",
    "Path",
    "NotEnumerableError",
    "exact_prob",
    "rational",
]

MAX_DENOMINATOR = 10**6


class NotEnumerableError(ValueError):
    """A draw has no finite support (e.g. a Normal) or too many alternatives to enumerate."""


# ---------------------------------------------------------------------------------------------
# exact probabilities


def rational(x: Any) -> Fraction | None:
    """`x` as a Fraction when it is (in float64) a rational with denominator ≤ 10**6, else None.

    Example:
        >>> rational(1 / 3), rational(math.pi)
        (Fraction(1, 3), None)
    """
    x = float(x)
    if not math.isfinite(x):
        return None
    q = Fraction(x).limit_denominator(MAX_DENOMINATOR)
    return q if float(q) == x else None


_vrational = np.vectorize(rational, otypes=[object])


def _rationals(a: Any) -> np.ndarray | None:
    arr = _vrational(np.asarray(a, dtype=np.float64))
    arr = np.asarray(arr, dtype=object)
    if any(v is None for v in arr.ravel()):
        return None
    return arr


def _exact_elementwise(d: Any, value: Any) -> np.ndarray | None:
    """Exact probability of each element of `value` under `d` (object array), or None."""
    name = type(d).__name__
    v = np.asarray(value)
    if name == "ExpandedDistribution":
        out = _exact_elementwise(d.base_dist, v)
        if out is None:
            return None
        return np.broadcast_to(out, np.broadcast_shapes(out.shape, tuple(d.batch_shape)))
    if tuple(d.event_shape):
        return None
    if name.startswith("Bernoulli"):
        p = _rationals(d.probs)
        if p is None:
            return None
        p, vb = np.broadcast_arrays(p, v)
        out = np.where(vb == 1, p, np.where(vb == 0, 1 - p, Fraction(0)))
        return np.asarray(out, dtype=object)
    if name.startswith("Categorical"):
        probs = _rationals(d.probs)
        if probs is None:
            return None
        sums = np.sum(probs, axis=-1)
        if any(s != 1 for s in np.ravel(sums)):
            return None
        K = probs.shape[-1]
        full = np.broadcast_shapes(v.shape, probs.shape[:-1])
        P = np.broadcast_to(probs, full + (K,))
        vb = np.broadcast_to(v, full).astype(np.int64)
        out = np.empty(full, dtype=object)
        for idx in np.ndindex(*full):
            k = int(vb[idx])
            out[idx] = P[idx + (k,)] if 0 <= k < K else Fraction(0)
        return out
    if name.startswith("Binomial"):
        p = _rationals(d.probs)
        n = np.asarray(d.total_count)
        if p is None:
            return None
        p, n, vb = np.broadcast_arrays(p, n, v)
        out = np.empty(vb.shape, dtype=object)
        for idx in np.ndindex(*vb.shape):
            k, nn, pp = int(vb[idx]), int(n[idx]), p[idx]
            out[idx] = Fraction(math.comb(nn, k)) * pp**k * (1 - pp) ** (nn - k) if 0 <= k <= nn else Fraction(0)
        return out
    if name == "DiscreteUniform":
        lo, hi, vb = np.broadcast_arrays(np.asarray(d.low), np.asarray(d.high), v)
        out = np.empty(vb.shape, dtype=object)
        for idx in np.ndindex(*vb.shape):
            a, b, k = int(lo[idx]), int(hi[idx]), int(vb[idx])
            out[idx] = Fraction(1, b - a + 1) if a <= k <= b else Fraction(0)
        return out
    return None


def exact_prob(d: Any, value: Any, mask: Any = None) -> Fraction | None:
    """P_d(value) as a Fraction (product over batch elements where `mask` holds), or None.

    Example:
        >>> exact_prob(dist.Binomial(2, probs=0.5), 1)
        Fraction(1, 2)
    """
    el = _exact_elementwise(d, value)
    if el is None:
        return None
    if mask is not None:
        m = np.broadcast_to(np.asarray(mask, bool), el.shape)
        el = np.where(m, el, Fraction(1))
    out = Fraction(1)
    for x in np.ravel(el):
        out *= x
    return out


# ---------------------------------------------------------------------------------------------
# the interpreter


@dataclass
class _Node:
    name: str | None
    alternatives: list  # of (value, log_prob, Fraction | None, frozen value)
    index: int = 0


MAX_ALTERNATIVES = 100_000


def _alternatives(d: Any, sample_shape: tuple, name: str | None) -> list:
    if not getattr(d, "has_enumerate_support", False):
        raise NotEnumerableError(
            f"the draw {name!r} is from {type(d).__name__}, which has no finite support to "
            "enumerate; exact enumeration needs every random choice to be discrete and finite "
            "(use semantics.integrate for up to 3 continuous dimensions)."
        )
    try:
        S = d.enumerate_support(expand=True)
    except Exception as e:  # e.g. Binomial with heterogeneous total_count
        raise NotEnumerableError(f"the draw {name!r} from {type(d).__name__} cannot enumerate its support: {e}") from None
    LP = np.asarray(d.log_prob(S), dtype=np.float64)
    EX = _exact_elementwise(d, np.asarray(S))
    if EX is not None:
        # NumPyro clamps probabilities away from 0 and 1 inside log_prob (an accept step with
        # probability 1 would get a reject branch of probability ~1e-16); use the exact values.
        with np.errstate(divide="ignore"):
            LP = np.log(np.vectorize(float, otypes=[np.float64])(np.broadcast_to(EX, LP.shape)))
    S_np = np.asarray(S)
    dtype = S.dtype
    K = S_np.shape[0]
    B = tuple(d.batch_shape)
    E = tuple(d.event_shape)
    F = tuple(sample_shape) + B
    n = int(np.prod(F)) if F else 1
    nB = int(np.prod(B)) if B else 1
    S_flat = S_np.reshape((K, nB) + E)
    LP_flat = LP.reshape(K, nB)
    EX_flat = None if EX is None else np.broadcast_to(EX, (K,) + B).reshape(K, nB)
    allowed = []
    for e in range(n):
        b = e % nB
        ks = [k for k in range(K) if LP_flat[k, b] > -math.inf]
        allowed.append(ks)
    count = 1
    for ks in allowed:
        count *= len(ks)
        if count > MAX_ALTERNATIVES:
            raise NotEnumerableError(
                f"the draw {name!r} (shape {F}) has more than {MAX_ALTERNATIVES} joint outcomes; "
                "enumerate a smaller model."
            )
    out = []
    for combo in itertools.product(*allowed):
        bs = [e % nB for e in range(n)]
        vals = np.stack([S_flat[k, b] for k, b in zip(combo, bs)]) if n else S_flat[:0]
        vals = vals.reshape(F + E)
        lp = math.fsum(LP_flat[k, b] for k, b in zip(combo, bs))
        fr = None
        if EX_flat is not None:
            fr = Fraction(1)
            for k, b in zip(combo, bs):
                fr *= EX_flat[k, b]
        out.append((jnp.asarray(vals, dtype=dtype), lp, fr, freeze(vals)))
    return out


class _Walker:
    """Eager interpreter replaying a path prefix and opening new draws at their first alternative."""

    eager = True

    def __init__(self, record: bool = False) -> None:
        self.nodes: list[_Node] = []
        self.pos = 0
        self.log_prob = 0.0
        self.prob: Fraction | None = Fraction(1)
        self.record = record
        self.records: list = []  # (name, key data, value, log_prob) of each draw of this run

    def start(self) -> None:
        self.pos = 0
        self.log_prob = 0.0
        self.prob = Fraction(1)
        self.records = []

    def draw(self, key: Any, d: Any, sample_shape: tuple, name: str | None) -> Any:
        depth = self.pos
        self.pos += 1
        if depth < len(self.nodes):
            node = self.nodes[depth]
            if node.name != name:
                raise ppl.ModelError(
                    f"the program is not deterministic given its random choices: replaying draw "
                    f"#{depth} expected {node.name!r} but got {name!r}."
                )
        else:
            node = _Node(name, _alternatives(d, tuple(sample_shape), name))
            self.nodes.append(node)
        value, lp, fr, _ = node.alternatives[node.index]
        self.log_prob += lp
        if self.record:
            kd = _key_data(key, name)
            if isinstance(kd, jax.core.Tracer):
                raise NotEnumerableError(
                    f"the draw {name!r} was made under a JAX transformation (jit/vmap) while "
                    "enumerating eagerly; its key cannot be recorded."
                )
            self.records.append((name, np.asarray(kd), value, lp))
        if self.prob is not None:
            self.prob = None if fr is None else self.prob * fr
        return value

    def describe(self) -> str:
        return ", ".join(f"{n.name}={n.alternatives[n.index][3]!r}" for n in self.nodes[: self.pos])

    def advance(self) -> bool:
        """Move to the next path; False when every path has been run."""
        if self.pos != len(self.nodes):
            raise ppl.ModelError("the program made fewer draws when replayed than when first run.")
        while self.nodes and self.nodes[-1].index + 1 >= len(self.nodes[-1].alternatives):
            self.nodes.pop()
        if not self.nodes:
            return False
        self.nodes[-1].index += 1
        return True


@dataclass
class Path:
    """One complete path of a program's random choices.

    Attributes:
        value: what the program returned on this path.
        log_prob: log of the path's probability (sum of its draws' log-probabilities).
        prob: the path's probability as a Fraction, or None when not rational.
        draws: ``(name, frozen value)`` of each draw, in execution order.
    """

    value: Any
    log_prob: float
    prob: Fraction | None
    draws: tuple


def enumerate_paths(fn: Callable, *args: Any, max_paths: int = 200_000, **kwargs: Any) -> list[Path]:
    """Run ``fn(key, *args, **kwargs)`` down every path of its finite random choices.

    `fn` is any Python function whose randomness goes through ``ppl.randomness.draw`` (a model
    operation, an inference block).  The key it receives is a *guarded* key
    (:func:`ppl.randomness.guarded_key`): the enumerator ignores keys, and the block may split
    and fold it, but sampling from it with ``jax.random`` (randomness that bypasses
    ``ppl.randomness.draw`` and so would be a fixed value on every path) raises
    :class:`ppl.randomness.RandomnessBypassError`.
    Returns one :class:`Path` per complete path; their probabilities sum to 1.

    Example:
        >>> paths = enumerate_paths(lambda key: ppl.randomness.draw(key, dist.Bernoulli(probs=0.5)))
        >>> [(int(p.value), p.prob) for p in paths]
        [(0, Fraction(1, 2)), (1, Fraction(1, 2))]
    """
    if _COMPILED:
        return [
            Path(cp.compiled, cp.path.log_prob, cp.path.prob, cp.path.draws)
            for cp in compiled_paths(fn, *args, max_paths=max_paths, **kwargs)
        ]
    return [p for p, _ in _walk(fn, _Walker(), args, kwargs, max_paths)]


_COMPILED: list = []


@contextlib.contextmanager
def compiled_programs() -> Iterator[None]:
    """Inside this context, :func:`enumerate_paths` (so :func:`enumerate_block` and every law of
    ``semantics.laws`` built on it) gives each path the output of the *compiled* block.

    Each call runs the block eagerly to find its paths and then ``jax.jit`` of it on each path's
    outcomes (:func:`compiled_paths`, which also checks that the compiled program makes the same
    draws with the same probabilities), so an exact law checked inside the context is the law of
    the program a user runs under ``jit``.  Models are still enumerated eagerly
    (:func:`enumerate`, :func:`enumerate_traces`: the target measure of a law).  Each call
    compiles the block once.

    Example:
        >>> from semantics import laws
        >>> @ppl.model
        ... def model():
        ...     ppl.sample("z", dist.Categorical(probs=jnp.array([0.2, 0.3, 0.5])))
        >>> def step(key, tr):               # redraw z from its prior (nothing observed: accepted)
        ...     return model.regenerate(key, tr, ppl.select("z"))[0]
        >>> with compiled_programs():
        ...     print(laws.invariant(step, model).ok)
        True
    """
    _COMPILED.append(True)
    try:
        yield
    finally:
        _COMPILED.pop()


def _walk(fn: Callable, walker: _Walker, args: tuple, kwargs: dict, max_paths: int) -> list[tuple[Path, list]]:
    """Every path of ``fn(guarded key, *args, **kwargs)`` with the walker's records of its draws."""
    key = guarded_key(0)
    out: list[tuple[Path, list]] = []
    with interpreter(walker):
        while True:
            walker.start()
            try:
                value = fn(key, *args, **kwargs)
            except NotEnumerableError:
                raise
            except Exception as e:
                where = f"(while enumerating the path {walker.describe() or '<no draws>'})"
                try:
                    err = type(e)(f"{e}\n{where}")
                except Exception:  # an exception type with another constructor: keep it as is
                    e.add_note(where)
                    raise
                raise err from e
            draws = tuple((n.name, n.alternatives[n.index][3]) for n in walker.nodes[: walker.pos])
            out.append((Path(value, walker.log_prob, walker.prob, draws), walker.records))
            if len(out) > max_paths:
                raise NotEnumerableError(f"more than {max_paths} paths; enumerate a smaller program.")
            if not walker.advance():
                break
    return out


def enumerate_block(fn: Callable, *args: Any, key: Callable[[Any], Any] = freeze, **kwargs: Any) -> Measure:
    """The distribution of ``fn(key, *args, **kwargs)``'s output over its own randomness.

    Each path contributes its probability to the atom ``key(output)`` (default: the output
    frozen to a hashable value).  This is how a *shipped* inference block is checked exactly.

    Example:
        >>> two_flips = lambda key: sum(ppl.randomness.draw(k, dist.Bernoulli(probs=0.5))
        ...                             for k in jax.random.split(key))
        >>> enumerate_block(two_flips).exact[1]
        Fraction(1, 2)
    """
    paths = enumerate_paths(fn, *args, **kwargs)
    return Measure.from_pairs((key(p.value), p.log_prob, p.prob) for p in paths)


# ---------------------------------------------------------------------------------------------
# the compiled program: the same coins fed to the jitted block


class CompiledPathMismatch(AssertionError):
    """The compiled (jitted) program and the eager one disagree on the same random outcomes."""


def _key_data(key: Any, name: str | None) -> Any:
    """The raw data of the key a draw was made with (the draw's address in the compiled table)."""
    if key is None:
        raise NotEnumerableError(
            f"the draw {name!r} was made without a key; the compiled-path check identifies each "
            "draw by its name and the key it is drawn with."
        )
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return jnp.asarray(key)


@dataclass
class CompiledPath:
    """One path of the eager enumeration and the compiled program's output on its outcomes.

    Attributes:
        path: the eager path (its draws, probability and output ``path.value``).
        compiled: what ``jax.jit`` of the same function returned when each of its draws was
            given the value the eager path drew with the same name and key.
    """

    path: Path
    compiled: Any


class _TableDraws:
    """Non-eager interpreter feeding each draw the value recorded for its (name, shape, key).

    ``tables[pos] = (keys, values)``: the key data of every (name, shape) draw made on any eager
    path, and this path's value for each (a filler where this path did not make the draw).  The
    draw is looked up by comparing its (traced) key data with ``keys``, so it works under
    ``jit``, ``vmap`` (per-particle keys) and ``lax`` loops.  Each executed draw reports, through
    ``jax.debug.callback``, which row it used and the log-probability of that value under the
    *compiled* program's distribution.
    """

    eager = False

    def __init__(self, index: dict, tables: list, reports: list) -> None:
        self.index, self.tables, self.reports = index, tables, reports

    def draw(self, key: Any, d: Any, sample_shape: tuple, name: str | None) -> Any:
        shape = tuple(d.shape(tuple(sample_shape)))
        pos = self.index.get((name, shape))
        if pos is None:  # never drawn eagerly: only in branches no path takes
            sd = jax.eval_shape(lambda k: d.sample(k, tuple(sample_shape)), jax.random.key(0))
            return jnp.zeros(sd.shape, sd.dtype)
        keys, values = self.tables[pos]
        kd = jnp.reshape(_key_data(key, name), (-1,))
        match = jnp.all(keys == kd, axis=-1)
        row = jnp.argmax(match)
        value = values[row]
        lp = jnp.sum(d.log_prob(value))
        reports = self.reports
        jax.debug.callback(
            lambda r, f, l, pos=pos: reports.append((pos, int(r), bool(f), float(l))), row, jnp.any(match), lp
        )
        return value


def compiled_paths(
    fn: Callable, *args: Any, max_paths: int = 20_000, lp_atol: float = 1e-9, **kwargs: Any
) -> list[CompiledPath]:
    """Run ``fn`` eagerly down every path (as :func:`enumerate_paths`) and compiled on each path's coins.

    The eager enumeration fixes, for each path, the outcome of every draw, addressed by the
    draw's name, shape and the data of the key it was drawn with.  ``jax.jit(fn)`` is then traced
    *once* with a non-eager interpreter (so ``select``, ``mixture``, ``ppl.scan``, resampling,
    ... take their compiled branches: ``jnp.where``, ``lax.switch``, ``lax.cond``, ``vmap``,
    ``lax.scan``) whose draws read their values from a table passed as an argument, and run on
    each path's table.  Checks, raising :class:`CompiledPathMismatch`, that every draw of the
    eager path is executed by the compiled program with the same value and the same
    log-probability (within `lp_atol`) under the compiled program's own distribution, so the
    compiled program's law is the eager path probabilities carried to its outputs.

    The arrays in `args` are arguments of the compiled function (other leaves are static);
    :func:`compiled_paths_each` runs several argument sets through one compilation.  Keys are
    :func:`ppl.randomness.guarded_key` as in :func:`enumerate_paths`.  Two draws with the same
    name and key on one path cannot be told apart and raise NotEnumerableError.  Draws the
    compiled program makes that no eager path makes (a branch ``lax.cond`` traces but does not
    take, a ``vmap``-ed branch computed and discarded) get a filler value; if such a value
    mattered the outputs differ (compare them with :func:`check_compiled`).
    """
    return compiled_paths_each(fn, [args], max_paths=max_paths, lp_atol=lp_atol, **kwargs)[0]


def compiled_paths_each(
    fn: Callable, arg_sets: Any, max_paths: int = 20_000, lp_atol: float = 1e-9, **kwargs: Any
) -> list[list[CompiledPath]]:
    """:func:`compiled_paths` of ``fn(key, *args, **kwargs)`` for each ``args`` in `arg_sets`.

    One compilation serves every argument set (e.g. every state of a kernel's transition
    matrix) when their arrays have the same shapes.
    """
    import equinox as eqx

    arg_sets = [tuple(a) for a in arg_sets]
    walks = [_walk(fn, _Walker(record=True), a, kwargs, max_paths) for a in arg_sets]
    # one table per (name, shape): the union of the keys drawn on any path
    index: dict = {}
    rows: list[dict] = []
    fill: list = []
    for walked in walks:
        for _, recs in walked:
            seen = set()
            for name, kd, value, _lp in recs:
                slot = (name, tuple(np.shape(value)))
                pos = index.setdefault(slot, len(index))
                if pos == len(rows):
                    rows.append({})
                    fill.append(value)
                kb = np.asarray(kd, dtype=np.uint32).reshape(-1).tobytes()
                if (pos, kb) in seen:
                    raise NotEnumerableError(
                        f"two draws named {name!r} with the same key on one path; the compiled-path "
                        "check addresses draws by name and key (split the key between the draws)."
                    )
                seen.add((pos, kb))
                rows[pos].setdefault(kb, (len(rows[pos]), np.asarray(kd, dtype=np.uint32).reshape(-1)))
    key_tables = [np.stack([kd for _, kd in sorted(r.values(), key=lambda t: t[0])]) for r in rows]

    reports: list = []

    @eqx.filter_jit
    def run(tables: list, key: Any, a: tuple) -> Any:
        with interpreter(_TableDraws(index, tables, reports)):
            return fn(key, *a, **kwargs)

    out = []
    for a, walked in zip(arg_sets, walks):
        res = []
        for path, recs in walked:
            vals = [np.repeat(np.asarray(f)[None], len(kt), axis=0) for f, kt in zip(fill, key_tables)]
            want = []
            for name, kd, value, lp in recs:
                pos = index[(name, tuple(np.shape(value)))]
                r = rows[pos][np.asarray(kd, dtype=np.uint32).reshape(-1).tobytes()][0]
                vals[pos][r] = np.asarray(value)
                want.append((name, pos, r, lp))
            tables = [
                (jnp.asarray(kt), jnp.asarray(v, dtype=jnp.asarray(f).dtype)) for kt, v, f in zip(key_tables, vals, fill)
            ]
            reports.clear()
            compiled = run(tables, guarded_key(0), a)
            jax.block_until_ready(compiled)
            jax.effects_barrier()
            got: dict = {}
            for pos, r, found, lp in reports:
                if found:
                    got.setdefault((pos, r), []).append(lp)
            where = f"on the path {', '.join(f'{n}={v!r}' for n, v in path.draws) or '<no draws>'}"
            for name, pos, r, lp in want:
                lps = got.get((pos, r))
                if not lps:
                    raise CompiledPathMismatch(
                        f"the compiled program never made the draw {name!r} that the eager program "
                        f"makes {where}."
                    )
                if not any(abs(x - lp) <= lp_atol or x == lp for x in lps):
                    raise CompiledPathMismatch(
                        f"the draw {name!r} has log-probability {lps} in the compiled program but "
                        f"{lp} in the eager one {where}."
                    )
            res.append(CompiledPath(path, compiled))
        out.append(res)
    return out


def _first_difference(a: Any, b: Any, rtol: float, atol: float) -> str | None:
    fa = jax.tree_util.tree_flatten_with_path(a)[0]
    fb = jax.tree_util.tree_flatten_with_path(b)[0]
    paths = [jax.tree_util.keystr(p) for p, _ in fa]
    paths_b = [jax.tree_util.keystr(p) for p, _ in fb]
    if paths != paths_b:
        only = sorted(set(paths) ^ set(paths_b))
        return f"different structures (leaves {only[:5]} are in one output only)" if only else "leaves in another order"
    for where, (_, x), (_, y) in zip(paths, fa, fb):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            return f"{where or 'output'}: shape {x.shape} vs {y.shape}"
        if np.issubdtype(x.dtype, np.inexact) or np.issubdtype(y.dtype, np.inexact):
            x64, y64 = x.astype(np.float64), y.astype(np.float64)
            same = np.isclose(x64, y64, rtol=rtol, atol=atol, equal_nan=True) | (x64 == y64)
            if not np.all(same):
                return f"{where or 'output'}: {x} vs {y}"
        elif not np.array_equal(x, y):
            return f"{where or 'output'}: {x} vs {y}"
    return None


def check_compiled(
    fn: Callable, *args: Any, rtol: float = 1e-10, atol: float = 1e-12, max_paths: int = 20_000, **kwargs: Any
) -> list[CompiledPath]:
    """Check that the compiled and the eager program give the same outputs on every path.

    :func:`compiled_paths`, then a comparison leaf by leaf of each path's eager output with the
    compiled output (integers and booleans exactly, floats to `rtol`/`atol`); raises
    :class:`CompiledPathMismatch` naming the path and the first leaf that differs.  Returns the
    paths.

    Example:
        >>> def coin_flip(key, x):
        ...     b = ppl.randomness.draw(key, dist.Bernoulli(probs=0.25), name="b")
        ...     return jnp.where(b == 1, x + 1.0, x)
        >>> len(check_compiled(coin_flip, 1.0))
        2
    """
    return check_compiled_each(fn, [args], rtol=rtol, atol=atol, max_paths=max_paths, **kwargs)[0]


def check_compiled_each(
    fn: Callable, arg_sets: Any, rtol: float = 1e-10, atol: float = 1e-12, max_paths: int = 20_000, **kwargs: Any
) -> list[list[CompiledPath]]:
    """:func:`check_compiled` for each ``args`` in `arg_sets`, through one compilation."""
    out = compiled_paths_each(fn, arg_sets, max_paths=max_paths, **kwargs)
    for i, paths in zip(range(len(out)), out):
        for cp in paths:
            diff = _first_difference(cp.path.value, cp.compiled, rtol, atol)
            if diff is not None:
                draws = ", ".join(f"{n}={v!r}" for n, v in cp.path.draws) or "<no draws>"
                raise CompiledPathMismatch(
                    f"the compiled program's output differs from the eager one (argument set {i}) "
                    f"on the path {draws}: {diff}"
                )
    return out


def enumerate_compiled(fn: Callable, *args: Any, key: Callable[[Any], Any] = freeze, **kwargs: Any) -> Measure:
    """The law of the *compiled* program's output (:func:`enumerate_block` of ``jax.jit(fn)``).

    Each path of the eager enumeration gives its probability to the atom ``key(compiled
    output)``, the output of ``jax.jit(fn)`` run on the path's outcomes (see
    :func:`compiled_paths`, which also checks that the compiled program draws the same coins with
    the same probabilities).  Exact laws checked on this measure are checked on the code the
    user runs under ``jit``.
    """
    paths = compiled_paths(fn, *args, **kwargs)
    return Measure.from_pairs((key(cp.compiled), cp.path.log_prob, cp.path.prob) for cp in paths)


# ---------------------------------------------------------------------------------------------
# models


def trace_key(tr: Any) -> Choices:
    """The atom of a trace: ``Choices`` of its active choices (latent and observed).

    A site that exists at some steps of an eager ``ppl.scan`` only is kept as a tuple with
    ``None`` at the steps where it does not exist; a site that exists at no step (a branch of a
    compiled ``ppl.switch`` that no step took) is left out, as it is from an eager trace.
    """
    out = {}
    for k, v in tr.choices.items():
        a = tr.active.get(k)
        if a is None:
            out[k] = v
            continue
        a = np.asarray(a)
        if a.ndim == 0:
            if bool(a):
                out[k] = v
        elif np.any(a):  # a site of a compiled ppl.switch inside ppl.scan may exist at no step
            vals = np.asarray(v)
            out[k] = tuple(freeze(vals[t]) if a[t] else None for t in range(a.shape[0]))
    return Choices(out)


class _ExactScorer(_core.Messenger):
    """Outermost handler computing the exact weight of a run: Π site probabilities (or None)."""

    def __init__(self) -> None:
        super().__init__()
        self.prob: Fraction | None = Fraction(1)

    def process_message(self, msg: dict) -> None:
        if self.prob is None:
            return
        t = msg["type"]
        if t == "sample":
            if msg["intervened"] or msg["value"] is None:
                return
            scale = msg["scale"]
            if scale is not None and not np.all(np.asarray(scale) == 1):
                self.prob = None
                return
            p = exact_prob(msg["fn"], msg["value"], msg["mask"])
            self.prob = None if p is None else self.prob * p
        elif t == "factor":
            lw = np.asarray(msg["value"])
            if msg["mask"] is not None:
                lw = np.where(np.asarray(msg["mask"]), lw, 0.0)
            if np.all(lw == 0):
                return
            if np.any(lw == -np.inf):
                self.prob = Fraction(0)
                return
            self.prob = None


def enumerate_traces(model: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, float, Fraction | None, Path]]:
    """Every execution of `model`: ``(trace, log_weight, exact_weight_or_None, path)``.

    ``log_weight`` is ``trace.log_density`` and ``exact_weight`` its exact value (see the module
    docstring).  Paths of weight zero are included.
    """
    m = ppl.as_model(model)
    scorer = _ExactScorer()

    def run(key: Any) -> Any:
        scorer.prob = Fraction(1)
        with scorer:
            tr = m.simulate(key, *args, **kwargs)
        return tr, scorer.prob

    out = []
    for p, _ in _walk(run, _Walker(), (), {}, 200_000):  # models: always eager
        tr, prob = p.value
        out.append((tr, float(tr.log_density), prob, p))
    return out


def enumerate(model: Any, *args: Any, **kwargs: Any) -> Measure:
    """The exact measure of a model with finite discrete choices, as a :class:`Measure`.

    Atoms are ``Choices`` of the trace's active choices (latent and observed, not intervened);
    the weight of an atom is exp(trace.log_density) summed over the paths giving it.  Handles
    models whose addresses depend on earlier choices, ``factor``, ``obs``, ``plate``, ``scan``,
    ``cond``/``switch``, nested models, ``ppl.condition`` and ``ppl.do``.

    Example:
        >>> @ppl.model
        ... def two():
        ...     a = ppl.sample("a", dist.Bernoulli(probs=0.5))
        ...     ppl.factor("f", jnp.where(a == 1, 0.0, -jnp.inf))
        >>> semantics.enumerate(two).atoms
        [{'a': 1}]
    """
    return Measure.from_pairs(
        (trace_key(tr), lw, prob) for tr, lw, prob, _ in enumerate_traces(model, *args, **kwargs)
    )
