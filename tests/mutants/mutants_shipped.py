"""Planted bugs in the *compiled* branches only (jnp.where / lax.switch / lax.cond / vmap /
lax.scan) of blocks that also have an eager branch.  The exact laws run the eager branch under
the enumerator, so before tests/test_shipped_paths.py none of these could be seen by an exact
test; each is now killed by the compiled-path check (same outcomes, same draws and
probabilities, same outputs) or by the law checked on the compiled outputs."""

from catalogue import Mutant

SHIPPED = "tests/test_shipped_paths.py"
KERNEL_MIXTURE = SHIPPED + "::test_kernel_compiled_step_equals_eager_step_and_keeps_the_law[mixture]"
RESAMPLE = SHIPPED + "::test_ess_triggered_resampling_compiled_equals_eager_and_is_unbiased"

MUTANTS = [
    Mutant(
        id="shipped/mixture-compiled-switch-next-kernel",
        file="inference/mcmc/combinators.py",
        find="state, info = jax.lax.switch(i, [branch(p) for p in self.parts], state)",
        replace="state, info = jax.lax.switch((i + 1) % len(self.parts), [branch(p) for p in self.parts], state)",
        tests=(KERNEL_MIXTURE,),
        description="Under jit a mixture applies kernel i+1 when it drew i (the eager Python branch is "
        "right, and info['component'] still says i): the component weights are permuted.",
    ),
    Mutant(
        id="shipped/select-compiled-keeps-discrete-leaves",
        file="inference/mcmc/_base.py",
        find="return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)",
        replace="return jax.tree.map(lambda a, b: jnp.where(pred, a, b) if jnp.issubdtype(jnp.result_type(a), jnp.inexact) else b, on_true, on_false)",
        tests=(KERNEL_MIXTURE,),
        description="Under jit an accepted MH move updates only the floating-point leaves of the trace "
        "(log densities) and keeps the old integer/boolean values: discrete sites never move and "
        "the stored density no longer matches the values.",
    ),
    Mutant(
        id="shipped/gibbs-compiled-candidates-off-by-one",
        file="inference/mcmc/trace_kernels.py",
        find="lps = jax.vmap(lp)(cands)",
        replace="lps = jax.vmap(lp)(jnp.roll(cands, 1, axis=0))",
        tests=(KERNEL_MIXTURE,),
        description="Under jit (vmap over the candidates) Gibbs scores candidate i-1 for candidate i: "
        "the full conditional is attached to the wrong values (the eager loop is right).",
    ),
    Mutant(
        id="shipped/resample-compiled-trigger-on-tie",
        file="inference/smc/blocks.py",
        find="    out = jax.lax.cond(\n        trigger,",
        replace="    out = jax.lax.cond(\n        e <= ess_threshold * N,",
        tests=(RESAMPLE,),
        description="Under jit ESS-triggered resampling fires when ESS == ρN (<= instead of <), while "
        "info['resampled'] and the eager path say it did not.",
        area="resampler",
    ),
    Mutant(
        id="shipped/resample-compiled-keep-flattens-weights",
        file="inference/smc/blocks.py",
        find="lambda k: Particles(particles.states, lw, identity),",
        replace="lambda k: Particles(particles.states, resampled_log_weights(lw, identity), identity),",
        tests=(RESAMPLE,),
        description="Under jit, when ESS-triggered resampling does not fire, the population is returned "
        "with every weight set to the average (Ẑ kept, the weighted measure not).",
        area="resampler",
    ),
    Mutant(
        id="shipped/resample-compiled-ess-after",
        file="inference/smc/blocks.py",
        find='return out, {"ancestors": out.ancestors, "resampled": trigger, "ess": e}',
        replace='return out, {"ancestors": out.ancestors, "resampled": trigger, "ess": ess(out.log_weights)}',
        tests=(RESAMPLE,),
        description="Under jit the resampling info reports the ESS after resampling (N when it fired) "
        "instead of before.",
        area="diagnostic",
    ),
    Mutant(
        id="shipped/csmc-compiled-first-resample-masked",
        file="inference/smc/pmcmc.py",
        find="anc = jnp.where(t > 0, drawn, jnp.arange(N, dtype=jnp.int32))",
        replace="anc = jnp.where(t > 1, drawn, jnp.arange(N, dtype=jnp.int32))",
        tests=(SHIPPED + "::test_conditional_smc_compiled_equals_eager",),
        description="Under jit (lax.scan) conditional SMC skips the resampling of step 1 as well as "
        "step 0 (its ancestors are drawn, then replaced by the identity); the eager loop resamples.",
    ),
    Mutant(
        id="shipped/mh-compiled-counts-inactive-proposed-sites",
        file="inference/mcmc/trace_kernels.py",
        find="mask = _active(old, a) & ~_active(new, a) & _active(rev, a) & ~_active(fwd, a)",
        replace="mask = _active(old, a) & ~_active(new, a) & _active(rev, a) & (a not in fwd.latent)",
        tests=(SHIPPED + "::test_structure_changing_moves_under_jit_keep_the_law",),
        description="The bug this work found and fixed: MH treats every site in the forward proposal's "
        "trace as proposed, also the inactive sites of a ppl.cond branch it did not take (under jit the "
        "trace holds every branch), so a removed site that the reverse move re-proposes keeps its prior "
        "score: the compiled acceptance ratio is off by that prior (0.3 of the right one in the test). "
        "Eagerly the two conditions agree.",
    ),
    Mutant(
        id="shipped/pmmh-compiled-keeps-old-evidence",
        file="inference/smc/pmcmc.py",
        find="    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)",
        replace="    return jax.tree.map(lambda a, b: jnp.where(pred, a, b) if jnp.ndim(a) or a.dtype != jnp.float64 else b, on_true, on_false)",
        tests=(SHIPPED + "::test_pmmh_compiled_step_equals_eager",),
        description="Under jit an accepted PMMH move takes the new θ but keeps the old Ẑ (and the old "
        "trace's scalar log densities): the kept estimate no longer belongs to the state.",
    ),
    Mutant(
        id="shipped/filter-compiled-trajectories-forward",
        file="inference/smc/filter.py",
        find="_, stacked = jax.lax.scan(back, last, jnp.arange(T), reverse=True)",
        replace="_, stacked = jax.lax.scan(back, last, jnp.arange(T), reverse=False)",
        tests=(SHIPPED + "::test_particle_filter_compiled_equals_eager_and_is_unbiased",),
        description="Under jit the particle filter traces lineages forward in time (ancestors of step 0 "
        "first), so the returned paths are not the particles' ancestries; the eager loop goes backward.",
        area="estimator",
    ),
]
