"""Planted bugs in inference/mcmc/: kernels, their accept rules, our NUTS tree, adaptation and the
combinators (the diagnostics' mutants live with the diagnostics' tests)."""

from catalogue import Mutant

ACCEPT = "tests/test_mcmc_accept_exact.py"
EXACT = "tests/test_mcmc_exact.py"
NUTS_LAW = "tests/test_mcmc_nuts.py::test_nuts_trajectory_has_numpyros_law"

MUTANTS = [
    Mutant(
        id="mcmc/mala-half-hastings",
        file="inference/mcmc/gradient.py",
        find="        return log_target_ratio + log_q_reverse - log_q_forward",
        replace="        return log_target_ratio + 0.5 * (log_q_reverse - log_q_forward)",
        tests=(ACCEPT,),
        description="MALA accepts with half of its Hastings term log q(x|x') − log q(x'|x).",
    ),
    Mutant(
        id="mcmc/nan-ratio-accepted",
        file="inference/mcmc/_base.py",
        find="log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)",
        replace="log_alpha = jnp.where(jnp.isnan(log_alpha), jnp.inf, log_alpha)",
        tests=(f"{ACCEPT}::test_a_nan_potential_is_rejected",),
        description="A NaN log acceptance ratio (a proposal where the density is NaN) is accepted instead of rejected.",
    ),
    Mutant(
        id="mcmc/hmc-nan-energy-accepted",
        file="inference/mcmc/gradient.py",
        find="delta = jnp.where(jnp.isnan(h1), jnp.inf, h1 - h0)",
        replace="delta = jnp.where(jnp.isnan(h1), -jnp.inf, h1 - h0)",
        tests=(f"{ACCEPT}::test_a_nan_potential_is_rejected",),
        description="HMC treats a NaN energy at the end of the trajectory as an energy gain (accepted).",
    ),
    Mutant(
        id="mcmc/hmc-final-energy-old-momentum",
        file="inference/mcmc/gradient.py",
        find="h1 = z1.potential_energy + K(a.inverse_mass_matrix, z1.r)",
        replace="h1 = z1.potential_energy + K(a.inverse_mass_matrix, r)",
        tests=(ACCEPT,),
        description="HMC's final energy uses the initial momentum (accepts on the potential change only).",
    ),
    Mutant(
        id="mcmc/mala-logq-mass-matrix-not-inverted",
        file="inference/mcmc/gradient.py",
        find="return -0.5 * jnp.sum(d * d / A) / eps**2",
        replace="return -0.5 * jnp.sum(d * d * A) / eps**2",
        tests=(ACCEPT,),
        description="MALA's proposal density uses A instead of A⁻¹ (diagonal inverse mass matrix).",
    ),
    Mutant(
        id="mcmc/mala-drift-half",
        file="inference/mcmc/gradient.py",
        find="x_new = state.x - 0.5 * eps**2 * drift + eps * _scaled_noise(a, xi)",
        replace="x_new = state.x - 0.25 * eps**2 * drift + eps * _scaled_noise(a, xi)",
        tests=(ACCEPT,),
        description="MALA proposes with half the Langevin drift, but scores q with the full drift.",
    ),
    Mutant(
        id="mcmc/nuts-bits-loop-block-collides",
        file="inference/mcmc/_bits.py",
        find="jnp.asarray(step, jnp.uint32) + jnp.uint32(1)",
        replace="jnp.asarray(step, jnp.uint32)",
        tests=("tests/test_mcmc_bits.py::test_a_steps_draws_are_independent_and_fair",),
        description="Leapfrog step s draws its uniforms from counter block s, not 1 + s: step 0 reuses the momentum's words.",
    ),
    Mutant(
        id="mcmc/nuts-merge-weight",
        file="inference/mcmc/nuts.py",
        find="return jnp.minimum(1.0, jnp.exp(w_new - w_old))",
        replace="return jnp.minimum(1.0, jnp.exp(w_new - w_old + 0.3))",
        tests=(NUTS_LAW,),
        description="NUTS's biased progressive sampling moves to the new doubling with weight 1.35 W_new / W_old.",
    ),
    Mutant(
        id="mcmc/nuts-leaf-sampling-old-weight",
        file="inference/mcmc/nuts.py",
        find="take = first | (u_leaf < jnp.exp(w1 - sw))",
        replace="take = first | (u_leaf < jnp.exp(w1 - S[_SUB_W]))",
        tests=(NUTS_LAW,),
        description="NUTS's uniform progressive sampling inside a doubling divides by the sub-tree's old weight, not the new total.",
    ),
    Mutant(
        id="mcmc/nuts-checkpoint-off-by-one",
        file="inference/mcmc/nuts.py",
        find="return hi - trailing_ones + 1, hi",
        replace="return hi - trailing_ones + 2, hi",
        tests=("tests/test_mcmc_nuts.py::test_checkpoint_range_is_the_subtrees_ending_at_each_leaf", NUTS_LAW),
        description="NUTS skips the U-turn check of the smallest sub-tree ending at a leaf.",
    ),
    Mutant(
        id="mcmc/mh-half-hastings",
        file="inference/mcmc/trace_kernels.py",
        find="        return update_weight + log_q_reverse - log_q_forward",
        replace="        return update_weight + 0.5 * (log_q_reverse - log_q_forward)",
        tests=(EXACT,),
        description="MH with a model as proposal accepts with half its Hastings term.",
    ),
    Mutant(
        id="mcmc/gibbs-tempered-conditional",
        file="inference/mcmc/trace_kernels.py",
        find='i = randomness.draw(k_draw, dist.Categorical(logits=lps), (), f"mcmc/gibbs/{a}")',
        replace='i = randomness.draw(k_draw, dist.Categorical(logits=0.9 * lps), (), f"mcmc/gibbs/{a}")',
        tests=(EXACT,),
        description="Gibbs draws from the full conditional raised to the power 0.9.",
    ),
    Mutant(
        id="mcmc/mixture-weights-reversed",
        file="inference/mcmc/combinators.py",
        find="dist.Categorical(probs=jnp.asarray(self.probs))",
        replace="dist.Categorical(probs=jnp.asarray(self.probs[::-1]))",
        tests=(f"{EXACT}::test_mixture_matrix_is_the_weighted_sum_of_its_parts",),
        description="A mixture picks its kernels with the weights in reverse order (still invariant, not the mixture asked for).",
    ),
    Mutant(
        id="mcmc/cycle-skips-last-kernel",
        file="inference/mcmc/combinators.py",
        find="for i, (p, k) in enumerate(zip(self.parts, split(key, len(self.parts)))):",
        replace="for i, (p, k) in enumerate(zip(self.parts[:-1], split(key, len(self.parts)))):",
        tests=(f"{EXACT}::test_cycle_is_invariant",),
        description="A cycle never applies its last kernel (invariant, but reducible: the law's moves check catches it).",
    ),
    Mutant(
        id="mcmc/dual-averaging-target",
        file="inference/mcmc/adaptation.py",
        find="ss_state = self.ss_update(self.target_accept_prob - accept_prob, state.ss_state)",
        replace="ss_state = self.ss_update(0.9 * self.target_accept_prob - accept_prob, state.ss_state)",
        tests=("tests/test_mcmc_nuts.py::test_window_adapter_makes_numpyros_updates",),
        description="Dual averaging targets 0.9 of the requested acceptance probability.",
    ),
    # ---- issue 17a (engineer 17a): thinning ----
    Mutant(
        id="mcmc/thinning-off-by-one",
        file="inference/mcmc/_program.py",
        find="n = jnp.where(warm, 1, thin)",
        replace="n = jnp.where(warm, 1, thin - 1)",
        tests=("tests/test_numpyro_habits.py::test_thinning_keeps_every_kth_step_exactly_in_law",),
        description="A thinned draw is the state after thinning - 1 kernel steps, not thinning.",
    ),
]

# --- issue 18 (engineer 18): the health of a run -----------------------------------------------
MUTANTS += [
    Mutant(
        id="mcmc/health-runaway-needs-inf",
        file="inference/mcmc/health.py",
        find="        bad = ~np.isfinite(block) | (np.abs(block) >= limit)",
        replace="        bad = ~np.isfinite(block)",
        tests=("tests/test_no_silent.py::test_improper_posterior_is_detected_and_named",),
        description="Only non-finite draws count as runaway: draws at +-3.4e38 from an improper posterior pass.",
        area="diagnostic",
    ),
]


# -- issue 15: low-rank metric and Fisher-divergence adaptation (tests/test_mcmc_adaptation.py) ----------
ADAPT = "tests/test_mcmc_adaptation.py"

MUTANTS += [
    Mutant(
        id="mcmc/low-rank-momentum-factor",
        file="inference/mcmc/metric.py",
        find="return self._core(xi, -0.5) / self.scale",
        replace="return self._core(xi, -0.45) / self.scale",
        tests=(f"{ADAPT}::test_low_rank_metric_leaves_dense_gaussian_invariant_and_twin_fails",
               f"{ADAPT}::test_low_rank_metric_operations_are_the_dense_matrix"),
        description="Momenta for a low-rank metric are drawn with Λ^{-0.45} for Λ^{-1/2} (not N(0, M); the kinetic energy is right).",
    ),
    Mutant(
        id="mcmc/low-rank-score-covariance-not-inverted",
        file="inference/mcmc/adaptation_fisher.py",
        find="S = _spd_mean_inv(cx, cg)",
        replace="S = _spd_mean_inv(cx, jnp.linalg.inv(cg))",
        tests=(f"{ADAPT}::test_fisher_estimates_are_exact_for_gaussian_targets",),
        description="The low-rank estimate takes the geometric mean of the draws' and the scores' covariances, not of the scores' inverse.",
        area="estimator",
    ),
    Mutant(
        id="mcmc/fisher-diagonal-power",
        file="inference/mcmc/adaptation_fisher.py",
        find="return jnp.clip(jnp.sqrt(var_x / var_g), 1e-20, 1e20)",
        replace="return jnp.clip(var_x / jnp.sqrt(var_g), 1e-20, 1e20)",
        tests=(f"{ADAPT}::test_fisher_estimates_are_exact_for_gaussian_targets",),
        description="The Fisher diagonal is var(x)/sd(∇U) instead of sqrt(var(x)/var(∇U)).",
        area="estimator",
    ),
    # issue 15, per-draw updates and nutpie's step size (engineer 15)
    Mutant(
        id="mcmc/fisher-foreground-current-window-only",
        file="inference/mcmc/adaptation_fisher.py",
        find="est_start[a:b] = (starts[-1] if starts else 0) if i > 0 else a",
        replace="est_start[a:b] = a",
        tests=(f"{ADAPT}::test_update_every_reestimates_from_the_previous_and_current_window_at_each_draw",),
        description="The metric is estimated from the current window's draws alone, not from the previous window's too (nutpie's foreground).",
        area="estimator",
    ),
    Mutant(
        id="mcmc/fisher-estimate-rows-ignored",
        file="inference/mcmc/adaptation_fisher.py",
        find="if a - s >= self.estimate_min_rows]",
        replace="if a - s >= 0]",
        tests=(f"{ADAPT}::test_estimate_rows_reach_back_until_the_estimate_has_more_draws_than_dimensions",),
        description="Each low-rank estimate takes the previous window alone, however few draws it has (the d + 1 rows of h15c ignored).",
        area="estimator",
    ),
    Mutant(
        id="mcmc/fisher-early-depth-cap-never-lifts",
        file="inference/mcmc/adaptation_fisher.py",
        find="return min(lift, int(round(0.3 * int(num_warmup))))",
        replace="return int(num_warmup)",
        tests=(f"{ADAPT}::test_early_tree_depth_cap_holds_until_the_first_full_estimate_then_lifts",),
        description="NUTS's early-warmup tree-depth cap stays on through all of warmup.",
        area="estimator",
    ),
    Mutant(
        id="mcmc/fisher-step-size-restart-ignored",
        file="inference/mcmc/adaptation_fisher.py",
        find="if self.adapt_step_size and self.step_size_restart:",
        replace="if self.adapt_step_size:",
        tests=(f"{ADAPT}::test_update_every_reestimates_from_the_previous_and_current_window_at_each_draw",),
        description="step_size_restart='none' (nutpie: one dual averaging run) still restarts dual averaging at every window end.",
    ),
]

MUTANTS += [  # issue 15 follow-up: nutpie's step-size search at the first metric change (engineer f15)
    Mutant(
        id="mcmc/fisher-search-first-from-current-step",
        file="inference/mcmc/adaptation_fisher.py",
        find="step_size = search_step_size(self.value_and_grad, jnp.asarray(self.step_size, a.step_size.dtype),",
        replace="step_size = search_step_size(self.value_and_grad, a.step_size,",
        tests=(f"{ADAPT}::test_search_first_searches_the_step_size_once_at_the_first_metric_estimate",),
        description="The search at the first metric change starts from the current (dual-averaged) step size, not from the initial one (nutpie).",
    ),
    Mutant(
        id="mcmc/fisher-search-first-keeps-dual-averaging",
        file="inference/mcmc/adaptation_fisher.py",
        find="            return FisherState(step_size, ss_state, a.inverse_mass_matrix, a.acc, n, a.key)",
        replace="            return FisherState(step_size, a.ss_state, a.inverse_mass_matrix, a.acc, n, a.key)",
        tests=(f"{ADAPT}::test_search_first_searches_the_step_size_once_at_the_first_metric_estimate",),
        description="After the search at the first metric change dual averaging is not restarted from the found step size.",
    ),
    Mutant(
        id="mcmc/fisher-search-first-too-early",
        file="inference/mcmc/adaptation_fisher.py",
        find="first = np.flatnonzero(in_window & estimate & (steps - est_start + 1 >= 3))",
        replace="first = np.flatnonzero(in_window & estimate & (steps - est_start + 1 >= 1))",
        tests=(f"{ADAPT}::test_search_first_searches_the_step_size_once_at_the_first_metric_estimate",),
        description="The search runs at the first estimate step even when the estimate (fewer than 3 draws) cannot change the metric.",
    ),
]

MUTANTS += [  # issue 15, third pass: one low_rank default for every correlated posterior (engineer g15)
    Mutant(
        id="mcmc/fisher-estimates-from-rejected-draws",
        file="inference/mcmc/adaptation_fisher.py",
        find="moved = jnp.any(x != acc[-1]) | (not self.moved_only)",
        replace="moved = jnp.any(x == x) | (not self.moved_only)",
        tests=(f"{ADAPT}::test_estimators_take_only_the_draws_that_moved",),
        description="The Fisher estimators take every warmup draw, rejected proposals (repeats) included.",
        area="estimator",
    ),
    Mutant(
        id="mcmc/low-rank-float32-gamma-floor-off",
        file="inference/mcmc/adaptation_fisher.py",
        find="deficient = n <= d",
        replace="deficient = n < 0",
        tests=(f"{ADAPT}::test_float32_estimate_from_fewer_draws_than_dimensions_is_not_noise",),
        description="An estimate from n <= d draws keeps nutpie's γ below float64, so float32 rounding noise sets the unspanned directions.",
        area="estimator",
    ),
    Mutant(
        id="mcmc/low-rank-default-window-ends-only",
        file="inference/mcmc/gradient.py",
        find='"mass_matrix_update_every": pick(self.mass_matrix_update_every, max(1, round(dim / 10)) if low else None),',
        replace='"mass_matrix_update_every": pick(self.mass_matrix_update_every, None),',
        tests=(f"{ADAPT}::test_low_rank_defaults_resolve_per_dimension",),
        description="low_rank's default re-estimates the metric at window ends only instead of every max(1, round(d/10)) draws.",
    ),
]

MUTANTS += [  # issue 15, fourth pass: wall time per gradient (engineer h15)
    Mutant(
        id="mcmc/nuts-end-velocities-swapped",
        file="inference/mcmc/nuts.py",
        find="jnp.where(end, r_sum, V[_R_SUM]), s_r_sum, v_left, v_right,",
        replace="jnp.where(end, r_sum, V[_R_SUM]), s_r_sum, v_right, v_left,",
        tests=(NUTS_LAW,),
        description="The velocities kept for the trajectory's two ends are stored swapped, so the whole-trajectory U-turn check uses the wrong end's velocity.",
    ),
    Mutant(
        id="mcmc/low-rank-dense-velocity-of-another-metric",
        file="inference/mcmc/metric.py",
        find="m = LowRankMetric(self.scale, self.vectors, self.values).dense()",
        replace="m = LowRankMetric(self.scale, self.vectors, jnp.sqrt(self.values)).dense()",
        tests=(f"{ADAPT}::test_low_rank_dense_velocity_leaves_dense_gaussian_invariant_and_twin_fails",),
        description="low_rank's dense velocity matrix is built from Λ^{1/2} for Λ: the leapfrog moves with another metric than the momenta's.",
    ),
]

MUTANTS += [  # issue 14, sixth pass: the initial point's retries and the step-size search in one loop (hcompile)
    Mutant(
        id="mcmc/init-search-gradient-at-the-start-point",
        file="inference/mcmc/gradient.py",
        find="pe1, g1 = self.vg(jnp.where(proposing, x_prop, x_try))",
        replace="pe1, g1 = self.vg(jnp.where(proposing, x_prop, x))",
        tests=("tests/test_mcmc_driver.py::test_init_with_the_search_in_one_loop_equals_init_then_search",),
        description="The shared loop evaluates the search's trial at the start point instead of the trial point (U, ∇U of the wrong point).",
    ),
    Mutant(
        id="mcmc/init-search-starts-before-the-point-is-found",
        file="inference/mcmc/gradient.py",
        find="sc = jax.tree.map(lambda old, new: jnp.where(proposing, old, new), sc, sc_next)",
        replace="sc = sc_next",
        tests=("tests/test_mcmc_driver.py::test_init_with_the_search_in_one_loop_equals_init_then_search",),
        description="The search's carry advances during the initial point's retries too (trials from a placeholder or a rejected point).",
    ),
    Mutant(
        id="mcmc/in-turn-keys-reversed",
        file="inference/mcmc/_program.py",
        find="return jax.lax.map(lambda a: one(*a), (keys, state))",
        replace="return jax.lax.map(lambda a: one(*a), (keys[::-1], state))",
        tests=("tests/test_mcmc_in_turn.py::test_chains_in_turn_draw_what_the_batch_draws",),
        description="Chains taking their steps in turn (a model with a ppl.scan, on CPU) get one another's keys: not the batch's draws.",
    ),
    Mutant(
        id="mcmc/summed-out-view-once-per-program",
        file="inference/mcmc/_program.py",
        find="        sig = shapes_of(dyn)\n",
        replace="        sig = ()\n",
        tests=("tests/test_enum_mcmc.py::test_the_summed_out_check_follows_the_data_shape_of_each_run",),
        description="The driver's check of summed-out sites keeps the view of the program's first input shapes: a run at another data size checks a point of the wrong dimension (a crash).",
    ),
]
