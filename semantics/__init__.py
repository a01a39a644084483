"""semantics: what every representation of a probabilistic program means.

* :class:`Measure` — finite unnormalised measures (float64 log-weights, exact fractions), and
  :class:`GridMeasure` for quadrature with an error bound.
* :func:`enumerate` — the exact measure of a model with finite discrete choices;
  :func:`enumerate_block` — the distribution of an *inference block's* output over its own
  randomness (the shipped block runs under the exact enumerator; a ``jax.random`` draw that
  bypasses ``ppl.randomness.draw`` raises); :func:`check_compiled` — the jitted block, run on
  every outcome vector of that enumeration, makes the same draws and returns the same outputs.
* :func:`integrate` — the measure of a model with 1–3 continuous latent dimensions by quadrature.
* :mod:`semantics.oracles` — conjugate posteriors and evidences, Kalman filter, HMM forward.
* :mod:`semantics.laws` — the laws every inference block is checked against.
* :mod:`semantics.strategies` — hypothesis strategies of small models (needs ``hypothesis``).
* :mod:`semantics.stats` — statistical checks with a suite-wide false-alarm budget, and SBC.

Example:
    >>> import ppl, semantics
    >>> from ppl import dist
    >>> @ppl.model
    ... def coin():
    ...     z = ppl.sample("z", dist.Bernoulli(probs=0.25))
    ...     ppl.sample("y", dist.Bernoulli(probs=0.5 + 0.25 * z), obs=1)
    >>> semantics.enumerate(coin).normalize().exact
    {{'y': 1, 'z': 0}: Fraction(2, 3), {'y': 1, 'z': 1}: Fraction(1, 3)}
"""

from __future__ import annotations

from . import laws, oracles, stats
from .enumerate import (
    CompiledPathMismatch,
    NotEnumerableError,
    Path,
    check_compiled,
    compiled_paths,
    compiled_programs,
    enumerate,
    enumerate_block,
    enumerate_paths,
    enumerate_traces,
    exact_prob,
    rational,
    trace_key,
)
from .laws import (  # each law also has an ``assert_<law>`` form that raises on failure
    LawResult,
    assert_properly_weighted,
    assert_unbiased_evidence,
    assert_invariant,
    assert_detailed_balance,
    assert_unbiased_gradient,
    assert_surgery_commutes,
    detailed_balance,
    invariant,
    properly_weighted,
    surgery_commutes,
    transition_matrix,
    unbiased_evidence,
    unbiased_gradient,
)
from .measure import Choices, Measure, MeasureMismatch, freeze
from .quadrature import GridMeasure, integrate
from .tables import Table, element_support, enumerate_table, finite_support, product_grid

__all__ = [
    "Measure",
    "GridMeasure",
    "Choices",
    "MeasureMismatch",
    "freeze",
    "enumerate",
    "enumerate_block",
    "enumerate_paths",
    "enumerate_traces",
    "compiled_paths",
    "compiled_programs",
    "check_compiled",
    "CompiledPathMismatch",
    "trace_key",
    "exact_prob",
    "rational",
    "Path",
    "NotEnumerableError",
    "Table",
    "enumerate_table",
    "finite_support",
    "element_support",
    "product_grid",
    "integrate",
    "LawResult",
    "assert_properly_weighted",
    "assert_unbiased_evidence",
    "assert_invariant",
    "assert_detailed_balance",
    "assert_unbiased_gradient",
    "assert_surgery_commutes",
    "properly_weighted",
    "unbiased_evidence",
    "invariant",
    "detailed_balance",
    "transition_matrix",
    "unbiased_gradient",
    "surgery_commutes",
    "laws",
    "oracles",
    "stats",
]
