"""The SMC examples run end to end (in process, so their programs compile once).

``examples/smc_inference_time_search.py`` is run by the SMC tutorial (docs/tutorials/smc.md), which
the docs build executes (``tests/test_docs.py::test_mkdocs_build_strict``): its block asserts what
a test here used to check on a second run of the same script (the search scores at least greedy's
tilted log-density and finds a higher true reward, and the SMC posterior's mean reward beats the
language model's), so the script runs once per suite.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# end-to-end runs of the examples: slow, and they take no statistical decision (smoke runs
# with fixed seeds; the SMC beats greedy under the example's own fixed seed)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stochastic_volatility_example_runs(capsys):
    _load("smc_stochastic_volatility").main(num_samples=40)  # fewer PMMH draws: a smoke run
    printed = capsys.readouterr().out
    assert "PMMH" in printed and "log Ẑ" in printed
