"""Planted bugs in inference/smc/: resamplers, weights, tempering, resample-move, particle MCMC.

Each mutant lists *real* tests (never the planted-bug twins: a twin plants its own text, which a
mutant may have changed, and would then fail for the wrong reason).  The exact tests are the
first line of defence: any bias in a resampler's law or a block's weights breaks an equality at
1e-12; the statistical ones catch what only the compiled ``jax.random`` path does.
"""

from catalogue import Mutant

R = "inference/smc/resampling.py"
B = "inference/smc/blocks.py"
P = "inference/smc/particles.py"
T = "inference/smc/tempering.py"
PM = "inference/smc/pmcmc.py"
RM = "inference/smc/resample_move.py"

EXACT = "tests/test_smc_exact.py"
STATS = "tests/test_smc_stats.py"

OFFSPRING = (f"{EXACT}::test_resampler_expected_offspring_on_the_twins_weights", f"{EXACT}::test_resampler_expected_offspring_is_N_times_weight")
SAMPLERS = (f"{STATS}::test_resampler_sample_matches_its_log_prob",)
VALUES = (f"{EXACT}::test_offspring_counts_and_ess_and_log_mean_exp_values",)

MUTANTS = [
    # -- resamplers: the exact laws --------------------------------------------------------------
    Mutant(
        id="smc/multinomial-log-prob-unnormalised",
        file=R,
        find="return jnp.sum(jnp.log(self.weights)[a])",
        replace="return jnp.sum(self.log_weights[a])",
        tests=OFFSPRING,
        description="Multinomial.log_prob uses the unnormalised log weights (right only when they sum to one).",
        area="resampler",
    ),
    Mutant(
        id="smc/systematic-law-offset",
        file=R,
        find="upper = jnp.minimum(jnp.min(N * hi - i), 1.0)",
        replace="upper = jnp.minimum(jnp.min(N * hi - i), 0.95)",
        tests=OFFSPRING,
        description="Systematic's exact law: the shared offset U confined to [0, 0.95) (a biased offset).",
        area="resampler",
    ),
    Mutant(
        id="smc/stratified-law-off-by-one",
        file=R,
        find="length = jnp.minimum(hi, (i + 1) / N) - jnp.maximum(lo, i / N)",
        replace="length = jnp.minimum(hi, (i + 1) / N) - jnp.maximum(lo, (i - 1) / N)",
        tests=OFFSPRING,
        description="Stratified's exact law: stratum i taken as [(i-1)/N, (i+1)/N) (an off-by-one in the stratum edge).",
        area="resampler",
    ),
    Mutant(
        id="smc/residual-rounded",
        file=R,
        find="counts = jnp.floor(NW)",
        replace="counts = jnp.round(NW)",
        tests=OFFSPRING,
        description="Residual resampling's deterministic copies rounded instead of floored.",
        area="resampler",
    ),
    Mutant(
        id="smc/residual-tail-from-weights",
        file=R,
        find="r = jnp.where(R > 0, resid / jnp.maximum(R, 1.0), 1.0 / N)",
        replace="r = jnp.where(R > 0, self.weights, 1.0 / N)",
        tests=OFFSPRING,
        description="Residual resampling's random tail drawn from W instead of the residual weights.",
        area="resampler",
    ),
    Mutant(
        id="smc/cumulative-guard-dropped",
        file=R,
        find="return C.at[-1].set(jnp.maximum(C[-1], 1.0))",
        replace="return C",
        tests=OFFSPRING + SAMPLERS,
        description="The guard that sets the last cumulative weight to at least 1 is dropped.",
        area="resampler",
        equivalent=(
            "a u in [C_{N-1}, 1) (a round-off gap of ~1e-16) finds index N, which _inverse_cdf clips to N-1, the "
            "index the guard gives; the laws' intervals differ by the same ~1e-16, far below any test's resolution"
        ),
    ),
    # -- resamplers: the jax.random samplers -------------------------------------------------------
    Mutant(
        id="smc/systematic-sampler-offset",
        file=R,
        find="u = (jnp.arange(N) + jax.random.uniform(key, ())) / N",
        replace="u = (jnp.arange(N) + jax.random.uniform(key, ()) * N / (N + 1)) / N",
        tests=SAMPLERS,
        description="Systematic's sampler draws its offset from [0, N/(N+1)) instead of [0, 1).",
        area="resampler",
    ),
    Mutant(
        id="smc/stratified-sampler-width",
        file=R,
        find="u = (jnp.arange(N) + jax.random.uniform(key, (N,))) / N",
        replace="u = jnp.arange(N) / N + jax.random.uniform(key, (N,)) / (N + 1)",
        tests=SAMPLERS,
        description="Stratified's sampler: strata of width 1/(N+1) (the uniform divided by N + 1).",
        area="resampler",
    ),
    Mutant(
        id="smc/multinomial-sampler-tempered",
        file=R,
        find="return jax.random.categorical(key, jnp.log(self.weights), shape=(self.num_particles,)).astype(jnp.int32)",
        replace="return jax.random.categorical(key, 0.8 * jnp.log(self.weights), shape=(self.num_particles,)).astype(jnp.int32)",
        tests=SAMPLERS,
        description="Multinomial's sampler uses flattened logits 0.8 log W (a softmax temperature bug).",
        area="resampler",
    ),
    Mutant(
        id="smc/offspring-counts-set",
        file=R,
        find=".at[..., a].add(1)",
        replace=".at[..., a].set(1)",
        tests=VALUES,
        description="offspring_counts scatters with set instead of add: a particle copied k times counts once.",
        area="resampler",
    ),
    # -- weights, ESS, evidence --------------------------------------------------------------------
    Mutant(
        id="smc/ess-unnormalised",
        file=P,
        find="return jnp.exp(2 * jax.scipy.special.logsumexp(lw, axis=-1) - jax.scipy.special.logsumexp(2 * lw, axis=-1))",
        replace="return jnp.exp(-jax.scipy.special.logsumexp(2 * lw, axis=-1))",
        tests=VALUES,
        description="ESS computed as 1/Σ w², right only for normalised weights.",
        area="diagnostic",
    ),
    Mutant(
        id="smc/log-mean-exp-N-minus-1",
        file=P,
        find="return jax.scipy.special.logsumexp(lw, axis=axis) - math.log(N)",
        replace="return jax.scipy.special.logsumexp(lw, axis=axis) - math.log(N - 1)",
        tests=(f"{EXACT}::test_particle_filter_three_steps",),
        description="log-mean-exp divides by N − 1: log Ẑ off by log(N/(N−1)) at every average.",
        area="estimator",
    ),
    Mutant(
        id="smc/guided-increment-without-correction",
        file=B,
        find="lw = lw - qt.log_density",
        replace="lw = lw - 0.5 * qt.log_density",
        tests=(f"{EXACT}::test_particle_filter_with_a_user_proposal",),
        description="The guided filter's increment with half the proposal correction −log q(x' | x).",
        area="estimator",
    ),
    Mutant(
        id="smc/unresampled-branch-renormalises",
        file=B,
        find="lambda k: Particles(particles.states, lw, identity),",
        replace="lambda k: Particles(particles.states, lw - log_mean_exp(lw), identity),",
        tests=(f"{STATS}::test_evidence_ratio_has_mean_one_on_a_linear_gaussian_model",),
        description="ESS-triggered resampling, compiled path: the branch that does not resample renormalises the weights.",
        area="estimator",
    ),
    Mutant(
        id="smc/ess-threshold-scale",
        file=B,
        find="trigger = e < ess_threshold * N",
        replace="trigger = e < ess_threshold",
        tests=(f"{EXACT}::test_ess_triggered_resampling_decides_by_the_ess_fraction",),
        description="ESS-triggered resampling compares the ESS with ρ instead of ρN (it then never resamples).",
        area="estimator",
    ),
    Mutant(
        id="smc/ancestor-copy-shifted",
        file=B,
        find="return Particles(index_particles(particles.states, a), resampled_log_weights(lw, a), a)",
        replace="return Particles(index_particles(particles.states, jnp.minimum(a + 1, N - 1)), resampled_log_weights(lw, a), a)",
        tests=(f"{EXACT}::test_particle_filter_three_steps",),
        description="Resampling copies the next particle's state (ancestor index + 1, clipped at N − 1).",
        area="resampler",
    ),
    # -- tempering ------------------------------------------------------------------------------
    Mutant(
        id="smc/temper-block-increment",
        file=B,
        find="return reweight(particles, lambda x: (new_beta - beta) * log_likelihood(x))",
        replace="return reweight(particles, lambda x: (new_beta - beta) * 0.97 * log_likelihood(x))",
        tests=(f"{EXACT}::test_temper_block_is_properly_weighted_for_the_tempered_target",),
        description="The temper block reweights by 97% of the increment L^(β'−β).",
        area="estimator",
    ),
    Mutant(
        id="smc/tempered-smc-increment",
        file=T,
        find="p = blocks.reweight(p, (new_beta - beta) * ll)",
        replace="p = blocks.reweight(p, (new_beta - beta) * 0.97 * ll)",
        tests=(f"{STATS}::test_tempered_smc_fixed_schedule_is_unbiased_for_evidence_and_posterior_mean",),
        description="Tempered SMC reweights by 97% of each increment (the issue's 0.9, made subtler).",
        area="estimator",
    ),
    Mutant(
        id="smc/next-beta-coarse-bisection",
        file=T,
        find="iters: int = 30",
        replace="iters: int = 6",
        tests=(f"{EXACT}::test_next_beta_is_the_largest_temperature_meeting_the_conditional_ess",),
        description="The next temperature's bisection stops after 6 halvings: β' biased low, cESS above its target.",
        area="kernel",
    ),
    Mutant(
        id="smc/tempered-move-previous-beta",
        file=T,
        find="bound = kern.bind(target.tempered, (new_beta,) + target.args, target.kwargs)",
        replace="bound = kern.bind(target.tempered, (beta,) + target.args, target.kwargs)",
        tests=(f"{STATS}::test_tempered_smc_adaptive_hmc_schedule_evidence_and_posterior",),
        description="Tempered SMC's rejuvenation after reweighting to β' leaves the previous target γ_β invariant.",
        area="kernel",
    ),
    # -- resample-move ----------------------------------------------------------------------------
    Mutant(
        id="smc/resample-move-previous-stage-move",
        file=RM,
        find="step = kernel(stage_list[k])",
        replace="step = kernel(stage_list[k - 1])",
        tests=("tests/test_smc_resample_move.py::test_resample_move_with_a_stage_built_move",),
        description="Resample-move builds stage k's move (a function of the stage's args) for stage k − 1's target.",
        area="kernel",
    ),
    Mutant(
        id="smc/resample-move-previous-stage-bind",
        file=RM,
        find="step = kernel.bind(m, stage_list[k], kwargs)",
        replace="step = kernel.bind(m, stage_list[k - 1], kwargs)",
        tests=("tests/test_smc_resample_move.py::test_resample_move_is_unbiased_and_properly_weighted",),
        description="Resample-move binds an inference.mcmc trace kernel to stage k − 1's arguments.",
        area="kernel",
        equivalent=(
            "a bound trace kernel's step targets the model at the trace's own arguments (extend_model has already "
            "moved every trace to stage k's); the bound args are read only by init, which rejuvenate never calls"
        ),
    ),
    # -- particle MCMC ----------------------------------------------------------------------------
    Mutant(
        id="smc/pmmh-half-hastings",
        file=PM,
        find="w = w + rev.log_density - fwd.log_density",
        replace="w = w - fwd.log_density",
        tests=("tests/test_smc_pmcmc.py::test_pmmh_with_an_asymmetric_proposal",),
        description="PMMH with half its Hastings term: the reverse proposal density dropped.",
        area="kernel",
    ),
    Mutant(
        id="smc/csmc-retained-index",
        file=PM,
        find="drawn = jnp.concatenate([jnp.zeros((N - n_free,), jnp.int32), drawn])",
        replace="drawn = jnp.concatenate([jnp.full((N - n_free,), N - 1, jnp.int32), drawn])",
        tests=("tests/test_smc_pmcmc.py::test_particle_gibbs_leaves_the_path_posterior_invariant",),
        description="Conditional SMC: the retained (reference) particle's ancestor is the last particle, not itself.",
        area="kernel",
    ),
    Mutant(
        id="smc/pgas-ancestor-weights-without-transition",
        file=PM,
        find="return log_weights + log_join",
        replace="return log_weights + 0.0 * log_join",
        tests=("tests/test_smc_pmcmc.py::test_pgas_leaves_the_path_posterior_invariant",),
        description="PGAS draws the reference's ancestor from the filtering weights alone (transition density dropped).",
        area="kernel",
    ),
]

# --- issue 18 (engineer 18): the health of tempered SMC ----------------------------------------
MUTANTS += [
    Mutant(
        id="smc/tempering-forced-flag-off-by-one",
        file="inference/smc/tempering.py",
        find="forced = (n == max_steps - 1) & (nb < 1.0)",
        replace="forced = (n == max_steps) & (nb < 1.0)",
        tests=("tests/test_no_silent.py::test_tempered_smc_that_runs_out_of_steps_and_collapses_raises",),
        description="The forced last step is never flagged: a schedule that ran out of max_steps looks like one "
                    "that reached beta = 1 by its ESS criterion.",
        area="other",
    ),
]

# --- issue 18 follow-up (engineer f18): the health of particle MCMC -----------------------------
MUTANTS += [
    Mutant(
        id="smc/pmcmc-stuck-chains-only-degraded",
        file="inference/smc/health.py",
        find="    if len(stuck) == moved.shape[0]:",
        replace="    if len(stuck) > moved.shape[0]:",
        tests=("tests/test_no_silent.py::test_pmmh_whose_chains_never_accept_raises",),
        description="A particle-MCMC run whose every chain is stuck at its first state is only degraded: "
                    "the constant draws are returned as a posterior with a warning.",
        area="other",
    ),
]

# --- issue 14 (helper hsmc): tempered SMC on models with summed-out discrete sites ---------------
MARGINAL = "tests/test_smc_marginal.py"
MUTANTS += [
    Mutant(
        id="smc/tempered-marginal-kernel-on-tempered-model",
        file=T,
        find="step_kernel = target.bind(kern, new_beta)",
        replace="step_kernel = kern.bind(target.tempered, (new_beta,) + target.args, target.kwargs).kernel",
        tests=(f"{STATS}::test_tempered_smc_on_summed_out_sites_is_unbiased_for_evidence_and_posterior",
               f"{MARGINAL}::test_the_loop_binds_its_kernel_through_the_marginal_path"),
        description="With summed-out sites the rejuvenation kernel is bound to tempered_model at β' "
                    "(log Σ_z p(x, z) p(y | x, z)^β'), another path than the one the weights follow "
                    "((1 − β') log Σ_z p(x, z) + β' log Σ_z p(x, z, y)): E[Ẑ/Z] ≈ 0.84.",
        area="kernel",
    ),
    Mutant(
        id="smc/tempered-marginal-one-prior-draw",
        file=T,
        find="        if self.marginal:\n            return self.view_at(1.0).log_likelihood(x)\n",
        replace="",
        tests=(f"{STATS}::test_tempered_smc_on_summed_out_sites_is_unbiased_for_evidence_and_posterior",
               f"{MARGINAL}::test_the_path_at_zero_and_one_is_the_enumerated_prior_and_joint_marginal"),
        description="The incremental weights temper p(y | x, z) at one prior draw of z (the code before "
                    "issue 14's marginal path) instead of p(y | x) = Σ_z p(x, z, y) / Σ_z p(x, z).",
        area="estimator",
    ),
]
