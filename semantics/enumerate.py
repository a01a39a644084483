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
from fractions import Fraction
from typing import Any, Callable, Iterator

import numpy as np

import ppl
from ppl import core as _core

from .compiled import (
    CompiledPath,
    CompiledPathMismatch,
    check_compiled,
    check_compiled_each,
    compiled_paths,
    compiled_paths_each,
    enumerate_compiled,
)
from .exact import MAX_DENOMINATOR, exact_prob, rational  # noqa: F401  (names of this module before the split)
from .measure import Choices, Measure, freeze
from .paths import MAX_ALTERNATIVES, NotEnumerableError, Path, _alternatives, _key_data, _Node, _walk, _Walker  # noqa: F401


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
        >>> flip = lambda key: ppl.randomness.draw(key, dist.Bernoulli(probs=0.25), name="b")
        >>> with compiled_programs():
        ...     enumerate_block(flip).exact[1]
        Fraction(1, 4)
    """
    _COMPILED.append(True)
    try:
        yield
    finally:
        _COMPILED.pop()


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
