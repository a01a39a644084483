"""Planted bugs in the run layer (inference/_run/): the masked chunked scan, the host loop and the
program cache, which every driver (MCMC, VI) runs on."""

from catalogue import Mutant

RUN = "tests/test_run_layer.py"

MUTANTS = [
    Mutant(
        id="run/mask-one-step-too-many",
        file="inference/_run/loop.py",
        find="jax.lax.cond(t < n_end, live, past_the_end, carry)",
        replace="jax.lax.cond(t <= n_end, live, past_the_end, carry)",
        tests=(f"{RUN}::test_a_chunk_size_not_dividing_the_steps_gives_the_one_chunk_result",),
        description="The chunked scan runs one step past the end of the run: the final state depends on the chunk size.",
        area="other",
    ),
    Mutant(
        id="run/keys-by-chunk-offset",
        file="inference/_run/loop.py",
        find="return step(jax.random.fold_in(key, t), c, t)",
        replace="return step(jax.random.fold_in(key, t - t0), c, t)",
        tests=(f"{RUN}::test_a_chunk_size_not_dividing_the_steps_gives_the_one_chunk_result",),
        description="Step keys are folded from the step's index in its chunk, not in the run: every chunk repeats the same randomness.",
        area="other",
    ),
    Mutant(
        id="run/interrupt-returns-uncollected-state",
        file="inference/_run/loop.py",
        find="        return done_state, done, True",
        replace="        return state, done, True",
        tests=(f"{RUN}::test_host_loop_returns_the_state_of_the_last_collected_chunk_on_ctrl_c",),
        description="On Ctrl-C the host loop returns the state of a chunk whose outputs were not collected: draws and state disagree.",
        area="other",
    ),
    Mutant(
        id="run/cache-ignores-ppl-sharding",
        file="ppl/config.py",
        find='    return (("PPL_SHARDING", sharding_requested()),) + values',
        replace="    return values",
        tests=("tests/test_config.py::test_trace_key_holds_every_trace_time_value",
               f"{RUN}::test_vi_program_cache_hits_on_a_second_call_and_misses_when_ppl_sharding_changes"),
        description="The program cache key leaves out PPL_SHARDING: a program traced with sharding on is reused with it off.",
        area="other",
    ),
]

# --- issue 17 follow-up (engineer f17): the one concreteness rule (inference/_run/concrete.py) ---
HABITS = "tests/test_numpyro_habits.py"
MUTANTS += [
    Mutant(
        id="run/concrete-key-ignores-contents",
        file="inference/_run/concrete.py",
        find="        self._key = (value.shape, value.dtype.str, digest)",
        replace="        self._key = (value.shape, value.dtype.str)",
        tests=(f"{HABITS}::test_vi_fit_keeps_numpy_data_concrete_where_the_model_needs_it",),
        description="Concrete NumPy data is keyed by shape only: new data of the same shape reuses the program "
                    "compiled with the old values.",
        area="other",
    ),
    Mutant(
        id="run/concrete-only-jax-errors",
        file="inference/_run/concrete.py",
        find='    return isinstance(e, ppl.PPLError) and ("Tracer" in str(e) or "traced value" in str(e))',
        replace="    return False",
        tests=(f"{HABITS}::test_vi_fit_keeps_numpy_data_concrete_where_the_model_needs_it",),
        description="Only JAX's own concretisation errors count as 'the body needs concrete data': the model's "
                    "ModelError about a traced value in Python control flow (int(np.max(x))) is not retried.",
        area="other",
    ),
    Mutant(
        id="run/load-forgets-concrete-numpy",
        file="inference/mcmc/_store.py",
        find="    if given != meta[\"args\"] and has_numpy((tuple(args), dict(kwargs))):",
        replace="    if False:",
        tests=(f"{HABITS}::test_mcmc_load_of_a_run_whose_model_needed_numpy_data_concrete",),
        description="mcmc.load in a fresh process traces the NumPy data the saved run kept concrete.",
        area="other",
    ),
]

# -- engineer g19 (issue 19, third pass): full chunks without the per-step branch --
MUTANTS += [
    Mutant(
        id="run/full-chunk-keeps-the-branch",
        file="inference/_run/loop.py",
        find="        if full:  # every step live (the caller's promise): no branch",
        replace="        if False:  # every step live (the caller's promise): no branch",
        tests=("tests/test_vi_step_cost.py::test_a_full_chunk_has_no_branch_and_a_masked_one_has",),
        description="A full chunk still wraps every step in lax.cond (the cost issue 19 removed): same results, "
                    "slower step; caught by the program's structure.",
        area="other",
    ),
]
