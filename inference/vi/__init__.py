"""Variational inference (to come).

Planned: objectives written as programs (ELBO, IWAE, wake-sleep, user-defined), per-site
gradient estimators (reparameterisation, score function with baselines, enumeration,
measure-valued), hand-written and automatic guides, and ``fit`` with optax. Every estimator
is an unbiased estimate of its objective's gradient.
"""
