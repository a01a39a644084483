"""Planted bugs in the language core (``ppl/``): the message protocol and the value-providing mechanism."""

from catalogue import Mutant

MUTANTS = [
    Mutant(
        id="ppl/condition-scores-data-as-latent",
        file="ppl/messengers.py",
        find='    "observed": {"is_observed": True, "supplied": True},',
        replace='    "observed": {"supplied": True},',
        tests=("tests/test_ppl_basics.py::test_condition_observes",),
        description="A value given by ppl.condition is not marked observed: its density counts in the prior, not the likelihood.",
        area="other",
    ),
    Mutant(
        id="ppl/update-branch-freshness-inverted",
        file="ppl/model.py",
        find='"kept", fresh=~act)',
        replace='"kept", fresh=act)',
        tests=("tests/test_ppl_laws.py::test_log_density_generate_update_identical_under_jit",),
        description="update marks a branch site kept from the old trace as freshly drawn (and a redrawn one as kept): the MH weight of a move that flips a branch is wrong.",
        area="law",
    ),
    Mutant(
        id="ppl/message-accepts-undeclared-fields",
        file="ppl/message.py",
        find="""    def __setitem__(self, key: str, value: Any) -> None:
        if key not in FIELDS:""",
        replace="""    def __setitem__(self, key: str, value: Any) -> None:
        if key not in FIELDS and False:""",
        tests=("tests/test_ppl_structure.py::test_a_handler_writing_an_undeclared_field_fails_loudly",),
        description="A handler writing a misspelt message field (msg['vaule'] = ...) is silently ignored.",
        area="other",
    ),
]

# --- issue 18 (engineer 18): observations against plates, exact zeros --------------------------
MUTANTS += [
    Mutant(
        id="ppl/obs-plate-check-compares-ranks-only",
        file="ppl/checks.py",
        find="    if full == tuple(dshape):\n        return",
        replace="    if len(full) == len(dshape):\n        return",
        tests=("tests/test_bad_inputs.py::test_an_observation_broadcasting_a_batch_dim_of_the_distribution_inside_a_plate_is_refused",
               "tests/test_bad_inputs.py::test_observations_against_random_plate_structures"),
        description="The plate check only refuses observations with extra leading dims: a value that broadcasts a "
                    "size-1 dim of the site (same rank) enlarges the likelihood unnoticed.",
        area="other",
    ),
    Mutant(
        id="ppl/exact-zeros-forget-probs-one",
        file="ppl/checks.py",
        find="    return ((p == 0) & (v != 0)) | ((p == 1) & (v != 1))",
        replace="    return (p == 0) & (v != 0)",
        tests=("tests/test_no_silent.py::test_data_of_probability_zero_have_log_density_minus_inf",),
        description="y = 0 under Bernoulli(probs=1) keeps NumPyro's clamped finite log density instead of -inf.",
        area="other",
    ),
]
