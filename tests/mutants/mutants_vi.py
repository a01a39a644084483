"""Planted bugs in inference/vi/: the gradient estimators and the objectives."""

from catalogue import Mutant

EX = "tests/test_vi_exact.py"
GA = "tests/test_vi_gaussian.py"

MUTANTS = [
    Mutant(
        id="vi/reinforce-score-scaled",
        file="inference/vi/strategies.py",
        find='''    """log q(z) of a score-function site (summed over its elements), with gradients."""
    return jnp.sum(d.log_prob(value))''',
        replace='''    """log q(z) of a score-function site (summed over its elements), with gradients."""
    return 0.95 * jnp.sum(d.log_prob(value))''',
        tests=(f"{EX}::test_expected_gradient_is_exact[elbo-reinforce-enum]",),
        description="The score-function term is 0.95 log q(z): every REINFORCE gradient is biased by 5% of its score part.",
        area="estimator",
    ),
    Mutant(
        id="vi/enum-weight-detached",
        file="inference/vi/strategies.py",
        find='''        value = rec["value"]
        run.enum_logq.append(jnp.sum(c.distribution.log_prob(value)))''',
        replace='''        value = rec["value"]
        run.enum_logq.append(sg(jnp.sum(c.distribution.log_prob(value))))''',
        tests=(f"{EX}::test_expected_gradient_is_exact[elbo-enum-enum]",),
        description="enum: the weight q(v) of each enumerated value is detached in the gradient pass (Σ_v ∇q(v) E[F|v] lost).",
        area="estimator",
    ),
    Mutant(
        id="vi/mvd-bernoulli-against-q",
        file="inference/vi/strategies.py",
        find='alts.append(("probs", idx, 1.0, value.at[idx].set(one), value.at[idx].set(0 * one)))',
        replace='alts.append(("probs", idx, 1.0, value.at[idx].set(one), None))',
        tests=(f"{EX}::test_expected_gradient_is_exact[elbo-mvd-enum]",),
        description="MVD for a Bernoulli site uses δ₁ − q (Categorical's form) instead of δ₁ − δ₀: the derivative is (1 − p) times too small.",
        area="estimator",
    ),
    Mutant(
        id="vi/mvd-normal-loc-constant",
        file="inference/vi/strategies.py",
        find="c_loc = 1.0 / (s * math.sqrt(2.0 * math.pi))",
        replace="c_loc = 1.0 / (s * math.sqrt(2.2 * math.pi))",
        tests=(f"{GA}::test_normal_normal_estimators_are_unbiased[mvd]",),
        description="MVD for a Normal location: the constant 1/(σ√(2π)) computed with 2.2π (about 5% small).",
        area="estimator",
    ),
    Mutant(
        id="vi/mvd-normal-scale-maxwell",
        file="inference/vi/strategies.py",
        find="m = jnp.sqrt(draw(k2, dist.Gamma(1.5, 0.5), (), f\"{name}/mvd_maxwell\"))",
        replace="m = jnp.sqrt(draw(k2, dist.Gamma(1.5, 0.55), (), f\"{name}/mvd_maxwell\"))",
        tests=(f"{GA}::test_normal_normal_estimators_are_unbiased[mvd]",),
        description="MVD for a Normal scale: the double-Maxwell branch drawn with rate 0.55 instead of 0.5 (its radius ~5% small).",
        area="estimator",
    ),
    Mutant(
        id="vi/reparam-loc-detached",
        file="inference/vi/reparam.py",
        find='return dist.Normal(jnp.zeros(V), 1.0), lambda e: d.loc + d.scale * e',
        replace='return dist.Normal(jnp.zeros(V), 1.0), lambda e: jax.lax.stop_gradient(d.loc) + d.scale * e',
        tests=(f"{GA}::test_normal_normal_estimators_are_unbiased[reparam]",),
        description="reparam: z = sg(μ) + σε, the pathwise derivative through the location is missing.",
        area="estimator",
    ),
    Mutant(
        id="vi/vimco-baseline-includes-own",
        file="inference/vi/objectives.py",
        find="mean_others = (jnp.sum(log_w) - log_w) / (K - 1)",
        replace="mean_others = jnp.sum(log_w) / K",
        tests=(f"{EX}::test_expected_gradient_is_exact[vimco2-reinforce-reinforce]",),
        description="VIMCO's baseline for particle k uses the mean of all log weights, its own included: the baseline depends on the particle's own sample.",
        area="estimator",
    ),
    Mutant(
        id="vi/loo-baseline-includes-own",
        file="inference/vi/estimator.py",
        find="c = (jnp.sum(v) - v) / (num_samples - 1)",
        replace="c = jnp.sum(v) / num_samples",
        tests=(f"{EX}::test_leave_one_out_baseline_is_unbiased",),
        description="baseline='loo' uses the mean of all evaluations, its own included (a baseline that depends on its own sample).",
        area="estimator",
    ),
    Mutant(
        id="vi/renyi-log-k-outside",
        file="inference/vi/objectives.py",
        find="return (jax.nn.logsumexp((1.0 - alpha) * lw) - math.log(K)) / (1.0 - alpha)",
        replace="return jax.nn.logsumexp((1.0 - alpha) * lw) / (1.0 - alpha) - math.log(K)",
        tests=(f"{EX}::test_hand_values_of_the_other_objectives[renyi]",),
        description="Rényi bound: log K subtracted outside the 1/(1 − α) factor (the value is off by a constant; the gradient is not, so only the value check can see it).",
        area="estimator",
    ),
    Mutant(
        id="vi/p-wake-not-detached",
        file="inference/vi/objectives.py",
        find="lw = _particle_log_weights(model, guide, K, args, kwargs, detach=True)",
        replace="lw = _particle_log_weights(model, guide, K, args, kwargs, detach=False)",
        tests=(f"{EX}::test_expected_gradient_is_exact[p_wake2-default]",),
        description="p-wake without detaching the guide: the guide's parameters receive IWAE's gradient.",
        area="estimator",
    ),
    Mutant(
        id="vi/q-wake-weights-not-detached",
        file="inference/vi/objectives.py",
        find="return jnp.sum(jax.nn.softmax(sg(lw)) * log_q)",
        replace="return jnp.sum(jax.nn.softmax(lw) * log_q)",
        tests=(f"{EX}::test_q_wake_and_rws_expected_gradients",),
        description="q-wake with the self-normalised weights not detached: the model's parameters get a gradient from the guide update.",
        area="estimator",
    ),
    Mutant(
        id="vi/iwhvi-marginal-normaliser",
        file="inference/vi/marginals.py",
        find="return jax.nn.logsumexp(all_w) - math.log(all_w.shape[0])",
        replace="return jax.nn.logsumexp(all_w) - math.log(all_w.shape[0] + 1)",
        tests=("tests/test_vi_hierarchical.py::test_bounds_are_ordered_and_tighten_with_k",),
        description="IWHVI's marginal density estimate divides by K + 2 instead of K + 1 (a constant offset of the bound).",
        area="estimator",
    ),
    # -- issue 19: Laplace, Pathfinder, the full-rank guide's initial factor ------------------------
    Mutant(
        id="vi/laplace-hessian-unsymmetrised-half",
        file="inference/vi/laplace.py",
        find="    prec = -0.5 * (H + H.T)",
        replace="    prec = -0.5 * (H + jnp.diag(jnp.diag(H)))",
        tests=("tests/test_vi_guides_gaussian.py::test_laplace_is_exact_on_the_brownian_motion",),
        description="Laplace precision built from the diagonal of the Hessian only (off-diagonal curvature lost).",
        area="other",
    ),
    Mutant(
        id="vi/pathfinder-bfgs-sign",
        file="inference/vi/pathfinder.py",
        find="    return A @ H @ A.T + rho * jnp.outer(s, s)",
        replace="    return A @ H @ A.T - rho * jnp.outer(s, s)",
        tests=("tests/test_vi_pathfinder.py::test_inverse_hessians_are_positive_definite_and_satisfy_the_secant_condition",),
        description="The BFGS inverse-Hessian update with the sign of its rho s s^T term flipped.",
        area="other",
    ),
    Mutant(
        id="vi/pathfinder-weights-no-jacobian-gaussian",
        file="inference/vi/pathfinder.py",
        find="    lw = jax.vmap(f)(u) - jax.vmap(lambda v: _mvn_logpdf(v, mean, L))(u)\n    lw = jnp.where",
        replace="    lw = jax.vmap(f)(u) - 0.5 * jax.vmap(lambda v: _mvn_logpdf(v, mean, L))(u)\n    lw = jnp.where",
        tests=("tests/test_vi_pathfinder.py::test_pathfinder_draws_have_the_target_mean_and_variances",),
        description="Pathfinder's importance log weights subtract only half of log q: the resampled draws are too concentrated.",
        area="other",
    ),
]

# --- issue 18 follow-up (engineer f18): the health of VI results ---------------------------------
MUTANTS += [
    Mutant(
        id="vi/fit-health-needs-every-step-non-finite",
        file="inference/vi/fit.py",
        find="    if bad.any() and not failed:",
        replace="    if bad.all() and not failed:",
        tests=("tests/test_no_silent.py::test_vi_nan_objective_names_the_guide_site_with_the_wrong_support",),
        description="vi.fit reports a non-finite objective only when every step was non-finite: a guide that "
                    "draws outside the model's support half the time passes silently.",
        area="other",
    ),
    Mutant(
        id="vi/laplace-khat-wrong-log-q",
        file="inference/vi/laplace.py",
        find="    log_q = -0.5 * jnp.sum(z * z, -1)",
        replace="    log_q = -1.0 * jnp.sum(z * z, -1)",
        tests=("tests/test_no_silent.py::test_laplace_and_pathfinder_of_a_near_gaussian_posterior_are_ok_and_silent",),
        description="The Laplace k-hat uses a log q twice as steep as the Gaussian's: the importance weights "
                    "grow like exp(z^2/2) and a good approximation is reported as degraded.",
        area="other",
    ),
    # 17c: subsampled plates under VI
    Mutant(
        id="vi/subsample-indices-not-shared",
        file="inference/vi/program.py",
        find="        if shared is not None and not ctx.in_guide:",
        replace="        if shared is not None and not ctx.in_guide and False:",
        tests=("tests/test_subsample_vi.py::test_subsampled_elbo_gradient_is_unbiased_for_the_full_data_elbo",),
        description="The model's subsampled plate draws its own indices instead of replaying the guide's: the "
                    "local latents are scored at data they do not belong to and the ELBO gradient is biased.",
        area="estimator",
    ),
]

# --- issue 19 rest (engineer 19): flow guides ---------------------------------------------------
MUTANTS += [
    Mutant(
        id="vi/flow-scale-log-det-dropped",
        file="inference/vi/flows.py",
        find="        _site_point_masses(sites, u, -(log_det + jnp.sum(jnp.log(scale))))",
        replace="        _site_point_masses(sites, u, -log_det)",
        tests=("tests/test_vi_guide_laws.py::test_expected_gradient_is_exact_for_every_new_guide[maf]",),
        description="The flow guide's density forgets the log-determinant of its final scale (u = loc + scale * f(eps)): "
                    "log q is off by sum(log scale) and the ELBO's gradient in the scale is wrong.",
        area="other",
    ),
    Mutant(
        id="vi/flow-site-jacobian-sign",
        file="inference/vi/guides.py",  # g19: _site_point_masses moved there (shared with the joint guides)
        find="        ld = -jnp.sum(ladj) + (extra_log_density if i == 0 else 0.0)",
        replace="        ld = jnp.sum(ladj) + (extra_log_density if i == 0 else 0.0)",
        tests=("tests/test_vi_guide_laws.py::test_flow_guide_log_density_is_the_change_of_variables[masked_autoregressive]",
               "tests/test_vi_step_cost.py::test_the_full_rank_guide_draws_u_once_and_scores_its_latent_values"),
        description="A flow guide's site carries +log|det J_T| of its support's transform instead of minus: "
                    "the guide density of a positive site is wrong.",
        area="other",
    ),
]
MUTANTS += [
    Mutant(
        id="vi/fit-optimizer-key-ignores-floats",
        file="inference/vi/fit.py",
        find='            return ("float", repr(x))',
        replace='            return ("float",)',
        tests=("tests/test_vi_networks.py::test_a_fresh_optimizer_with_the_same_hyperparameters_compiles_nothing",),
        description="vi.fit's program cache keys the optimizer by its code but not its hyperparameters: a fit "
                    "with another learning rate reuses the program compiled for the first.",
        area="other",
    ),
    # -- engineer f19 (issue 19 follow-up: cached Pathfinder, cached fit epilogue) --
    Mutant(
        id="vi/pathfinder-data-static",
        file="inference/vi/pathfinder.py",
        find="*(freeze((args, kwargs)) if remembered(model) else (args, kwargs))",
        replace="*freeze(jax.tree.map(np.asarray, (args, kwargs)))",
        tests=("tests/test_vi_pathfinder.py::test_pathfinder_program_is_cached_and_same_key_gives_same_result",),
        description="vi.pathfinder makes the model's arguments static (keyed by contents): every new data value recompiles.",
        area="other",
    ),
    Mutant(
        id="vi/fit-constrain-key-collision",
        file="inference/vi/fit.py",
        find="            params = objective.constrain(avg)",
        replace="            params = avg",  # h19: the constraining moved into the fused finish program
        tests=("tests/test_vi_fit.py::test_warm_fit_compiles_nothing_and_constrains_like_the_objective",),
        description="vi.fit's cached constraining shares its cache key with the optimizer's init: the params returned are the optimizer state.",
        area="other",
    ),
]

# -- engineer g19 (issue 19, third pass: the per-step cost of vi.fit) --
STEP = "tests/test_vi_step_cost.py"
MUTANTS += [
    Mutant(
        id="vi/fit-initial-params-weakly-typed",
        file="inference/vi/fit.py",
        find='jnp.asarray(v, dtype=jnp.result_type(v)) if getattr(v, "weak_type", False) or not hasattr(v, "dtype") else v, u)',
        replace='v, u)',  # h19: the retyping moved into ``_strong`` (the fused start program)
        tests=(f"{STEP}::test_fit_with_a_partial_last_chunk_is_the_one_chunk_fit_and_compiles_the_masked_chunk_once",),
        description="vi.fit starts from weakly typed parameters (ppl.param(.., 0.0)): the second chunk's carry has "
                    "another type, so the loop is traced and compiled again on every cold fit.",
        area="other",
    ),
    Mutant(
        id="vi/fit-partial-chunk-taken-as-full",
        file="inference/vi/fit.py",
        find="        full = t0 + chunk <= n_run  # no per-step branch",
        replace="        full = t0 + chunk <= n_run + 1  # no per-step branch",
        tests=(f"{STEP}::test_fit_with_a_partial_last_chunk_is_the_one_chunk_fit_and_compiles_the_masked_chunk_once",),
        description="vi.fit runs a last chunk that is one step short as a full one: one step past num_steps "
                    "changes the fitted parameters.",
        area="other",
    ),
    Mutant(
        id="vi/reinforce-on-point-mass-allowed",
        file="inference/vi/strategies.py",
        find="        if isinstance(_leaf(d), dist.Delta):  # issue 19",
        replace="        if False:  # issue 19",
        tests=(f"{STEP}::test_reinforce_on_a_point_mass_site_is_refused_naming_it",),
        description="'reinforce' on a point-mass site of a joint guide is accepted: a silently wrong gradient.",
        area="estimator",
    ),
]

# -- engineer h19 (issue 19, fourth pass: iterate averaging; the fixed cost of a warm call) --
AVG = "tests/test_vi_average.py"
MUTANTS += [
    Mutant(
        id="vi/fit-average-window-off-by-one",
        file="inference/vi/fit.py",
        find="_average_in(acc, u2, t >= a0)",
        replace="_average_in(acc, u2, t > a0)",
        tests=(f"{AVG}::test_the_average_is_the_mean_of_the_last_iterates_and_the_last_iterate_is_kept",),
        description="vi.fit's iterate average starts one step late: it averages ceil(a n) - 1 iterates, not the window asked.",
        area="estimator",
    ),
    Mutant(
        id="vi/fit-average-running-mean-stale-count",
        file="inference/vi/fit.py",
        find="    f = live / jnp.maximum(c2, 1).astype(jnp.float32)",
        replace="    f = live / jnp.maximum(c, 1).astype(jnp.float32)",
        tests=(f"{AVG}::test_the_average_is_the_mean_of_the_last_iterates_and_the_last_iterate_is_kept",),
        description="vi.fit's running mean divides by the count before the new iterate: a weighted average that "
                    "over-weights the latest iterates (the first replaces the zero start).",
        area="estimator",
    ),
    Mutant(
        id="vi/fit-average-returns-last-iterate",
        file="inference/vi/fit.py",
        find="            avg = jax.tree.map(lambda a, b: jnp.where(c > 0, a, b), m, u)",
        replace="            avg = u",
        tests=(f"{AVG}::test_on_a_gaussian_posterior_the_averaged_fit_is_closer_to_log_z_than_the_last_iterate",),
        description="vi.fit computes the iterate average but returns the last iterate as params.",
        area="estimator",
    ),
]

# -- engineer h19b (issue 19: average="auto", the adaptive window) --
MUTANTS += [
    Mutant(
        id="vi/fit-auto-average-never-restarts",
        file="inference/vi/fit.py",
        find="    c0 = jnp.where(improving, 0, c)",
        replace="    c0 = c",
        tests=(f"{AVG}::test_auto_average_restarts_the_mean_while_the_objective_improves",),
        description="vi.fit's average=\"auto\" never restarts its running mean while the objective improves: "
                    "a fixed window of the last half of the run, which lags while the fit moves.",
        area="estimator",
    ),
    Mutant(
        id="vi/fit-auto-average-slow-ema-as-fast",
        file="inference/vi/fit.py",
        find="    improving = fast2 - slow2 > AUTO_MARGIN",
        replace="    improving = slow2 - fast2 > AUTO_MARGIN",
        tests=(f"{AVG}::test_auto_average_restarts_the_mean_while_the_objective_improves",),
        description="vi.fit's average=\"auto\" restarts when the objective worsens instead of when it improves.",
        area="estimator",
    ),
    Mutant(
        id="vi/fit-auto-average-skips-final-check",
        file="inference/vi/fit.py",
        find="    keep = (acc[1] > 0) & (vm >= vu)",
        replace="    keep = acc[1] > 0",
        tests=(f"{AVG}::test_auto_average_restarts_the_mean_while_the_objective_improves",),
        description="vi.fit's average=\"auto\" keeps the average even when its objective is below the last iterate's.",
        area="estimator",
    ),
]

# -- engineer h19c (issue 19: the check of average="auto" in the steps' own loop) --
MUTANTS += [
    Mutant(
        id="vi/fit-auto-check-iterations-move-params",
        file="inference/vi/fit.py",
        find="                return (keep(u2, u), keep(st2, st), keep(acc2, acc)), v",
        replace="                return (u2, keep(st2, st), keep(acc2, acc)), v",
        tests=(f"{AVG}::test_auto_average_restarts_the_mean_while_the_objective_improves",),
        description="vi.fit's average=\"auto\" lets the check's iterations after the last step update the "
                    "parameters: the returned last iterate is not the last step's.",
        area="estimator",
    ),
]
