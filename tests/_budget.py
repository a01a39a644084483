"""The suite's false-alarm budget: every statistical decision the tests take, declared once.

A statistical test reads its level with ``BUDGET.level(name)``; an undeclared name is an error,
so no decision escapes this registry.  Each declaration says how many times the decision is
taken (one per parameter, per time step, per case...) and at what level: the budgeted share
(``declare(name, count)``), an explicit level (``alpha=``), or the real level of a fixed
threshold (``z=4`` for ``|z| < 4``).  ``test_semantics_stats.py`` checks that the union bound
over all of them stays under ``SUITE_FALSE_ALARM`` and that every declared name is used; the
total is printed at the end of every run (``conftest.py``).

Planted-bug twins are not declared: a twin that passes is a missed bug (a power failure), not a
false alarm.  Keep each family's declarations in its own section.
"""

from __future__ import annotations

from semantics.stats import SUITE_FALSE_ALARM, Budget

BUDGET = Budget(total=SUITE_FALSE_ALARM)
declare = BUDGET.declare


# ---------------------------------------------------------------------------------------------
# semantics (tests/test_semantics_*.py)

declare("semantics/stats_helpers", 4, note="check_mean, check_frequencies, two SBC runs on exact samplers")


# ---------------------------------------------------------------------------------------------
# mcmc (tests/test_mcmc_*.py)

declare("mcmc/diagnostics_ar1_ess", 2, z=6.0,
        note="test_mcmc_diagnostics: bulk and tail ESS of AR(1) chains against their closed forms; "
             "|ratio - 1| < 6 sd + bias, sd measured over 200 seeds")



# ---------------------------------------------------------------------------------------------
# smc (tests/test_smc_*.py)
# The t-tests of Ẑ/Z run at 1/4 of their declared level (SKEW_MARGIN in test_smc_stats.py): the
# declared level bounds the real one for the skewness observed (Edgeworth factor < 2).

declare("smc/lgssm_evidence", 4, note="E[Ẑ/Z] = 1 on a small linear Gaussian model, one per resampling scheme (t-test, N = 128, 1000 runs)")
declare("smc/nile_evidence", 1, note="E[Ẑ/Z] = 1 on the Nile local-level model (t-test, N = 256, 400 runs)")
declare("smc/nile_filter_means", 100, alpha=1e-10, note="filtering mean = Kalman mean at each of the 100 Nile time steps (t-test over 30 runs)")
declare("smc/tempered_fixed", 2, note="fixed-schedule tempered SMC: E[Ẑ/Z] = 1 and E[(Ẑ/Z) Σ W mu] = E[mu | y] (t-tests, 400 runs)")
declare("smc/tempered_adaptive", 3, note="adaptive HMC tempered SMC: E[Ẑ/Z] = 1, posterior mean and variance (t-tests over 60 runs)")
declare("smc/resampler_freq", 4, note="each scheme's jax.random sampler against its exact log_prob (χ², rare outcomes pooled, 20000 draws)")
declare("smc/shared_key_draws", 2, note="one random call per site: E[e] = 0 and E[e²] = 1 (z-tests, known sd)")
declare("smc/resample_move_evidence", 2, note="resample-move on a conjugate model: E[Ẑ/Z] = 1 and E[(Ẑ/Z) Σ W mu] = E[mu | y] (t-tests, 400 runs)")
declare("smc/sharded_evidence", 1, note="E[Ẑ/Z] = 1 with the particles split over 8 devices (t-test, 400 runs)")



# ---------------------------------------------------------------------------------------------
# vi (tests/test_vi_*.py)



# ---------------------------------------------------------------------------------------------
# causal (tests/test_causal_*.py)



# ---------------------------------------------------------------------------------------------
# ppl, docs and examples (tests/test_ppl_*.py, test_docs.py, ...)



# ---------------------------------------------------------------------------------------------
