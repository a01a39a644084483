"""A variational autoencoder on 8×8 digits: amortised VI with equinox networks.

The model p(x, z) = N(z; 0, I) Π_pixels Bernoulli(x | decoder(z)) and the guide
q(z | x) = N(encoder(x)) are ordinary ppl models; ``vi.network`` registers each network's arrays
as parameters, so ``vi.fit`` trains the encoder and the decoder together by maximising the ELBO.
Afterwards the IWAE bound (K = 50) estimates log p(x) on held-out images; it is above the ELBO,
as it must be.  Data: scikit-learn's bundled digits when scikit-learn is installed, generated
binary blobs otherwise.

Run with ``.venv/bin/python examples/vi_vae.py [num_steps]`` (about 10 s on a laptop CPU).
"""

from __future__ import annotations

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl
from inference import vi
from ppl import dist

ZDIM, HIDDEN = 4, 64


def load_digits() -> np.ndarray:
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        rng = np.random.default_rng(0)
        centers = rng.uniform(size=(10, 64)) > 0.6
        x = centers[rng.integers(0, 10, 1797)] ^ (rng.uniform(size=(1797, 64)) < 0.05)
        return x.astype(np.float32)
    return (sk_digits().data > 8).astype(np.float32)


k_enc, k_dec = jax.random.split(jax.random.key(0))
ENCODER = eqx.nn.MLP(64, 2 * ZDIM, HIDDEN, 1, activation=jax.nn.relu, key=k_enc)
DECODER = eqx.nn.MLP(ZDIM, 64, HIDDEN, 1, activation=jax.nn.relu, key=k_dec)


@ppl.model
def vae(x):
    decoder = vi.network("decoder", DECODER)
    with ppl.plate("images", x.shape[0]):
        z = ppl.sample("z", dist.Normal(jnp.zeros(ZDIM), 1.0).to_event(1))
        ppl.sample("x", dist.Bernoulli(logits=jax.vmap(decoder)(z)).to_event(1), obs=x)


@ppl.model
def encoder_guide(x):
    out = jax.vmap(vi.network("encoder", ENCODER))(x)
    with ppl.plate("images", x.shape[0]):
        ppl.sample("z", dist.Normal(out[:, :ZDIM], jnp.exp(out[:, ZDIM:])).to_event(1))


def main(num_steps: int = 2000) -> None:
    x = jnp.asarray(load_digits())
    train, test = x[:1500], x[1500:]
    result = vi.fit(jax.random.key(1), vi.elbo(vae, encoder_guide), optax.adam(3e-3), num_steps=num_steps, data=train)
    n = train.shape[0]
    print(f"ELBO per image: step 1 {result.history[0] / n:.2f}, last 100 steps {np.mean(result.history[-100:]) / n:.2f}")
    assert np.mean(result.history[-100:]) > result.history[0], "the ELBO did not improve"

    # held out: the ELBO and the tighter IWAE bound with the trained networks
    u = result.uparams
    m = test.shape[0]
    elbo = float(vi.elbo(vae, encoder_guide, num_particles=50).estimate(jax.random.key(2), u, test)) / m
    iwae = float(vi.iwae(vae, encoder_guide, num_particles=50).estimate(jax.random.key(3), u, test)) / m
    print(f"held-out per image: ELBO {elbo:.2f} <= IWAE-50 {iwae:.2f} (an estimate of log p(x))")
    assert iwae > elbo

    # the trained encoder as a plain equinox module
    enc = vi.network_from_params(result.params, "encoder", ENCODER)
    codes = jax.vmap(enc)(test)[:, :ZDIM]
    print(f"posterior means of {m} held-out images: shape {codes.shape}, spread {float(jnp.std(codes)):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
