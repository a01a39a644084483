"""The compiled program checked against the eager one on the same coins.

:func:`compiled_paths` runs ``jax.jit`` of a block on every outcome vector of its eager
enumeration (each draw fed its value by name and key) and checks that it makes the same draws
with the same probabilities; :func:`check_compiled` compares the outputs too, and
:func:`enumerate_compiled` gives the law of the compiled program.
"""

from __future__ import annotations

from typing import Any, Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ppl.errors import PPLError
from ppl.randomness import guarded_key, interpreter

from .measure import Measure, freeze
from .paths import NotEnumerableError, Path, _key_data, _walk, _Walker

__all__ = [
    "compiled_paths",
    "compiled_paths_each",
    "check_compiled",
    "check_compiled_each",
    "enumerate_compiled",
    "CompiledPath",
    "CompiledPathMismatch",
]


class CompiledPathMismatch(PPLError, AssertionError):
    """The compiled (jitted) program and the eager one disagree on the same random outcomes."""


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
