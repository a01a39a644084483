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



# ---------------------------------------------------------------------------------------------
# smc (tests/test_smc_*.py)



# ---------------------------------------------------------------------------------------------
# vi (tests/test_vi_*.py)

declare("vi/gaussian_estimators", 22, note="test_vi_gaussian: t-test per gradient component, 3 Normal-Normal cases x 2 + 4 mixed cases x 4")
declare("vi/gaussian_elbo_value", 1, note="test_vi_gaussian: the ELBO estimate's mean against its closed form")


# ---------------------------------------------------------------------------------------------
# causal (tests/test_causal_*.py)

declare("causal/continuous_do_mean", 1, note="test_causal_surgery: mean of y | do(x = 3) from the sampler, z-test with known sd")
declare("causal/bayes_effect_covers_truth", 1, note="test_causal_bayes: posterior mean of the effect within z posterior sd of the truth")
declare("causal/bayes_estimate_covers_truth", 1, note="test_causal_identify: Bayesian front-door estimate within z posterior sd of the truth")


# ---------------------------------------------------------------------------------------------
# ppl, docs and examples (tests/test_ppl_*.py, test_docs.py, ...)



# ---------------------------------------------------------------------------------------------
