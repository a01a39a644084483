"""Planted bugs in inference/amortised/: the distribution transformer (issue 20a)."""

from catalogue import Mutant

AM = "tests/test_amortised.py"

MUTANTS = [
    Mutant(
        id="amortised/cross-attention-mask-dropped",
        file="inference/amortised/transformer.py",
        find="h = h + self.cross_attn(c, b, b, mask=jnp.broadcast_to(mask[None, :], (h.shape[0], e.shape[0])))",
        replace="h = h + self.cross_attn(c, b, b)",
        tests=(f"{AM}::test_masked_points_are_ignored_and_mask_equals_dropping",),
        description="The components attend to every data point, masked ones included: padding leaks into the posterior.",
        area="other",
    ),
    Mutant(
        id="amortised/scale-head-offset-lost",
        file="inference/amortised/transformer.py",
        find="prior.scale * jax.nn.softplus(c + _SOFTPLUS_ONE)",
        replace="prior.scale * jax.nn.softplus(c)",
        tests=(f"{AM}::test_a_zero_head_returns_the_prior_exactly", f"{AM}::test_shipped_transformer_is_calibrated_on_heldout_tasks"),
        description="The scale head loses its offset: every posterior scale is softplus(c) instead of softplus(c + log(e-1)) times the prior's (0.69x at c = 0).",
        area="other",
    ),
]
