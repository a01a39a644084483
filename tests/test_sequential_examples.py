"""The sequential examples (issue 20) run with ``--quick`` and save their plot (each checks its
own answer: the BLR example that the exact path equals the batch posterior and the NUTS path's KL
is small; the BNN example prints its forgetting)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("script, expect", [("sequential_blr.py", "exact path"), ("sequential_bnn.py", "forgetting of task 1")])
def test_sequential_example_runs(script, expect, tmp_path) -> None:
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = tmp_path / "plot.png"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--quick", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"examples/{script} failed\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert expect in proc.stdout and out.stat().st_size > 1000
