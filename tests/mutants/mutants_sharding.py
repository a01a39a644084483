"""Planted bugs in how the MCMC driver spreads chains over devices (inference/sharding.py's
``per_device`` / ``device_slice`` and their use in inference/mcmc/_program.py)."""

from catalogue import Mutant

SHARD = "tests/test_mcmc_sharding.py::test_nuts_chains_on_two_devices_run_as_separate_loops_with_the_unsharded_draws"
API = "tests/test_sharding_api.py::test_per_device_runs_each_devices_loops_alone_and_device_slice_hands_out_its_rows"

MUTANTS = [
    Mutant(
        id="sharding/device-slice-first-rows",
        file="inference/sharding.py",
        find="    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(AXIS) * m, m)",
        replace="    return jax.lax.dynamic_slice_in_dim(x, 0, m)",
        tests=(API, SHARD),
        description="Every device takes the first device's rows of a replicated batch: chains on different "
                    "devices get the same keys (same key, another result; duplicated chains).",
        area="other",
    ),
    Mutant(
        id="sharding/mcmc-chunk-gspmd",
        file="inference/mcmc/_program.py",
        find="        if self._per_device():\n            # one program per device",
        replace="        if False:\n            # one program per device",
        tests=(SHARD,),
        description="The MCMC chunk runs as one GSPMD program over sharded chains: the vmapped NUTS loops "
                    "all-reduce their predicate every iteration and every device waits for the slowest chain.",
        area="other",
    ),
]

# --- hcheck: a model's batched LAPACK in SMC and VI particles on several CPU devices -------------------
MUTANTS += [
    Mutant(
        id="sharding/particles-lapack-batched",
        file="inference/_lapack.py",
        find="    if not batches_lapack(fun, *args):\n        return jax.vmap(fun)(*args)\n",
        replace="    return jax.vmap(fun)(*args)\n",
        tests=("tests/test_lapack_devices.py::test_smc_and_vi_particles_with_a_models_lapack_finish_on_two_devices",),
        description="SMC and VI particles stay a vmap batch on several CPU devices even where it batches a "
                    "model's LAPACK calls: tempered_smc and vi.fit of a GP never return (jaxlib 0.10 deadlock).",
        area="other",
    ),
    Mutant(
        id="sharding/lapack-detector-list-only",
        file="inference/_lapack.py",
        find='            hit = "lapack_" in text\n',
        replace="            hit = False\n",
        tests=("tests/test_lapack_devices.py::test_calls_lapack_agrees_with_the_cpu_lowering_for_each_linalg_function",),
        description="calls_lapack trusts its hand list only: a primitive missing from it (a new jax's linalg "
                    "primitive) is not seen, and its batched LAPACK calls can deadlock several CPU devices.",
        area="other",
    ),
]
