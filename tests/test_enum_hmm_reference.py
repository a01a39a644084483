"""Issue 14: NUTS on posteriordb's ``hmm_example`` *as written* — a discrete state per time step
in ``ppl.scan``, summed out by ``ppl.enum`` — against a reference posterior.

posteriordb has the model and data but no reference draws; ``benchmarks/hmm_example_reference.py``
makes one independently of ppl (NumPyro's NUTS on the hand-marginalised forward algorithm, 4 ×
5000 draws) in ``tests/enum_reference/hmm_example.json``.  Decision per parameter (theta's 4
entries, mu's 2), each at level 1e-9 (``enum/hmm_example_means`` in tests/_budget.py):
|Δmean| / sqrt(sd²/ESS_bulk + mcse_ref²) < z.  Planted twin: the same scan with the transition
forgotten (each state drawn from a uniform, theta unused) fails the same criterion.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as st

import ppl
from _budget import BUDGET
from _data import data_path
from inference import mcmc
from ppl import dist

pytestmark = [pytest.mark.statistical, pytest.mark.slow]

Z_MEAN = st.norm.isf(BUDGET.level("enum/hmm_example_means") / 2)
REF = json.loads((Path(__file__).parent / "enum_reference" / "hmm_example.json").read_text())["params"]
D = json.loads(data_path("posteriordb", "hmm_example-hmm_example", "data.json").read_text())
K, Y = int(D["K"]), jnp.asarray(D["y"], dtype=float)


def make(transition=True):
    @ppl.model
    def hmm_scan(K, y):
        theta = ppl.sample("theta", dist.Dirichlet(jnp.ones(K)).expand([K]).to_event(1))
        # posteriordb's hmm_example.stan: positive_ordered mu with normal(3, 1), normal(10, 1) terms
        mu = ppl.sample("mu", dist.ImproperUniform(dist.constraints.positive_ordered_vector, (), (K,)))
        ppl.factor("mu_prior", dist.Normal(jnp.array([3.0, 10.0]), 1.0).log_prob(mu).sum())

        def step(z_prev, y_t):
            probs = theta[z_prev] if transition else jnp.ones(K) / K
            z = ppl.sample("z", dist.Categorical(probs=probs))
            ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y_t)
            return z, None

        z0 = ppl.sample("z0", dist.Categorical(probs=jnp.ones(K) / K))  # Stan's uniform first state
        ppl.sample("y0", dist.Normal(mu[z0], 1.0), obs=y[0])
        ppl.scan(step, z0, xs=y[1:], name="hmm")

    return hmm_scan


def z_scores(model) -> dict:
    run = mcmc.sample(jax.random.key(14), mcmc.NUTS(), model, K, Y, num_warmup=300, num_samples=400,
                      num_chains=2, progress=False)
    summ = run.summary()
    out = {}
    for name, ref in REF.items():
        site, idx = name.split("[")[0], tuple(json.loads(name[len(name.split("[")[0]):]))
        s = {k: np.asarray(v)[idx] for k, v in summ[site].items() if np.ndim(v) >= len(idx)}
        out[name] = float((s["mean"] - ref["mean"]) / np.sqrt(s["sd"] ** 2 / s["ess_bulk"] + ref["mcse"] ** 2))
    return out


def test_nuts_on_the_scan_hmm_reproduces_the_reference_means():
    z = z_scores(make())
    assert all(abs(v) < Z_MEAN for v in z.values()), z


def test_planted_twin_a_scan_without_its_transition_is_caught():
    z = z_scores(make(transition=False))
    assert any(abs(v) >= Z_MEAN for v in z.values()), z
