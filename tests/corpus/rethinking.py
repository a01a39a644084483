"""Statistical Rethinking (2nd ed.) ports to NumPyro (fehiepsi/rethinking-numpyro): m4.3
(Howell heights on weights), m8.5 (tulips, an interaction), m11.4 (chimpanzees, actor and
treatment effects with ``sample_shape``), m13.2 (reed frogs, varying intercepts with
``sample_shape``).  Data generated with the studies' sizes and rough values.  Ported: imports only.
"""

import jax.numpy as jnp  # noqa: F401
import numpy as np

import numpyro.distributions as dist  # unchanged: ppl's distributions are NumPyro's

import ppl as numpyro  # PORT: was `import numpyro`


def model_m4_3(weight, xbar, height=None):
    a = numpyro.sample("a", dist.Normal(178, 20))
    b = numpyro.sample("b", dist.LogNormal(0, 1))
    sigma = numpyro.sample("sigma", dist.Uniform(0, 50))
    mu = numpyro.deterministic("mu", a + b * (weight - xbar))
    numpyro.sample("height", dist.Normal(mu, sigma), obs=height)


def model_m8_5(water_cent, shade_cent, blooms_std=None):
    a = numpyro.sample("a", dist.Normal(0.5, 0.25))
    bw = numpyro.sample("bw", dist.Normal(0, 0.25))
    bs = numpyro.sample("bs", dist.Normal(0, 0.25))
    bws = numpyro.sample("bws", dist.Normal(0, 0.25))
    sigma = numpyro.sample("sigma", dist.Exponential(1))
    mu = a + bw * water_cent + bs * shade_cent + bws * water_cent * shade_cent
    numpyro.sample("blooms_std", dist.Normal(mu, sigma), obs=blooms_std)


def model_m11_4(actor, treatment, pulled_left=None):
    a = numpyro.sample("a", dist.Normal(0, 1.5), sample_shape=(7,))
    b = numpyro.sample("b", dist.Normal(0, 0.5), sample_shape=(4,))
    logit_p = a[actor] + b[treatment]
    numpyro.sample("pulled_left", dist.Binomial(logits=logit_p), obs=pulled_left)


def model_m13_2(tank, N, S=None):
    a_bar = numpyro.sample("a_bar", dist.Normal(0, 1.5))
    sigma = numpyro.sample("sigma", dist.Exponential(1))
    a = numpyro.sample("a", dist.Normal(a_bar, sigma), sample_shape=tank.shape)
    logit_p = a[tank]
    numpyro.sample("S", dist.Binomial(N, logits=logit_p), obs=S)


def data_m4_3():
    rng = np.random.default_rng(43)
    weight = rng.normal(45.0, 6.5, size=120)
    height = 154.6 + 0.9 * (weight - weight.mean()) + rng.normal(0.0, 5.1, size=120)
    return (weight.astype(np.float32), np.float32(weight.mean())), {"height": height.astype(np.float32)}


def data_m8_5():
    rng = np.random.default_rng(85)
    water = np.repeat(np.arange(-1.0, 2.0), 9)
    shade = np.tile(np.repeat(np.arange(-1.0, 2.0), 3), 3)
    blooms = 0.36 + 0.2 * water - 0.11 * shade - 0.14 * water * shade + rng.normal(0.0, 0.13, size=27)
    f = np.float32
    return (water.astype(f), shade.astype(f)), {"blooms_std": (blooms / blooms.max()).astype(f)}


def data_m11_4():
    rng = np.random.default_rng(114)
    actor = np.repeat(np.arange(7), 24)
    treatment = np.tile(np.arange(4), 42)
    a = np.array([-0.4, 3.0, -0.7, -0.7, -0.4, 0.5, 1.9])
    b = np.array([-0.1, 0.4, -0.5, 0.3])
    p = 1.0 / (1.0 + np.exp(-(a[actor] + b[treatment])))
    pulled = (rng.uniform(size=p.shape) < p).astype(np.float32)
    return (actor, treatment), {"pulled_left": pulled}


def data_m13_2():
    rng = np.random.default_rng(132)
    N = np.repeat(np.array([10.0, 25.0, 35.0]), 16).astype(np.float32)
    tank = np.arange(48)
    a = rng.normal(1.3, 1.6, size=48)
    S = rng.binomial(N.astype(int), 1.0 / (1.0 + np.exp(-a))).astype(np.float32)
    return (tank, N), {"S": S}


CASES = {
    "rethinking_m4_3_howell": (model_m4_3, data_m4_3),
    "rethinking_m8_5_tulips": (model_m8_5, data_m8_5),
    "rethinking_m11_4_chimpanzees": (model_m11_4, data_m11_4),
    "rethinking_m13_2_reedfrogs": (model_m13_2, data_m13_2),
}
