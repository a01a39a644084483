"""The MCMC example scripts run to completion (each checks its own answer against an exact one,
within 6 Monte Carlo standard errors: a fixed threshold declared at its level, ``mcmc/examples_mcse``
in tests/_budget.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from _budget import BUDGET

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("script", ["mcmc_gibbs_mixture.py", "mcmc_custom_proposal.py"])
def test_example_runs(script: str) -> None:
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (
        f"examples/{script} exited with {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    assert "exact" in proc.stdout


@pytest.mark.parametrize("script", ["mcmc_gibbs_mixture.py", "mcmc_custom_proposal.py"])
def test_example_threshold_is_the_declared_one(script: str) -> None:
    """The scripts' |estimate − exact| < 6 MCSE is the threshold declared in the budget."""
    assert stats.norm.isf(BUDGET.level("mcmc/examples_mcse") / 2) == pytest.approx(6.0)
    assert "< 6 * mcse" in (ROOT / "examples" / script).read_text()
