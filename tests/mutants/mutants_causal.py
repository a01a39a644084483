"""Planted bugs in inference/causal/: surgery, identification and counterfactuals."""

from catalogue import Mutant

ID = "tests/test_causal_identify.py"
CF = "tests/test_causal_counterfactual.py"

MUTANTS = [
    Mutant(
        id="causal/backdoor-weights-given-x",
        file="inference/causal/identify.py",
        find="expr = Sum(srt(Z), Prod((_cond(Y, srt(set(X) | set(Z)), order), Prob(srt(Z)))))",
        replace="expr = Sum(srt(Z), Prod((_cond(Y, srt(set(X) | set(Z)), order), _cond(srt(Z), srt(X), order))))",
        tests=(f"{ID}::test_front_door_and_back_door_match_the_reference_and_reject_planted_formulas",),
        description="The back-door adjustment weights by P(z | x) instead of P(z) (the adjustment collapses to the conditional).",
        area="estimator",
    ),
    Mutant(
        id="causal/frontdoor-wrong-conditioning",
        file="inference/causal/identify.py",
        find="key=lambda v: _key(order, v))), order), Prob((xp,)))))",
        replace="key=lambda v: _key(order, v))), order), _cond((xp,), M, order))))",
        tests=(f"{ID}::test_front_door_and_back_door_match_the_reference_and_reject_planted_formulas",),
        description="Front-door: the inner sum weights x' by P(x' | m) instead of P(x').",
        area="estimator",
    ),
    Mutant(
        id="causal/evidence-first-site-only",
        file="inference/causal/counterfactual.py",
        find="    for n, v in evidence.items():\n        w = w * _matches(vals[keys[n]], v)",
        replace="    for n, v in list(evidence.items())[:1]:\n        w = w * _matches(vals[keys[n]], v)",
        tests=(f"{CF}::test_consistency_and_twin_network_against_hand_computed_fractions",),
        description="Abduction weights the worlds by the first evidence site only.",
        area="estimator",
    ),
    Mutant(
        id="causal/twin-shares-downstream-noise",
        file="inference/causal/counterfactual.py",
        find="    shared -= set(do)\n",
        replace="    shared |= {n for n, s in sites.items() if s['type'] == 'sample' and not s['intervened'] and n in downstream and list(sites).index(n) == len(sites) - 1}\n    shared -= set(do)\n",
        tests=(f"{CF}::test_stochastic_sites_downstream_are_redrawn_and_upstream_are_shared",),
        description="The twin network shares the last downstream stochastic site between the worlds instead of redrawing it.",
        area="estimator",
    ),
    Mutant(
        id="causal/surgery-keeps-one-wire",
        file="inference/causal/diagram.py",
        find="new[name] = dataclasses.replace(box, intervention=v, parents=(), observed=False)",
        replace="new[name] = dataclasses.replace(box, intervention=v, parents=box.parents[:1], observed=False)",
        tests=("tests/test_causal_surgery.py::test_do_surgery_and_query_equal_a_plain_enumerator",),
        description="A hard cut keeps the wire from the box's first parent (the joint is unchanged, since a hard box ignores its parents; the drawn diagram and its wires are wrong).",
        area="estimator",
    ),
    Mutant(
        id="causal/sampler-fallback-on-any-model-error",
        file="inference/causal/interpret.py",
        find="    except NotEnumerableError:  # a latent site without finite support",
        replace="    except ModelError:  # a latent site without finite support",
        tests=("tests/test_causal_plates.py::test_the_sampler_fallback_is_decided_by_type_not_by_message",),
        description="interpret() turns every model error of the exact interpretation into a Sampler, hiding real errors.",
        area="other",
    ),
    # --- 21d: drawing diagrams as string diagrams (inference/causal/layout.py) ---
    Mutant(
        id="causal/draw-routing-disabled",
        file="inference/causal/layout.py",
        find="        if route:\n            for dn in chain[1:-1]:",
        replace="        if False:\n            for dn in chain[1:-1]:",
        tests=("tests/test_causal_draw.py",),
        description="Wires are drawn straight from box to box, ignoring their dummies: a wire may pass behind a box it does not connect (the confounder's wire hidden behind smoke).",
        area="other",
    ),
    Mutant(
        id="causal/draw-copy-dot-needs-three-uses",
        file="inference/causal/layout.py",
        find="for n in boxes if consumers[n] >= 2}",
        replace="for n in boxes if consumers[n] >= 3}",
        tests=("tests/test_causal_draw.py",),
        description="A variable used exactly twice (by two boxes, or by a box and the output) is drawn without its copy dot.",
        area="other",
    ),
]
