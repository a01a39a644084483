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
    # --- issue 16 (workflow after sampling): forecasting and pointwise log-likelihood ---
    Mutant(
        id="ppl/scan-forecast-from-the-prior",
        file="ppl/combinators.py",
        find="        carry, ys, sites, meta = segment(carry, a, b)",
        replace="        carry, ys, sites, meta = segment(init, a, b)",
        tests=("tests/test_workflow_forecast.py::test_forecast_matches_kalman_prediction",),
        description="A scan given values for its first T steps simulates the rest from the initial carry (the prior) instead of the state the prefix left: forecasts ignore the filtered state.",
        area="other",
    ),
    Mutant(
        id="ppl/log-likelihood-drops-the-scale",
        file="ppl/likelihood.py",
        find='        lp = lp * rec["scale"]',
        replace='        lp = lp * 1.0',
        tests=("tests/test_workflow_likelihood.py::test_pointwise_terms_match_scipy_with_plates_masks_and_conditioning",),
        description="Pointwise log-likelihood ignores a site's scale (ppl.scale, subsampling plates): the terms no longer add up to the model's log density.",
        area="other",
    ),
    Mutant(
        id="ppl/arviz-plate-dim-off-by-one",
        file="inference/_result.py",
        find="                ax = nb + fr.dim\n",
        replace="                ax = nb + fr.dim + 1\n",
        tests=("tests/test_workflow_arviz.py::test_groups_dims_coords_and_stats",),
        description="to_arviz names the axis after the plate's one (counting the plate's dim from the wrong end): dims and user coords land on the wrong axis or not at all.",
        area="other",
    ),
]
