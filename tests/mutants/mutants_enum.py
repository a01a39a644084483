"""Planted bugs in the enumeration of finite discrete latent sites (``ppl/enum.py``, issue 14)."""

from catalogue import Mutant

MUTANTS = [
    Mutant(
        id="enum/plate-summed-as-enumeration-dim",
        file="ppl/enum.py",
        find="            t = jnp.sum(t, axis=tuple(axes), keepdims=True) if axes else t",
        replace="            t = _reduce(t, axes, op) if axes else t",
        tests=(
            "tests/test_enum_exact.py::test_marginal_law_on_fixed_cases",
            "tests/test_enum_mcmc.py::test_unconstrained_view_of_a_mixture_is_the_hand_marginalised_view",
        ),
        description="A plate's dimension is log-sum-exp'ed like an enumerated site's instead of multiplied out (summed in log space): the plate's elements become alternatives, not replicates.",
        area="law",
    ),
    Mutant(
        id="enum/scan-summed-without-transition",
        file="ppl/enum.py",
        find="        a = _swap(_reduce(_pad(alpha, nd) + g, prev_axes, outer._op), pairs, nd)",
        replace="        a = _swap(_reduce(g, prev_axes, outer._op) + _reduce(_pad(alpha, nd), prev_axes, outer._op), pairs, nd)",
        tests=(
            "tests/test_enum_mcmc.py::test_scan_hmm_marginal_equals_the_hand_written_forward_algorithm_on_hmm_example",
            "tests/test_enum_exact.py::test_marginal_law_on_fixed_cases",
        ),
        description="The forward algorithm sums the previous state out of the step's factor and of the filtered message separately: each step forgets which state the chain was in (no transition).",
        area="law",
    ),
    Mutant(
        id="enum/backward-sampling-ignores-next-state",
        file="ppl/enum.py",
        find="        new = choose(k, _pad(a_t, nd) + _pad(lg, nd))",
        replace="        new = choose(k, _pad(a_t, nd) + 0 * _pad(lg, nd))",
        tests=(
            "tests/test_enum_exact.py::test_infer_discrete_draws_have_exactly_the_enumerated_conditional_law",
        ),
        description="Backward sampling through a scan draws each state from its filtered marginal, ignoring the transition to the state drawn after it (forward filtering without the backward pass).",
        area="kernel",
    ),
]

# --- f14: mcmc.Gibbs on a plated discrete site by its elements' conditionals -------------------
MUTANTS += [
    Mutant(
        id="enum/gibbs-elements-without-correction",
        file="inference/mcmc/trace_kernels.py",
        find="        return (log_p_new - log_p_old) - (log_q_new - log_q_old)",
        replace="        return jnp.zeros(())",
        tests=(
            "tests/test_enum_gibbs_vi.py::test_gibbs_on_interacting_elements_stays_exact_and_the_uncorrected_twin_is_caught",
        ),
        description="Gibbs on a plate always takes the elements' enumerated conditionals, as if they never interacted: a factor coupling them (jnp.sum(z) outside the plate) is ignored.",
        area="kernel",
    ),
    Mutant(
        id="enum/gibbs-elements-reverse-proposal-at-new-value",
        file="inference/mcmc/trace_kernels.py",
        find="jnp.sum(_enum._select(lq, var.dim, cur))",
        replace="jnp.sum(_enum._select(lq, var.dim, idx))",
        tests=(
            "tests/test_enum_gibbs_vi.py::test_gibbs_on_a_plate_draws_exactly_the_full_conditional_element_by_element",
        ),
        description="The independence proposal's density at the current value is read at the proposed one: the MH ratio becomes p(new)/p(old), so the plate's elements no longer follow their full conditional.",
        area="kernel",
    ),
]

# --- issue 14 follow-up (engineer 14): the element-by-element check and vi.trace_enum_elbo -------
MUTANTS += [
    Mutant(
        id="enum/elementwise-check-accepts-everything",
        file="ppl/enum.py",
        find="        return bool(np.allclose(*np.broadcast_arrays(want, fb), rtol=1e-4, atol=1e-5))",
        replace="        return True",
        tests=(
            "tests/test_enum_reductions.py::test_every_reduction_across_the_plate_is_refused_naming_the_site",
        ),
        description="The relabelled runs are never compared: a model that reduces a summed-out site across its plate (jnp.sum(z)) silently gets a wrong marginal again.",
        area="law",
    ),
    Mutant(
        id="enum/elementwise-check-only-random-relabelling",
        file="ppl/enum.py",
        find="        for variant in (0, 1, 2):",
        replace="        for variant in (2,):",
        tests=(
            "tests/test_enum_reductions.py::test_every_reduction_across_the_plate_is_refused_naming_the_site",
        ),
        description="Only the random relabelling is run: a max or min over the site sees the same extreme value as the ordinary run and is let through.",
        area="law",
    ),
    Mutant(
        id="vi/trace-enum-elbo-guide-density-sign",
        file="inference/vi/enum_elbo.py",
        find="*args, **kwargs) - tr.log_density",
        replace="*args, **kwargs) + tr.log_density",
        tests=(
            "tests/test_vi_enum_elbo.py::test_value_and_gradient_are_exact_against_enumeration",
        ),
        description="The guide's log density is added instead of subtracted: the objective is no longer the ELBO of the marginal model.",
        area="law",
    ),
    # issue 14, case (c) (engineer g14)
    Mutant(
        id="enum/given-numpy-values-not-converted",
        file="ppl/enum.py",
        find='            self.put(msg, jnp.asarray(v) if isinstance(v, np.ndarray) else v, "latent")',
        replace='            self.put(msg, v, "latent")',
        tests=(
            "tests/test_enum_dawid_skene.py::test_map_classes_are_each_items_most_probable_class",
        ),
        description="A NumPy value given to infer_discrete / marginal_log_density (a draw from run.samples) stays a NumPy array: model code that indexes it with an enumerated site (beta[positions, c, :]) fails.",
        area="other",
    ),
]

# --- h14: Categorical log densities read without broadcast-then-gather ---------------------------
MUTANTS += [
    Mutant(
        id="enum/lowered-categorical-ignores-plate-index",
        file="ppl/enum.py",
        find="    indexed = [a for a in rest if log_pmf.shape[a] > 1]",
        replace="    indexed = []",
        tests=(
            "tests/test_enum_lowered.py::test_observed_site_log_density_is_numpyros_bit_for_bit",
            "tests/test_enum_dawid_skene.py::test_marginal_is_exact_and_equals_the_hand_marginalised_model",
        ),
        description="The lowered observed Categorical reads its logits at plate index 0 for every element of a plate they vary along (only the class index y is gathered): each annotator position scored with the first position's confusion row.",
        area="law",
    ),
    Mutant(
        id="enum/lowered-categorical-logits-unnormalised",
        file="ppl/enum.py",
        find="    return d.logits - jax.nn.logsumexp(d.logits, axis=-1, keepdims=True)",
        replace="    return d.logits",
        tests=(
            "tests/test_enum_lowered.py::test_observed_site_log_density_is_numpyros_bit_for_bit",
            "tests/test_enum_lowered.py::test_marginal_with_lowered_sites_is_the_enumerated_mass",
        ),
        description="The lowered Categorical(logits=) sites (observed and enumerated) read the raw logits instead of the normalised log-probabilities: an unnormalised likelihood.",
        area="law",
    ),
    Mutant(
        id="enum/enumerated-categorical-classes-reversed",
        file="ppl/enum.py",
        find="    return jnp.squeeze(jnp.moveaxis(log_pmf, -1, n + dim), axis=n + dim + 1)",
        replace="    return jnp.squeeze(jnp.moveaxis(jnp.flip(log_pmf, -1), -1, n + dim), axis=n + dim + 1)",
        tests=(
            "tests/test_enum_lowered.py::test_enumerated_site_log_density_at_its_support_is_numpyros_bit_for_bit",
            "tests/test_enum_lowered.py::test_marginal_with_lowered_sites_is_the_enumerated_mass",
        ),
        description="An enumerated Categorical site's log density at its laid-out support has its classes in reverse order: value k scored with the probability of class K-1-k.",
        area="law",
    ),
]

# --- issue 14, fifth pass (h14c): mcmc.sample checks summed-out sites at its concrete inputs -------
MUTANTS += [
    Mutant(
        id="enum/nuts-skips-the-elementwise-check",
        file="inference/mcmc/driver.py",
        find="    _check_summed_out(prog, dyn)\n",
        replace="",
        tests=(
            "tests/test_enum_reductions.py::test_nuts_refuses_a_reduction_across_the_plate_before_sampling",
        ),
        description="mcmc.sample does not check the model at its concrete inputs (its programs bind the view to traced ones, where the check is skipped): NUTS samples the wrong marginal of a model that reduces a summed-out site across its plate, silently.",
        area="law",
    ),
]

# --- issue 14 audit (haudit): every entry point checks summed-out sites; exact zeros ----------------
MUTANTS += [
    Mutant(
        id="enum/vi-fit-skips-the-elementwise-check",
        file="inference/vi/fit.py",
        find="    check_summed_out(objective, key, args, kwargs)\n",
        replace="",
        tests=(
            "tests/test_enum_entry_points.py::test_every_entry_point_refuses_a_reduction_across_the_plate",
        ),
        description="vi.fit does not check a trace_enum_elbo's model at its concrete inputs (its programs trace the data, where the check cannot run): the ELBO of the wrong marginal is optimised silently for a model that reduces a summed-out site across its plate.",
        area="law",
    ),
    Mutant(
        id="enum/traced-values-not-stood-in",
        file="ppl/enum.py",
        find="        if isinstance(given, str):\n            return _not_checked(m, given)\n",
        replace="        return False\n",
        tests=(
            "tests/test_enum_entry_points.py::test_every_entry_point_refuses_a_reduction_across_the_plate",
        ),
        description="check_summed_out gives up when the values are traced instead of checking at concrete stand-ins: a jitted marginal_log_density / infer_discrete (and so Run.discrete) returns the wrong marginal silently.",
        area="law",
    ),
    Mutant(
        id="smc/tempered-skips-summed-out-check",
        file="inference/smc/tempering.py",
        find="    if discrete is True:\n",
        replace="    if False:\n",
        tests=(
            "tests/test_enum_entry_points.py::test_every_entry_point_refuses_a_reduction_across_the_plate",
            "tests/test_smc_marginal.py::test_a_reduction_across_the_plate_is_refused_by_name",
        ),
        description="tempered_smc (which tempers the marginal model since issue 14's hsmc; it refused "
                    "summed-out sites before) skips the check at its concrete inputs: inside its program the "
                    "view's check is skipped, so a model reducing z across its plate gets a wrong marginal silently.",
        area="law",
    ),
    Mutant(
        id="enum/exact-zeros-skipped",
        file="ppl/enum.py",
        find='                lp = _exact_zeros(msg["fn"], msg["value"], msg["fn"].log_prob(msg["value"]))',
        replace='                lp = msg["fn"].log_prob(msg["value"])',
        tests=(
            "tests/test_enum_exact_zeros.py::test_marginal_with_probability_zero_data_is_the_enumerated_mass",
        ),
        description="The enumeration scores sites with NumPyro's log_prob as it is: Bernoulli/Binomial probs clamped away from 0 and 1 give data of probability zero a finite marginal (-1416.8) instead of -inf.",
        area="law",
    ),
]

# --- hcheck: the element-by-element check's own failures are explicit -------------------------------
MUTANTS += [
    Mutant(
        id="enum/unchecked-model-silent",
        file="ppl/enum.py",
        find='    entry = _ENTRY.get() or "ppl.enum.check_summed_out"\n',
        replace="    return False\n",
        tests=(
            "tests/test_enum_entry_points.py::test_where_the_check_cannot_run_the_entry_point_warns_once_naming_the_model_and_why",
        ),
        description="check_summed_out gives up without a word where no concrete stand-ins can be had (a ppl.scan step, a closure over a caller's tracer, a site with neither bijection nor sampler): vi.fit / jitted marginals go on without the refusal of cross-plate reductions, silently.",
        area="law",
    ),
    Mutant(
        id="enum/broken-model-unchecked",
        file="ppl/enum.py",
        find="    except Exception as e:  # noqa: BLE001 - the model is broken at values in its supports\n",
        replace="    except Exception as e:  # noqa: BLE001 - the model is broken at values in its supports\n        return None\n",
        tests=(
            "tests/test_enum_entry_points.py::test_a_model_failing_at_values_in_its_supports_is_refused_naming_it_and_the_cause",
        ),
        description="The stand-in run's failure is swallowed (the old `return None`): check_summed_out reports a broken model as checked-or-not without a word.",
        area="law",
    ),
    Mutant(
        id="enum/no-bijection-no-stand-in",
        file="ppl/enum.py",
        find="            return jnp.broadcast_to(fn.sample(key), shape)\n",
        replace="            raise\n",
        tests=(
            "tests/test_enum_entry_points.py::test_a_site_without_a_bijection_gets_a_prior_draw_as_stand_in_and_is_checked",
        ),
        description="A site whose support has no bijection (ProjectedNormal) gets no stand-in: a jitted marginal of a model reducing a summed-out site across its plate is not refused (it returned -6.26, the wrong marginal).",
        area="law",
    ),
]
