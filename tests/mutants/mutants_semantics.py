"""Planted bugs in semantics/: the statistical helpers and the laws."""

from catalogue import Mutant

MUTANTS = [
    Mutant(
        id="semantics/sbc-rank-ties-count",
        file="semantics/stats.py",
        find="ranks = np.sum(draws < theta[:, None], axis=1)",
        replace="ranks = np.sum(draws <= theta[:, None] + 0.05, axis=1)",
        tests=("tests/test_semantics_stats.py",),
        description="SBC ranks count draws within 0.05 above the truth as below it (a biased rank).",
        area="diagnostic",
    ),
    Mutant(
        id="semantics/table-drops-factors",
        file="semantics/tables.py",
        find='lp = sum(jnp.sum(s["log_prob"]) for s in ss.values() if s["type"] in ("sample", "factor"))',
        replace='lp = sum(jnp.sum(s["log_prob"]) for s in ss.values() if s["type"] in ("sample",))',
        tests=("tests/test_semantics_tables.py",),
        description="enumerate_table leaves the factors out of the joint's weights.",
        area="estimator",
    ),
]
