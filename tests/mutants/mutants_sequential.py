"""Planted bugs in inference/sequential/ (issue 20): the prior ignored, the Jacobian dropped, the
EM responsibilities without the mixing weights."""

from catalogue import Mutant

SQ = "tests/test_sequential.py"

MUTANTS = [
    Mutant(
        id="sequential/prior-ignored-last-task",
        file="inference/sequential/driver.py",
        find="                m_t, extra = prior_as_argument(model, structure), {PRIOR_KEYWORD: arrays}",
        replace=("                m_t, extra = (model, {}) if t == len(batches) - 1 else "
                 "(prior_as_argument(model, structure), {PRIOR_KEYWORD: arrays})"),
        tests=(f"{SQ}::test_exact_normal_normal_equals_batch", f"{SQ}::test_exact_blr_equals_batch",
               f"{SQ}::test_exact_beta_bernoulli_equals_batch"),
        description="The last task's inference runs on the original model: the fitted prior of the earlier tasks is ignored there.",
        area="law",
    ),
    Mutant(
        id="sequential/jacobian-dropped",
        file="inference/sequential/prior.py",
        find="        return dist.TransformedDistribution(base, [ReshapeTransform(s.ushape, (s.size,)), s.transform])",
        replace=("        return type('NoJacobian', (dist.TransformedDistribution,), {'log_prob': lambda self, v: "
                 "self.base_dist.log_prob(jnp.reshape(s.transform.inv(v), v.shape[:v.ndim - len(s.shape)] + (s.size,)))})"
                 "(base, [ReshapeTransform(s.ushape, (s.size,)), s.transform])"),
        tests=(f"{SQ}::test_prior_log_density_is_change_of_variables",),
        description="A site of the prior from draws scores log q(T⁻¹x) without the − log|det J_T| of the change of variables.",
        area="estimator",
    ),
    Mutant(
        id="sequential/em-responsibilities-unweighted",
        file="inference/sequential/estimators.py",
        find="    logp = jax.vmap(_mvn_logpdf, in_axes=(None, 0, 0), out_axes=1)(x, means, covs) + logw\n",
        replace="    logp = jax.vmap(_mvn_logpdf, in_axes=(None, 0, 0), out_axes=1)(x, means, covs) + 0.0 * logw\n",
        tests=(f"{SQ}::test_em_recovers_mixture_normalises_and_conditionals_are_chain_rule",),
        description="EM's E-step drops the mixing weights from the responsibilities (r_nk ∝ N(x_n; m_k, S_k) instead of w_k N(...)).",
        area="estimator",
    ),
    # f20: the fitted prior's arrays as a traced keyword of one cached model
    Mutant(
        id="sequential/traced-prior-arrays-stale",
        file="inference/sequential/driver.py",
        find="                m_t, extra = prior_as_argument(model, structure), {PRIOR_KEYWORD: arrays}",
        replace="                m_t, extra = prior_as_argument(model, structure), {PRIOR_KEYWORD: extra.get(PRIOR_KEYWORD, arrays)}",
        tests=(f"{SQ}::test_exact_blr_equals_batch", f"{SQ}::test_nuts_tasks_after_the_second_compile_nothing"),
        description="From the third task on, the traced model receives the second task's prior arrays again (a stale prior).",
        area="law",
    ),
    Mutant(
        id="sequential/traced-model-not-cached",
        file="inference/sequential/prior.py",
        find="        if _same(known, structure):",
        replace="        if False:",
        tests=(f"{SQ}::test_nuts_tasks_after_the_second_compile_nothing",),
        description="A new traced model per task: every task misses the program cache and recompiles.",
        area="other",
    ),
]
