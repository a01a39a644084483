"""Planted bugs in inference/sequential/ (issue 20): the prior ignored, the Jacobian dropped, the
EM responsibilities without the mixing weights."""

from catalogue import Mutant

SQ = "tests/test_sequential.py"

MUTANTS = [
    Mutant(
        id="sequential/prior-ignored-last-task",
        file="inference/sequential/driver.py",
        find="            m_t = model if prior is None else with_prior(model, prior)",
        replace="            m_t = model if prior is None or t == len(batches) - 1 else with_prior(model, prior)",
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
]
