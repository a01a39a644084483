"""Inference-time search with SMC: steer a sequence model by a learned, approximate score.

A small "language model" (a bigram chain over V tokens) proposes sequences of length T.  We want
sequences that a reward likes, but the reward is only available through a *learned* score: a
table s_θ(prev, next) fitted by a few hundred optax steps to noisy ratings of single transitions.
Decoding targets the tilted model

    π(x) ∝ p_LM(x) · exp(λ Σ_t s_θ(x_{t-1}, x_t)),

written as an ordinary ``ppl`` step model (a ``Categorical`` draw from the LM and a ``factor`` with
the learned score), so the particle filter *is* the search: particles are partial sequences,
extended by the LM, reweighted by the score and resampled on it.

The true reward has a delayed payoff: moving to token 2 costs a little, but 2 → 5 pays a lot.
Greedy decoding (best next token under log p_LM + λ s_θ) is myopic and never pays the toll; beam
search and SMC look further.  We print the tilted log-density and the *true* reward of what each
finds, and the mean true reward of SMC's posterior samples against samples from the LM alone.

Run: ``python examples/smc_inference_time_search.py`` (about 10 s on a laptop CPU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl
from inference import smc
from ppl import dist

V, T, LAM = 6, 16, 1.0

# ---------------------------------------------------------------------------------------------
# the base sequence model: a fixed bigram chain (token 0 starts every sequence)

_rng = np.random.default_rng(0)
LM = jnp.asarray(_rng.dirichlet(np.full(V, 0.7), size=V))           # LM[prev] = p(next | prev)

# the true reward of a transition (unknown to the decoder): 2 -> 5 pays, entering 2 costs
TRUE = np.zeros((V, V))
TRUE[:, 2] -= 0.5
TRUE[2, 5] += 3.0
TRUE[:, 0] -= 0.3


def true_reward(seq):
    """Σ_t r(x_{t-1}, x_t) over a sequence starting after token 0."""
    prev = np.concatenate([[0], np.asarray(seq)[:-1]])
    return float(TRUE[prev, np.asarray(seq)].sum())


# ---------------------------------------------------------------------------------------------
# the learned score: a table fitted to noisy ratings of random transitions


def fit_score(key, num_ratings=400, steps=300):
    k1, k2, k3 = jax.random.split(key, 3)
    prev = jax.random.randint(k1, (num_ratings,), 0, V)
    nxt = jax.random.randint(k2, (num_ratings,), 0, V)
    ratings = jnp.asarray(TRUE)[prev, nxt] + 0.5 * jax.random.normal(k3, (num_ratings,))

    def loss(theta):
        return jnp.mean((theta[prev, nxt] - ratings) ** 2) + 1e-3 * jnp.sum(theta**2)

    opt = optax.adam(0.1)

    def update(c, _):
        theta, st = c
        g = jax.grad(loss)(theta)
        u, st = opt.update(g, st)
        return (optax.apply_updates(theta, u), st), None

    theta0 = jnp.zeros((V, V))
    (theta, _), _ = jax.lax.scan(update, (theta0, opt.init(theta0)), None, length=steps)
    return theta


# ---------------------------------------------------------------------------------------------
# decoders


def make_step(score):
    def step(prev, _):
        tok = ppl.sample("tok", dist.Categorical(probs=LM[prev]))
        ppl.factor("score", LAM * score[prev, tok])
        return tok, tok

    return step


def tilted_log_density(seq, score):
    seq = jnp.asarray(seq)
    prev = jnp.concatenate([jnp.zeros((1,), seq.dtype), seq[:-1]])
    return float(jnp.sum(jnp.log(LM[prev, seq]) + LAM * score[prev, seq]))


def greedy(score):
    def body(prev, _):
        tok = jnp.argmax(jnp.log(LM[prev]) + LAM * score[prev])
        return tok, tok

    return jax.lax.scan(body, jnp.asarray(0), None, length=T)[1]


def beam(score, width=4):
    logits = jnp.log(LM) + LAM * score                                  # (prev, next)

    def body(c, _):
        seqs, total, last = c                                          # (B, T), (B,), (B,)
        cand = total[:, None] + logits[last]                           # (B, V)
        top, idx = jax.lax.top_k(cand.reshape(-1), width)
        b, tok = idx // V, idx % V
        t = jnp.sum(seqs[0] >= 0)
        seqs = seqs[b].at[:, t].set(tok)
        return (seqs, top, tok), None

    seqs0 = jnp.full((width, T), -1)
    total0 = jnp.where(jnp.arange(width) == 0, 0.0, -jnp.inf)
    (seqs, total, _), _ = jax.lax.scan(body, (seqs0, total0, jnp.zeros((width,), jnp.int32)), None, length=T)
    return seqs[jnp.argmax(total)]


def smc_search(key, score, num_particles=256):
    res = smc.particle_filter(key, make_step(score), jnp.asarray(0), jnp.zeros((T,)), num_particles,
                              ess_threshold=0.5, record=("paths",), name="lm")
    seqs = res.paths["lm/tok"]                                          # (N, T)
    return seqs, res.particles.log_weights


def main() -> dict:
    score = fit_score(jax.random.key(0))
    print("learned score vs truth: max |s - r| =", round(float(jnp.max(jnp.abs(score - TRUE))), 2))
    g = np.asarray(jax.jit(greedy)(score))
    b = np.asarray(jax.jit(beam)(score))
    seqs, lw = jax.jit(smc_search)(jax.random.key(1), score)
    seqs, lw = np.asarray(seqs), np.asarray(lw)
    dens = np.array([tilted_log_density(s, score) for s in seqs])
    best = seqs[np.argmax(dens)]                                        # the best particle found
    W = np.exp(lw - lw.max())
    W /= W.sum()
    smc_mean = float(sum(W[i] * true_reward(seqs[i]) for i in range(len(seqs))))
    prior = smc.particle_filter(jax.random.key(2), make_step(jnp.zeros((V, V))), jnp.asarray(0), jnp.zeros((T,)),
                                num_particles=256, record=("paths",), name="lm")
    lm_mean = float(np.mean([true_reward(s) for s in np.asarray(prior.paths["lm/tok"])]))

    rows = {"greedy": g, "beam (width 4)": b, "SMC best of 256": best}
    print(f"{'decoder':<18} {'tilted log p':>12} {'true reward':>11}  sequence")
    for name, s in rows.items():
        print(f"{name:<18} {tilted_log_density(s, score):12.2f} {true_reward(s):11.2f}  {' '.join(map(str, s))}")
    print(f"mean true reward: SMC posterior {smc_mean:.2f} vs the LM alone {lm_mean:.2f}")
    return {name: (tilted_log_density(s, score), true_reward(s)) for name, s in rows.items()} | {
        "smc_mean": smc_mean, "lm_mean": lm_mean}


if __name__ == "__main__":
    main()
