"""Every docstring example of ``ppl``, ``inference`` and ``semantics`` runs (issue 13).

One test per module, so a failure names the module.  Examples run with ``doctest`` in the
module's namespace plus ``jax, jnp, np, ppl, dist, inference, mcmc, smc, vi, causal, semantics``
(examples are self-contained beyond these: they define their models and data), with
``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``.
Examples must be quick (the whole file well under a minute): tiny models, few steps.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("ppl", "inference", "semantics")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_names() -> list[str]:
    names = []
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        names.append(pkg)
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, prefix=pkg + ".")]
    return sorted(names)


def globs() -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import inference
    import ppl
    import semantics
    from inference import causal, mcmc, smc, vi
    from ppl import dist

    return dict(jax=jax, jnp=jnp, np=np, ppl=ppl, dist=dist, inference=inference, mcmc=mcmc, smc=smc, vi=vi,
                causal=causal, semantics=semantics)


@pytest.mark.parametrize("name", module_names())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name, globs={**vars(module), **globs()})
    tests = [t for t in tests if t.examples and (t.filename or "").endswith(".py")]
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    for t in sorted(tests, key=lambda t: t.lineno or 0):
        out: list[str] = []
        result = runner.run(t, out=out.append, clear_globs=True)
        if result.failed:
            report.append("".join(out))
    assert not report, f"{len(report)} docstring(s) of {name} fail:\n" + "\n".join(report)
