"""Planted bugs in the convergence diagnostics (inference/mcmc/diagnostics.py, Run.diagnostics)
and in public functions whose value tests live in tests/test_*_api.py."""

from catalogue import Mutant

D = "inference/mcmc/diagnostics.py"
T = "tests/test_mcmc_diagnostics.py"

MUTANTS = [
    Mutant(
        id="diagnostics/ess-bulk-doubled",
        file=D,
        find="    return _ess(_rank_normalize(_split(np.asarray(x, dtype=float))))",
        replace="    return 2 * _ess(_rank_normalize(_split(np.asarray(x, dtype=float))))",
        tests=(T,),
        description="Bulk ESS reported twice too large.",
        area="diagnostic",
    ),
    Mutant(
        id="diagnostics/r-hat-without-folded-part",
        file=D,
        find="    return np.maximum(bulk, tail)",
        replace="    return bulk",
        tests=(T,),
        description="R-hat is the bulk (rank-normalised) R-hat only, without its folded (tail) part.",
        area="diagnostic",
    ),
    Mutant(
        id="diagnostics/r-hat-folded-about-the-mean",
        file=D,
        find="        med = np.median(x.reshape((-1,) + x.shape[2:]), axis=0)",
        replace="        med = np.mean(x.reshape((-1,) + x.shape[2:]), axis=0)",
        tests=(T,),
        description="The folded R-hat folds the draws about their mean instead of their median.",
        area="diagnostic",
    ),
    Mutant(
        id="diagnostics/ess-tail-wrong-quantile",
        file=D,
        find="q05, q95 = np.quantile(flat, 0.05, axis=0), np.quantile(flat, 0.95, axis=0)",
        replace="q05, q95 = np.quantile(flat, 0.05, axis=0), np.quantile(flat, 0.9, axis=0)",
        tests=(T,),
        description="Tail ESS uses the 90% quantile instead of the 95% one for the upper tail.",
        area="diagnostic",
    ),
    Mutant(
        id="diagnostics/chains-not-split",
        file=D,
        find="    return np.concatenate([x[:, :h], x[:, n - h :]], axis=0)",
        replace="    return x",
        tests=(T,),
        description="Split-R-hat and ESS computed on whole chains (no splitting): within-chain drift goes unseen.",
        area="diagnostic",
    ),
    Mutant(
        id="diagnostics/rank-normalisation-offset",
        file=D,
        find="    z = stats.norm.ppf((r - 0.375) / (c * n + 0.25))",
        replace="    z = stats.norm.ppf((r - 0.5) / (c * n))",
        tests=(T,),
        description="Rank normalisation with Hazen's offset (r - 1/2)/S instead of Blom's (r - 3/8)/(S + 1/4).",
        area="diagnostic",
    ),
    Mutant(
        id="diagnostics/summary-quantile-method",
        file=D,
        find="        q = np.quantile(flat, [0.05, 0.5, 0.95], axis=0)",
        replace="        q = np.quantile(flat, [0.05, 0.5, 0.95], axis=0, method=\"hazen\")",
        tests=(T,),
        description="summary's quantiles use another interpolation rule (Hazen) than the documented linear one.",
        area="diagnostic",
    ),
    Mutant(
        id="diagnostics/summary-sd-biased",
        file=D,
        find="flat.std(0, ddof=1)",
        replace="flat.std(0, ddof=0)",
        tests=(T,),
        description="summary's sd divides by S instead of S - 1.",
        area="diagnostic",
    ),
    Mutant(
        id="diagnostics/divergences-drop-last-chain",
        file="inference/mcmc/driver.py",
        find='            d["divergences"] = np.sum([v.sum(1) for v in div], axis=0)',
        replace='            d["divergences"] = np.sum([v.sum(1) * (np.arange(v.shape[0]) < v.shape[0] - 1) for v in div], axis=0)',
        tests=(T + "::test_run_divergences_are_counted_per_chain",),
        description="Run.diagnostics reports no divergences for the last chain.",
        area="diagnostic",
    ),
    Mutant(
        id="diagnostics/divergences-drop-last-draw",
        file="inference/mcmc/driver.py",
        find='            d["warmup_divergences"] = np.sum([np.asarray(v).sum(1) for v in wdiv], axis=0)',
        replace='            d["warmup_divergences"] = np.sum([np.asarray(v)[:, :-1].sum(1) for v in wdiv], axis=0)',
        tests=(T + "::test_run_divergences_are_counted_per_chain",),
        description="Run.diagnostics' warmup divergence count misses each chain's last warmup step.",
        area="diagnostic",
    ),
]
