"""One error base (issue 13): every exception the packages raise is a ``ppl.PPLError``.

Two checks over the three packages: no ``raise ValueError(``/``TypeError(``/``RuntimeError(``/
``Exception(`` in their source (use ``ppl.errors.ArgumentError``, ``ArgumentTypeError``,
``ModelError``, ...), and every exception class they define derives from ``ppl.PPLError``.  Each
failure lists every offending place, so the list is the work left."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import jax
import pytest

import ppl
from ppl.errors import ArgumentError, ArgumentKeyError, ArgumentTypeError, CheckFailed, PPLError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ppl", "inference", "semantics")
BUILTIN_RAISE = re.compile(r"\braise\s+(ValueError|TypeError|RuntimeError|Exception)\s*\(")


def test_no_builtin_exception_is_raised_in_the_packages():
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if BUILTIN_RAISE.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, "raise a ppl.PPLError subclass instead (ppl.errors):\n" + "\n".join(found)


def _modules():
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        yield mod
        for info in pkgutil.walk_packages(mod.__path__, prefix=pkg + "."):
            yield importlib.import_module(info.name)


def test_every_exception_class_of_the_packages_is_a_ppl_error():
    bad = set()
    for mod in _modules():
        for name, obj in vars(mod).items():
            # private classes (``_NeedsLoop``) are control-flow signals caught inside the package
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == mod.__name__
                    and not name.startswith("_") and not issubclass(obj, PPLError)):
                bad.add(f"{mod.__name__}.{name} (bases: {', '.join(b.__name__ for b in obj.__bases__)})")
    assert not bad, "derive from ppl.PPLError (ppl.errors):\n" + "\n".join(sorted(bad))


def test_argument_errors_keep_their_builtin_meaning():
    """Existing ``except ValueError/TypeError/KeyError/AssertionError`` code keeps working."""
    assert issubclass(ArgumentError, ValueError) and issubclass(ArgumentTypeError, TypeError)
    assert issubclass(ArgumentKeyError, KeyError) and issubclass(ArgumentKeyError, ArgumentError)
    assert issubclass(CheckFailed, AssertionError)
    assert all(issubclass(e, ppl.PPLError) for e in (ArgumentError, ArgumentTypeError, ArgumentKeyError, CheckFailed))
    assert str(ppl.ArgumentKeyError("plain 'text'")) == "plain 'text'"  # not quoted like KeyError


def test_owned_raises_name_the_argument():
    from inference import smc
    from semantics.measure import Measure
    from semantics.stats import Budget, StatResult

    b = Budget()
    with pytest.raises(ppl.ArgumentKeyError, match="'nope' is not declared"):
        b.level("nope")
    with pytest.raises(ppl.ArgumentError, match="count must be ≥ 1, got 0"):
        b.declare("d", count=0)
    with pytest.raises(ppl.CheckFailed, match="t: differs"):
        StatResult("t", False, 0.0, 0.0, 0.01, "differs").assert_()
    with pytest.raises(ppl.ArgumentError, match=r"log_weights must be a vector.*shape \(2, 2\)"):
        smc.Multinomial(jax.numpy.zeros((2, 2)))
    with pytest.raises(ppl.ArgumentError, match="unknown resampling scheme 'bogus'"):
        smc.resampling.scheme("bogus")
    with pytest.raises(ppl.ArgumentError, match="record= got unknown entries"):
        smc.particle_filter(jax.random.key(0), lambda c, x: (c, None), 0.0, jax.numpy.zeros(2), 4, record="nope")
    with pytest.raises(ppl.ArgumentError, match="num_particles must be >= 1, got 0"):
        smc.particle_filter(jax.random.key(0), lambda c, x: (c, None), 0.0, jax.numpy.zeros(2), 0)
    with pytest.raises(ppl.ArgumentError, match=r"leading time axis.*shape \(\)"):
        smc.particle_filter(jax.random.key(0), lambda c, x: (c, None), 0.0, jax.numpy.zeros(()), 4)
    with pytest.raises(ppl.ArgumentError, match="states must have at least one array leaf"):
        smc.Particles.from_states({})
    with pytest.raises(ppl.ArgumentError, match="positive finite total mass"):
        Measure.from_pairs([]).normalize()
