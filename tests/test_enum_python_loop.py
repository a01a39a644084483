"""A chain of discrete states written as a Python loop (NumPyro's `for t in markov(range(T))`
habit, without `markov`): each state is summed out in parallel on a dimension of its own.

Two faults found by porting NumPyro's ``hmm_enum`` model 1 as written (lead, session I):
the element-by-element check (``_check_elementwise``) broadcast each relabelled state over all
its predecessors' enumeration dimensions, so its check alone needed K^T elements and refused a
chain of 15 states with a size error that the enumeration itself never needed; and past ~30
states numpy's 32-dimension limit failed deep inside (a RuntimeError from ``np.broadcast``).
Now the check keeps each relabelled value constant along every enumeration dimension, and a
model needing more than ``ppl.enum.MAX_DIMS`` dimensions is refused with an error naming the
site and pointing to ``ppl.scan``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.errors import ModelError


def hmm_loop(sequences, hidden_dim=3):
    """NumPyro's examples/hmm_enum.py model_1, with the time loop written plainly."""
    num_sequences, max_length, data_dim = sequences.shape
    with ppl.plate("states", hidden_dim):
        probs_x = ppl.sample("probs_x", dist.Dirichlet(0.9 * jnp.eye(hidden_dim) + 0.1))
        probs_y = ppl.sample("probs_y", dist.Beta(0.1, 0.9).expand([data_dim]).to_event(1))
    tones_plate = ppl.plate("tones", data_dim, dim=-1)
    with ppl.plate("sequences", num_sequences, dim=-2):
        x = 0
        for t in range(max_length):
            x = ppl.sample(f"x_{t}", dist.Categorical(probs_x[x]))
            with tones_plate:
                ppl.sample(f"y_{t}", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=sequences[:, t])


def forward(px, py, seq):
    """The hand-written forward algorithm, independently of ppl (float64)."""
    px, py, seq = (np.asarray(a, np.float64) for a in (px, py, seq))
    lpx, emit = np.log(px), lambda t: np.sum(np.where(seq[:, t][:, None, :] == 1, np.log(py), np.log1p(-py)), -1)
    la = lpx[0][None] + emit(0)
    for t in range(1, seq.shape[1]):
        m = la[:, :, None] + lpx[None]
        top = m.max(1)
        la = top + np.log(np.exp(m - top[:, None]).sum(1)) + emit(t)
    top = la.max(-1)
    return float(np.sum(top + np.log(np.exp(la - top[:, None]).sum(-1))))


def test_a_python_loop_chain_is_summed_out_exactly_without_the_checks_k_to_the_t():
    T, N, D = 6, 1, 4
    seq = jnp.asarray(np.random.default_rng(0).integers(0, 2, size=(N, T, D)), jnp.float64)
    px = jax.random.dirichlet(jax.random.key(1), jnp.ones(3), (3,))
    py = jax.random.uniform(jax.random.key(2), (3, D), minval=0.1, maxval=0.9)
    # before the fix the check alone needed 3^6 = 729 elements for x_5: refused here.
    # Jitted, as a sampler calls it (eagerly each op of each step's shapes compiles on its own);
    # the element-by-element check still runs, at concrete stand-ins
    got = jax.jit(lambda px, py: ppl.marginal_log_density(hmm_loop, {"probs_x": px, "probs_y": py}, seq,
                                                          max_elements=300))(px, py)
    prior = float(dist.Dirichlet(0.9 * jnp.eye(3) + 0.1).log_prob(px).sum() + dist.Beta(0.1, 0.9).log_prob(py).sum())
    assert abs(float(got) - (forward(px, py, seq) + prior)) < 1e-10


def test_a_chain_too_long_for_parallel_dims_is_refused_naming_the_site_and_ppl_scan():
    seq = jnp.zeros((2, ppl.enum.MAX_DIMS + 5, 4))
    with pytest.raises(ModelError) as e:
        ppl.marginal_log_density(hmm_loop, {"probs_x": jnp.full((3, 3), 1 / 3), "probs_y": jnp.full((3, 4), 0.5)}, seq)
    msg = str(e.value)
    assert "ppl.scan" in msg and "Python loop" in msg and f"'x_{ppl.enum.MAX_DIMS - 2}'" in msg, msg
