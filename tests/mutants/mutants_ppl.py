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
    # ---- issue 17a (engineer 17a): sample_shape, NumPyro handlers ----
    Mutant(
        id="ppl/sample-shape-right-of-plates",
        file="ppl/core.py",
        find="msg[\"fn\"] = fn.expand(tuple(sample_shape) + tuple(fn.batch_shape))",
        replace="msg[\"fn\"] = fn.expand(tuple(fn.batch_shape) + tuple(sample_shape))",
        tests=("tests/test_numpyro_habits.py::test_sample_shape_value_shape_and_log_density_sum",),
        description="sample_shape dims are put to the right of the plate dims (NumPyro puts them left).",
        area="other",
    ),
    Mutant(
        id="ppl/numpyro-handler-ignored",
        file="ppl/core.py",
        find="    _refuse_numpyro_handlers(msg)\n",
        replace="",
        tests=("tests/test_numpyro_habits.py::test_numpyro_handler_inside_or_outside_a_ppl_model_is_refused",),
        description="A NumPyro handler around a ppl model (condition, scale, ...) is silently ignored.",
        area="other",
    ),
    # -- issue 17b: ppl.reparam -----------------------------------------------------------------
    Mutant(
        id="ppl/reparam-original-site-still-scored",
        file="ppl/reparam.py",
        find='            msg["type"] = "deterministic"\n',
        replace="",
        tests=("tests/test_reparam.py::test_locscale_reparam_preserves_the_measure_exactly",),
        description="ppl.reparam leaves the reparameterised site a sample site: its density is scored on top of the new sites' (the measure is no longer the original's).",
        area="law",
    ),
    Mutant(
        id="ppl/reparam-bridge-drops-factor",
        file="ppl/reparam.py",
        find="core.factor(name, fn.log_factor)",
        replace="core.factor(name, 0.0 * fn.log_factor)",
        tests=("tests/test_reparam.py::test_circular_reparam_keeps_the_von_mises_density",),
        description="The bridge turns a reparameteriser's numpyro.factor into a zero factor (CircularReparam loses the von Mises density).",
        area="law",
    ),
    Mutant(
        id="ppl/reparam-auto-ignores-scale-dependence",
        file="ppl/reparam.py",
        find="used_out = [o == n for o in out_owner]",
        replace="used_out = [o == n and i % 2 == 0 for i, o in enumerate(out_owner)]",
        tests=("tests/test_reparam.py::test_auto_picks_the_hierarchical_sites_only",),
        description="Automatic non-centring looks only at the loc's dependencies: the funnel's x (scale exp(v/2)) stays centred.",
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
    # 17c: obs_mask
    Mutant(
        id="ppl/obs-mask-observed-unmasked",
        file="ppl/core.py",
        find='        "sample", f"{name}_observed", fn=d, infer=dict(infer or {}), mask=m,',
        replace='        "sample", f"{name}_observed", fn=d, infer=dict(infer or {}), mask=None,',
        tests=("tests/test_obs_mask.py::test_log_density_is_the_exact_posterior_up_to_the_evidence",),
        description="obs_mask's observed site scores every entry: the imputed values are also scored as data.",
        area="law",
    ),
]
