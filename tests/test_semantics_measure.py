"""Measure: construction, integrals, transformations, distances and the equality check."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from semantics import Choices, Measure, MeasureMismatch, freeze


def test_freeze_and_choices_are_hashable_and_exact():
    assert freeze(np.array([[1, 0], [2, 3]])) == ((1, 0), (2, 3))
    assert freeze(np.int64(3)) == 3 and isinstance(freeze(np.int64(3)), int)
    a = Choices({"z": np.int64(1), "y": np.array([0.5, 1.0])})
    b = Choices({"y": (0.5, 1.0), "z": 1})
    assert a == b and hash(a) == hash(b)
    assert a.restrict(["z"]) == Choices({"z": 1})
    assert a.drop(["z"]) == Choices({"y": (0.5, 1.0)})


def test_mass_normalize_expectation_exact():
    m = Measure.from_weights({0: Fraction(1, 8), 1: Fraction(3, 8), 2: Fraction(1, 4)})
    assert m.exact_total_mass() == Fraction(3, 4)
    assert math.isclose(m.total_mass(), 0.75, rel_tol=1e-15)
    p = m.normalize()
    assert p.exact == {0: Fraction(1, 6), 1: Fraction(1, 2), 2: Fraction(1, 3)}
    assert math.isclose(m.expectation(lambda x: x), (3 / 8 + 2 / 4) / 0.75, rel_tol=1e-15)
    assert m.exact_integral(lambda x: x) == Fraction(7, 8)
    assert math.isclose(m.integral(lambda x: 1.0), 0.75, rel_tol=1e-15)


def test_zero_weights_are_dropped_and_pairs_sum():
    m = Measure.from_pairs([("a", math.log(0.25), Fraction(1, 4)), ("a", math.log(0.25), Fraction(1, 4)), ("b", -math.inf, Fraction(0))])
    assert m.atoms == ["a"]
    assert m.exact == {"a": Fraction(1, 2)}
    # a pair without an exact weight drops exactness for the whole measure
    assert Measure.from_pairs([("a", 0.0, Fraction(1)), ("b", 0.0, None)]).exact is None


def test_marginal_pushforward_condition_reweight():
    m = Measure.from_weights(
        {
            Choices({"a": 0, "b": 0}): Fraction(1, 10),
            Choices({"a": 0, "b": 1}): Fraction(2, 10),
            Choices({"a": 1, "b": 0}): Fraction(3, 10),
            Choices({"a": 1, "b": 1}): Fraction(4, 10),
        }
    )
    ma = m.marginal("a")
    assert ma.exact == {Choices({"a": 0}): Fraction(3, 10), Choices({"a": 1}): Fraction(7, 10)}
    s = m.pushforward(lambda c: c["a"] + c["b"])
    assert s.exact == {0: Fraction(1, 10), 1: Fraction(1, 2), 2: Fraction(4, 10)}
    c = m.condition(lambda c: c["b"] == 1)
    assert c.exact_total_mass() == Fraction(6, 10)
    r = m.reweight(lambda c: math.log(2.0) * c["a"], lambda c: 2 ** c["a"])
    assert r.exact_total_mass() == Fraction(3, 10) + Fraction(14, 10)
    assert math.isclose(r.total_mass(), 1.7, rel_tol=1e-14)


def test_distances():
    p = Measure.from_weights({0: 0.5, 1: 0.5})
    q = Measure.from_weights({0: 0.25, 1: 0.75})
    assert math.isclose(p.total_variation(q), 0.25, rel_tol=1e-15)
    assert math.isclose(p.kl(q), 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75), rel_tol=1e-14)
    assert p.kl(Measure.dirac(0)) == math.inf
    assert p.total_variation(p.scale(math.log(3.0))) < 1e-15  # normalised by default
    assert math.isclose(p.total_variation(p.scale(math.log(3.0)), normalized=False), 1.0, rel_tol=1e-14)


def test_equality_with_tolerance_and_readable_diff():
    p = Measure.from_weights({"x": 0.5, "y": 0.5})
    assert p.equals(Measure.from_weights({"x": 0.5 + 1e-14, "y": 0.5}))
    assert not p.equals(Measure.from_weights({"x": 0.5 + 1e-9, "y": 0.5}))
    assert not p.equals(Measure.from_weights({"x": 0.5}))
    with pytest.raises(MeasureMismatch) as err:
        p.assert_equal(Measure.from_weights({"x": 0.5, "z": 0.5}), what="posteriors")
    text = str(err.value)
    assert "posteriors differ" in text and "'z'" in text and "'y'" in text
    e = Measure.from_weights({0: Fraction(1, 3)})
    e.assert_equal(Measure.from_weights({0: Fraction(1, 3)}), exact=True)
    with pytest.raises(MeasureMismatch):
        e.assert_equal(Measure.from_weights({0: Fraction(333333, 1000000)}), exact=True)
    with pytest.raises(ValueError, match="exact"):
        p.assert_equal(p, exact=True)


def test_add_and_dirac():
    m = Measure.dirac("a") + Measure.dirac("a") + Measure.dirac("b")
    assert m.exact == {"a": 2, "b": 1}
    assert math.isclose(m.prob("a"), 2 / 3, rel_tol=1e-15)
    assert "total_mass=3" in repr(m)
